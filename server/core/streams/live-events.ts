// Stored events on their way to live streams. The ingest worker publishes each stored batch on
// Redis pub/sub, one message per site per batch, on the site's own channel: a server process then
// receives only the sites its stream subscribers watch, and one message per batch keeps the
// events of a batch in the order they were stored (Redis delivers a connection's messages in the
// order they were published).
import type { Redis } from "ioredis";
import type { StoredEvent } from "../../db/events-store.js";

/**
 * A stored event as it travels to streams: the 63-bit ids as decimal strings (JSON has no
 * bigint), without what only the sessions table needs.
 */
export type LiveEvent = Omit<StoredEvent, "visitorId" | "sessionId" | "sessionStartedAt" | "clickId"> & {
  visitorId: string;
  sessionId: string;
};

interface LiveMessage {
  events: LiveEvent[];
}

/** The pub/sub channel of a site's stored events. Channels are not keys, but share the key prefix. */
export function liveEventsChannel(prefix: string, siteId: string): string {
  return `${prefix}:live:${siteId}`;
}

/**
 * Field by field on purpose: what goes on the wire is this list, whatever else the stored row
 * carries at run time (the enriched event has more, such as a bigint that JSON cannot encode).
 */
export function toLiveEvent(e: StoredEvent): LiveEvent {
  return {
    siteId: e.siteId,
    ts: e.ts,
    eventId: e.eventId,
    name: e.name,
    visitorId: e.visitorId.toString(),
    sessionId: e.sessionId.toString(),
    hostname: e.hostname,
    pathname: e.pathname,
    title: e.title,
    referrer: e.referrer,
    referrerSource: e.referrerSource,
    referrerMedium: e.referrerMedium,
    utmSource: e.utmSource,
    utmMedium: e.utmMedium,
    utmCampaign: e.utmCampaign,
    utmTerm: e.utmTerm,
    utmContent: e.utmContent,
    country: e.country,
    region: e.region,
    city: e.city,
    browser: e.browser,
    browserVersion: e.browserVersion,
    os: e.os,
    osVersion: e.osVersion,
    deviceType: e.deviceType,
    screen: e.screen,
    language: e.language,
    classification: e.classification,
    props: e.props,
    revenue: e.revenue,
    receivedAt: e.receivedAt,
  };
}

export function encodeLiveMessage(events: LiveEvent[]): string {
  return JSON.stringify({ events } satisfies LiveMessage);
}

/** The events of a published message; an unreadable message (another version's) gives none. */
export function decodeLiveMessage(payload: string): LiveEvent[] {
  try {
    const message = JSON.parse(payload) as Partial<LiveMessage>;
    return Array.isArray(message.events) ? message.events : [];
  } catch {
    return [];
  }
}

/** The worker's side: publishes each stored batch, per site, in the batch's order. */
export class LiveEventPublisher {
  constructor(private readonly redis: Redis, private readonly prefix: string) {}

  /**
   * Publishes stored events to their sites' channels. Encoding every event cost the worker more
   * than anything but enrichment and the insert, mostly for sites nobody watches: channels are
   * asked for their subscribers first (one command), and only watched sites' events are encoded.
   * The events are stored by then, so a stream that subscribes after the question was answered
   * started after they were stored, and missing them is what it would see anyway.
   *
   * `batches` are the batches one store wrote (a group commit): the question is asked once for
   * all of them, and each batch still goes out as its own message per site, so a message stays
   * the size of one batch, which a subscriber's queue is sized for.
   */
  async publish(batches: readonly (readonly StoredEvent[])[]): Promise<void> {
    const bySite = batches.map((events) => {
      const sites = new Map<string, StoredEvent[]>();
      for (const event of events) {
        let list = sites.get(event.siteId);
        if (!list) sites.set(event.siteId, (list = []));
        list.push(event);
      }
      return sites;
    });
    const siteIds = [...new Set(bySite.flatMap((sites) => [...sites.keys()]))];
    if (siteIds.length === 0) return;
    const channels = siteIds.map((siteId) => liveEventsChannel(this.prefix, siteId));
    const counts = (await this.redis.pubsub("NUMSUB", ...channels)) as (string | number)[];
    // The channel of each site someone watches, by site id.
    const watched = new Map<string, string>();
    siteIds.forEach((siteId, i) => {
      if (Number(counts[i * 2 + 1]) > 0) watched.set(siteId, channels[i]);
    });
    if (watched.size === 0) return;
    const pipeline = this.redis.pipeline();
    for (const sites of bySite) {
      for (const [siteId, list] of sites) {
        const channel = watched.get(siteId);
        if (channel !== undefined) pipeline.publish(channel, encodeLiveMessage(list.map(toLiveEvent)));
      }
    }
    await pipeline.exec();
  }
}
