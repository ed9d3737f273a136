// Rollups for reports: per site, per hour (UTC) and per day (in the site's time zone), per
// classification, per value of the dimensions dashboards use most ('' dimension = the whole
// site). Counts are additive; `visitors` is a VisitorSketch (exact ids while few, HyperLogLog
// beyond). Session metrics are attributed to the hour or day the session started, so they add
// up across buckets too.
//
// rollup_dirty marks hours whose raw events changed after they were rolled (late events); the
// report planner reads raw events for those until the rollup job has re-rolled them.
// rollup_watermarks: every hour before `hourly_until` has been rolled once.
import { Migration } from "@mikro-orm/migrations";

const COLUMNS = `
  classification smallint not null,
  dimension text not null,
  value text not null,
  pageviews bigint not null default 0,
  events bigint not null default 0,
  revenue double precision not null default 0,
  visitors bytea not null,
  visits bigint not null default 0,
  bounces bigint not null default 0,
  duration_seconds bigint not null default 0,
  session_pageviews bigint not null default 0`;

export class Migration20261123010000_rollups extends Migration {
  override name = "Migration20261123010000_rollups";

  override up(): void {
    this.addSql(`create table rollups_hourly (
  site_id uuid not null,
  hour timestamptz not null,${COLUMNS},
  primary key (site_id, dimension, hour, classification, value)
)`);
    this.addSql(`create table rollups_daily (
  site_id uuid not null,
  day date not null,${COLUMNS},
  primary key (site_id, dimension, day, classification, value)
)`);
    this.addSql(`create table rollup_dirty (
  site_id uuid not null,
  hour timestamptz not null,
  marked_at timestamptz not null default now(),
  primary key (site_id, hour)
)`);
    this.addSql(`create table rollup_watermarks (
  site_id uuid primary key,
  hourly_until timestamptz not null,
  daily_until date,
  updated_at timestamptz not null default now()
)`);
  }

  override down(): void {
    this.addSql(`drop table if exists rollup_watermarks`);
    this.addSql(`drop table if exists rollup_dirty`);
    this.addSql(`drop table if exists rollups_daily`);
    this.addSql(`drop table if exists rollups_hourly`);
  }
}
