// Multi-day rollup blocks (server/core/reports/day-blocks.ts): the daily rollup rows pre-merged
// over aligned runs of 2^level local days, so long ranges merge a few sketches per value instead
// of one per day. rollup_blocks_built lists the blocks built (a block with no rows is still
// built); readers use only those.
import { Migration } from "@mikro-orm/migrations";

export class Migration20261127000000_rollup_blocks extends Migration {
  override name = "Migration20261127000000_rollup_blocks";

  override up(): void {
    this.addSql(`create table rollups_blocks (
  site_id uuid not null,
  level smallint not null,
  start_day date not null,
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
  session_pageviews bigint not null default 0,
  primary key (site_id, dimension, level, start_day, classification, value)
)`);
    this.addSql(`create table rollup_blocks_built (
  site_id uuid not null,
  level smallint not null,
  start_day date not null,
  built_at timestamptz not null default now(),
  primary key (site_id, level, start_day)
)`);
  }

  override down(): void {
    this.addSql(`drop table if exists rollup_blocks_built`);
    this.addSql(`drop table if exists rollups_blocks`);
  }
}
