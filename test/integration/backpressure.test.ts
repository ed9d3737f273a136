// Backpressure: while accepted events would wait longer than INGEST_MAX_QUEUE_WAIT_MS to be stored,
// new events are refused with 503 + Retry-After (Unavailable over Connect), and accepted again
// once the workers have caught up. Real Postgres and Redis; the worker runs in this process, one
// batch at a time, and is held inside a batch to make the queue fall behind.
import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";
import { sqlPool } from "../../server/db/orm.js";
import { IngestBackpressure } from "../../server/core/ingest/backpressure.js";
import { ingestEventCountKeys, ingestQueueWaitKey } from "../../workers/queues.js";
import { startTestBeacon, type TestBeacon } from "../support/beacon.js";

const CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
let beacon: TestBeacon;
let site: { id: string; trackingId: string };

// While `holding`, each stored batch waits (its job stays active) until released.
let holding = false;
const held: (() => void)[] = [];
const release = () => held.shift()?.();

beforeAll(async () => {
  beacon = await startTestBeacon("backpressure", {
    workers: {
      ingestConcurrency: 1,
      onStored: async () => {
        if (holding) await new Promise<void>((resolve) => held.push(resolve));
      },
    },
    env: { INGEST_MAX_QUEUE_WAIT_MS: "400" },
  });
  const transport = createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [(next) => (req) => (req.header.set("Authorization", `Bearer ${beacon.adminKey}`), next(req))] });
  const created = (await createClient(ManagementService, transport).createSite({ domain: "busy.example.com", name: "Busy" })).site!;
  site = { id: created.id, trackingId: created.trackingId };
});
afterAll(() => beacon?.stop());

function collect(page: string) {
  return fetch(`${beacon.baseUrl}/collect`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "User-Agent": CHROME },
    body: JSON.stringify({ v: "1", tid: site.trackingId, cid: "c-1", t: "pageview", dl: `https://busy.example.com${page}` }),
  });
}

async function stored(page: string): Promise<number> {
  const pool = await sqlPool(beacon.orm);
  return Number((await pool.query("select count(*) as n from events where site_id = $1 and pathname = $2", [site.id, page])).rows[0].n);
}

