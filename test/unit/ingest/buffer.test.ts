// IngestBuffer: concurrent requests share one queue write, and no request is answered before the
// write carrying its events has succeeded.
import { describe, expect, it } from "vitest";
import { IngestBuffer } from "../../../server/core/ingest/buffer.js";
import type { RawHit } from "../../../server/core/ingest/hit.js";
import { rawHit } from "../../support/raw-hit.js";

function hit(eventId: string): RawHit {
  return rawHit({ siteId: "00000000-0000-4000-8000-000000000001", eventId, ts: 1_700_000_000_000, url: "https://example.com/", ip: "203.0.113.1", userAgent: "Mozilla/5.0" });
}

/** A queue write that records its batches and finishes when the test says. */
function controlledWrite() {
  const batches: string[][] = [];
  const pending: { resolve(): void; reject(err: Error): void }[] = [];
  const write = (hits: RawHit[]) => {
    batches.push(hits.map((h) => h.eventId));
    return new Promise<void>((resolve, reject) => pending.push({ resolve, reject }));
  };
  return { write, batches, pending };
}

/** Whether `promise` has settled, after letting every queued callback run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(() => (done = true), () => (done = true));
  await new Promise((wake) => setImmediate(wake));
  return done;
}

describe("IngestBuffer", () => {
  it("writes the events of concurrent requests in one batch, and answers each only after that write", async () => {
    const { write, batches, pending } = controlledWrite();
    const buffer = new IngestBuffer(write, { maxEvents: 100, maxWaitMs: 1 });
    const first = buffer.add([hit("a"), hit("b")]);
    const second = buffer.add([hit("c")]);
    await new Promise((wake) => setTimeout(wake, 20));
    expect(batches).toEqual([["a", "b", "c"]]);
    expect(await settled(first)).toBe(false);
    pending[0].resolve();
    await expect(first).resolves.toBeUndefined();
    await expect(second).resolves.toBeUndefined();
  });

  it("writes as soon as maxEvents are waiting, without waiting for the window", async () => {
    const { write, batches, pending } = controlledWrite();
    const buffer = new IngestBuffer(write, { maxEvents: 3, maxWaitMs: 60_000 });
    const first = buffer.add([hit("a"), hit("b")]);
    expect(batches).toEqual([]);
    const second = buffer.add([hit("c")]);
    expect(batches).toEqual([["a", "b", "c"]]);
    pending[0].resolve();
    await Promise.all([first, second]);
  });

  it("fails every request of a failed write, so none is acknowledged, and starts afresh", async () => {
    const { write, batches, pending } = controlledWrite();
    const buffer = new IngestBuffer(write, { maxEvents: 2, maxWaitMs: 60_000 });
    const first = buffer.add([hit("a")]);
    const second = buffer.add([hit("b")]);
    pending[0].reject(new Error("Redis is away"));
    await expect(first).rejects.toThrow("Redis is away");
    await expect(second).rejects.toThrow("Redis is away");
    const third = buffer.add([hit("c"), hit("d")]);
    expect(batches).toEqual([["a", "b"], ["c", "d"]]);
    pending[1].resolve();
    await expect(third).resolves.toBeUndefined();
  });

  it("writes what is waiting on close and refuses events after it", async () => {
    const batches: string[][] = [];
    const buffer = new IngestBuffer(async (hits) => void batches.push(hits.map((h) => h.eventId)), { maxEvents: 100, maxWaitMs: 60_000 });
    const waiting = buffer.add([hit("a")]);
    await buffer.close();
    await expect(waiting).resolves.toBeUndefined();
    expect(batches).toEqual([["a"]]);
    await expect(buffer.add([hit("b")])).rejects.toThrow(/shutting down/);
  });

  it("asks its gate once per flush, in arrival order, and writes only the events of requests it lets through", async () => {
    const { write, batches, pending } = controlledWrite();
    const asked: string[][] = [];
    const gate = async (requests: string[]) => {
      asked.push(requests);
      return requests.map((r) => (r === "over" ? new Error(`${r}: too many`) : undefined));
    };
    const buffer = new IngestBuffer<RawHit, string>(write, { maxEvents: 100, maxWaitMs: 1 }, gate);
    const ok = buffer.add([hit("a"), hit("b")], "fine");
    const refused = buffer.add([hit("c")], "over");
    const unchecked = buffer.add([hit("d")]);
    const alsoOk = buffer.add([hit("e")], "fine too");
    await expect(refused).rejects.toThrow("over: too many");
    expect(asked).toEqual([["fine", "over", "fine too"]]);
    expect(batches).toEqual([["a", "b", "d", "e"]]);
    // The others are still waiting for their write, as without a gate.
    expect(await settled(ok)).toBe(false);
    pending[0].resolve();
    await Promise.all([ok, unchecked, alsoOk]);
  });

  it("writes nothing when its gate refuses every request, and fails them all when the gate itself fails", async () => {
    const { write, batches } = controlledWrite();
    let failing = false;
    const gate = async (requests: number[]) => {
      if (failing) throw new Error("Redis is away");
      return requests.map(() => new Error("refused"));
    };
    const buffer = new IngestBuffer<RawHit, number>(write, { maxEvents: 2, maxWaitMs: 60_000 }, gate);
    const [a, b] = [buffer.add([hit("a")], 1), buffer.add([hit("b")], 2)];
    await expect(a).rejects.toThrow("refused");
    await expect(b).rejects.toThrow("refused");
    failing = true;
    const [c, d] = [buffer.add([hit("c")], 3), buffer.add([hit("d")])];
    await expect(c).rejects.toThrow("Redis is away");
    await expect(d).rejects.toThrow("Redis is away");
    expect(batches).toEqual([]);
  });

  it("refuses a request with something to check when it has no gate to check it with", async () => {
    const { write, batches } = controlledWrite();
    const buffer = new IngestBuffer<RawHit, string>(write, { maxEvents: 1, maxWaitMs: 60_000 });
    await expect(buffer.add([hit("a")], "limits")).rejects.toThrow(/no gate/);
    expect(batches).toEqual([]);
  });
});
