// The events store, by hand: partitioned tables are outside what the ORM models. Both tables are
// partitioned by UTC day (see ../partitions.ts, which creates the partitions) and keyed by
// site first, so they can later be distributed by site_id.
//
// Absent text dimensions are '' rather than NULL so GROUP BY and equality filters need no
// COALESCE; revenue is the exception (NULL = no revenue, so SUM and AVG skip it).
import { Migration } from "@mikro-orm/migrations";

// The dimensions an event and its session share, all '' when unknown.
const SHARED_DIMENSIONS = `
  referrer_source text not null default '',
  referrer_medium text not null default '',
  utm_source text not null default '',
  utm_medium text not null default '',
  utm_campaign text not null default '',
  utm_term text not null default '',
  utm_content text not null default '',
  country text not null default '',
  region text not null default '',
  city text not null default '',
  browser text not null default '',
  os text not null default '',
  device_type text not null default '',
  -- 1 = USER, 2 = BOT (the proto enum's values).
  classification smallint not null check (classification in (1, 2))`;

export class Migration20261122232300_events extends Migration {
  override name = "Migration20261122232300_events";

  override up(): void {
    this.addSql(`
create table events (
  site_id uuid not null,
  -- Fixed when ingestion accepts the event, so a retried event carries the same ts and the
  -- primary key deduplicates it.
  ts timestamptz not null,
  event_id text not null,
  -- 'pageview' or the custom event's name.
  name text not null,
  visitor_id bigint not null,
  session_id bigint not null,
  hostname text not null default '',
  pathname text not null default '',
  title text not null default '',
  referrer text not null default '',
  click_id text not null default '',
  browser_version text not null default '',
  os_version text not null default '',
  screen text not null default '',
  language text not null default '',
  ${SHARED_DIMENSIONS},
  props jsonb not null default '{}',
  revenue numeric,
  received_at timestamptz not null default now(),
  -- A partitioned table's unique key must contain the partition column, hence ts.
  primary key (site_id, ts, event_id)
) partition by range (ts)`);
    // Cheap (a few pages per partition) and serves scans across all sites by time, e.g. rollups.
    this.addSql(`create index events_ts_brin on events using brin (ts)`);

    this.addSql(`
create table sessions (
  site_id uuid not null,
  session_id bigint not null,
  visitor_id bigint not null,
  started_at timestamptz not null,
  ended_at timestamptz not null,
  entry_page text not null default '',
  exit_page text not null default '',
  pageviews int not null default 0,
  events int not null default 0,
  is_bounce boolean not null default true,
  duration_seconds int not null default 0,
  -- The rest describe the session's first event.
  ${SHARED_DIMENSIONS},
  primary key (site_id, started_at, session_id)
) partition by range (started_at)`);
  }

  override down(): void {
    this.addSql(`drop table if exists sessions`);
    this.addSql(`drop table if exists events`);
  }
}
