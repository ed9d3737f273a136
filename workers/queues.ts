// The producers' contract with the workers: queue names, job payloads and job-id rules live here
// and nowhere else. Payloads are plain JSON of ids, times and small batches. Job ids are
// deterministic business keys (never containing ":" and never all digits, as BullMQ requires),
// so a producer that retries adds the same job instead of a second one.
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import type { RawHit } from "../server/core/ingest/hit.js";
import type { AcceptedMetricPoint } from "../server/core/metrics/points.js";
import { textPieces } from "../server/core/text-pieces.js";

export type { RawHit };

export const QUEUES = {
  /** Accepted hits, a batch per job, to be enriched and stored. */
  ingest: "ingest",
  /** Housekeeping: partitions ahead of time, retention, idempotency-record expiry. */
  maintenance: "maintenance",
  /** Hourly and daily report rollups, ticked every minute. */
  rollups: "rollups",
  /** Accepted metric points, a batch per job, to be stored. */
  metricPoints: "metric-points",
  /** NDJSON bulk ingestions of metric points, a job per ingestion. */
  metricBulk: "metric-bulk",
  /** Metric rollups and retention. */
  metricMaintenance: "metric-maintenance",
  /** The subscriptions tick: claims the subscriptions due for evaluation. */
  subscriptions: "subscriptions",
  /** One job per due subscription: evaluate its query and deliver a changed result. */
  subscriptionDeliveries: "subscription-deliveries",
} as const;

export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

/**
 * How long the ingest batch a worker last started had waited in the queue (first attempts only),
 * in ms: the worker sets it as it takes each batch. Servers fall back on it for backpressure
 * while they have not yet measured how fast the workers drain the queue (see
 * server/core/ingest/backpressure.ts). Expires when no worker takes batches.
 */
export function ingestQueueWaitKey(prefix: string): string {
  return `${prefix}:ingest:queue-wait-ms`;
}

/**
 * Two running totals of events: queued by servers (counted once the batch is in Redis) and taken
 * by workers (counted as a batch's first attempt starts). Their difference is how many events
 * wait; how fast `taken` grows while some wait is how fast the workers drain the queue. They can
 * drift: fewer events seem to wait after a server dies between the write and the count, or a
 * stalled batch is taken twice; more after a batch is added again under its own id (a no-op for
 * BullMQ). Whenever the queue drains, the taken total catches up with the queued one.
 */
export function ingestEventCountKeys(prefix: string): { queued: string; taken: string } {
  return { queued: `${prefix}:ingest:events-queued`, taken: `${prefix}:ingest:events-taken` };
}

/** How long an ingestQueueWaitKey reading lasts: older than this it says nothing (no worker is taking batches). */
const INGEST_QUEUE_WAIT_TTL_MS = 5_000;

// Nothing waits: the taken total catches up with the queued one (never moves it back).
const CATCH_UP_SCRIPT = `local q = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
if q > t then redis.call('SET', KEYS[2], q) end
return q`;

/** How long a worker's report waits for others to go out with it, by default. */
export const INGEST_REPORT_DELAY_MS = 25;

/**
 * A server's reports of the events it queued, added up and written in one INCRBY at most every
 * `delayMs`. Each flush of the ingest buffer wrote its own, a round trip that cost the server
 * ~90 µs of CPU (as much as the flush's BullMQ add took beyond encoding its job), a few hundred
 * times a second under single-event traffic. Servers read the totals every 200 ms, so a report
 * 25 ms late changes nothing they decide. Never fails: backpressure is advisory.
 */
export class IngestQueuedReports {
  private events = 0;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly redis: Redis, private readonly prefix: string, private readonly delayMs = INGEST_REPORT_DELAY_MS) {}

  /** A batch of `events` is in the queue. */
  queued(events: number): void {
    this.events += events;
    this.timer ??= setTimeout(() => void this.flush(), this.delayMs);
  }

  /** Writes what waits now; resolves when written (or failed). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.events === 0) return this.writing;
    const events = this.events;
    this.events = 0;
    this.writing = this.redis.incrby(ingestEventCountKeys(this.prefix).queued, events).then(
      () => undefined,
      () => undefined,
    );
    return this.writing;
  }
}

/**
 * A worker's reports on the ingest queue: each batch it takes (first attempt: its size, and how
 * long it waited) and each time it finds nothing waiting. A report waits up to `delayMs` for
 * others and they go out in one round trip: a worker taking a hundred small batches a second
 * (single-event traffic) wrote three commands a batch, most of which found the queue empty right
 * after, and the writes cost it about 8% of its CPU. Servers read the reports every 200 ms
 * (server/core/ingest/backpressure.ts). Never fails: backpressure is advisory.
 */
