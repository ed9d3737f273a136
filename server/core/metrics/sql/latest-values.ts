// The latest value of each series of some metrics (QueryInstant), read from the series table,
// which keeps every series' newest point as points are stored: no scan of the points.
import type { SqlClient } from "../../../db/partitions.js";
import type { TagFilter } from "../query-plan.js";
import { SqlParams } from "./params.js";
import { tagConditions } from "./series-filter.js";

export interface LatestValue {
  metric: string;
  tags: Record<string, string>;
  value: number;
  /** When it was measured, epoch ms. */
  time: number;
}

export async function latestValues(db: SqlClient, siteId: string, metrics: readonly string[], filters: readonly TagFilter[], limit: number): Promise<LatestValue[]> {
  const params = new SqlParams();
  const sql = `select m.metric, m.tags, m.last_value, (extract(epoch from m.last_ts) * 1000)::float8 as time_ms
      from metric_series m
     where m.site_id = ${params.add(siteId)} and m.metric = any(${params.add(metrics)}::text[]) and m.last_ts is not null
       and ${tagConditions("m", filters, params)}
     order by m.metric, m.tags::text
     limit ${params.add(limit)}`;
  const { rows } = await db.query(sql, params.values);
  return rows.map((r: { metric: string; tags: Record<string, string>; last_value: number; time_ms: number }) => ({ metric: r.metric, tags: r.tags, value: r.last_value, time: r.time_ms }));
}
