// Acceptance: the steps every arrival path runs, in order, before answering. A named pipeline of
// small steps (Plausible's ingestion reads the same way): privacy → validate → backpressure →
// pin duplicate times → rate limits and durable write (both at the ingest buffer's next flush,
// through its gate). A refused event carries a typed reason.
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { checkEventName, sanitizeProperties, sanitizeString, sanitizeUrl } from "../enrich/sanitize.js";
import type { VisitorHasher } from "../enrich/visitor.js";
import { RateLimitedError } from "../errors.js";
import type { RedisUsage } from "../usage.js";
import type { IngestBackpressure } from "./backpressure.js";
import type { BufferGate, IngestBuffer } from "./buffer.js";
import type { IncomingEvent, RawHit, RequestContext } from "./hit.js";
import type { RateCheck, RateLimit, RateLimiter } from "./rate-limit.js";
import type { IngestSite } from "./sites.js";

/** Why one event was refused, in the shape TrackEvents, /batch and ValidateEvents report. */
export interface EventError {
  index: number;
  field: string;
  message: string;
  reason: string;
}

export interface AcceptResult {
  /** Ids of accepted events, by request index. */
  accepted: { index: number; eventId: string }[];
  errors: EventError[];
  /** The browser asked not to be tracked: nothing was stored, and the answer is still success. */
  ignoredDoNotTrack: boolean;
}

export interface AcceptLimits {
  maxNameLength: number;
  maxPropertyKeyLength: number;
  maxPropertyValueLength: number;
  maxEventIdLength: number;
  /** How far in the past a client timestamp may be. */
  maxPastMs: number;
  /** How far in the future a client timestamp may be (clock skew). */
  maxFutureMs: number;
}

export const DEFAULT_ACCEPT_LIMITS: AcceptLimits = {
  maxNameLength: 120,
  maxPropertyKeyLength: 120,
  maxPropertyValueLength: 2000,
  maxEventIdLength: 128,
  maxPastMs: 7 * 24 * 3600_000,
  maxFutureMs: 3600_000,
};

export const PAGEVIEW = "pageview";
/** How long a client event id pins its first timestamp, so a resend deduplicates. */
const DEDUPE_TTL_SECONDS = 7 * 24 * 3600;

export interface AcceptorDeps {
  redis: Redis;
  prefix: string;
  /** Where accepted events wait for their queue write; its gate (rateLimitGate) checks the limits. */
  buffer: Pick<IngestBuffer<RawHit, LimitedRequest>, "add">;
  hasher: VisitorHasher;
  usage: RedisUsage;
  /** Refuses new events while the queue is far behind (absent: never). */
  backpressure?: Pick<IngestBackpressure, "admit">;
  limits?: AcceptLimits;
}

export class Acceptor {
  private readonly limits: AcceptLimits;

  constructor(private readonly deps: AcceptorDeps) {
    this.limits = deps.limits ?? DEFAULT_ACCEPT_LIMITS;
  }

  /** Validates without storing (ValidateEvents, and the first step of accept). */
  validate(site: IngestSite, events: IncomingEvent[], ctx: RequestContext): { hits: { index: number; hit: RawHit }[]; errors: EventError[] } {
    const hits: { index: number; hit: RawHit }[] = [];
    const errors: EventError[] = [];
    events.forEach((event, index) => {
      const result = this.toHit(site, event, ctx, events.length === 1);
      if ("error" in result) errors.push({ index, ...result.error });
      else hits.push({ index, hit: result.hit });
    });
    return { hits, errors };
  }

  async accept(site: IngestSite, events: IncomingEvent[], ctx: RequestContext): Promise<AcceptResult> {
    if (site.settings.respectDoNotTrack && ctx.doNotTrack) {
      return { accepted: [], errors: [], ignoredDoNotTrack: true };
    }
    const { hits, errors } = this.validate(site, events, ctx);
    if (hits.length === 0) return { accepted: [], errors, ignoredDoNotTrack: false };
    const held = this.deps.backpressure?.admit(ctx.receivedAt);
    if (held) await held;
    const accepted = hits.map((h) => h.hit);
    const pinned = this.pinnedHits(events, hits, ctx);
    if (pinned.length > 0) await this.pinDuplicateTimes(pinned);
    // The rate limits are checked by the buffer's gate when it flushes, for every request of the
    // flush at once; a refused request is rejected with RateLimitedError and nothing of it is queued.
    await this.deps.buffer.add(accepted, this.rateLimitsOf(site, accepted, ctx));
    // Usage is informational (GetQuotas), counted in memory and written to Redis in the background.
    this.deps.usage.addEvents(site.organisationId, hits.length);
    return { accepted: hits.map(({ index, hit }) => ({ index, eventId: hit.eventId })), errors, ignoredDoNotTrack: false };
  }

