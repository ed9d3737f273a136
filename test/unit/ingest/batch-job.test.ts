// The ingest job's wire form: hits go in column by column through a table of distinct strings,
// and come out as they went in, whatever they hold; batches queued in the older form still read.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { hitsOf, ingestBatchJob, ingestBatchJobId, type RawHit } from "../../../workers/queues.js";

function hit(over: Partial<RawHit> = {}): RawHit {
  return {
    siteId: "8f3c2a7e-0000-4000-8000-000000000001", eventId: "e-1", ts: 1_763_800_000_000, name: "pageview",
    url: "https://example.com/", referrer: "", title: "Home", ip: "203.0.113.9", userAgent: "Mozilla/5.0 Chrome/126.0",
    clientId: "c-1", userId: "", screen: "1920x1080", language: "en-GB", props: {}, revenue: null, currency: "", receivedAt: 1_763_800_000_000,
    ...over,
  };
}

describe("ingest batch job", () => {
  it("round-trips every field of every hit through JSON, as BullMQ stores it", () => {
    const hits = [
      hit(),
      hit({ eventId: "e-2", ts: 1_763_799_000_123, receivedAt: 1_763_800_000_007, name: "signup", props: { plan: "pro", seats: 3, trial: false }, revenue: 49.5, currency: "EUR" }),
      hit({ siteId: "8f3c2a7e-0000-4000-8000-000000000002", eventId: "e-3", url: "", referrer: "https://www.google.com/", title: "tab\there \"quoted\" ünïcode 🎉", userId: "u-9", receivedAt: 1_763_799_999_990 }),
      hit({ eventId: "e-4", clientId: "", ip: "2001:db8::1", userAgent: "", screen: "", language: "", revenue: 0 }),
    ];
    const wire = JSON.parse(JSON.stringify(ingestBatchJob(hits)));
    expect(hitsOf(wire)).toEqual(hits);
  });

  it("stores each distinct string once", () => {
    const hits = Array.from({ length: 200 }, (_, i) => hit({ eventId: `e-${i}`, clientId: `c-${i % 5}`, url: `https://example.com/${i % 3}` }));
    const job = ingestBatchJob(hits);
    expect("batch" in job && job.batch.strings.filter((s) => s.startsWith("c-")).length).toBe(5);
    expect(JSON.stringify(job).length).toBeLessThan(JSON.stringify({ hits }).length / 3);
    expect(hitsOf(JSON.parse(JSON.stringify(job)))).toEqual(hits);
  });

  it("reads a batch queued in the older form, without changing the job's data", () => {
    const hits = [hit({ eventId: "b", ts: 2 }), hit({ eventId: "a", ts: 1 })];
    const job = { hits };
    const read = hitsOf(job).sort((x, y) => x.ts - y.ts);
    expect(read.map((h) => h.eventId)).toEqual(["a", "b"]);
    expect(job.hits.map((h) => h.eventId)).toEqual(["b", "a"]);
  });

  it("holds an empty batch", () => {
    expect(hitsOf(JSON.parse(JSON.stringify(ingestBatchJob([]))))).toEqual([]);
  });
});

describe("ingest batch job id", () => {
  const batch = (n: number, from = 0) => Array.from({ length: n }, (_, i) => hit({ eventId: `e-${from + i}`, siteId: `8f3c2a7e-0000-4000-8000-00000000000${(from + i) % 3}` }));

  it("is the hash of every hit's site and event id, however many there are (the id an earlier version gave the batch)", () => {
    for (const n of [1, 63, 64, 65, 150, 2_300]) {
      const hits = batch(n);
      const keys = hits.map((h) => `${h.siteId}/${h.eventId}\n`).join("");
      expect(ingestBatchJobId(hits)).toBe(`batch-${createHash("sha256").update(keys).digest("hex").slice(0, 32)}`);
    }
  });

  it("is the same for the same batch sent again, and differs when any hit differs", () => {
    const hits = batch(150);
    expect(ingestBatchJobId(structuredClone(hits))).toBe(ingestBatchJobId(hits));
    expect(ingestBatchJobId(hits.slice(0, 149))).not.toBe(ingestBatchJobId(hits));
    expect(ingestBatchJobId([...hits.slice(0, 149), { ...hits[149], eventId: "other" }])).not.toBe(ingestBatchJobId(hits));
    expect(ingestBatchJobId([...hits.slice(0, 100), ...hits.slice(101)])).not.toBe(ingestBatchJobId(hits));
  });
});
