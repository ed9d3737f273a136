// The ingest job's wire form: hits go in column by column through a table of distinct strings,
// and come out as they went in, whatever they hold; batches queued in the older form still read.
import { describe, expect, it } from "vitest";
import { hitsOf, ingestBatchJob, type RawHit } from "../../../workers/queues.js";

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
