// Starts the workers and their schedules, and closes them gracefully: a worker finishes the job
// in hand before it stops, and an unfinished job returns to the queue for another worker.
import type { MikroORM } from "@mikro-orm/postgresql";
import { Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "../server/logger.js";
import { createMaintenanceProcessor } from "./processors/maintenance.js";
import { DEFAULT_JOB_OPTIONS, JOB_NAMES, type MaintenanceJob, QUEUES } from "./queues.js";

export interface WorkerDeps {
  orm: MikroORM;
  /** New Redis connections (BullMQ wants one per worker, with maxRetriesPerRequest: null). */
  connection: () => Redis;
  prefix: string;
  logger: Logger;
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
    { every: 3600_000, immediately: true },
    { name: JOB_NAMES.ensurePartitions, data: { kind: "ensure-partitions", daysAhead: 3 }, opts: DEFAULT_JOB_OPTIONS },
  );
  await maintenanceQueue.upsertJobScheduler(
    JOB_NAMES.expireIdempotencyRecords,
    { every: 3600_000 },
    { name: JOB_NAMES.expireIdempotencyRecords, data: { kind: "expire-idempotency-records", olderThanHours: 24 }, opts: DEFAULT_JOB_OPTIONS },
  );

  const workers = [
    new Worker<MaintenanceJob>(QUEUES.maintenance, createMaintenanceProcessor(deps.orm), { connection: deps.connection(), prefix, concurrency: 1 }),
  ];
  for (const worker of workers) {
    worker.on("failed", (job, err) => logger.warn("job failed", { queue: worker.name, job: job?.name, id: job?.id, attempt: job?.attemptsMade, err: err.message }));
    worker.on("error", (err) => logger.error("worker error", { queue: worker.name, err: err.message }));
  }
  logger.info("workers started", { queues: workers.map((w) => w.name) });

  return {
    async close() {
      await Promise.all(workers.map((worker) => worker.close()));
      await maintenanceQueue.close();
    },
  };
}