async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("backpressure", () => {
  it("refuses new events while the queue is behind, keeps every accepted one, and accepts again once caught up", async () => {
    expect((await collect("/before")).status).toBe(200);
    await until("the first event", () => stored("/before"), (n) => n === 1);

    // The worker is held inside the next batch; the batches after it wait in the queue.
    holding = true;
    expect((await collect("/queued")).status).toBe(200);
    await until("the worker to hold a batch", async () => held.length, (n) => n === 1);
    for (let i = 0; i < 4; i++) {
      expect((await collect("/queued")).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => setTimeout(resolve, 800));
    // Released, the worker takes the next batch, which waited ~800 ms (> 400 ms), says so, and is held again.
    release();
    await until("the worker's report", () => beacon.redis.get(ingestQueueWaitKey(beacon.prefix)), (v) => Number(v) > 400);

    // The server reads the report within its refresh period and refuses.
    const refused = await until("a refusal", () => collect("/refused"), (res) => res.status === 503, 5_000);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(await refused.json()).toMatchObject({ error: "unavailable", message: expect.stringContaining("ingestion is behind") });
    const tracking = createClient(TrackingService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1" }));
    const err = await tracking
      .trackEvent({ trackingId: site.trackingId, event: { name: "pageview", url: "https://busy.example.com/refused", eventId: randomUUID() } })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.Unavailable);
    expect(err?.message).toContain("ingestion is behind");

    // Let the worker go: the queue drains, the worker says so, and events are accepted again.
    holding = false;
    while (held.length > 0) release();

    // Every event accepted before the refusal is stored; once drained, events are accepted again.
    await until("the queued events", () => stored("/queued"), (n) => n === 5);
    await until("acceptance again", () => collect("/after"), (res) => res.status === 200, 10_000);
    await until("the event after", () => stored("/after"), (n) => n === 1);
  });
});

describe("backpressure's estimate of the wait", () => {
  // The workers' readings are written straight into Redis, under a prefix of this describe's own,
  // and read at chosen times, so the estimate is checked against known rates.
  const prefix = () => `${beacon.prefix}:estimate`;
  async function reading(values: { queued: number; taken: number; lastTakenWaitMs?: number }): Promise<void> {
    const { queued, taken } = ingestEventCountKeys(prefix());
    await beacon.redis.mset(queued, values.queued, taken, values.taken);
    if (values.lastTakenWaitMs === undefined) await beacon.redis.del(ingestQueueWaitKey(prefix()));
    else await beacon.redis.set(ingestQueueWaitKey(prefix()), values.lastTakenWaitMs);
  }
  async function verdict(backpressure: IngestBackpressure, at: number): Promise<string> {
    await backpressure.refresh(at);
    try {
      backpressure.admit(at);
      return "accepted";
    } catch (err) {
      return (err as Error).message;
    }
  }

  it("refuses as soon as the waiting events outgrow what the workers drain in the bound, not a wait later", async () => {
    const backpressure = new IngestBackpressure(beacon.redis, prefix(), { maxQueueWaitMs: 1000, refreshMs: 1_000_000, holdMs: 0 });
    // Workers drain 5,000 events/s while 10,000/s arrive; the batches they take had waited 50 ms.
    const verdicts: string[] = [];
    for (let step = 0; step <= 4; step++) {
      await reading({ queued: 2000 + step * 2000, taken: step * 1000, lastTakenWaitMs: 50 });
      verdicts.push(await verdict(backpressure, 1_000_000 + step * 200));
    }
    // 2,000 → 6,000 events waiting: at 5,000/s that is 0.4 s … 1.2 s.
    expect(verdicts.slice(0, 4)).toEqual(["accepted", "accepted", "accepted", "accepted"]);
    expect(verdicts[4]).toContain("ingestion is behind (queued events wait 1.2 s to be stored");
  });

  it("accepts again as soon as the queue has emptied, whatever the last batch taken had waited", async () => {
    const backpressure = new IngestBackpressure(beacon.redis, prefix(), { maxQueueWaitMs: 1000, refreshMs: 1_000_000, holdMs: 0 });
    for (let step = 0; step <= 3; step++) {
      await reading({ queued: 20_000, taken: step * 2000, lastTakenWaitMs: 3000 });
      expect(await verdict(backpressure, 2_000_000 + step * 200)).toContain("ingestion is behind");
    }
    // The workers caught up; the batch they took last had still waited 3 s.
    await reading({ queued: 20_000, taken: 20_000, lastTakenWaitMs: 3000 });
    expect(await verdict(backpressure, 2_000_000 + 4 * 200)).toBe("accepted");
  });

  it("takes a burst into an idle queue (no drain rate seen yet), and accepts while no worker runs", async () => {
    const idle = new IngestBackpressure(beacon.redis, prefix(), { maxQueueWaitMs: 1000, refreshMs: 1_000_000, holdMs: 0 });
    await reading({ queued: 50_000, taken: 0, lastTakenWaitMs: 0 });
    expect(await verdict(idle, 3_000_000)).toBe("accepted");
    // Until the rate is known, the wait of the last batch taken decides.
    await reading({ queued: 50_000, taken: 0, lastTakenWaitMs: 1500 });
    expect(await verdict(idle, 3_000_200)).toContain("queued events wait 1.5 s");
    // No worker has reported for a while: nothing would drain the queue sooner by refusing.
    await reading({ queued: 90_000, taken: 0 });
    expect(await verdict(idle, 3_000_400)).toBe("accepted");
  });

  it("holds a request while the queue is over its bound, lets it in once the workers catch up, and refuses it when they do not", async () => {
    const held = new IngestBackpressure(beacon.redis, prefix(), { maxQueueWaitMs: 1000, refreshMs: 50, holdMs: 5000 });
    await reading({ queued: 10, taken: 0, lastTakenWaitMs: 1500 });
    await held.refresh();
    const admitted = held.admit();
    expect(admitted).toBeInstanceOf(Promise);
    let settled = false;
    void admitted!.then(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(settled).toBe(false);
    await reading({ queued: 10, taken: 10, lastTakenWaitMs: 0 });
    await admitted;
    // Within the bound, admit answers at once, with nothing to wait for.
    expect(held.admit()).toBeUndefined();

    const refused = new IngestBackpressure(beacon.redis, prefix(), { maxQueueWaitMs: 1000, refreshMs: 50, holdMs: 200 });
    await reading({ queued: 10, taken: 0, lastTakenWaitMs: 1500 });
    await refused.refresh();
    await expect(refused.admit()!).rejects.toThrow("queued events wait 1.5 s");
    const atOnce = new IngestBackpressure(beacon.redis, prefix(), { maxQueueWaitMs: 1000, refreshMs: 50, holdMs: 0 });
    await atOnce.refresh();
    expect(() => atOnce.admit()).toThrow("ingestion is behind");
  });

  it("counts what servers queue and workers take, so the difference is what waits", async () => {
    const { queued, taken } = ingestEventCountKeys(beacon.prefix);
    const before = Number(await beacon.redis.get(queued));
    for (let i = 0; i < 3; i++) expect((await collect("/counted")).status).toBe(200);
    await until("the counted events", () => stored("/counted"), (n) => n === 3);
    await until("the totals", async () => [Number(await beacon.redis.get(queued)), Number(await beacon.redis.get(taken))], ([q, t]) => q === t && q >= before + 3);
  });
});
