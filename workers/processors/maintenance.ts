// Housekeeping that keeps ingestion off the DDL path: daily partitions are created days ahead,
// and request-id records older than a day are expired (a retry that late is a new request).
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Job } from "bullmq";
import { ensurePartitions, PARTITIONED_TABLES } from "../../server/db/partitions.js";
import { sqlPool } from "../../server/db/orm.js";
import { applyRetention } from "../../server/db/retention.js";
import type { MaintenanceJob } from "../queues.js";

const DAY_MS = 24 * 3600 * 1000;

export function createMaintenanceProcessor(orm: MikroORM) {
  return async (job: Job<MaintenanceJob>): Promise<Record<string, unknown>> => {
    const data = job.data;
    const pool = await sqlPool(orm);
    switch (data.kind) {
      case "ensure-partitions": {
        const now = Date.now();
        const created: string[] = [];
        for (const table of PARTITIONED_TABLES) {
          // Yesterday too: late events for the previous day must find their partition.
          created.push(...(await ensurePartitions(pool, table, new Date(now - DAY_MS), new Date(now + data.daysAhead * DAY_MS))));
        }
        return { created };
      }
      case "apply-retention": {
        return { ...(await applyRetention(pool)) };
      }
      case "expire-idempotency-records": {
        const result = await pool.query("delete from idempotency_records where created_at < now() - make_interval(hours => $1)", [data.olderThanHours]);
        return { expired: result.rowCount ?? 0 };
      }
    }
  };
}