export class IngestProgressReports {
  private takenEvents = 0;
  private waitMs: number | undefined;
  /** The queue was found empty after the last batch taken. */
  private drainedLast = false;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly redis: Redis, private readonly prefix: string, private readonly delayMs = INGEST_REPORT_DELAY_MS) {}

  /** A batch taken on its first attempt: `events` of them, queued `waitMs` ago. */
  taken(waitMs: number, events: number): void {
    this.takenEvents += events;
    this.waitMs = Math.max(0, waitMs);
    this.drainedLast = false;
    this.schedule();
  }

  /** Nothing waits any more. */
  drained(): void {
    this.waitMs = 0;
    this.drainedLast = true;
    this.schedule();
  }

  /** Writes what waits now; resolves when written (or failed). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.waitMs === undefined) return this.writing;
    const { queued, taken } = ingestEventCountKeys(this.prefix);
    const pipeline = this.redis.pipeline().set(ingestQueueWaitKey(this.prefix), this.waitMs, "PX", INGEST_QUEUE_WAIT_TTL_MS);
    if (this.takenEvents > 0) pipeline.incrby(taken, this.takenEvents);
    // Only when nothing was taken since: a batch taken after the queue emptied may have others
    // queued behind it, which the catch-up would count as taken.
    if (this.drainedLast) pipeline.eval(CATCH_UP_SCRIPT, 2, queued, taken);
    this.takenEvents = 0;
    this.waitMs = undefined;
    this.drainedLast = false;
    this.writing = pipeline.exec().then(
      () => undefined,
      () => undefined,
    );
    return this.writing;
  }

  private schedule(): void {
    this.timer ??= setTimeout(() => void this.flush(), this.delayMs);
  }
}

/**
 * A batch of accepted hits as queued: column by column, each text field's values through one
 * table of the batch's distinct strings (a batch repeats its site, agents, pages and visitors).
 * A job is a fifth of the size of the hits' own JSON, and cheaper to write on the server and to
 * read on the worker. Batches queued by an earlier version (`hits`) are still read.
 */
export type IngestBatchJob = { batch: EncodedHits } | { hits: RawHit[] };

const TEXT_FIELDS = ["siteId", "name", "url", "referrer", "title", "ip", "userAgent", "clientId", "userId", "screen", "language", "currency"] as const;
type TextField = (typeof TEXT_FIELDS)[number];

export interface EncodedHits {
  /** The distinct strings of the text fields. */
  strings: string[];
  /** Per text field, each hit's index into `strings`. */
  text: Record<TextField, number[]>;
  eventId: string[];
  /** receivedAt − `since`, and ts − receivedAt (0 unless the client said when). */
  receivedAt: number[];
  since: number;
  ts: number[];
  /** Custom properties, 0 for none. */
  props: (RawHit["props"] | 0)[];
  revenue: (number | null)[];
}

export function ingestBatchJob(hits: readonly RawHit[]): IngestBatchJob {
  const strings: string[] = [];
  const index = new Map<string, number>();
  const text = {} as Record<TextField, number[]>;
  for (const field of TEXT_FIELDS) {
    const column = new Array<number>(hits.length);
    for (let i = 0; i < hits.length; i++) {
      const value = hits[i][field];
      let at = index.get(value);
      if (at === undefined) {
        at = strings.push(value) - 1;
        index.set(value, at);
      }
      column[i] = at;
    }
    text[field] = column;
  }
  const since = hits.length > 0 ? hits[0].receivedAt : 0;
  return {
    batch: {
      strings,
      text,
      eventId: hits.map((h) => h.eventId),
      receivedAt: hits.map((h) => h.receivedAt - since),
      since,
      ts: hits.map((h) => h.ts - h.receivedAt),
      props: hits.map((h) => (isEmpty(h.props) ? 0 : h.props)),
      revenue: hits.map((h) => h.revenue),
    },
  };
}

function isEmpty(props: RawHit["props"]): boolean {
  for (const _ in props) return false;
  return true;
}

/** The hits a job carries, whichever form it was queued in. */
export function hitsOf(job: IngestBatchJob): RawHit[] {
  if ("hits" in job) return [...job.hits];
  const { strings, text, eventId, receivedAt, since, ts, props, revenue } = job.batch;
  const hits = new Array<RawHit>(eventId.length);
  for (let i = 0; i < hits.length; i++) {
    const at = since + receivedAt[i];
    hits[i] = {
      siteId: strings[text.siteId[i]],
      eventId: eventId[i],
      ts: at + ts[i],
      name: strings[text.name[i]],
      url: strings[text.url[i]],
      referrer: strings[text.referrer[i]],
      title: strings[text.title[i]],
      ip: strings[text.ip[i]],
      userAgent: strings[text.userAgent[i]],
      clientId: strings[text.clientId[i]],
      userId: strings[text.userId[i]],
      screen: strings[text.screen[i]],
      language: strings[text.language[i]],
      props: props[i] || {},
      revenue: revenue[i],
      currency: strings[text.currency[i]],
      receivedAt: at,
    };
  }
  return hits;
}

