// Metric housekeeping on a schedule: re-roll the hours whose points changed (idempotent: each
// hour is recomputed from its raw points), and apply each metric's retention.
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Job } from "bullmq";
import { applyMetricRetention, type RetentionOutcome } from "../../server/core/metrics/retention.js";
import { rollUpPendingHours } from "../../server/db/metric-points-store.js";
import { sqlPool } from "../../server/db/orm.js";
import type { MetricMaintenanceJob } from "../queues.js";

/** Hours re-rolled per transaction: small enough that no transaction runs long. */
const HOURS_PER_TRANSACTION = 200;

export function createMetricMaintenanceProcessor(orm: MikroORM, now: () => number = Date.now) {
  return async (job: Job<MetricMaintenanceJob>): Promise<{ rolledHours?: number } & Partial<RetentionOutcome>> => {
    const data = job.data;
    const pool = await sqlPool(orm);
    switch (data.kind) {
      case "metric-rollup": {
        let rolledHours = 0;
        while (rolledHours < data.maxHours) {
          const rolled = await rollUpPendingHours(pool, new Date(now()), Math.min(HOURS_PER_TRANSACTION, data.maxHours - rolledHours));
          rolledHours += rolled;
          if (rolled === 0) break;
        }
        return { rolledHours };
      }
      case "metric-retention":
        return applyMetricRetention(pool, orm, now());
    }
  };
}
