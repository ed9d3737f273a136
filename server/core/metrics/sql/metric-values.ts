// One metric's values per group and time bucket: the query behind GetTimeSeries and Aggregate.
//
// Raw plan: aggregate the points in [from, to) directly. Percentiles always take this path
// (percentile_cont over the raw values: exact, never averaged from rollups), as does any bucket
// narrower than an hour.
//
// Rollup plan (sum, avg, min, max, count, last; buckets of whole UTC hours): whole hours inside
// the window are read from metric_rollups unless marked pending, and everything else from raw
// points, pre-aggregated per series and hour into the same shape: the partial hours at either
// edge, and the pending hours (whose raw points changed since they were rolled). Each hour is
// counted from exactly one source: the hours named as pending are excluded from the rollups.
import type { AggregationName } from "../../management/metric-definitions.js";
import type { SqlClient } from "../../../db/partitions.js";
import type { Bucketing, ValuesQuery } from "../query-plan.js";
import { SqlParams } from "./params.js";
import { groupColumns, tagConditions } from "./series-filter.js";

export interface ValueRow {
  /** Group-by values, in group_by order. */
  group: string[];
  /** Bucket start, epoch ms. */
  bucket: number;
  value: number;
}

const HOUR_MS = 3600_000;

/** Bucket start of `column` (a timestamptz expression); fixed fragments only, values as parameters. */
export function bucketExpression(bucketing: Bucketing, column: string, params: SqlParams, from: number): string {
  switch (bucketing.kind) {
    case "fixed":
      if (bucketing.unit === "minute") return `date_trunc('minute', ${column}, 'UTC')`;
      if (bucketing.unit === "hour") return `date_trunc('hour', ${column}, 'UTC')`;
      return `date_bin('5 minutes', ${column}, timestamptz '2000-01-01 00:00:00+00')`;
    case "calendar":
      return `date_trunc(${params.add(bucketing.unit)}::text, ${column}, ${params.add(bucketing.timeZone)}::text)`;
    case "whole":
      return `${params.add(new Date(from).toISOString())}::timestamptz`;
  }
}

const RAW_AGGREGATES: Record<AggregationName, string> = {
  sum: "sum(p.value)",
  avg: "avg(p.value)",
  min: "min(p.value)",
  max: "max(p.value)",
  count: "count(*)::float8",
  p50: "percentile_cont(0.5) within group (order by p.value)",
  p95: "percentile_cont(0.95) within group (order by p.value)",
  p99: "percentile_cont(0.99) within group (order by p.value)",
  last: "(array_agg(p.value order by p.ts desc, p.point_id desc))[1]",
};

/** How per-series-hour partials (n, sum, min, max, last_ts, last_value) combine into a bucket's value. */
const PARTIAL_COMBINERS: Partial<Record<AggregationName, string>> = {
  sum: "sum(x.sum)",
  avg: "sum(x.sum) / nullif(sum(x.n), 0)",
  min: "min(x.min)",
  max: "max(x.max)",
  count: "sum(x.n)",
  last: "(array_agg(x.last_value order by x.last_ts desc, x.series_id desc))[1]",
};

export function rollupAnswers(aggregation: AggregationName): boolean {
  return aggregation in PARTIAL_COMBINERS;
}

