// Backpressure: while accepted events wait longer than INGEST_MAX_QUEUE_WAIT_MS to be stored,
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
import { ingestQueueWaitKey } from "../../workers/queues.js";
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
