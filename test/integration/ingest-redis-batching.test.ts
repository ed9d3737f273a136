// The accept and store paths batch their Redis work: rate-limit checks of one buffer flush go
// in one script call, usage counts are summed in memory and written about once a second, and
// realtime state is written per batch, and a worker's queue reports go out a few at a time. Each must answer exactly what the one-at-a-time version
// did. Real Redis, this file's own key prefix.
import { createHash, randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type RateLimit, RateLimiter, type RateVerdict } from "../../server/core/ingest/rate-limit.js";
import type { EnrichedEvent } from "../../server/core/ingest/enrich.js";
import { SessionTracker } from "../../server/core/ingest/sessions.js";
import { RealtimeState, type RealtimeEvent } from "../../server/core/realtime.js";
import { RedisUsage, usageKey } from "../../server/core/usage.js";
import { IngestProgressReports, IngestQueuedReports, ingestEventCountKeys, ingestQueueWaitKey } from "../../workers/queues.js";
import { deleteRedisKeys, TEST_REDIS_URL } from "../support/beacon.js";

const prefix = `beacon-t-batching-${randomBytes(4).toString("hex")}`;
let redis: Redis;

beforeAll(() => {
  redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
});

afterAll(async () => {
  await deleteRedisKeys(redis, prefix);
  redis.disconnect();
});

/** One check alone, as the gate would make it for a flush of one request. */
async function admitOne(limiter: RateLimiter, limits: RateLimit[], cost: number, now: number): Promise<RateVerdict> {
  return (await limiter.check([{ limits, cost, now }]))[0];
}

/** Records each rate-limit script call's number of keys until `restore()`. */
function countScriptCalls(): { calls: number[]; restore(): void } {
  const calls: number[] = [];
  const scripted = redis as unknown as { beaconRateLimits: (...a: unknown[]) => Promise<number[]> };
  const original = scripted.beaconRateLimits;
  scripted.beaconRateLimits = (...a: unknown[]) => {
    calls.push(Number(a[0]));
    return original.apply(redis, a);
  };
  return { calls, restore: () => void (scripted.beaconRateLimits = original) };
}