export type MaintenanceJob =
  | { kind: "ensure-partitions"; daysAhead: number }
  | { kind: "expire-idempotency-records"; olderThanHours: number }
  | { kind: "apply-retention" };

export interface MetricPointsJob {
  points: AcceptedMetricPoint[];
}

/** The ingestion's record (metric_bulk_ingests) holds everything else, including inline NDJSON. */
export interface MetricBulkJob {
  bulkId: string;
}

export type MetricMaintenanceJob =
  /** Re-roll hours whose points changed, up to `maxHours` per run. */
  | { kind: "metric-rollup"; maxHours: number }
  /** Delete points, rollups and idle series older than each metric's retention. */
  | { kind: "metric-retention" };

/** The tick carries nothing: the subscriptions table says what is due. */
export type SubscriptionTickJob = Record<string, never>;

export interface SubscriptionDeliveryJob {
  subscriptionId: string;
}

export const JOB_NAMES = {
  ingestBatch: "ingest-batch",
  ensurePartitions: "ensure-partitions",
  expireIdempotencyRecords: "expire-idempotency-records",
  applyRetention: "apply-retention",
  rollupTick: "rollup-tick",
  metricBatch: "metric-batch",
  metricBulk: "metric-bulk",
  metricRollup: "metric-rollup",
  metricRetention: "metric-retention",
  subscriptionTick: "subscription-tick",
  subscriptionDelivery: "subscription-delivery",
} as const;

/**
 * A batch's job id is derived from its events' ids, so re-adding the same batch after an unclear
 * Redis reply is a no-op rather than a second copy.
 */
export function ingestBatchJobId(hits: readonly RawHit[]): string {
  return `batch-${keysDigest(hits, (hit) => `${hit.siteId}/${hit.eventId}\n`)}`;
}

/** Like ingestBatchJobId: derived from the points' keys, so re-adding a batch is a no-op. */
export function metricBatchJobId(points: readonly AcceptedMetricPoint[]): string {
  return `metric-batch-${keysDigest(points, (p) => `${p.siteId}/${p.metric}/${p.ts}/${p.pointId}\n`)}`;
}

/**
 * The first 32 hex digits of the sha256 of the items' keys, one after another: hashed a few
 * dozen keys at a time (see textPieces), as three native update() calls per key cost more than
 * the hashing.
 */
function keysDigest<T>(items: readonly T[], key: (item: T) => string): string {
  const hash = createHash("sha256");
  for (const keys of textPieces(items, key)) hash.update(keys);
  return hash.digest("hex").slice(0, 32);
}

/**
 * A bulk ingestion's id, and its job's: from the caller's request id when it gave one (so a
 * retried start finds the first ingestion), else random. Either way never ":" nor all digits.
 */
export function metricBulkId(organisationId: string, requestId: string, random: () => string): string {
  if (requestId === "") return `bulk-${random()}`;
  return `bulk-${createHash("sha256").update(organisationId).update("/").update(requestId).digest("hex").slice(0, 32)}`;
}

/** Bulk ingestions retry a few times; each attempt resumes after the last committed chunk. */
export const METRIC_BULK_JOB_OPTIONS = {
  attempts: 5,
  backoff: { type: "exponential", delay: 2_000 },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 24 * 3600 },
} as const;

/**
 * One delivery job per subscription at a time: a tick that finds the subscription due again while
 * its delivery is still retrying adds nothing.
 */
export function subscriptionDeliveryJobId(subscriptionId: string): string {
  return `subscription-${subscriptionId}`;
}

/**
 * A failed delivery is retried 5 times, 1 s, 2 s, 4 s, 8 s and 16 s apart; then the next tick
 * that finds the subscription due starts a new one. Every attempt is in the delivery log, so
 * BullMQ keeps nothing (and the job id is free for the next delivery).
 */
export const SUBSCRIPTION_DELIVERY_JOB_OPTIONS = {
  attempts: 6,
  backoff: { type: "exponential", delay: 1_000 },
  removeOnComplete: true,
  removeOnFail: true,
} as const;

/** Retry policy shared by producers: exponential backoff, kept failures for inspection. */
export const DEFAULT_JOB_OPTIONS = {
  attempts: 8,
  backoff: { type: "exponential", delay: 500 },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 24 * 3600 },
} as const;

/**
 * Ingest batches retry for about 20 minutes (backoff doubling from 0.5 s, capped at 30 s), long
 * enough to ride out a Postgres restart or failover; the last attempt dead-letters what it cannot
 * store instead of failing silently.
 */
export const INGEST_JOB_OPTIONS = {
  attempts: 45,
  backoff: { type: "capped-exponential" },
  removeOnComplete: true,
  removeOnFail: { age: 30 * 24 * 3600 },
} as const;

export function cappedExponentialBackoff(attemptsMade: number): number {
  return Math.min(500 * 2 ** Math.max(0, attemptsMade - 1), 30_000);
}
