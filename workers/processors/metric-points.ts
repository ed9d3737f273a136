// Metric point batches: store them. Idempotent: a retried batch finds its points already stored
// (deduplicated by key). A batch that fails for a database-side data error is stored point by
// point, so one bad point goes to the dead letters and the rest are kept; any other failure
// (Postgres down) is retried with backoff, and the last attempt dead-letters what it cannot store.
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Job } from "bullmq";
import type { Pool } from "pg";
import type { AcceptedMetricPoint } from "../../server/core/metrics/points.js";
import { storeMetricPoints } from "../../server/db/metric-points-store.js";
import { sqlPool } from "../../server/db/orm.js";
import type { Logger } from "../../server/logger.js";
import type { MetricPointsJob } from "../queues.js";

/** SQLSTATE classes that mean "this data cannot be stored", as opposed to "the database is not there". */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && /^(22|23|42)/.test(code) && code !== "42P01";
}

export function createMetricPointsProcessor(deps: { orm: MikroORM; logger: Logger }) {
  return async (job: Job<MetricPointsJob>): Promise<{ stored: number; duplicates: number; deadLettered: number }> => {
    const pool = await sqlPool(deps.orm);
    const points = job.data.points;
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    try {
      const stored = await storeMetricPoints(pool, points);
      return { stored, duplicates: points.length - stored, deadLettered: 0 };
    } catch (err) {
      if (!isDataError(err) && !lastAttempt) throw err;
      deps.logger.warn("storing a metric batch failed; storing its points one by one", { job: job.id, err: (err as Error).message });
    }
    let stored = 0;
    let deadLettered = 0;
    for (const point of points) {
      try {
        stored += await storeMetricPoints(pool, [point]);
      } catch (err) {
        if (!isDataError(err) && !lastAttempt) throw err;
        deadLettered += await deadLetter(pool, point, `metric_store_failed: ${(err as Error).message}`, job.attemptsMade + 1);
      }
    }
    return { stored, duplicates: points.length - stored - deadLettered, deadLettered };
  };
}

/** Keeps a point that can never be stored, with its reason, in the dead letters events use. */
async function deadLetter(pool: Pool, point: AcceptedMetricPoint, reason: string, attempts: number): Promise<number> {
  await pool.query(
    // The id is derived from the point, so a retried batch does not dead-letter a point twice.
    "insert into dead_letters (site_id, id, reason, payload, attempts, created_at) values ($1, md5($1 || '/metric/' || $5)::uuid, $2, $3::jsonb, $4, now()) on conflict (id) do nothing",
    [point.siteId, reason.slice(0, 2000), JSON.stringify({ kind: "metric_point", ...point }), attempts, `${point.metric}/${point.ts}/${point.pointId}`],
  );
  return 1;
}
