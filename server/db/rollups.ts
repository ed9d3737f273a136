// Rolling raw events up into rollups_hourly and rollups_daily. Idempotent: a roll replaces the
// rows of its hour or day. Each transaction holds the site's watermark row, which ingestion
// share-locks before marking late hours dirty (see events-store.ts), so no event can slip
// between a roll and the watermark moving past its hour.
import type { Pool, PoolClient } from "pg";
import { ROLLUP_DIMENSIONS, SESSION_DIMENSIONS } from "../core/reports/catalog.js";
import { VisitorSketch } from "../core/reports/sketch.js";
import { addDays, localDate, startOfLocalDay } from "../core/reports/time.js";

const HOUR = 3_600_000;
/** An hour is rolled this long after it ends, so events still in the queue land first. */
export const ROLL_GRACE_MS = 5 * 60_000;
/** Hours rolled per transaction: bounds how long ingestion for the site may wait on the lock. */
const HOURS_PER_TRANSACTION = 12;

const EVENT_COLUMN: Record<string, string> = {
  page: "e.pathname",
  hostname: "e.hostname",
  referrer: "e.referrer",
  country: "e.country",
  region: "e.region",
  city: "e.city",
  browser: "e.browser",
  os: "e.os",
  device_type: "e.device_type",
  event_name: "e.name",
};

function dimensionValues(sessionAlias: "s", sessionNullable: boolean): string {
  const pairs = [`('', '')`];
  for (const name of ROLLUP_DIMENSIONS) {
    const expr = name in SESSION_DIMENSIONS
      ? sessionNullable ? `coalesce(${sessionAlias}.${SESSION_DIMENSIONS[name]}, '')` : `${sessionAlias}.${SESSION_DIMENSIONS[name]}`
      : EVENT_COLUMN[name];
    pairs.push(`('${name}', ${expr})`);
  }
  return `cross join lateral (values ${pairs.join(", ")}) as d(dimension, value)`;
}

// Same semantics as the raw report SQL (server/core/reports/sql.ts): event metrics over events in
// the bucket; visit metrics over visits that started in it, attributed to every value their events
// carry, looking one day either side of the visit's start.
const EVENT_PART = `select e.classification, d.dimension, d.value,
  count(*) filter (where e.name = 'pageview') as pageviews, count(*) as events, coalesce(sum(e.revenue), 0) as revenue,
  array_agg(distinct e.visitor_id) as visitor_ids
from events e
left join sessions s on s.site_id = e.site_id and s.session_id = e.session_id and s.started_at >= $2::timestamptz - interval '1 day' and s.started_at < $3
${dimensionValues("s", true)}
where e.site_id = $1 and e.ts >= $2 and e.ts < $3
group by 1, 2, 3`;

const SESSION_PART = `with sv as (
  select distinct s.session_id, d.dimension, d.value
  from sessions s
  join events e on e.site_id = s.site_id and e.session_id = s.session_id
    and e.ts >= $2::timestamptz - interval '1 day' and e.ts < $3::timestamptz + interval '1 day'
    and e.ts >= s.started_at - interval '1 day' and e.ts < s.started_at + interval '1 day'
  ${dimensionValues("s", false)}
  where s.site_id = $1 and s.started_at >= $2 and s.started_at < $3
)
select s.classification, sv.dimension, sv.value, count(*) as visits, count(*) filter (where s.is_bounce) as bounces,
  coalesce(sum(s.duration_seconds), 0) as duration, coalesce(sum(s.pageviews), 0) as session_pageviews
from sv join sessions s on s.site_id = $1 and s.session_id = sv.session_id and s.started_at >= $2 and s.started_at < $3
group by 1, 2, 3`;

interface RollupRow {
  classification: number;
  dimension: string;
  value: string;
  pageviews: number;
  events: number;
  revenue: number;
  visitors: VisitorSketch;
  visits: number;
  bounces: number;
  duration: number;
  sessionPageviews: number;
}

function rowFor(rows: Map<string, RollupRow>, classification: number, dimension: string, value: string): RollupRow {
  const key = `${classification}\u0000${dimension}\u0000${value}`;
  let row = rows.get(key);
  if (!row) {
    row = { classification, dimension, value, pageviews: 0, events: 0, revenue: 0, visitors: new VisitorSketch(), visits: 0, bounces: 0, duration: 0, sessionPageviews: 0 };
    rows.set(key, row);
  }
  return row;
}