  private toHit(site: IngestSite, event: IncomingEvent, ctx: RequestContext, single: boolean): { hit: RawHit } | { error: Omit<EventError, "index"> } {
    const name = checkEventName(event.name, this.limits.maxNameLength);
    if ("error" in name) return { error: name.error };
    const allowed = site.settings.allowedEventTypes;
    if (name.name !== PAGEVIEW && allowed.length > 0 && !allowed.includes(name.name)) {
      return { error: { field: "name", message: `event type "${name.name}" is not allowed for this site`, reason: "EVENT_TYPE_NOT_ALLOWED" } };
    }
    let eventId = event.eventId.trim() || (single ? ctx.idempotencyKey.trim() : "");
    if (eventId.length > this.limits.maxEventIdLength) {
      return { error: { field: "event_id", message: `must be at most ${this.limits.maxEventIdLength} characters`, reason: "INVALID_EVENT_ID" } };
    }
    if (/[\u0000-\u001f]/.test(eventId)) return { error: { field: "event_id", message: "must not contain control characters", reason: "INVALID_EVENT_ID" } };
    if (eventId === "") eventId = randomUUID();
    let ts = ctx.receivedAt;
    if (event.timestamp !== undefined) {
      if (!Number.isFinite(event.timestamp)) return { error: { field: "timestamp", message: "is not a valid time", reason: "INVALID_TIMESTAMP" } };
      if (event.timestamp < ctx.receivedAt - this.limits.maxPastMs) {
        return { error: { field: "timestamp", message: `is more than ${this.limits.maxPastMs / 86_400_000} days in the past`, reason: "TIMESTAMP_TOO_OLD" } };
      }
      if (event.timestamp > ctx.receivedAt + this.limits.maxFutureMs) {
        return { error: { field: "timestamp", message: "is more than an hour in the future", reason: "TIMESTAMP_IN_FUTURE" } };
      }
      ts = Math.floor(event.timestamp);
    }
    const { properties, error } = sanitizeProperties(event.properties, {
      maxProperties: site.settings.maxPropertiesPerEvent,
      maxKeyLength: this.limits.maxPropertyKeyLength,
      maxValueLength: this.limits.maxPropertyValueLength,
    });
    if (error) return { error };
    let revenue: number | null = null;
    if (event.revenue !== undefined) {
      if (!Number.isFinite(event.revenue)) return { error: { field: "revenue", message: "must be a finite number", reason: "INVALID_REVENUE" } };
      revenue = event.revenue;
    }
    const currency = event.currency.trim().toUpperCase();
    if (currency !== "" && !/^[A-Z]{3}$/.test(currency)) return { error: { field: "currency", message: "must be an ISO 4217 code such as USD", reason: "INVALID_CURRENCY" } };
    return {
      hit: {
        siteId: site.id,
        eventId,
        ts,
        name: name.name,
        // 003: an invalid URL is stored as empty, not refused.
        url: sanitizeUrl(event.url),
        referrer: sanitizeUrl(event.referrer),
        title: sanitizeString(event.title, 500),
        ip: ctx.ip,
        userAgent: ctx.userAgent.slice(0, 1000),
        clientId: sanitizeString(event.clientId, 200),
        userId: sanitizeString(event.userId, 200),
        screen: /^\d{1,5}x\d{1,5}$/.test(event.screen) ? event.screen : "",
        language: sanitizeString(event.language, 35),
        props: properties,
        revenue,
        currency: currency || (revenue !== null ? site.currency : ""),
        receivedAt: ctx.receivedAt,
      },
    };
  }

