import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { RealtimeSnapshot } from "../../../server/core/realtime.js";
import { type RealtimeUpdate, SharedSnapshots, watchRealtime } from "../../../server/core/streams/realtime-watch.js";
import { fakeHub, liveEvent } from "./fakes.js";

function snapshot(activeUsers: number, timestamp = 0): RealtimeSnapshot {
  return { siteId: "site-1", timestamp, activeUsers, pageviewsPerMinute: 0, pageviewsLastMinute: 0, topPages: [], topCountries: [], topSources: [], pageviewsByMinute: [] };
}

/** A RealtimeState whose figures the test sets, counting its reads. */
function fakeRealtime() {
  const state = { activeUsers: 0, reads: 0 };
  return {
    state,
    realtime: {
      snapshot: async (_siteId: string, now = Date.now()) => {
        state.reads++;
        return snapshot(state.activeUsers, now);
      },
    },
  };
}

describe("watchRealtime", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends the snapshot at once, then an update when the figures change and a heartbeat when they do not", async () => {
    const { hub } = fakeHub();
    const { state, realtime } = fakeRealtime();
    const abort = new AbortController();
    const stream = watchRealtime(hub, new SharedSnapshots(realtime), "site-1", { intervalMs: 1000, signal: abort.signal });
    const next = async () => {
      const pending = stream.next();
      await vi.advanceTimersByTimeAsync(1000);
      return (await pending).value as RealtimeUpdate;
    };
    const first = (await stream.next()).value as RealtimeUpdate;
    expect(first).toMatchObject({ kind: "snapshot", dropped: 0 });
    expect(first.snapshot?.activeUsers).toBe(0);
    // The timestamp alone changing is not a change.
    expect(await next()).toMatchObject({ kind: "heartbeat", snapshot: undefined, dropped: 0 });
    state.activeUsers = 3;
    const update = await next();
    expect(update.kind).toBe("update");
    expect(update.snapshot?.activeUsers).toBe(3);
    expect((await next()).kind).toBe("heartbeat");
    abort.abort();
    expect((await stream.next()).done).toBe(true);
    expect(hub.stats().listeners).toBe(0);
  });

  it("coalesces the intervals a slow reader missed into its next message, and counts them", async () => {
    const { hub } = fakeHub();
    const { state, realtime } = fakeRealtime();
    const abort = new AbortController();
    const stream = watchRealtime(hub, new SharedSnapshots(realtime), "site-1", { intervalMs: 1000, signal: abort.signal });
    await stream.next();
    // The reader is away for five intervals, during which the figures change twice.
    state.activeUsers = 1;
    await vi.advanceTimersByTimeAsync(2500);
    state.activeUsers = 2;
    await vi.advanceTimersByTimeAsync(2500);
    const pending = stream.next();
    await vi.advanceTimersByTimeAsync(0);
    const update = (await pending).value as RealtimeUpdate;
    expect(update.kind).toBe("update");
    expect(update.snapshot?.activeUsers).toBe(2);
    expect(update.dropped).toBe(4);
    abort.abort();
    await stream.return(undefined);
  });
});

describe("SharedSnapshots", () => {
  it("reads Redis once per site for watchers ticking together, and again after an event arrives", async () => {
    const { state, realtime } = fakeRealtime();
    const shared = new SharedSnapshots(realtime, 500);
    await Promise.all([shared.get("site-1", 1000), shared.get("site-1", 1100), shared.get("site-1", 1400)]);
    expect(state.reads).toBe(1);
    shared.invalidate("site-1");
    await shared.get("site-1", 1450);
    expect(state.reads).toBe(2);
    await shared.get("site-1", 2000);
    expect(state.reads).toBe(3);
    await shared.get("site-2", 2000);
    expect(state.reads).toBe(4);
  });

  it("is told of events through the hub while a site is watched", async () => {
    vi.useFakeTimers();
    try {
      const { hub, subscriber } = fakeHub("p");
      const { state, realtime } = fakeRealtime();
      const shared = new SharedSnapshots(realtime, 60_000);
      const abort = new AbortController();
      const stream = watchRealtime(hub, shared, "site-1", { intervalMs: 1000, signal: abort.signal });
      await stream.next();
      const reads = state.reads;
      subscriber.publish("p", "site-1", [liveEvent()]);
      state.activeUsers = 1;
      const pending = stream.next();
      await vi.advanceTimersByTimeAsync(1000);
      expect(((await pending).value as RealtimeUpdate).kind).toBe("update");
      expect(state.reads).toBe(reads + 1);
      abort.abort();
      await stream.return(undefined);
    } finally {
      vi.useRealTimers();
    }
  });
});