/** Aggregates raw events and sessions of [start, end) into rollup rows. */
async function aggregateRaw(db: PoolClient, siteId: string, start: number, end: number): Promise<RollupRow[]> {
  const args = [siteId, new Date(start).toISOString(), new Date(end).toISOString()];
  const [events, sessions] = [await db.query(EVENT_PART, args), await db.query(SESSION_PART, args)];
  const rows = new Map<string, RollupRow>();
  for (const r of events.rows) {
    const row = rowFor(rows, Number(r.classification), r.dimension, r.value);
    row.pageviews += Number(r.pageviews);
    row.events += Number(r.events);
    row.revenue += Number(r.revenue);
    row.visitors.merge(VisitorSketch.fromIds(r.visitor_ids as string[]));
  }
  for (const r of sessions.rows) {
    const row = rowFor(rows, Number(r.classification), r.dimension, r.value);
    row.visits += Number(r.visits);
    row.bounces += Number(r.bounces);
    row.duration += Number(r.duration);
    row.sessionPageviews += Number(r.session_pageviews);
  }
  return [...rows.values()];
}

async function writeRows(db: PoolClient, table: "rollups_hourly" | "rollups_daily", column: "hour" | "day", siteId: string, bucket: string, rows: RollupRow[]): Promise<void> {
  await db.query(`delete from ${table} where site_id = $1 and ${column} = $2 and dimension = any($3::text[])`, [siteId, bucket, ["", ...ROLLUP_DIMENSIONS]]);
  if (rows.length === 0) return;
  await db.query(
    `insert into ${table} (site_id, ${column}, classification, dimension, value, pageviews, events, revenue, visitors, visits, bounces, duration_seconds, session_pageviews)
     select $1, $2, * from unnest($3::int2[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::float8[], $9::bytea[], $10::int8[], $11::int8[], $12::int8[], $13::int8[])`,
    [
      siteId,
      bucket,
      rows.map((r) => r.classification),
      rows.map((r) => r.dimension),
      rows.map((r) => r.value),
      rows.map((r) => r.pageviews),
      rows.map((r) => r.events),
      rows.map((r) => r.revenue),
      rows.map((r) => Buffer.from(r.visitors.encode())),
      rows.map((r) => r.visits),
      rows.map((r) => r.bounces),
      rows.map((r) => r.duration),
      rows.map((r) => r.sessionPageviews),
    ],
  );
}

/** A local day from its hourly rollups when it is made of whole UTC hours, else from raw events. */
async function aggregateDay(db: PoolClient, siteId: string, start: number, end: number): Promise<RollupRow[]> {
  if (start % HOUR !== 0 || end % HOUR !== 0) return aggregateRaw(db, siteId, start, end);
  const { rows } = await db.query(
    `select classification, dimension, value, sum(pageviews) as pageviews, sum(events) as events, sum(revenue) as revenue, string_agg(int4send(length(visitors)) || visitors, ''::bytea) as visitors,
       sum(visits) as visits, sum(bounces) as bounces, sum(duration_seconds) as duration, sum(session_pageviews) as session_pageviews
     from rollups_hourly where site_id = $1 and hour >= $2 and hour < $3 group by 1, 2, 3`,
    [siteId, new Date(start).toISOString(), new Date(end).toISOString()],
  );
  return rows.map((r) => {
    const visitors = new VisitorSketch();
    // Length-prefixed sketches in one bytea: pg parses a bytea[] in JavaScript, slowly.
    visitors.mergeConcatenated(r.visitors as Buffer);
    return {
      classification: Number(r.classification), dimension: r.dimension, value: r.value,
      pageviews: Number(r.pageviews), events: Number(r.events), revenue: Number(r.revenue), visitors,
      visits: Number(r.visits), bounces: Number(r.bounces), duration: Number(r.duration), sessionPageviews: Number(r.session_pageviews),
    };
  });
}

/**
 * Rolled hours, besides `dirty`, holding events of visits that started in a dirty hour. A late
 * event marks its visit's start hour dirty; if it changed the visit's entry or exit page, the
 * event rows of every hour the visit has events in (grouped by those pages) changed too.
 */
async function visitFollowers(db: PoolClient, siteId: string, dirty: number[], hourlyUntil: number): Promise<number[]> {
  const first = Math.min(...dirty);
  const last = Math.max(...dirty) + HOUR;
  const { rows } = await db.query<{ hour: Date }>(
    `select distinct date_trunc('hour', e.ts, 'UTC') as hour
     from sessions s
     join events e on e.site_id = s.site_id and e.session_id = s.session_id
       and e.ts >= $2 and e.ts < $3::timestamptz + interval '1 day' and e.ts < $5
       and e.ts >= s.started_at and e.ts < s.started_at + interval '1 day'
     where s.site_id = $1 and s.started_at >= $2 and s.started_at < $3 and date_trunc('hour', s.started_at, 'UTC') = any($4::timestamptz[])`,
    [siteId, new Date(first).toISOString(), new Date(last).toISOString(), dirty.map((h) => new Date(h).toISOString()), new Date(hourlyUntil).toISOString()],
  );
  const known = new Set(dirty);
  return rows.map((r) => new Date(r.hour).getTime()).filter((h) => !known.has(h));
}

export interface RollResult {
  hours: number;
  days: number;
  hourlyUntil: number;
}