describe("RateLimiter", () => {
  it("answers the checks of one call in order, as if each had been alone", async () => {
    const limiter = new RateLimiter(redis, prefix);
    const now = Date.now();
    // Twelve requests in one flush against a limit of ten: the first ten pass, the last two wait.
    const verdicts = await limiter.check(Array.from({ length: 12 }, () => ({ limits: [{ key: "v:one", limit: 10, windowMs: 60_000 }], cost: 1, now })));
    expect(verdicts.slice(0, 10).every((v) => v.allowed)).toBe(true);
    for (const v of verdicts.slice(10)) {
      expect(v.allowed).toBe(false);
      if (!v.allowed) expect(v.retryAfterMs).toBeGreaterThan(0);
    }
    // Only admitted requests were counted.
    const counter = `${prefix}:rl:v:one:${Math.floor(now / 60_000)}`;
    expect(Number(await redis.get(counter))).toBe(10);
    // A counter lives for two windows from its creation; later calls leave its expiry alone.
    const ttl = await redis.pttl(counter);
    expect(ttl).toBeGreaterThan(100_000);
    expect(ttl).toBeLessThanOrEqual(120_000);
    await redis.pexpire(counter, 90_000);
    await admitOne(limiter, [{ key: "v:one", limit: 100, windowMs: 60_000 }], 1, now);
    expect(await redis.pttl(counter)).toBeLessThanOrEqual(90_000);
  });

  it("keeps each check's limits apart, and a refused limit charges none of a check's others", async () => {
    const limiter = new RateLimiter(redis, prefix);
    const now = Date.now();
    const [a, b, c, d] = await limiter.check([
      { limits: [{ key: "v:a", limit: 5, windowMs: 60_000 }, { key: "s:site", limit: 100, windowMs: 1_000 }], cost: 5, now },
      { limits: [{ key: "v:b", limit: 5, windowMs: 60_000 }, { key: "s:site", limit: 100, windowMs: 1_000 }], cost: 3, now },
      { limits: [{ key: "v:a", limit: 5, windowMs: 60_000 }, { key: "s:site", limit: 100, windowMs: 1_000 }], cost: 1, now },
      { limits: [{ key: "v:c", limit: 0, windowMs: 60_000 }], cost: 1_000, now },
    ]);
    expect([a.allowed, b.allowed, c.allowed, d.allowed]).toEqual([true, true, false, true]);
    expect(Number(await redis.get(`${prefix}:rl:s:site:${Math.floor(now / 1_000)}`))).toBe(8);
  });

  it("charges each limit its own cost when given, all or nothing", async () => {
    const limiter = new RateLimiter(redis, prefix);
    const now = Date.now();
    const window = Math.floor(now / 60_000);
    // A batch of 700 from two visitors under a per-visitor limit of 600: each is charged its own.
    const ok = await admitOne(limiter, [{ key: "s:costs", limit: 1_000, windowMs: 60_000, cost: 700 }, { key: "v:x", limit: 600, windowMs: 60_000, cost: 400 }, { key: "v:y", limit: 600, windowMs: 60_000, cost: 300 }], 700, now);
    expect(ok.allowed).toBe(true);
    // Visitor x has 200 left: 250 more is refused, and nothing of the check is counted.
    const refused = await admitOne(limiter, [{ key: "s:costs", limit: 1_000, windowMs: 60_000, cost: 250 }, { key: "v:x", limit: 600, windowMs: 60_000, cost: 250 }], 250, now);
    expect(refused.allowed).toBe(false);
    expect(await redis.mget(`${prefix}:rl:s:costs:${window}`, `${prefix}:rl:v:x:${window}`, `${prefix}:rl:v:y:${window}`)).toEqual(["700", "400", "300"]);
  });

  it("keeps a group's counters as fields of one hash per window, expiring once, each visitor apart", async () => {
    const limiter = new RateLimiter(redis, prefix);
    const now = Date.now();
    const window = Math.floor(now / 60_000);
    const visitor = (key: string, cost: number) => [{ key: "s:grouped", limit: 1_000, windowMs: 1_000, cost }, { group: "v:g", key, limit: 5, windowMs: 60_000, cost }];
    const [a, b, a2, a3] = await limiter.check([
      { limits: visitor("anna", 3), cost: 3, now },
      { limits: visitor("ben", 5), cost: 5, now },
      { limits: visitor("anna", 2), cost: 2, now },
      // Anna is at her limit of 5: refused, and the site's limit is not charged for it either.
      { limits: visitor("anna", 1), cost: 1, now },
    ]);
    expect([a.allowed, b.allowed, a2.allowed, a3.allowed]).toEqual([true, true, true, false]);
    const hash = `${prefix}:rl:v:g:${window}`;
    expect(await redis.hgetall(hash)).toEqual({ anna: "5", ben: "5" });
    expect(await redis.exists(`${prefix}:rl:v:g:anna:${window}`)).toBe(0);
    expect(Number(await redis.get(`${prefix}:rl:s:grouped:${Math.floor(now / 1_000)}`))).toBe(10);
    // The hash lives for two windows from its creation; later calls leave its expiry alone.
    const ttl = await redis.pttl(hash);
    expect(ttl).toBeGreaterThan(100_000);
    expect(ttl).toBeLessThanOrEqual(120_000);
    await redis.pexpire(hash, 90_000);
    expect((await admitOne(limiter, [{ group: "v:g", key: "cleo", limit: 5, windowMs: 60_000 }], 1, now)).allowed).toBe(true);
    expect(await redis.pttl(hash)).toBeLessThanOrEqual(90_000);
  });

  it("refuses a grouped limit without a key rather than count it as the group's own key", async () => {
    const limiter = new RateLimiter(redis, prefix);
    await expect(limiter.check([{ limits: [{ group: "v:empty", key: "", limit: 5, windowMs: 60_000 }], cost: 1, now: Date.now() }])).rejects.toThrow(/empty key/);
    expect(await redis.exists(`${prefix}:rl:v:empty:${Math.floor(Date.now() / 60_000)}`)).toBe(0);
  });

  it("weighs a group field's previous window as the sliding window overlaps it", async () => {
    const limiter = new RateLimiter(redis, prefix);
    const start = (Math.floor(Date.now() / 60_000) + 1) * 60_000;
    // 10 of 10 in one window; a quarter into the next, three quarters of those still count: 2 more fit, not 3.
    expect((await admitOne(limiter, [{ group: "v:slide", key: "dora", limit: 10, windowMs: 60_000 }], 10, start + 59_000)).allowed).toBe(true);
    const later = start + 60_000 + 15_000;
    expect((await admitOne(limiter, [{ group: "v:slide", key: "dora", limit: 10, windowMs: 60_000 }], 3, later)).allowed).toBe(false);
    expect((await admitOne(limiter, [{ group: "v:slide", key: "dora", limit: 10, windowMs: 60_000 }], 2, later)).allowed).toBe(true);
    expect((await admitOne(limiter, [{ group: "v:slide", key: "eve", limit: 10, windowMs: 60_000 }], 10, later)).allowed).toBe(true);
  });

  it("answers a batch of checks in one call as admit would answer them one by one", async () => {
    const limiter = new RateLimiter(redis, prefix);
    const now = Date.now();
    const { calls, restore } = countScriptCalls();
    try {
      const visitor = (key: string, cost: number) => ({ limits: [{ group: "v:batch", key, limit: 4, windowMs: 60_000 }], cost, now });
      const verdicts = await limiter.check([visitor("x", 3), { limits: [], cost: 5, now }, visitor("x", 2), visitor("y", 4), visitor("x", 1)]);
      expect(verdicts.map((v) => v.allowed)).toEqual([true, true, false, true, true]);
      expect(verdicts[2].allowed === false && verdicts[2].retryAfterMs > 0).toBe(true);
      // One call, for the four checks with limits (a hash's two windows: two keys).
      expect(calls).toEqual([2]);
      expect(await redis.hgetall(`${prefix}:rl:v:batch:${Math.floor(now / 60_000)}`)).toEqual({ x: "4", y: "4" });
    } finally {
      restore();
    }
  });

  it("reads and writes a hash's fields in pieces when a call holds more than one command takes", async () => {
    const limiter = new RateLimiter(redis, prefix);
    const now = Date.now();
    // 1,000 checks of nine fields each: 9,000 fields of one hash, past the ~8,000 values Lua's
    // unpack() can hand one command.
    const checks = Array.from({ length: 1_000 }, (_, i) => ({ limits: [..."abcdefghi"].map((p) => ({ group: "v:wide", key: `${p}${i}`, limit: 1, windowMs: 60_000 })), cost: 1, now }));
    expect((await limiter.check(checks)).every((v) => v.allowed)).toBe(true);
    const hash = `${prefix}:rl:v:wide:${Math.floor(now / 60_000)}`;
    expect(await redis.hlen(hash)).toBe(9_000);
    expect(await redis.hget(hash, "i999")).toBe("1");
    // Every one of them is now at its limit.
    expect((await limiter.check(checks)).every((v) => !v.allowed)).toBe(true);
  });

  it("sends one script call for a flush's checks, and many calls' worth in slices", async () => {
    const limiter = new RateLimiter(redis, prefix);
    const { calls, restore } = countScriptCalls();
    try {
      const now = Date.now();
      const verdicts = await limiter.check(Array.from({ length: 2_500 }, (_, i) => ({ limits: [{ key: `v:many:${i}`, limit: 1, windowMs: 60_000 }], cost: 1, now })));
      expect(verdicts.every((v) => v.allowed)).toBe(true);
      // 2,500 checks of one limit each (two keys per limit), in slices of 1,000 checks.
      expect(calls).toEqual([2_000, 2_000, 1_000]);
    } finally {
      restore();
    }
  });
});

