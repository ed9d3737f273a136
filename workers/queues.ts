// The producers' contract with the workers: queue names, job payloads and job-id rules live here
// and nowhere else. Payloads are plain JSON of ids, times and small batches. Job ids are
// deterministic business keys (never containing ":" and never all digits, as BullMQ requires),
// so a producer that retries adds the same job instead of a second one.
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import type { RawHit } from "../server/core/ingest/hit.js";
import type { AcceptedMetricPoint } from "../server/core/metrics/points.js";

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
 * in ms: the worker sets it as it takes each batch, servers read it to refuse new events while
 * the queue is this far behind (backpressure). Expires when no worker takes batches.
 */
export function ingestQueueWaitKey(prefix: string): string {
  return `${prefix}:ingest:queue-wait-ms`;
}

/** How long an ingestQueueWaitKey reading lasts: older than this it says nothing (no worker is taking batches). */
const INGEST_QUEUE_WAIT_TTL_MS = 5_000;

/** A worker's report of how long the batch it takes had waited (0: nothing waits). Never fails: backpressure is advisory. */
export function reportIngestQueueWait(redis: Redis, prefix: string, waitMs: number): void {
  redis.set(ingestQueueWaitKey(prefix), Math.max(0, waitMs), "PX", INGEST_QUEUE_WAIT_TTL_MS).catch(() => {});
}

export interface IngestBatchJob {
  hits: RawHit[];
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
  // One string hashed once: three native update() calls per event cost more than the hashing.
  let keys = "";
  for (const hit of hits) keys += `${hit.siteId}/${hit.eventId}\n`;
  return `batch-${createHash("sha256").update(keys).digest("hex").slice(0, 32)}`;
}

/** Like ingestBatchJobId: derived from the points' keys, so re-adding a batch is a no-op. */
export function metricBatchJobId(points: readonly AcceptedMetricPoint[]): string {
  let keys = "";
  for (const p of points) keys += `${p.siteId}/${p.metric}/${p.ts}/${p.pointId}\n`;
  return `metric-batch-${createHash("sha256").update(keys).digest("hex").slice(0, 32)}`;
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