/** The whole UTC hours inside [from, to), or undefined when there is none. */
export function wholeHours(from: number, to: number): { from: number; to: number } | undefined {
  const first = Math.ceil(from / HOUR_MS) * HOUR_MS;
  const last = Math.floor(to / HOUR_MS) * HOUR_MS;
  return first < last ? { from: first, to: last } : undefined;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Marked (pending) hours of a metric in [from, to), epoch ms, in order. */
async function pendingHours(db: SqlClient, siteId: string, metric: string, from: number, to: number): Promise<number[]> {
  const { rows } = await db.query(
    `select (extract(epoch from hour) * 1000)::float8 as ms from metric_rollup_pending
      where site_id = $1 and metric = $2 and hour >= $3 and hour < $4 order by hour`,
    [siteId, metric, iso(from), iso(to)],
  );
  return rows.map((r: { ms: number }) => r.ms);
}

/** Contiguous runs of hours as [start, end) ranges. */
function hourRanges(hours: number[]): [number, number][] {
  const ranges: [number, number][] = [];
  for (const hour of hours) {
    const last = ranges[ranges.length - 1];
    if (last && last[1] === hour) last[1] = hour + HOUR_MS;
    else ranges.push([hour, hour + HOUR_MS]);
  }
  return ranges;
}

/** Beyond this many separate runs of marked hours, reading raw points throughout is simpler. */
const MAX_PENDING_RANGES = 50;

export async function metricValues(db: SqlClient, q: ValuesQuery): Promise<ValueRow[]> {
  let hours = q.useRollups && rollupAnswers(q.aggregation) ? wholeHours(q.from, q.to) : undefined;
  // The marked hours are read first and then named in the query as constants: the planner then
  // sizes their raw reads right (a join against the marks it cannot estimate, and once costed
  // high, Postgres spends longer compiling the query than running it). An hour marked after this
  // read is answered from its rollup as it was, as if its new points had come a moment later.
  const pending = hours ? hourRanges(await pendingHours(db, q.siteId, q.metric, hours.from, hours.to)) : [];
  if (pending.length > MAX_PENDING_RANGES) hours = undefined;

  const params = new SqlParams();
  const site = params.add(q.siteId);
  const metric = params.add(q.metric);
  const series = `select m.series_id${q.groupBy.length > 0 ? ", " : ""}${groupColumns("m", q.groupBy, params).join(", ")}
      from metric_series m where m.site_id = ${site} and m.metric = ${metric} and ${tagConditions("m", q.filters, params)}`;
  const groups = q.groupBy.map((_, i) => `s.g${i}`);

  let sql: string;
  if (!hours) {
    const from = params.add(iso(q.from));
    const to = params.add(iso(q.to));
    const bucket = bucketExpression(q.bucketing, "p.ts", params, q.from);
    sql = `with s as materialized (${series})
select ${[...groups, `(extract(epoch from ${bucket}) * 1000)::float8 as bucket`, `${RAW_AGGREGATES[q.aggregation]} as value`].join(", ")}
  from metric_points p join s on s.series_id = p.series_id
 where p.site_id = ${site} and p.metric = ${metric} and p.ts >= ${from} and p.ts < ${to}
 group by ${[...groups, bucket].join(", ")}`;
  } else {
    const rollFrom = params.add(iso(hours.from));
    const rollTo = params.add(iso(hours.to));
    const bucket = bucketExpression(q.bucketing, "x.t", params, q.from);
    // Raw points, pre-aggregated per series and hour into the rollups' shape.
    const partial = (from: number, to: number) => `select p.series_id, date_trunc('hour', p.ts, 'UTC') as t, count(*)::float8 as n, sum(p.value) as sum,
         min(p.value) as min, max(p.value) as max, max(p.ts) as last_ts, (array_agg(p.value order by p.ts desc, p.point_id desc))[1] as last_value
    from metric_points p
   where p.site_id = ${site} and p.metric = ${metric} and p.ts >= ${params.add(iso(from))} and p.ts < ${params.add(iso(to))}
   group by 1, 2`;
    const raw: [number, number][] = [...pending];
    if (q.from < hours.from) raw.push([q.from, hours.from]);
    if (hours.to < q.to) raw.push([hours.to, q.to]);
    const marked = pending.length > 0 ? ` and not (${pending.map(([a, b]) => `(r.hour >= ${params.add(iso(a))} and r.hour < ${params.add(iso(b))})`).join(" or ")})` : "";
    sql = `with s as materialized (${series}),
x as (
  select r.series_id, r.hour as t, r.count::float8 as n, r.sum, r.min, r.max, r.last_ts, r.last_value
    from metric_rollups r
   where r.site_id = ${site} and r.metric = ${metric} and r.hour >= ${rollFrom} and r.hour < ${rollTo}${marked}
${raw.map(([a, b]) => `  union all\n  ${partial(a, b)}`).join("\n")}
)
select ${[...groups, `(extract(epoch from ${bucket}) * 1000)::float8 as bucket`, `${PARTIAL_COMBINERS[q.aggregation]} as value`].join(", ")}
  from x join s on s.series_id = x.series_id
 group by ${[...groups, bucket].join(", ")}`;
  }
  // Grouped by the bucket's timestamptz; only the output rows are turned into epoch milliseconds.
  const { rows } = await db.query(sql, params.values);
  return rows.map((row: Record<string, unknown>) => ({
    group: q.groupBy.map((_, i) => row[`g${i}`] as string),
    bucket: row.bucket as number,
    value: row.value === null ? 0 : Number(row.value),
  }));
}