describe("SessionTracker.assign", () => {
  const MINUTE = 60_000;
  const event = (siteId: string, visitor: bigint, yesterday: bigint | null, ts: number) => ({ siteId, visitorId: visitor, visitorIdYesterday: yesterday, ts }) as EnrichedEvent;
  const timeouts = (siteId: string) => (siteId === "site-short" ? 10 * MINUTE : 30 * MINUTE);

  it("derives a new session's id from site, visitor and start alone, whatever the key prefix", async () => {
    // A retried batch (or one retried by a worker of another version) must meet the same ids.
    const expected = (site: string, visitor: bigint, ts: number) => BigInt(`0x${createHash("sha1").update(`beacon-session/${site}/${visitor}/${ts}`).digest("hex").slice(0, 15)}`);
    const t0 = Date.now();
    const assigned = await new SessionTracker(redis, `${prefix}:visit:odd:prefix`).assign([event("site-long", 5n, 55n, t0), event("site-short", 6n, null, t0 + 1), event("site-long", 5n, 55n, t0 + 2)], timeouts);
    expect(assigned.map((a) => [a.sessionId, a.startedAt, a.visitorId])).toEqual([
      [expected("site-long", 5n, t0), t0, 5n],
      [expected("site-short", 6n, t0 + 1), t0 + 1, 6n],
      [expected("site-long", 5n, t0), t0, 5n],
    ]);
  });

  it("answers a batch of many visitors' events as it would answer them one call at a time", async () => {
    const t0 = Date.UTC(2026, 10, 23, 23, 0);
    const events: EnrichedEvent[] = [];
    // Three visitors on two sites with different timeouts; gaps under and over each timeout;
    // visitor 3 changes its daily id at midnight (yesterday's id carries the visit over).
    for (let i = 0; i < 40; i++) {
      events.push(event("site-long", 1n, 101n, t0 + i * 7 * MINUTE));
      events.push(event("site-short", 1n, 101n, t0 + i * 11 * MINUTE));
      const ts = t0 + 45 * MINUTE + i * 5 * MINUTE;
      events.push(ts < Date.UTC(2026, 10, 24) ? event("site-long", 3n, 303n, ts) : event("site-long", 4n, 3n, ts));
    }
    events.sort((a, b) => a.ts - b.ts);
    const batched = await new SessionTracker(redis, `${prefix}:sess-batch`).assign(events, timeouts);
    const alone = new SessionTracker(redis, `${prefix}:sess-alone`);
    const oneByOne = [];
    for (const e of events) oneByOne.push(...(await alone.assign([e], timeouts)));
    expect(batched).toEqual(oneByOne);
    // And the answers are the sessions they should be: site-long's visitor 1 (7 min gaps) stays
    // in one visit, site-short's (11 min gaps, 10 min timeout) starts one per event.
    const sessionsOf = (siteId: string, visitor: bigint) => new Set(batched.filter((_, i) => events[i].siteId === siteId && events[i].visitorId === visitor).map((a) => a.sessionId));
    expect(sessionsOf("site-long", 1n).size).toBe(1);
    expect(sessionsOf("site-short", 1n).size).toBe(40);
    // Visitor 3's visit continues past midnight under yesterday's id.
    const across = batched.filter((_, i) => events[i].visitorId === 3n || events[i].visitorId === 4n);
    expect(new Set(across.map((a) => a.sessionId)).size).toBe(1);
    expect(new Set(across.map((a) => a.visitorId))).toEqual(new Set([3n]));
  });

  it("reads the states of more visitors than one MGET takes, each for its own visitor", async () => {
    const tracker = new SessionTracker(redis, `${prefix}:sess-many`);
    const t0 = Date.now();
    // 9,000 visitors: past the ~8,000 keys unpack() can hand one command.
    const visitors = Array.from({ length: 9_000 }, (_, i) => BigInt(i + 1));
    const first = await tracker.assign(visitors.map((v) => event("site-long", v, null, t0)), timeouts);
    const again = await tracker.assign(visitors.map((v) => event("site-long", v, null, t0 + MINUTE)), timeouts);
    // Every visitor's second event continues its own first session.
    expect(again.map((a) => a.sessionId)).toEqual(first.map((a) => a.sessionId));
    expect(new Set(first.map((a) => a.sessionId)).size).toBe(9_000);
  });

  it("keeps a visitor's state in one string key, with its expiry", async () => {
    const tracker = new SessionTracker(redis, `${prefix}:sess-once`);
    const t0 = Date.now();
    const events = Array.from({ length: 500 }, (_, i) => event("site-long", 7n, null, t0 + i * 1000));
    const assigned = await tracker.assign(events, timeouts);
    expect(new Set(assigned.map((a) => a.sessionId)).size).toBe(1);
    const key = `${prefix}:sess-once:visit:site-long:7`;
    const [id, start, last] = (await redis.get(key))!.split(" ");
    expect([BigInt(id), Number(start), Number(last)]).toEqual([assigned[0].sessionId, t0, t0 + 499_000]);
    const ttl = await redis.ttl(key);
    expect(ttl).toBeGreaterThan(3600);
    expect(ttl).toBeLessThanOrEqual(3660);
  });
});

