import { describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { decodeLiveMessage, encodeLiveMessage, LiveEventPublisher, toLiveEvent } from "../../../server/core/streams/live-events.js";
import type { StoredEvent } from "../../../server/db/events-store.js";
import { liveEvent } from "./fakes.js";

function stored(siteId: string, eventId: string): StoredEvent {
  const { visitorId: _v, sessionId: _s, ...rest } = liveEvent({ siteId, eventId });
  return { ...rest, visitorId: 2n ** 62n + 1n, sessionId: 7n, sessionStartedAt: 0, clickId: "" };
}

describe("live events", () => {
  it("carry the 63-bit ids as decimal strings and survive the round trip", () => {
    const event = toLiveEvent(stored("s", "e"));
    expect(event.visitorId).toBe("4611686018427387905");
    expect(decodeLiveMessage(encodeLiveMessage([event]))).toEqual([event]);
    // A stored row carries more at run time than its type says (the enriched event's yesterday
    // visitor id, a bigint): only the listed fields travel.
    const withExtra = { ...stored("s", "e2"), visitorIdYesterday: 5n } as StoredEvent;
    expect(() => encodeLiveMessage([toLiveEvent(withExtra)])).not.toThrow();
    expect(decodeLiveMessage("not json")).toEqual([]);
    expect(decodeLiveMessage('{"other":1}')).toEqual([]);
  });

  it("are published one message per watched site per batch, in each batch's order, after one question for the whole store", async () => {
    const published: [string, string][] = [];
    const asked: string[][] = [];
    const watched = new Set(["px:live:a", "px:live:b"]);
    const redis = {
      pubsub: async (_sub: "NUMSUB", ...channels: string[]) => {
        asked.push(channels);
        return channels.flatMap((c) => [c, watched.has(c) ? 1 : 0]);
      },
      pipeline: () => {
        const pipeline = {
          length: 0,
          publish: (channel: string, message: string) => {
            published.push([channel, message]);
            pipeline.length++;
            return pipeline;
          },
          exec: async () => [],
        };
        return pipeline;
      },
    } as unknown as Redis;
    // Two jobs stored together (a group commit).
    await new LiveEventPublisher(redis, "px").publish([
      [stored("a", "1"), stored("b", "2"), stored("c", "4"), stored("a", "3")],
      [stored("a", "5"), stored("c", "6")],
    ]);
    expect(asked).toEqual([["px:live:a", "px:live:b", "px:live:c"]]);
    // Site c has no subscriber: its events are not even encoded. Each job is its own message.
    expect(published.map(([channel, message]) => [channel, decodeLiveMessage(message).map((e) => e.eventId)])).toEqual([
      ["px:live:a", ["1", "3"]],
      ["px:live:b", ["2"]],
      ["px:live:a", ["5"]],
    ]);
  });
});
