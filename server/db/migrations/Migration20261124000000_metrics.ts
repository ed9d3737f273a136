// The metric points store, by hand (raw SQL, outside the ORM like the events store):
//
// - metric_series: one row per (site, metric, tag set). The tag set's 64-bit hash is its id, so
//   ingestion computes it without a lookup; the row count per (site, metric) is what the
//   organisation's max_cardinality caps. It also keeps each series' latest value (QueryInstant)
//   and latest receive time (data_freshness_seconds), so neither needs a scan of the points.
// - metric_points: the raw points, partitioned by UTC day like events (../partitions.ts creates
//   the partitions). The primary key (site_id, metric, ts, point_id) deduplicates: a point sent
//   twice with the same idempotency key and time is stored once.
// - metric_rollups: per series and UTC hour, count/sum/min/max/last, recomputed from the raw
//   points by a scheduled job; sum/avg/min/max/count/last queries read them for whole hours.
// - metric_rollup_pending: the hours whose raw points changed since they were last rolled up.
//   Ingestion marks an hour in the same transaction that stores its points; queries read raw
//   points for marked hours and rollups for the rest, so answers are exact at every moment.
// - metric_bulk_ingests: the state of each NDJSON bulk ingestion (StartBulkIngest/GetBulkIngest),
//   with its checkpoint, so a retried job resumes where the last attempt committed.
import { Migration } from "@mikro-orm/migrations";

export class Migration20261124000000_metrics extends Migration {
  override name = "Migration20261124000000_metrics";

  override up(): void {
    this.addSql(`
create table metric_series (
  site_id uuid not null,
  metric text not null,
  -- First 8 bytes of sha256 of the canonical tag JSON (see server/core/metrics/series.ts).
  series_id bigint not null,
  tags jsonb not null,
  first_seen timestamptz not null default now(),
  -- The newest point stored for the series (by measurement time); null until one is stored.
  last_ts timestamptz,
  last_value double precision,
  -- When the series last received a stored point: the data freshness of queries.
  last_received_at timestamptz,
  primary key (site_id, metric, series_id)
)`);

    this.addSql(`
create table metric_points (
  site_id uuid not null,
  metric text not null,
  -- Millisecond precision; fixed when the point is accepted, so a retried point keeps it.
  ts timestamptz not null,
  -- The client's idempotency key, or one the server assigned.
  point_id text not null,
  series_id bigint not null,
  value double precision not null,
  source text not null default '',
  metadata jsonb,
  received_at timestamptz not null,
  primary key (site_id, metric, ts, point_id)
) partition by range (ts)`);

    this.addSql(`
create table metric_rollups (
  site_id uuid not null,
  metric text not null,
  -- Start of the UTC hour.
  hour timestamptz not null,
  series_id bigint not null,
  count bigint not null,
  sum double precision not null,
  min double precision not null,
  max double precision not null,
  last_ts timestamptz not null,
  last_value double precision not null,
  primary key (site_id, metric, hour, series_id)
)`);

    this.addSql(`
create table metric_rollup_pending (
  site_id uuid not null,
  metric text not null,
  hour timestamptz not null,
  -- Updated on every mark, so that marking takes a row lock the rollup job must wait for.
  marked_at timestamptz not null,
  primary key (site_id, metric, hour)
)`);
    this.addSql(`create index metric_rollup_pending_hour on metric_rollup_pending (hour)`);

    this.addSql(`
create table metric_bulk_ingests (
  id text primary key,
  organisation_id uuid not null,
  site_id uuid not null,
  -- The caller's request_id (or Idempotency-Key), which the id is derived from.
  request_id text,
  -- sha256 of what was asked (site and source): a reused request_id with another request is refused.
  request_hash text not null,
  -- Who started it, for definitions it auto-creates (their audit entries).
  key_id text not null,
  actor text not null,
  -- 'file', 'url' or 'inline'.
  source_kind text not null,
  -- The file path or URL; '' for inline NDJSON, which is kept in ndjson until the job ends.
  source text not null,
  ndjson bytea,
  -- 'pending', 'running', 'done' or 'failed'.
  state text not null,
  lines_read bigint not null default 0,
  points_stored bigint not null default 0,
  -- The first 1,000 bad lines: [{"line": n, "message": "..."}].
  line_errors jsonb not null default '[]',
  line_error_count bigint not null default 0,
  error text not null default '',
  -- Receive time of points without a timestamp: fixed, so a retried job stores the same points.
  received_at timestamptz not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  finished_at timestamptz
)`);
    this.addSql(`create index metric_bulk_ingests_site_id on metric_bulk_ingests (site_id, created_at)`);
  }

  override down(): void {
    this.addSql(`drop table if exists metric_bulk_ingests`);
    this.addSql(`drop table if exists metric_rollup_pending`);
    this.addSql(`drop table if exists metric_rollups`);
    this.addSql(`drop table if exists metric_points`);
    this.addSql(`drop table if exists metric_series`);
  }
}