describe("RedisUsage", () => {
  it("counts in memory, answers reads with what it has not written yet, and writes the sums", async () => {
    const usage = new RedisUsage(redis, prefix, 60_000);
    const org = `org-${randomBytes(3).toString("hex")}`;
    for (let i = 0; i < 100; i++) usage.addEvents(org, 3);
    // Nothing written yet (the flush is a minute away), but the reader sees all of it.
    expect(await redis.get(usageKey(prefix, org))).toBeNull();
    expect(await usage.eventsThisMonth(org)).toBe(300n);
    await usage.flush();
    expect(await redis.get(usageKey(prefix, org))).toBe("300");
    expect(await redis.ttl(usageKey(prefix, org))).toBeGreaterThan(30 * 24 * 3600);
    expect(await usage.eventsThisMonth(org)).toBe(300n);
    usage.addEvents(org, 2);
    await usage.close();
    expect(await redis.get(usageKey(prefix, org))).toBe("302");
  });

  it("counts each event under its own organisation and month, however they interleave", async () => {
    const usage = new RedisUsage(redis, prefix, 60_000);
    const [a, b] = [`org-${randomBytes(3).toString("hex")}`, `org-${randomBytes(3).toString("hex")}`];
    const january = new Date(Date.UTC(2026, 0, 31, 23, 59, 59));
    const february = new Date(Date.UTC(2026, 1, 1, 0, 0, 1));
    usage.addEvents(a, 1, january);
    usage.addEvents(a, 2, february);
    usage.addEvents(b, 4, february);
    usage.addEvents(a, 8, january);
    usage.addEvents(b, 16, february);
    await usage.flush();
    expect(await redis.mget(usageKey(prefix, a, january), usageKey(prefix, a, february), usageKey(prefix, b, january), usageKey(prefix, b, february))).toEqual(["9", "2", null, "20"]);
  });

  it("writes on its own within the flush interval", async () => {
    const usage = new RedisUsage(redis, prefix, 50);
    const org = `org-${randomBytes(3).toString("hex")}`;
    usage.addEvents(org, 7);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await redis.get(usageKey(prefix, org))).toBe("7");
  });
});

