import { describe, expect, it } from "vitest";
import { BoundedQueue } from "../../../server/core/streams/bounded-queue.js";

describe("BoundedQueue", () => {
  it("keeps at most its capacity, dropping (and counting) the oldest", () => {
    const queue = new BoundedQueue<number>(3);
    for (let i = 1; i <= 7; i++) queue.push(i);
    expect(queue.length).toBe(3);
    expect(queue.dropped).toBe(4);
    expect([queue.shift(), queue.shift(), queue.shift(), queue.shift()]).toEqual([5, 6, 7, undefined]);
    queue.push(8);
    expect(queue.shift()).toBe(8);
    expect(queue.dropped).toBe(4);
  });

  it("wakes a waiting reader, gives up after its timeout, and returns nothing once aborted", async () => {
    const queue = new BoundedQueue<string>(2);
    const abort = new AbortController();
    const waiting = queue.take(60_000, abort.signal);
    queue.push("a");
    expect(await waiting).toBe("a");
    expect(await queue.take(1, abort.signal)).toBeUndefined();
    const aborted = queue.take(60_000, abort.signal);
    abort.abort();
    expect(await aborted).toBeUndefined();
  });

  it("refuses a capacity below one", () => {
    expect(() => new BoundedQueue(0)).toThrow(/capacity/);
  });
});