  /**
   * One all-or-nothing check per request: the site's limit for all of its events, and each
   * visitor's limits for that visitor's own events (a backend's batch of many users' events is not
   * charged to its first user). Visitors are told apart as the worker will: user or client id,
   * else IP and user agent. Custom events (003) are a second check, with its own refusal.
   */
  private rateLimitsOf(site: IngestSite, hits: RawHit[], ctx: RequestContext): LimitedRequest {
    const { hasher } = this.deps;
    const day = hasher.utcDay(new Date(ctx.receivedAt));
    const perVisitor = new Map<string, { events: number; custom: number }>();
    let custom = 0;
    for (const hit of hits) {
      const who = hasher.visitorKey(site.id, hit.userId || hit.clientId, hit.ip, hit.userAgent, day);
      let counts = perVisitor.get(who);
      if (!counts) perVisitor.set(who, (counts = { events: 0, custom: 0 }));
      counts.events++;
      if (hit.name !== PAGEVIEW) {
        counts.custom++;
        custom++;
      }
    }
    const limits: RateLimit[] = [{ key: `s:${site.id}`, limit: site.settings.eventsPerSitePerSecond, windowMs: 1_000, cost: hits.length }];
    for (const [who, counts] of perVisitor) {
      limits.push({ group: `v:${site.id}`, key: who, limit: site.settings.eventsPerVisitorPerMinute, windowMs: 60_000, cost: counts.events });
    }
    const checks: LimitedCheck[] = [{ limits, cost: hits.length, now: ctx.receivedAt, what: "too many events" }];
    if (custom > 0 && site.settings.customEventsPerSessionPerMinute > 0) {
      // 003 limits custom events per session; a visit is the visitor's events within the timeout.
      const customLimits: RateLimit[] = [];
      for (const [who, counts] of perVisitor) {
        if (counts.custom > 0) customLimits.push({ group: `c:${site.id}`, key: who, limit: site.settings.customEventsPerSessionPerMinute, windowMs: 60_000, cost: counts.custom });
      }
      checks.push({ limits: customLimits, cost: custom, now: ctx.receivedAt, what: "too many custom events for this session" });
    }
    return checks;
  }

  /** The hits whose first receive time must be pinned: a client event id (or Idempotency-Key) and no client time. */
  private pinnedHits(events: IncomingEvent[], hits: { index: number; hit: RawHit }[], ctx: RequestContext): RawHit[] {
    const keyed = events.length === 1 && ctx.idempotencyKey.trim() !== "";
    const pinned: RawHit[] = [];
    for (const { index, hit } of hits) {
      const event = events[index];
      if (event.timestamp === undefined && (keyed || event.eventId.trim() !== "")) pinned.push(hit);
    }
    return pinned;
  }

  /**
   * A resend of an event with a client id but no client time would get a new receive time and
   * so escape the (site, ts, event id) key; the first time seen is pinned in Redis instead.
   */
  private async pinDuplicateTimes(pinned: RawHit[]): Promise<void> {
    const pipeline = this.deps.redis.pipeline();
    for (const hit of pinned) pipeline.set(`${this.deps.prefix}:dedupe:${hit.siteId}:${hit.eventId}`, String(hit.ts), "EX", DEDUPE_TTL_SECONDS, "NX", "GET");
    const replies = (await pipeline.exec()) ?? [];
    replies.forEach(([err, previous], i) => {
      if (!err && typeof previous === "string") pinned[i].ts = Number(previous);
    });
  }
}

/** A rate-limit check and what a refusal says. */
export interface LimitedCheck extends RateCheck {
  what: string;
}

/** A request's checks, each all or nothing on its own: the events check counts even when the custom-events check refuses. */
export type LimitedRequest = LimitedCheck[];

/**
 * The ingest buffer's gate: every check of every request of a flush in one Redis script call. A
 * request is refused (RateLimitedError, with the refused check's wording and retry time) when
 * any of its checks is.
 */
export function rateLimitGate(limiter: Pick<RateLimiter, "check">): BufferGate<LimitedRequest> {
  return async (requests) => {
    const verdicts = await limiter.check(requests.flat());
    let k = 0;
    return requests.map((checks) => {
      let refusal: RateLimitedError | undefined;
      for (const check of checks) {
        const verdict = verdicts[k++];
        if (!refusal && !verdict.allowed) refusal = new RateLimitedError(Math.ceil(verdict.retryAfterMs / 1000), check.what);
      }
      return refusal;
    });
  };
}