/**
 * Rolls what a site needs: dirty hours, then new complete hours from the watermark, a few per
 * transaction, and the local days they complete or change. Returns when caught up (or after
 * `maxHours`).
 */
export async function rollSite(pool: Pool, siteId: string, timeZone: string, now = Date.now(), maxHours = 24 * 100): Promise<RollResult> {
  // The watermark row must exist before any roll, committed, so ingestion can lock it.
  await pool.query(
    `insert into rollup_watermarks (site_id, hourly_until)
     select $1, coalesce(date_trunc('hour', (select min(ts) from events where site_id = $1), 'UTC'), date_trunc('hour', now(), 'UTC'))
     on conflict (site_id) do nothing`,
    [siteId],
  );
  const result: RollResult = { hours: 0, days: 0, hourlyUntil: 0 };
  const rollableUntil = Math.floor((now - ROLL_GRACE_MS) / HOUR) * HOUR;
  while (result.hours < maxHours) {
    const client = await pool.connect();
    try {
      await client.query("begin isolation level read committed");
      const mark = await client.query<{ hourly_until: string }>("select hourly_until from rollup_watermarks where site_id = $1 for no key update", [siteId]);
      let hourlyUntil = new Date(mark.rows[0].hourly_until).getTime();
      const dirty = await client.query<{ hour: string }>("select hour from rollup_dirty where site_id = $1 and hour < $2 order by hour limit $3", [siteId, new Date(hourlyUntil).toISOString(), HOURS_PER_TRANSACTION]);
      const hours = dirty.rows.map((r) => new Date(r.hour).getTime());
      if (hours.length > 0) hours.push(...(await visitFollowers(client, siteId, hours, hourlyUntil)));
      while (hours.length < HOURS_PER_TRANSACTION && hourlyUntil < rollableUntil) {
        hours.push(hourlyUntil);
        hourlyUntil += HOUR;
      }
      if (hours.length === 0) {
        await client.query("commit");
        result.hourlyUntil = hourlyUntil;
        // Caught up: return (the finally releases the client). This was `done = true; continue`,
        // but `continue` skipped the `if (done) break` below and the loop test never changes once
        // nothing is left, so a caught-up site spun here forever (and the rollup tick with it).
        return result;
      }
      const days = new Set<string>();
      for (const hour of hours) {
        await writeRows(client, "rollups_hourly", "hour", siteId, new Date(hour).toISOString(), await aggregateRaw(client, siteId, hour, hour + HOUR));
        days.add(localDate(hour, timeZone));
        days.add(localDate(hour + HOUR - 1, timeZone));
      }
      await client.query("delete from rollup_dirty where site_id = $1 and hour = any($2::timestamptz[])", [siteId, hours.map((h) => new Date(h).toISOString())]);
      // A local day is rolled once all its hours are; its daily rows are rebuilt whenever one changes.
      for (const day of days) {
        const start = startOfLocalDay(day, timeZone);
        const end = startOfLocalDay(addDays(day, 1), timeZone);
        if (end > hourlyUntil) continue;
        await writeRows(client, "rollups_daily", "day", siteId, day, await aggregateDay(client, siteId, start, end));
        result.days++;
      }
      const today = localDate(hourlyUntil, timeZone);
      const dailyUntil = startOfLocalDay(today, timeZone) <= hourlyUntil ? today : addDays(today, -1);
      await client.query("update rollup_watermarks set hourly_until = $2, daily_until = $3, updated_at = now() where site_id = $1", [siteId, new Date(hourlyUntil).toISOString(), dailyUntil]);
      await client.query("commit");
      result.hours += hours.length;
      result.hourlyUntil = hourlyUntil;
    } catch (err) {
      await client.query("rollback").catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }
  return result;
}

/** Sites whose rollups are behind or dirty. */
export async function sitesToRoll(pool: Pool, now = Date.now()): Promise<{ id: string; timezone: string }[]> {
  const rollableUntil = new Date(Math.floor((now - ROLL_GRACE_MS) / HOUR) * HOUR).toISOString();
  const { rows } = await pool.query<{ id: string; timezone: string }>(
    `select s.id, s.timezone from sites s
     left join rollup_watermarks w on w.site_id = s.id
     where (w.site_id is null and exists (select 1 from events e where e.site_id = s.id))
        or w.hourly_until < $1
        or exists (select 1 from rollup_dirty d where d.site_id = s.id)`,
    [rollableUntil],
  );
  return rows;
}

/** Drops rollups of a site from scratch, e.g. after its time zone changed (daily rows are per local day). */
export async function resetRollups(pool: Pool, siteId: string): Promise<void> {
  await pool.query("delete from rollups_daily where site_id = $1", [siteId]);
  await pool.query("delete from rollups_hourly where site_id = $1", [siteId]);
  await pool.query("delete from rollup_dirty where site_id = $1", [siteId]);
  await pool.query("delete from rollup_watermarks where site_id = $1", [siteId]);
}
