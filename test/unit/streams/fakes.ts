// Fakes for the stream hub's Redis connection: SUBSCRIBE/UNSUBSCRIBE are recorded, and a test
// "publishes" by emitting the message event the way ioredis does.
import { EventEmitter } from "node:events";
import type { Redis } from "ioredis";
import { encodeLiveMessage, type LiveEvent, liveEventsChannel } from "../../../server/core/streams/live-events.js";
import { StreamHub } from "../../../server/core/streams/hub.js";

export class FakeSubscriber extends EventEmitter {
  readonly channels = new Set<string>();
  readonly commands: string[] = [];
  quitted = false;

  async subscribe(channel: string): Promise<number> {
    this.commands.push(`subscribe ${channel}`);
    this.channels.add(channel);
    return this.channels.size;
  }

  async unsubscribe(channel: string): Promise<number> {
    this.commands.push(`unsubscribe ${channel}`);
    this.channels.delete(channel);
    return this.channels.size;
  }

  async quit(): Promise<"OK"> {
    this.quitted = true;
    return "OK";
  }

  /** Delivers a message as Redis would, if the channel is subscribed. */
  publish(prefix: string, siteId: string, events: LiveEvent[]): void {
    const channel = liveEventsChannel(prefix, siteId);
    if (this.channels.has(channel)) this.emit("message", channel, encodeLiveMessage(events));
  }
}

export function fakeHub(prefix = "test"): { hub: StreamHub; subscriber: FakeSubscriber } {
  const subscriber = new FakeSubscriber();
  const hub = new StreamHub({ connect: () => subscriber as unknown as Redis, prefix });
  return { hub, subscriber };
}

let counter = 0;

export function liveEvent(overrides: Partial<LiveEvent> = {}): LiveEvent {
  counter++;
  return {
    siteId: "site-1",
    ts: 1_700_000_000_000 + counter,
    eventId: `e-${counter}`,
    name: "pageview",
    visitorId: "12345",
    sessionId: "67890",
    hostname: "example.com",
    pathname: "/",
    title: "",
    referrer: "",
    referrerSource: "",
    referrerMedium: "direct",
    utmSource: "",
    utmMedium: "",
    utmCampaign: "",
    utmTerm: "",
    utmContent: "",
    country: "GB",
    region: "",
    city: "",
    browser: "Chrome",
    browserVersion: "120.0",
    os: "Windows",
    osVersion: "10",
    deviceType: "desktop",
    screen: "",
    language: "",
    classification: 1,
    props: {},
    revenue: null,
    receivedAt: 1_700_000_000_000 + counter,
    ...overrides,
  };
}
