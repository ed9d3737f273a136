// Starts the workers and their schedules, and closes them gracefully: a worker finishes the job
// in hand before it stops, and an unfinished job returns to the queue for another worker.
import type { MikroORM } from "@mikro-orm/postgresql";
import { Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "../server/logger.js";
import { createGeoLookup } from "../server/core/enrich/geo.js";
import type { VisitorHasher } from "../server/core/enrich/visitor.js";
import { SiteDirectory } from "../server/core/ingest/sites.js";
import type { StoredEvent } from "../server/db/events-store.js";
import { createIngestProcessor } from "./processors/ingest.js";
import { createMaintenanceProcessor } from "./processors/maintenance.js";
import { createMetricBulkProcessor } from "./processors/metric-bulk.js";
import { createMetricMaintenanceProcessor } from "./processors/metric-maintenance.js";
import { createMetricPointsProcessor } from "./processors/metric-points.js";
import { CardinalityDiagnostics, SeriesRegistry } from "../server/core/metrics/cardinality.js";
import { MetricCatalog } from "../server/core/metrics/catalog.js";
import { MetricIntake } from "../server/core/metrics/intake.js";
import { sqlPool } from "../server/db/orm.js";
import { createRollupProcessor } from "./processors/rollup.js";
import { RealtimeState } from "../server/core/realtime.js";
import { LiveEventPublisher } from "../server/core/streams/live-events.js";
import type { SubscriptionQueryRunner } from "../server/core/streams/subscriptions.js";
import { createSubscriptionDeliveryProcessor, createSubscriptionTickProcessor } from "./processors/subscriptions.js";
import type { SubscriptionDeliveryJob, SubscriptionTickJob } from "./queues.js";
import { cappedExponentialBackoff, DEFAULT_JOB_OPTIONS, type IngestBatchJob, JOB_NAMES, type MaintenanceJob, type MetricBulkJob, type MetricMaintenanceJob, type MetricPointsJob, IngestProgressReports, QUEUES } from "./queues.js";

export interface WorkerDeps {
  orm: MikroORM;
  /** New Redis connections (BullMQ wants one per worker, with maxRetriesPerRequest: null). */
  connection: () => Redis;
  prefix: string;
  logger: Logger;
  hasher: VisitorHasher;
  /** GeoLite2/GeoIP2 City database, when configured. */
  geoCityDbPath?: string;
  /** Enrichment batches processed at once (each is hundreds of events). */
  ingestConcurrency?: number;
  /** Group commits (stores of ready batches) run side by side. */
  ingestParallelStores?: number;
  /** How long a free store waits for more ready batches before storing a small group, ms. */
  ingestStoreLingerMs?: number;
  /** A dead worker's batch is retried by another after this long. */
  lockMs?: number;
  onStored?: (events: StoredEvent[]) => Promise<void>;
  /**
   * Runs subscriptions' queries as the ReportingService does (built by the server side, which
   * workers may not import). Without it, this process delivers no subscriptions.
   */
  subscriptionQueries?: SubscriptionQueryRunner;
}

export interface Workers {
  close(): Promise<void>;
}

export async function startWorkers(deps: WorkerDeps): Promise<Workers> {
  const { logger, prefix } = deps;
  const maintenanceQueue = new Queue<MaintenanceJob>(QUEUES.maintenance, { connection: deps.connection(), prefix });
  // Schedulers are upserted by id, so every process may declare them without duplicating them.
  await maintenanceQueue.upsertJobScheduler(
    JOB_NAMES.ensurePartitions,
    { every: 3600_000 },
    { name: JOB_NAMES.ensurePartitions, data: { kind: "ensure-partitions", daysAhead: 3 }, opts: DEFAULT_JOB_OPTIONS },
  );
  await maintenanceQueue.upsertJobScheduler(
    JOB_NAMES.expireIdempotencyRecords,
    { every: 3600_000 },
    { name: JOB_NAMES.expireIdempotencyRecords, data: { kind: "expire-idempotency-records", olderThanHours: 24 }, opts: DEFAULT_JOB_OPTIONS },
  );

  const geo = await createGeoLookup({ cityDbPath: deps.geoCityDbPath });
  const realtime = new RealtimeState(deps.connection(), prefix);
  const live = new LiveEventPublisher(deps.connection(), prefix);
  const ingestRedis = deps.connection();
  const reports = new IngestProgressReports(ingestRedis, prefix);
  const ingest = createIngestProcessor({
    orm: deps.orm,
    redis: ingestRedis,
    prefix,
    geo,
    hasher: deps.hasher,
    sites: new SiteDirectory(deps.orm),
    logger,
    reports,
    parallelStores: deps.ingestParallelStores,
    storeLingerMs: deps.ingestStoreLingerMs,
    onStored: async (batches) => {
      await realtime.record(batches.flat());
      // After the realtime state, so a stream reacting to the message reads figures that include it.
      await live.publish(batches);
      for (const events of batches) await deps.onStored?.(events);
    },
  });
  const rollupQueue = new Queue(QUEUES.rollups, { connection: deps.connection(), prefix });
  await rollupQueue.upsertJobScheduler(JOB_NAMES.rollupTick, { every: 60_000 }, { name: JOB_NAMES.rollupTick, data: {}, opts: { removeOnComplete: true, removeOnFail: { age: 24 * 3600 } } });
  await maintenanceQueue.upsertJobScheduler(
    JOB_NAMES.applyRetention,
    { every: 6 * 3600_000 },
    { name: JOB_NAMES.applyRetention, data: { kind: "apply-retention" }, opts: DEFAULT_JOB_OPTIONS },
  );

  const ingestWorker = new Worker<IngestBatchJob>(QUEUES.ingest, ingest, {
    connection: deps.connection(),
    prefix,
    concurrency: deps.ingestConcurrency ?? 16,
    lockDuration: deps.lockMs ?? 30_000,
    // A batch whose worker died is taken over by another; only a batch that kills workers
    // repeatedly (five times) is given up on as failed.
    maxStalledCount: 5,
    stalledInterval: Math.max(1000, Math.floor((deps.lockMs ?? 30_000) / 2)),
    settings: { backoffStrategy: (attemptsMade: number) => cappedExponentialBackoff(attemptsMade) },
  });
  // Nothing waits any more: the queue is not behind, whatever the last batch had waited.
  ingestWorker.on("drained", () => reports.drained());
  const workers = [
    ingestWorker,
    new Worker<MaintenanceJob>(QUEUES.maintenance, createMaintenanceProcessor(deps.orm), { connection: deps.connection(), prefix, concurrency: 1 }),
    new Worker(QUEUES.rollups, createRollupProcessor(deps.orm, logger), { connection: deps.connection(), prefix, concurrency: 1 }),
  ];
  const metricWorkers = await startMetricWorkers(deps);
  const subscriptionWorkers = await startSubscriptionWorkers(deps);
  for (const worker of workers) {
    worker.on("failed", (job, err) => logger.warn("job failed", { queue: worker.name, job: job?.name, id: job?.id, attempt: job?.attemptsMade, err: err.message }));
    worker.on("error", (err) => logger.error("worker error", { queue: worker.name, err: err.message }));
  }
  logger.info("workers started", { queues: workers.map((w) => w.name) });

  return {
    async close() {
      await Promise.all(workers.map((worker) => worker.close()));
      await reports.flush();
      await metricWorkers.close();
      await subscriptionWorkers.close();
      await maintenanceQueue.close();
      await rollupQueue.close();
    },
  };
}

/**
 * The metric workers: point batches, NDJSON bulk ingestions, and the rollup and retention
 * schedules (002 §4). Closed with the others.
 */
async function startMetricWorkers(deps: WorkerDeps): Promise<Workers> {
  const { logger, prefix, orm } = deps;
  const queue = new Queue<MetricMaintenanceJob>(QUEUES.metricMaintenance, { connection: deps.connection(), prefix });
  await queue.upsertJobScheduler(
    JOB_NAMES.metricRollup,
    { every: 60_000 },
    { name: JOB_NAMES.metricRollup, data: { kind: "metric-rollup", maxHours: 5000 }, opts: { removeOnComplete: true, removeOnFail: { age: 24 * 3600 } } },
  );
  await queue.upsertJobScheduler(
    JOB_NAMES.metricRetention,
    { every: 6 * 3600_000 },
    { name: JOB_NAMES.metricRetention, data: { kind: "metric-retention" }, opts: DEFAULT_JOB_OPTIONS },
  );
  const redis = deps.connection();
  const sites = new SiteDirectory(orm);
  const intake = new MetricIntake({
    catalog: new MetricCatalog(orm),
    registry: new SeriesRegistry(() => sqlPool(orm)),
    diagnostics: new CardinalityDiagnostics(redis, prefix),
    redis,
    prefix,
  });
  const workers = [
    new Worker<MetricPointsJob>(QUEUES.metricPoints, createMetricPointsProcessor({ orm, logger }), {
      connection: deps.connection(),
      prefix,
      concurrency: deps.ingestConcurrency ?? 16,
      lockDuration: deps.lockMs ?? 30_000,
      stalledInterval: Math.max(1000, Math.floor((deps.lockMs ?? 30_000) / 2)),
      settings: { backoffStrategy: (attemptsMade: number) => cappedExponentialBackoff(attemptsMade) },
    }),
    new Worker<MetricBulkJob>(
      QUEUES.metricBulk,
      createMetricBulkProcessor({
        orm,
        intake,
        logger,
        site: async (siteId) => {
          const site = await sites.byId(siteId);
          return site && { id: site.id, organisationId: site.organisationId, autoDefineMetrics: site.settings.autoDefineMetrics };
        },
      }),
      { connection: deps.connection(), prefix, concurrency: 1 },
    ),
    new Worker<MetricMaintenanceJob>(QUEUES.metricMaintenance, createMetricMaintenanceProcessor(orm), { connection: deps.connection(), prefix, concurrency: 1 }),
  ];
  for (const worker of workers) {
    worker.on("failed", (job, err) => logger.warn("job failed", { queue: worker.name, job: job?.name, id: job?.id, attempt: job?.attemptsMade, err: err.message }));
    worker.on("error", (err) => logger.error("worker error", { queue: worker.name, err: err.message }));
  }
  return {
    async close() {
      await Promise.all(workers.map((worker) => worker.close()));
      await queue.close();
    },
  };
}

/** Subscription ticks and deliveries (002 §10), when this process can run their queries. */
async function startSubscriptionWorkers(deps: WorkerDeps): Promise<Workers> {
  const { logger, prefix, orm } = deps;
  const queries = deps.subscriptionQueries;
  if (!queries) return { close: async () => {} };
  const ticks = new Queue<SubscriptionTickJob>(QUEUES.subscriptions, { connection: deps.connection(), prefix });
  await ticks.upsertJobScheduler(
    JOB_NAMES.subscriptionTick,
    { every: 1000 },
    { name: JOB_NAMES.subscriptionTick, data: {}, opts: { removeOnComplete: true, removeOnFail: { age: 3600 } } },
  );
  const deliveries = new Queue<SubscriptionDeliveryJob>(QUEUES.subscriptionDeliveries, { connection: deps.connection(), prefix });
  const workers = [
    new Worker<SubscriptionTickJob>(QUEUES.subscriptions, createSubscriptionTickProcessor({ orm, deliveries }), { connection: deps.connection(), prefix, concurrency: 1 }),
    // Deliveries wait on other people's endpoints (up to the timeout each), so several run at once.
    new Worker<SubscriptionDeliveryJob>(
      QUEUES.subscriptionDeliveries,
      createSubscriptionDeliveryProcessor({ orm, queries, logger, timeoutMs: 10_000, keepDeliveries: 500 }),
      { connection: deps.connection(), prefix, concurrency: 8 },
    ),
  ];
  for (const worker of workers) {
    worker.on("failed", (job, err) => logger.debug("job failed", { queue: worker.name, job: job?.name, id: job?.id, attempt: job?.attemptsMade, err: err.message }));
    worker.on("error", (err) => logger.error("worker error", { queue: worker.name, err: err.message }));
  }
  return {
    async close() {
      await Promise.all(workers.map((worker) => worker.close()));
      await ticks.close();
      await deliveries.close();
    },
  };
}
