// Series search (002 "series/search"): a site's series, of one metric or all, whose tags match
// the filters, a page at a time in (metric, series id) order.
import type { SqlClient } from "../../../db/partitions.js";
import type { TagFilter } from "../query-plan.js";
import { SqlParams } from "./params.js";
import { tagConditions } from "./series-filter.js";

export interface SeriesRow {
  metric: string;
  seriesId: string;
  tags: Record<string, string>;
  /** When its newest point was measured, epoch ms; null before any was stored. */
  lastTime: number | null;
}

export async function searchSeries(
  db: SqlClient,
  siteId: string,
  metrics: readonly string[] | undefined,
  filters: readonly TagFilter[],
  after: { metric: string; seriesId: string } | undefined,
  limit: number,
): Promise<SeriesRow[]> {
  const params = new SqlParams();
  const conditions = [`m.site_id = ${params.add(siteId)}`, tagConditions("m", filters, params)];
  if (metrics) conditions.push(`m.metric = any(${params.add(metrics)}::text[])`);
  if (after) conditions.push(`(m.metric, m.series_id) > (${params.add(after.metric)}, ${params.add(after.seriesId)}::int8)`);
  const sql = `select m.metric, m.series_id::text as series_id, m.tags, (extract(epoch from m.last_ts) * 1000)::float8 as last_ms
      from metric_series m where ${conditions.join(" and ")}
     order by m.metric, m.series_id limit ${params.add(limit)}`;
  const { rows } = await db.query(sql, params.values);
  return rows.map((r: { metric: string; series_id: string; tags: Record<string, string>; last_ms: number | null }) => ({ metric: r.metric, seriesId: r.series_id, tags: r.tags, lastTime: r.last_ms }));
}
