// Rolling raw events up into rollups_hourly, rollups_daily and multi-day rollups_blocks.
// Idempotent: a roll replaces the rows of its hour, day or block. Each transaction holds the site's watermark row, which ingestion
// share-locks before marking late hours dirty (see events-store.ts), so no event can slip
// between a roll and the watermark moving past its hour.
import type { Pool, PoolClient } from "pg";
import { ROLLUP_DIMENSIONS, SESSION_DIMENSIONS } from "../core/reports/catalog.js";
import { VisitorSketch } from "../core/reports/sketch.js";
import { blockEnd, blockKey, blocksContaining, dateOfDayNumber, type DayBlock, dayNumber } from "../core/reports/day-blocks.js";
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

/** Where rollup rows go: a table and the columns (besides site_id) that name their bucket. */
interface RollupTarget {
  table: "rollups_hourly" | "rollups_daily" | "rollups_blocks";
  key: Record<string, string | number>;
}

async function writeRows(db: PoolClient, target: RollupTarget, siteId: string, rows: RollupRow[]): Promise<void> {
  const keyColumns = Object.keys(target.key);
  const keyValues = Object.values(target.key);
  const keyMatch = keyColumns.map((column, i) => `${column} = $${i + 2}`).join(" and ");
  const dimensions = `$${keyColumns.length + 2}::text[]`;
  await db.query(`delete from ${target.table} where site_id = $1 and ${keyMatch} and dimension = any(${dimensions})`, [siteId, ...keyValues, ["", ...ROLLUP_DIMENSIONS]]);
  if (rows.length === 0) return;
  const n = keyColumns.length + 1;
  const arrays = ["int2", "text", "text", "int8", "int8", "float8", "bytea", "int8", "int8", "int8", "int8"].map((type, i) => `$${n + 1 + i}::${type}[]`);
  await db.query(
    `insert into ${target.table} (site_id, ${keyColumns.join(", ")}, classification, dimension, value, pageviews, events, revenue, visitors, visits, bounces, duration_seconds, session_pageviews)
     select $1, ${keyColumns.map((_, i) => `$${i + 2}`).join(", ")}, * from unnest(${arrays.join(", ")})`,
    [
      siteId,
      ...keyValues,
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

/** Rollup rows of `from` (a table and a where clause over $1 = site id, then `args`) summed per value. */
async function mergeRows(db: PoolClient, from: string, args: unknown[]): Promise<RollupRow[]> {
  const { rows } = await db.query(
    `select classification, dimension, value, sum(pageviews) as pageviews, sum(events) as events, sum(revenue) as revenue, string_agg(int4send(length(visitors)) || visitors, ''::bytea) as visitors,
       sum(visits) as visits, sum(bounces) as bounces, sum(duration_seconds) as duration, sum(session_pageviews) as session_pageviews
     from ${from} group by 1, 2, 3`,
    args,
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

/** A local day from its hourly rollups when it is made of whole UTC hours, else from raw events. */
async function aggregateDay(db: PoolClient, siteId: string, start: number, end: number): Promise<RollupRow[]> {
  if (start % HOUR !== 0 || end % HOUR !== 0) return aggregateRaw(db, siteId, start, end);
  return mergeRows(db, "rollups_hourly where site_id = $1 and hour >= $2 and hour < $3", [siteId, new Date(start).toISOString(), new Date(end).toISOString()]);
}

/** The blocks holding `days` whose every day is rolled (each ends by `dailyUntil`). */
function completeBlocksHolding(days: Iterable<string>, dailyUntil: string): DayBlock[] {
  const blocks = new Map<string, DayBlock>();
  for (const day of days) {
    for (const block of blocksContaining(day)) if (blockEnd(block) <= dailyUntil) blocks.set(blockKey(block.level, block.start), block);
  }
  return [...blocks.values()];
}

/**
 * Rebuilds `blocks`, smaller ones first: a block is merged from its two halves when both are
 * built, else from its daily rows. Every day of each block must be rolled.
 */
async function rebuildBlocks(db: PoolClient, siteId: string, blocks: DayBlock[]): Promise<number> {
  if (blocks.length === 0) return 0;
  const sorted = [...blocks].sort((a, b) => a.level - b.level || (a.start < b.start ? -1 : 1));
  const { rows: marks } = await db.query<{ level: number; start_day: string }>(
    "select level, start_day::text from rollup_blocks_built where site_id = $1 and start_day >= $2 and start_day < $3",
    [siteId, sorted.reduce((min, b) => (b.start < min ? b.start : min), sorted[0].start), sorted.reduce((max, b) => (blockEnd(b) > max ? blockEnd(b) : max), "")],
  );
  const built = new Set(marks.map((m) => blockKey(Number(m.level), m.start_day)));
  for (const block of sorted) {
    const halves = block.level === 1 ? [] : [{ level: block.level - 1, start: block.start }, { level: block.level - 1, start: dateOfDayNumber(dayNumber(block.start) + 2 ** (block.level - 1)) }];
    const rows = halves.length > 0 && halves.every((h) => built.has(blockKey(h.level, h.start)))
      ? await mergeRows(db, "rollups_blocks where site_id = $1 and level = $2 and start_day = any($3::date[])", [siteId, block.level - 1, halves.map((h) => h.start)])
      : await mergeRows(db, "rollups_daily where site_id = $1 and day >= $2 and day < $3", [siteId, block.start, blockEnd(block)]);
    await writeRows(db, { table: "rollups_blocks", key: { level: block.level, start_day: block.start } }, siteId, rows);
    await db.query(
      "insert into rollup_blocks_built (site_id, level, start_day) values ($1, $2, $3) on conflict (site_id, level, start_day) do update set built_at = now()",
      [siteId, block.level, block.start],
    );
    built.add(blockKey(block.level, block.start));
  }
  return sorted.length;
}

/** Blocks built per rollSite call when catching up on missing ones; the rest wait for the next call. */
const MAX_BLOCKS_PER_ROLL = 512;
/** Missing blocks built per transaction (each holds the site's watermark lock). */
const MISSING_BLOCKS_PER_TRANSACTION = 32;

/**
 * Blocks not built though every day in them is rolled, from the site's first daily rollup to
 * `dailyUntil` (rollups made before blocks existed), smaller ones first; at most
 * MISSING_BLOCKS_PER_TRANSACTION of them.
 */
async function missingBlocks(db: PoolClient, siteId: string, dailyUntil: string): Promise<DayBlock[]> {
  const first = await db.query<{ day: string | null }>("select min(day)::text as day from rollups_daily where site_id = $1 and dimension = ''", [siteId]);
  const firstDay = first.rows[0]?.day;
  if (!firstDay || firstDay >= dailyUntil) return [];
  const { rows } = await db.query<{ level: number; start_day: string }>("select level, start_day::text from rollup_blocks_built where site_id = $1", [siteId]);
  const built = new Set(rows.map((r) => blockKey(Number(r.level), r.start_day)));
  const missing: DayBlock[] = [];
  for (const { level, start } of blocksContaining(firstDay)) {
    for (let block = { level, start }; blockEnd(block) <= dailyUntil; block = { level, start: blockEnd(block) }) {
      if (missing.length >= MISSING_BLOCKS_PER_TRANSACTION) return missing;
      if (!built.has(blockKey(level, block.start))) missing.push(block);
    }
  }
  return missing;
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
  /** Multi-day blocks (re)built. */
  blocks: number;
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
  const result: RollResult = { hours: 0, days: 0, blocks: 0, hourlyUntil: 0 };
  const rollableUntil = Math.floor((now - ROLL_GRACE_MS) / HOUR) * HOUR;
  while (result.hours < maxHours) {
    const client = await pool.connect();
    try {
      await client.query("begin isolation level read committed");
      const mark = await client.query<{ hourly_until: string; daily_until: string | null }>("select hourly_until, daily_until::text from rollup_watermarks where site_id = $1 for no key update", [siteId]);
      let hourlyUntil = new Date(mark.rows[0].hourly_until).getTime();
      const dirty = await client.query<{ hour: string }>("select hour from rollup_dirty where site_id = $1 and hour < $2 order by hour limit $3", [siteId, new Date(hourlyUntil).toISOString(), HOURS_PER_TRANSACTION]);
      const hours = dirty.rows.map((r) => new Date(r.hour).getTime());
      if (hours.length > 0) hours.push(...(await visitFollowers(client, siteId, hours, hourlyUntil)));
      while (hours.length < HOURS_PER_TRANSACTION && hourlyUntil < rollableUntil) {
        hours.push(hourlyUntil);
        hourlyUntil += HOUR;
      }
      if (hours.length === 0) {
        // Hours and days are caught up; blocks missing from complete runs of days (rollups made
        // before blocks existed, or a transaction's worth at a time) are built now.
        const missing = result.blocks < MAX_BLOCKS_PER_ROLL && mark.rows[0].daily_until ? await missingBlocks(client, siteId, mark.rows[0].daily_until) : [];
        if (missing.length > 0) {
          result.blocks += await rebuildBlocks(client, siteId, missing);
          await client.query("commit");
          continue;
        }
        await client.query("commit");
        result.hourlyUntil = hourlyUntil;
        // Caught up: return (the finally releases the client). This was `done = true; continue`,
        // but `continue` skipped the `if (done) break` below and the loop test never changes once
        // nothing is left, so a caught-up site spun here forever (and the rollup tick with it).
        return result;
      }
      const days = new Set<string>();
      for (const hour of hours) {
        await writeRows(client, { table: "rollups_hourly", key: { hour: new Date(hour).toISOString() } }, siteId, await aggregateRaw(client, siteId, hour, hour + HOUR));
        days.add(localDate(hour, timeZone));
        days.add(localDate(hour + HOUR - 1, timeZone));
      }
      await client.query("delete from rollup_dirty where site_id = $1 and hour = any($2::timestamptz[])", [siteId, hours.map((h) => new Date(h).toISOString())]);
      // A local day is rolled once all its hours are; its daily rows are rebuilt whenever one
      // changes, and so are the multi-day blocks holding it.
      const rolledDays: string[] = [];
      for (const day of days) {
        const start = startOfLocalDay(day, timeZone);
        const end = startOfLocalDay(addDays(day, 1), timeZone);
        if (end > hourlyUntil) continue;
        await writeRows(client, { table: "rollups_daily", key: { day } }, siteId, await aggregateDay(client, siteId, start, end));
        rolledDays.push(day);
        result.days++;
      }
      const today = localDate(hourlyUntil, timeZone);
      const dailyUntil = startOfLocalDay(today, timeZone) <= hourlyUntil ? today : addDays(today, -1);
      result.blocks += await rebuildBlocks(client, siteId, completeBlocksHolding(rolledDays, dailyUntil));
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
  await pool.query("delete from rollup_blocks_built where site_id = $1", [siteId]);
  await pool.query("delete from rollups_blocks where site_id = $1", [siteId]);
  await pool.query("delete from rollups_daily where site_id = $1", [siteId]);
  await pool.query("delete from rollups_hourly where site_id = $1", [siteId]);
  await pool.query("delete from rollup_dirty where site_id = $1", [siteId]);
  await pool.query("delete from rollup_watermarks where site_id = $1", [siteId]);
}