describe("RealtimeState.record", () => {
  const event = (over: Partial<RealtimeEvent>): RealtimeEvent => ({
    siteId: "site-rt", ts: Date.now(), name: "pageview", visitorId: 1n, pathname: "/", country: "US", referrerSource: "", classification: 1, ...over,
  });

  it("writes a batch as the events one by one would have: latest page, last seen, counts per minute", async () => {
    const state = new RealtimeState(redis, `${prefix}-rt`);
    const now = Date.now();
    const siteId = `site-${randomBytes(3).toString("hex")}`;
    await state.record([
      event({ siteId, visitorId: 1n, ts: now - 3_000, pathname: "/a" }),
      event({ siteId, visitorId: 1n, ts: now - 1_000, pathname: "/b" }),
      // A custom event after the pageview does not move the visitor.
      event({ siteId, visitorId: 1n, ts: now - 500, name: "signup", pathname: "/signup" }),
      // Only custom events: the first one places the visitor.
      event({ siteId, visitorId: 2n, ts: now - 2_000, name: "play", pathname: "/video", country: "DE" }),
      event({ siteId, visitorId: 2n, ts: now - 1_500, name: "pause", pathname: "/other", country: "DE" }),
      // A custom event then a pageview: the pageview places the visitor.
      event({ siteId, visitorId: 3n, ts: now - 2_000, name: "click", pathname: "/x" }),
      event({ siteId, visitorId: 3n, ts: now - 1_000, pathname: "/b", referrerSource: "Google" }),
      // Bots do not count.
      event({ siteId, visitorId: 4n, ts: now - 1_000, classification: 2 }),
    ], now);
    const snapshot = await state.snapshot(siteId, now);
    expect(snapshot.activeUsers).toBe(3);
    expect(snapshot.topPages).toEqual([{ value: "/b", activeUsers: 2 }, { value: "/video", activeUsers: 1 }]);
    expect(snapshot.topCountries).toEqual([{ value: "US", activeUsers: 2 }, { value: "DE", activeUsers: 1 }]);
    expect(snapshot.topSources).toEqual([{ value: "Direct", activeUsers: 2 }, { value: "Google", activeUsers: 1 }]);
    expect(snapshot.pageviewsByMinute.reduce((sum, m) => sum + m.pageviews, 0)).toBe(3);
    expect(await redis.zscore(`${prefix}-rt:rt:${siteId}:active`, "1")).toBe(String(now - 500));

    // A later batch with an older pageview (a retried job) moves no one back in time.
    await state.record([event({ siteId, visitorId: 1n, ts: now - 10_000, pathname: "/old" })], now);
    expect(await redis.zscore(`${prefix}-rt:rt:${siteId}:active`, "1")).toBe(String(now - 500));
    await deleteRedisKeys(redis, `${prefix}-rt`);
  });
});

