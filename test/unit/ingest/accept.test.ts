// Acceptance with fakes for Redis, the buffer and the rate limiter: what is refused, what is
// queued, what each rate limit is charged, and the event ids and times a resend keeps.
import { describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { createVisitorHasher } from "../../../server/core/enrich/visitor.js";
import { RateLimitedError } from "../../../server/core/errors.js";
import { Acceptor, type LimitedRequest, rateLimitGate } from "../../../server/core/ingest/accept.js";
import { IngestBuffer } from "../../../server/core/ingest/buffer.js";
import { emptyIncomingEvent, type IncomingEvent, type RawHit, type RequestContext } from "../../../server/core/ingest/hit.js";
import type { RateCheck, RateLimit } from "../../../server/core/ingest/rate-limit.js";
import type { IngestSite } from "../../../server/core/ingest/sites.js";
import { SITE_SETTING_DEFAULTS, type EffectiveSiteSettings } from "../../../server/core/management/sites.js";
import type { RedisUsage } from "../../../server/core/usage.js";

const NOW = Date.UTC(2026, 10, 20, 12);

function site(settings: Partial<EffectiveSiteSettings> = {}): IngestSite {
  return {
    id: "00000000-0000-4000-8000-000000000001",
    organisationId: "00000000-0000-4000-8000-000000000002",
    trackingId: "BK-TEST0001",
    domain: "example.com",
    timezone: "UTC",
    currency: "USD",
    domains: ["example.com"],
    settings: { ...SITE_SETTING_DEFAULTS, ...settings },
  };
}

function context(overrides: Partial<RequestContext> = {}): RequestContext {
  return { ip: "203.0.113.9", userAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0", doNotTrack: false, receivedAt: NOW, idempotencyKey: "", ...overrides };
}

function event(overrides: Partial<IncomingEvent> = {}): IncomingEvent {
  return { ...emptyIncomingEvent(), name: "pageview", url: "https://example.com/", ...overrides };
}

/** SET key value EX ttl NX GET, as the pinning pipeline uses it, over a Map. */
function fakeRedis(): Redis {
  const values = new Map<string, string>();
  return {
    pipeline() {
      const replies: [null, string | null][] = [];
      const pipeline = {
        set(key: string, value: string) {
          const previous = values.get(key) ?? null;
          if (previous === null) values.set(key, value);
          replies.push([null, previous]);
          return pipeline;
        },
        exec: async () => replies,
      };
      return pipeline;
    },
  } as unknown as Redis;
}

function harness(verdict: (limits: RateLimit[], cost: number) => boolean = () => true) {
  const queued: RawHit[][] = [];
  // Per check: each limit's kind (v, s, c) and what it was charged.
  const charged: string[][] = [];
  // The real buffer and gate, over a limiter that records what each check was charged.
  const limiter = {
    check: async (checks: RateCheck[]) =>
      checks.map(({ limits, cost }) => {
        charged.push(limits.map((l) => `${(l.group ?? l.key).split(":")[0]}=${l.cost ?? cost}`));
        return verdict(limits, cost) ? { allowed: true as const } : { allowed: false as const, retryAfterMs: 42_500 };
      }),
  };
  const buffer = new IngestBuffer<RawHit, LimitedRequest>(async (hits) => void queued.push(hits), { maxEvents: 1, maxWaitMs: 60_000 }, rateLimitGate(limiter));
  const acceptor = new Acceptor({
    redis: fakeRedis(),
    prefix: "test",
    buffer,
    hasher: createVisitorHasher("unit-test-secret"),
    usage: { addEvents: async () => {} } as unknown as RedisUsage,
  });
  return { acceptor, queued, charged };
}

describe("Acceptor", () => {
  it("answers Do Not Track as ignored and queues nothing", async () => {
    const { acceptor, queued, charged } = harness();
    const result = await acceptor.accept(site(), [event(), event()], context({ doNotTrack: true }));
    expect(result).toEqual({ accepted: [], errors: [], ignoredDoNotTrack: true });
    expect(queued).toEqual([]);
    expect(charged).toEqual([]);
  });

  it("queues Do Not Track events of a site that does not respect it", async () => {
    const { acceptor, queued } = harness();
    const result = await acceptor.accept(site({ respectDoNotTrack: false }), [event()], context({ doNotTrack: true }));
    expect(result.ignoredDoNotTrack).toBe(false);
    expect(result.accepted).toHaveLength(1);
    expect(queued.flat()).toHaveLength(1);
  });

  it("charges the custom-event limit with custom events only, and only when the site sets it", async () => {
    const mixed = [event(), event({ name: "click" }), event(), event({ name: "signup" })];
    const off = harness();
    await off.acceptor.accept(site(), mixed, context());
    expect(off.charged).toEqual([["s=4", "v=4"]]);

    const on = harness();
    await on.acceptor.accept(site({ customEventsPerSessionPerMinute: 10 }), mixed, context());
    expect(on.charged).toEqual(expect.arrayContaining([["s=4", "v=4"], ["c=2"]]));
    expect(on.charged).toHaveLength(2);

    const pageviewsOnly = harness();
    await pageviewsOnly.acceptor.accept(site({ customEventsPerSessionPerMinute: 10 }), [event(), event()], context());
    expect(pageviewsOnly.charged).toEqual([["s=2", "v=2"]]);
  });

  it("charges each visitor of a batch with its own events, and the site with all of them, in one check", async () => {
    const { acceptor, charged } = harness();
    const batch = [
      event({ clientId: "a" }), event({ clientId: "b" }), event({ clientId: "a", name: "click" }), event({ clientId: "c" }), event({ clientId: "a" }),
      event(), // no id: IP and user agent
    ];
    await acceptor.accept(site({ customEventsPerSessionPerMinute: 10 }), batch, context());
    expect(charged).toEqual(expect.arrayContaining([["s=6", "v=3", "v=1", "v=1", "v=1"], ["c=1"]]));
    expect(charged).toHaveLength(2);
  });

  it("refuses the whole request, queuing nothing, when a limit says no", async () => {
    const { acceptor, queued } = harness((limits) => !limits.some((l) => l.group?.startsWith("c:")));
    const refused = acceptor.accept(site({ customEventsPerSessionPerMinute: 10 }), [event({ name: "click" })], context());
    await expect(refused).rejects.toBeInstanceOf(RateLimitedError);
    await expect(refused).rejects.toMatchObject({ retryAfterSeconds: 43 });
    expect(queued).toEqual([]);
  });

  it("keeps the first receive time of a resent event id, so the resend deduplicates", async () => {
    const { acceptor, queued } = harness();
    await acceptor.accept(site(), [event({ eventId: "resent" })], context());
    await acceptor.accept(site(), [event({ eventId: "resent" })], context({ receivedAt: NOW + 5_000 }));
    await acceptor.accept(site(), [event({ eventId: "fresh" })], context({ receivedAt: NOW + 5_000 }));
    expect(queued.flat().map((h) => [h.eventId, h.ts])).toEqual([["resent", NOW], ["resent", NOW], ["fresh", NOW + 5_000]]);
  });

  it("uses the Idempotency-Key as the id of a single event, not of a batch's", async () => {
    const { acceptor } = harness();
    const single = await acceptor.accept(site(), [event()], context({ idempotencyKey: "key-1" }));
    expect(single.accepted).toEqual([{ index: 0, eventId: "key-1" }]);
    const batch = await acceptor.accept(site(), [event(), event()], context({ idempotencyKey: "key-2" }));
    expect(batch.accepted.map((a) => a.eventId)).not.toContain("key-2");
    expect(new Set(batch.accepted.map((a) => a.eventId)).size).toBe(2);
  });

  it("queues valid events of a batch and names each refused one", async () => {
    const { acceptor, queued } = harness();
    const result = await acceptor.accept(site({ allowedEventTypes: ["signup"] }), [event(), event({ name: "click" }), event({ timestamp: NOW - 30 * 86_400_000 })], context());
    expect(result.accepted.map((a) => a.index)).toEqual([0]);
    expect(result.errors.map((e) => [e.index, e.reason])).toEqual([[1, "EVENT_TYPE_NOT_ALLOWED"], [2, "TIMESTAMP_TOO_OLD"]]);
    expect(queued.flat()).toHaveLength(1);
  });
});
