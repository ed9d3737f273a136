// NDJSON bulk ingestions: run (or resume) one to the end. The work is in server/core/metrics/bulk.ts;
// this maps its outcomes onto BullMQ: a source that can never be read fails the ingestion at once
// (UnrecoverableError), other failures are retried, and the last attempt records why it failed.
import type { MikroORM } from "@mikro-orm/postgresql";
import { type Job, UnrecoverableError } from "bullmq";
import { BulkSourceError, failBulkIngest, runBulkIngest } from "../../server/core/metrics/bulk.js";
import type { IntakeSite, MetricIntake } from "../../server/core/metrics/intake.js";
import { sqlPool } from "../../server/db/orm.js";
import type { Logger } from "../../server/logger.js";
import type { MetricBulkJob } from "../queues.js";

export interface MetricBulkProcessorDeps {
  orm: MikroORM;
  intake: MetricIntake;
  site: (siteId: string) => Promise<IntakeSite | undefined>;
  logger: Logger;
}

export function createMetricBulkProcessor(deps: MetricBulkProcessorDeps) {
  return async (job: Job<MetricBulkJob>): Promise<{ state: string; linesRead: number; pointsStored: number } | undefined> => {
    const pool = await sqlPool(deps.orm);
    try {
      const row = await runBulkIngest({ pool, intake: deps.intake, site: deps.site }, job.data.bulkId);
      return row && { state: row.state, linesRead: row.linesRead, pointsStored: row.pointsStored };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (err instanceof BulkSourceError) {
        await failBulkIngest(pool, job.data.bulkId, message);
        throw new UnrecoverableError(message);
      }
      if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) {
        deps.logger.error("bulk ingestion failed", { bulkId: job.data.bulkId, err: message });
        await failBulkIngest(pool, job.data.bulkId, "stopped after repeated failures; see the server log").catch(() => {});
      }
      throw err;
    }
  };
}