describe("IngestProgressReports", () => {
  /** Counts the round trips (pipelines sent) a connection makes until `restore()`. */
  function countRoundTrips(client: Redis): { trips: number; restore(): void } {
    const counter = { trips: 0, restore: () => {} };
    const original = client.pipeline.bind(client);
    client.pipeline = ((...a: Parameters<Redis["pipeline"]>) => {
      const pipeline = original(...a);
      const exec = pipeline.exec.bind(pipeline);
      pipeline.exec = ((...e: Parameters<typeof pipeline.exec>) => {
        counter.trips++;
        return exec(...e);
      }) as typeof pipeline.exec;
      return pipeline;
    }) as Redis["pipeline"];
    counter.restore = () => void (client.pipeline = original as Redis["pipeline"]);
    return counter;
  }

  it("sends the batches taken and the queue found empty within its delay in one round trip, with the totals one at a time would give", async () => {
    const p = `${prefix}:progress1`;
    const { queued, taken } = ingestEventCountKeys(p);
    await redis.set(queued, 600);
    const reports = new IngestProgressReports(redis, p, 10_000);
    const counter = countRoundTrips(redis);
    try {
      reports.taken(120, 100);
      reports.taken(80, 200);
      reports.taken(40, 250);
      // Nothing is written before the delay ends (or a flush).
      expect(await redis.get(taken)).toBeNull();
      reports.drained();
      await reports.flush();
      expect(counter.trips).toBe(1);
    } finally {
      counter.restore();
    }
    // 550 taken, then the queue found empty: the taken total catches up with the 600 queued.
    expect(await redis.get(taken)).toBe("600");
    expect(await redis.get(ingestQueueWaitKey(p))).toBe("0");
  });

  it("keeps the last batch's wait and leaves the totals alone when a batch was taken after the queue emptied", async () => {
    const p = `${prefix}:progress2`;
    const { queued, taken } = ingestEventCountKeys(p);
    await redis.set(queued, 900);
    const reports = new IngestProgressReports(redis, p, 10_000);
    reports.taken(50, 100);
    reports.drained();
    reports.taken(30, 100);
    await reports.flush();
    // Batches may wait behind the last one taken: no catch-up, the 700 still waiting stay counted.
    expect(await redis.get(taken)).toBe("200");
    expect(await redis.get(ingestQueueWaitKey(p))).toBe("30");
    // Nothing new: a flush writes nothing.
    await reports.flush();
    expect(await redis.get(taken)).toBe("200");
  });

  it("writes on its own once the delay has passed", async () => {
    const p = `${prefix}:progress3`;
    const reports = new IngestProgressReports(redis, p, 5);
    reports.taken(10, 7);
    await expect.poll(() => redis.get(ingestEventCountKeys(p).taken), { timeout: 5_000 }).toBe("7");
  });
});

describe("IngestQueuedReports", () => {
  it("adds up the batches queued within its delay into one INCRBY on top of the total", async () => {
    const p = `${prefix}:queued1`;
    const { queued } = ingestEventCountKeys(p);
    await redis.set(queued, 1000);
    const reports = new IngestQueuedReports(redis, p, 10_000);
    const incrby = vi.spyOn(redis, "incrby");
    try {
      reports.queued(100);
      reports.queued(250);
      reports.queued(50);
      // Nothing is written before the delay ends (or a flush).
      expect(await redis.get(queued)).toBe("1000");
      await reports.flush();
      expect(incrby).toHaveBeenCalledTimes(1);
      // Nothing new: a flush writes nothing.
      await reports.flush();
      expect(incrby).toHaveBeenCalledTimes(1);
    } finally {
      incrby.mockRestore();
    }
    expect(await redis.get(queued)).toBe("1400");
  });

  it("writes on its own once the delay has passed", async () => {
    const p = `${prefix}:queued2`;
    const reports = new IngestQueuedReports(redis, p, 5);
    reports.queued(7);
    reports.queued(5);
    await expect.poll(() => redis.get(ingestEventCountKeys(p).queued), { timeout: 5_000 }).toBe("12");
  });
});
