// What is happening on a site right now, kept in Redis by the enrichment worker as it stores
// events, so GetRealtime (and the realtime stream) never scan the events table: active visitors
// in a sorted set scored by their last event, each visitor's current page, country and source,
// and pageviews per minute in short-lived counters.
import type { Redis } from "ioredis";

export const ACTIVE_WINDOW_MS = 5 * 60_000;
const MINUTES_KEPT = 30;
const MINUTE = 60_000;

export interface RealtimeEvent {
  siteId: string;
  ts: number;
  name: string;
  visitorId: bigint;
  pathname: string;
  country: string;
  referrerSource: string;
  classification: number;
}

export interface RealtimeCount {
  value: string;
  activeUsers: number;
}

export interface RealtimeSnapshot {
  siteId: string;
  timestamp: number;
  activeUsers: number;
  /** Pageviews in the last full minute. */
  pageviewsPerMinute: number;
  /** Pageviews in the 60 s before `timestamp`. */
  pageviewsLastMinute: number;
  topPages: RealtimeCount[];
  topCountries: RealtimeCount[];
  topSources: RealtimeCount[];
  pageviewsByMinute: { time: number; pageviews: number }[];
}

/** One site's share of a recorded batch. */
interface SiteBatch {
  lastSeen: Map<string, number>;
  /** Each visitor's latest pageview, and the first other event of a visitor without one. */
  page: Map<string, RealtimeEvent>;
  firstOther: Map<string, RealtimeEvent>;
  minutes: Map<number, number>;
}

/** Where a visitor is, as the `where` hash keeps it. */
function whereOf(e: RealtimeEvent): string {
  return JSON.stringify([e.pathname, e.country, e.referrerSource]);
}

export class RealtimeState {
  constructor(private readonly redis: Redis, private readonly prefix: string) {}

  private key(siteId: string, part: string): string {
    return `${this.prefix}:rt:${siteId}:${part}`;
  }

  /**
   * Records stored events (people only; bots do not make a site "live"). A batch costs a few
   * commands per site, whatever its size: one ZADD of every visitor's latest time, one HSET of
   * where each visitor is, one counter per minute.
   */
  async record(events: RealtimeEvent[], now = Date.now()): Promise<void> {
    const sites = new Map<string, SiteBatch>();
    for (const e of events) {
      if (e.classification !== 1 || e.ts <= now - MINUTES_KEPT * MINUTE) continue;
      let site = sites.get(e.siteId);
      if (!site) sites.set(e.siteId, (site = { lastSeen: new Map(), page: new Map(), firstOther: new Map(), minutes: new Map() }));
      const visitor = e.visitorId.toString();
      site.lastSeen.set(visitor, Math.max(site.lastSeen.get(visitor) ?? 0, e.ts));
      if (e.name === "pageview") {
        // The visitor's latest pageview says where it is; an older one of the batch never wins.
        // Only the winners are written out (below): one visitor's batch has hundreds of pageviews.
        const current = site.page.get(visitor);
        if (!current || e.ts >= current.ts) site.page.set(visitor, e);
        const minute = Math.floor(e.ts / MINUTE) * MINUTE;
        site.minutes.set(minute, (site.minutes.get(minute) ?? 0) + 1);
      } else if (!site.firstOther.has(visitor)) {
        site.firstOther.set(visitor, e);
      }
    }
    if (sites.size === 0) return;
    const pipeline = this.redis.pipeline();
    for (const [siteId, site] of sites) {
      const active = this.key(siteId, "active");
      const where = this.key(siteId, "where");
      // GT: a late event never moves a visitor's last-seen time backwards.
      pipeline.zadd(active, "GT", ...[...site.lastSeen].flatMap(([visitor, ts]) => [ts, visitor]));
      if (site.page.size > 0) pipeline.hset(where, ...[...site.page].flatMap(([visitor, e]) => [visitor, whereOf(e)]));
      // Other events place a visitor only until a pageview does.
      for (const [visitor, e] of site.firstOther) if (!site.page.has(visitor)) pipeline.hsetnx(where, visitor, whereOf(e));
      for (const [minute, count] of site.minutes) {
        pipeline.incrby(this.key(siteId, `pv:${minute}`), count);
        pipeline.pexpire(this.key(siteId, `pv:${minute}`), (MINUTES_KEPT + 2) * MINUTE);
      }
      pipeline.zremrangebyscore(active, "-inf", now - ACTIVE_WINDOW_MS);
      pipeline.pexpire(active, ACTIVE_WINDOW_MS * 2);
      pipeline.pexpire(where, ACTIVE_WINDOW_MS * 2);
    }
    await pipeline.exec();
  }

  async snapshot(siteId: string, now = Date.now(), top = 10): Promise<RealtimeSnapshot> {
    const active = await this.redis.zrangebyscore(this.key(siteId, "active"), now - ACTIVE_WINDOW_MS, "+inf");
    const where = active.length > 0 ? await this.redis.hmget(this.key(siteId, "where"), ...active) : [];
    const pages = new Map<string, number>();
    const countries = new Map<string, number>();
    const sources = new Map<string, number>();
    for (const entry of where) {
      if (!entry) continue;
      const [page, country, source] = JSON.parse(entry) as [string, string, string];
      pages.set(page, (pages.get(page) ?? 0) + 1);
      countries.set(country, (countries.get(country) ?? 0) + 1);
      sources.set(source || "Direct", (sources.get(source || "Direct") ?? 0) + 1);
    }
    const currentMinute = Math.floor(now / MINUTE) * MINUTE;
    const minutes = Array.from({ length: MINUTES_KEPT }, (_, i) => currentMinute - (MINUTES_KEPT - 1 - i) * MINUTE);
    const counts = (await this.redis.mget(...minutes.map((m) => this.key(siteId, `pv:${m}`)))).map((v) => Number(v ?? 0));
    const last = counts[counts.length - 1];
    const previous = counts[counts.length - 2];
    const elapsed = (now - currentMinute) / MINUTE;
    return {
      siteId,
      timestamp: now,
      activeUsers: active.length,
      pageviewsPerMinute: previous,
      // The current minute plus the part of the previous one still within the last 60 s.
      pageviewsLastMinute: Math.round(last + previous * (1 - elapsed)),
      topPages: ranked(pages, top),
      topCountries: ranked(countries, top),
      topSources: ranked(sources, top),
      pageviewsByMinute: minutes.map((time, i) => ({ time, pageviews: counts[i] })),
    };
  }
}

function ranked(counts: Map<string, number>, top: number): RealtimeCount[] {
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, top)
    .map(([value, activeUsers]) => ({ value, activeUsers }));
}
