// When the newest point of some metrics was received (stored): data_freshness_seconds is measured
// from it. Read from the series table, which keeps each series' latest receive time.
import type { SqlClient } from "../../../db/partitions.js";

export async function newestReceipt(db: SqlClient, siteId: string, metrics: readonly string[]): Promise<number | null> {
  const { rows } = await db.query(
    "select (extract(epoch from max(last_received_at)) * 1000)::float8 as ms from metric_series where site_id = $1 and metric = any($2::text[])",
    [siteId, metrics],
  );
  return (rows[0]?.ms as number | null) ?? null;
}
