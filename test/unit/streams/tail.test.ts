import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../../server/core/errors.js";
import { matchesTail, tailEvents, tailFilter, type TailFilterInput, type TailItem } from "../../../server/core/streams/tail.js";
import type { Redis } from "ioredis";
import { UnavailableError } from "../../../server/core/errors.js";
import { StreamHub } from "../../../server/core/streams/hub.js";
import { FakeSubscriber, fakeHub, liveEvent } from "./fakes.js";

const none: TailFilterInput = { eventNames: [], pagePrefix: "", countries: [], includeBots: false };

describe("tail filters", () => {
  it("match by name, page prefix and country, and leave bots out unless asked", () => {
    const filter = tailFilter({ eventNames: ["signup"], pagePrefix: "/app", countries: ["gb", "FR"], includeBots: false });
    expect(matchesTail(filter, liveEvent({ name: "signup", pathname: "/app/join", country: "GB" }))).toBe(true);
    expect(matchesTail(filter, liveEvent({ name: "pageview", pathname: "/app/join", country: "GB" }))).toBe(false);
    expect(matchesTail(filter, liveEvent({ name: "signup", pathname: "/blog", country: "GB" }))).toBe(false);
    expect(matchesTail(filter, liveEvent({ name: "signup", pathname: "/app", country: "US" }))).toBe(false);
    expect(matchesTail(filter, liveEvent({ name: "signup", pathname: "/app", country: "FR", classification: 2 }))).toBe(false);
    expect(matchesTail(tailFilter({ ...none, includeBots: true }), liveEvent({ classification: 2 }))).toBe(true);
    expect(matchesTail(tailFilter(none), liveEvent())).toBe(true);
  });

  it("refuse bad values, naming the field", () => {
    const field = (input: Partial<TailFilterInput>) => {
      try {
        tailFilter({ ...none, ...input });
      } catch (err) {
        return err instanceof InvalidArgumentError ? err.field : String(err);
      }
      return "accepted";
    };
    expect(field({ countries: ["GBR"] })).toBe("countries[0]");
    expect(field({ eventNames: ["ok", ""] })).toBe("event_names[1]");
    expect(field({ pagePrefix: "docs" })).toBe("page_prefix");
    expect(field({ pagePrefix: "/docs" })).toBe("accepted");
  });
});

describe("tailEvents", () => {
  it("opens with a heartbeat once subscribed, relays matching events in order, and leaves the channel at the end", async () => {
    const { hub, subscriber } = fakeHub("p");
    const abort = new AbortController();
    const stream = tailEvents(hub, "site-1", tailFilter({ ...none, pagePrefix: "/docs" }), { signal: abort.signal, maxQueued: 10, heartbeatMs: 60_000 });
    const first = await stream.next();
    expect(first.value).toEqual({ event: undefined, dropped: 0 });
    expect(subscriber.channels).toEqual(new Set(["p:live:site-1"]));

    const docs = [liveEvent({ pathname: "/docs/a" }), liveEvent({ pathname: "/docs/b" })];
    subscriber.publish("p", "site-1", [docs[0], liveEvent({ pathname: "/pricing" }), docs[1]]);
    subscriber.publish("p", "site-2", [liveEvent({ pathname: "/docs/other-site" })]);
    expect(((await stream.next()).value as TailItem).event).toEqual(docs[0]);
    expect(((await stream.next()).value as TailItem).event).toEqual(docs[1]);

    abort.abort();
    expect((await stream.next()).done).toBe(true);
    expect(subscriber.channels.size).toBe(0);
    expect(hub.stats()).toEqual({ sites: 0, listeners: 0 });
  });

  it("drops the oldest events of a subscriber that does not read, and reports how many", async () => {
    const { hub, subscriber } = fakeHub("p");
    const abort = new AbortController();
    const stream = tailEvents(hub, "site-1", tailFilter(none), { signal: abort.signal, maxQueued: 3, heartbeatMs: 60_000 });
    await stream.next();
    const events = Array.from({ length: 10 }, (_, i) => liveEvent({ eventId: `n-${i}` }));
    subscriber.publish("p", "site-1", events);
    const read: TailItem[] = [];
    for (let i = 0; i < 3; i++) read.push((await stream.next()).value as TailItem);
    expect(read.map((item) => item.event?.eventId)).toEqual(["n-7", "n-8", "n-9"]);
    expect(read.map((item) => item.dropped)).toEqual([7, 7, 7]);
    await stream.return(undefined);
    expect(subscriber.channels.size).toBe(0);
  });

  it("sends a heartbeat when nothing arrives", async () => {
    const { hub } = fakeHub();
    const abort = new AbortController();
    const stream = tailEvents(hub, "site-1", tailFilter(none), { signal: abort.signal, maxQueued: 3, heartbeatMs: 5 });
    await stream.next();
    expect((await stream.next()).value).toEqual({ event: undefined, dropped: 0 });
    abort.abort();
    expect((await stream.next()).done).toBe(true);
  });

  it("shares one subscription among the listeners of a site", async () => {
    const { hub, subscriber } = fakeHub("p");
    const leaveA = await hub.join("site-1", () => {});
    const leaveB = await hub.join("site-1", () => {});
    expect(subscriber.commands).toEqual(["subscribe p:live:site-1"]);
    leaveA();
    leaveA();
    expect(subscriber.channels.size).toBe(1);
    leaveB();
    expect(subscriber.commands).toEqual(["subscribe p:live:site-1", "unsubscribe p:live:site-1"]);
    await hub.close();
    expect(subscriber.quitted).toBe(true);
    await expect(hub.join("site-1", () => {})).rejects.toThrow(/shutting down/);
  });
});

describe("StreamHub", () => {
  it("refuses a stream as Unavailable when Redis does not confirm the subscription, and lets the channel go", async () => {
    const subscriber = new FakeSubscriber();
    subscriber.subscribe = (channel: string) => {
      subscriber.commands.push(`subscribe ${channel}`);
      return new Promise<number>(() => {});
    };
    const hub = new StreamHub({ connect: () => subscriber as unknown as Redis, prefix: "p", subscribeTimeoutMs: 10 });
    await expect(hub.join("site-1", () => {})).rejects.toBeInstanceOf(UnavailableError);
    expect(subscriber.commands).toEqual(["subscribe p:live:site-1", "unsubscribe p:live:site-1"]);
    expect(hub.stats()).toEqual({ sites: 0, listeners: 0 });
  });
});
