// Reading rollups for the parts of a report's range they cover: whole local days (daily rollups,
// or multi-day blocks of them for runs of days when the report has no time dimension), else
// whole UTC hours (hourly rollups), provided the rollup job has reached them and no late event
// has touched them since. What is left is returned as raw intervals.
import type { Pool } from "pg";
import type { DimensionKind } from "./catalog.js";
import { blockKey, coverDays, type DayBlock } from "./day-blocks.js";
import { Distinct, type GroupMap } from "./groups.js";
import { mentions, type ReportQuery } from "./query.js";
import { VisitorSketch } from "./sketch.js";
import { filterSql, Params } from "./sql.js";
import { addDays, bucketLabel, dayBucketLabel, localDate, startOfLocalDay, type TimeBucket } from "./time.js";

const HOUR = 3_600_000;
const DAY = 86_400_000;

export interface RollupCoverage {
  /** Local dates answered by daily rollups. */
  days: string[];
  /** UTC hour starts answered by hourly rollups. */
  hours: number[];
  /** What raw events must answer, as [start, end) instants. */
  rawIntervals: [number, number][];
  /** Multi-day blocks built around the range: blockKey → when it was built (its version). */
  builtBlocks: Map<string, string>;
  /**
   * When the rollup job last changed the site's hourly and daily rows (every roll transaction
   * moves it), so rows read for the same query and version are the same rows.
   */
  version: string;
}

export async function rollupCoverage(pool: Pool, q: ReportQuery, dims: DimensionKind[]): Promise<RollupCoverage> {
  const { start, end } = q.range;
  // A late event can change its visit's entry or exit page (stored on the session row), and the
  // event rows of every hour the visit has events in are grouped by those. The store marks the
  // visit's start hour dirty; the visit's events lie within a day of it, so for reports by entry
  // or exit page a dirty hour also makes the day after it raw (until the job re-rolls them).
  const byVisitPages = ["entry_page", "exit_page"].some((name) => dims.some((d) => d.name === name) || mentions(q.filter, name));
  const reach = byVisitPages ? DAY : HOUR;
  const tz = q.site.timezone;
  const [marks, dirty, built] = await Promise.all([
    pool.query<{ hourly_until: Date | string; daily_until: string | null; updated_at: string }>(
      "select hourly_until, daily_until::text, updated_at::text from rollup_watermarks where site_id = $1",
      [q.site.id],
    ),
    pool.query<{ hour: Date | string }>("select hour from rollup_dirty where site_id = $1 and hour >= $2 and hour < $3", [q.site.id, new Date(start - reach).toISOString(), new Date(end).toISOString()]),
    // Asked alongside, not after: only reports without a time dimension over 2+ days use them.
    end - start >= 2 * DAY && !dims.some((d) => d.kind === "time")
      ? pool.query<{ level: number; start_day: string; built_at: string }>(
          "select level, start_day::text, built_at::text from rollup_blocks_built where site_id = $1 and start_day >= $2 and start_day <= $3",
          [q.site.id, localDate(start, tz), localDate(end, tz)],
        )
      : { rows: [] },
  ]);
  const hourlyUntil = marks.rows[0] ? new Date(marks.rows[0].hourly_until).getTime() : -Infinity;
  const dailyUntil = marks.rows[0]?.daily_until ?? null;
  const dirtyHours = new Set<number>();
  for (const row of dirty.rows) {
    const hour = new Date(row.hour).getTime();
    for (let h = hour; h < hour + reach; h += HOUR) dirtyHours.add(h);
  }
  const useDaily = !dims.some((d) => d.kind === "time" && d.name === "hour");
  // An hourly rollup row is labelled with one time bucket, so it may answer only an hour that
  // lies in one: in a zone like Asia/Kolkata (+5:30) every UTC hour straddles two local hours,
  // and the UTC hour around local midnight straddles two days (and weeks, and months).
  const timeDim = dims.find((d) => d.kind === "time")?.name as TimeBucket | undefined;
  const withinOneBucket = (hour: number) => !timeDim || bucketLabel(hour, timeDim, tz) === bucketLabel(hour + HOUR - 1, timeDim, tz);
  const coverage: RollupCoverage = {
    days: [],
    hours: [],
    rawIntervals: [],
    builtBlocks: new Map(built.rows.map((r) => [blockKey(Number(r.level), r.start_day), r.built_at])),
    version: marks.rows[0]?.updated_at ?? "",
  };
  const pushRaw = (a: number, b: number) => {
    const last = coverage.rawIntervals[coverage.rawIntervals.length - 1];
    if (last && last[1] === a) last[1] = b;
    else coverage.rawIntervals.push([a, b]);
  };
  const dirtyBetween = (a: number, b: number) => {
    for (let h = Math.floor(a / HOUR) * HOUR; h < b; h += HOUR) if (dirtyHours.has(h)) return true;
    return false;
  };
  let t = start;
  while (t < end) {
    if (useDaily && dailyUntil !== null) {
      const date = localDate(t, tz);
      const dayStart = startOfLocalDay(date, tz);
      const dayEnd = startOfLocalDay(addDays(date, 1), tz);
      if (dayStart === t && dayEnd <= end && date < dailyUntil && !dirtyBetween(dayStart, dayEnd)) {
        coverage.days.push(date);
        t = dayEnd;
        continue;
      }
    }
    if (t % HOUR === 0 && t + HOUR <= end && t + HOUR <= hourlyUntil && !dirtyHours.has(t) && withinOneBucket(t)) {
      coverage.hours.push(t);
      t += HOUR;
      continue;
    }
    const next = Math.min(end, Math.floor(t / HOUR) * HOUR + HOUR);
    pushRaw(t, next);
    t = next;
  }
  return coverage;
}

const CLASSIFICATIONS = { USER: [1], BOT: [2], ALL: [1, 2] } as const;

/** Reads the covered parts into `groups`; returns how many multi-day blocks it read. */
export async function readRollups(
  pool: Pool,
  q: ReportQuery,
  dims: DimensionKind[],
  dimension: string,
  coverage: RollupCoverage,
  groups: GroupMap,
  need: { events: boolean; sessions: boolean; sketches?: boolean },
  cache?: RollupRowCache,
): Promise<number> {
  const timeDim = dims.find((d) => d.kind === "time")?.name as TimeBucket | undefined;
  const withVisitors = need.events && need.sketches !== false;
  // `bucket` selects the rows of the covered buckets; `column` labels them when grouping by time.
  const read = async (table: "rollups_daily" | "rollups_hourly" | "rollups_blocks", bucket: (p: Params) => string, column?: "day" | "hour") => {
    const p = new Params();
    const site = p.add(q.site.id);
    const dim = p.add(dimension);
    const classes = p.add(CLASSIFICATIONS[q.classification]);
    const where = dimension === "" ? "true" : filterSql(q.filter, "rollup", q, p);
    const bucketSelect = timeDim && column ? `r.${column}${column === "day" ? "::text" : ""} as bucket, ` : "";
    const groupBy = [timeDim && column ? `r.${column}` : "", "r.value"].filter(Boolean).join(", ");
    const text = `select ${bucketSelect}r.value, sum(r.pageviews) as pageviews, sum(r.events) as events, sum(r.revenue) as revenue,
  sum(r.visits) as visits, sum(r.bounces) as bounces, sum(r.duration_seconds) as duration, sum(r.session_pageviews) as session_pageviews
  ${withVisitors ? ", string_agg(int4send(length(r.visitors)) || r.visitors, ''::bytea) as visitors" : ""}
from ${table} r
where r.site_id = ${site} and r.dimension = ${dim} and ${bucket(p)} and r.classification = any(${classes}::int2[]) and ${where}
group by ${groupBy}`;
    // Hourly and daily rows change only in the rollup job's transactions, which move the site's
    // version; a block changes only when rebuilt, which moves its own. Rows are kept by query and
    // those versions, with their sketches merged.
    const version = table === "rollups_blocks" ? blockVersions : coverage.version;
    const cacheKey = `${text}\n${JSON.stringify(p.values)}\n${version}`;
    let rows = cache && version !== "" ? cache.get(cacheKey) : undefined;
    if (!rows) {
      rows = ((await pool.query(text, p.values)).rows as Record<string, unknown>[]).map((row) => decodeRow(row, withVisitors));
      if (cache && version !== "") cache.set(cacheKey, rows, rows.reduce((n, r) => n + 100 + (r.visitors?.byteSize() ?? 0), 0));
    }
    for (const row of rows) {
      const label = !timeDim ? "" : column === "day" ? dayBucketLabel(String(row.bucket), timeDim as Exclude<TimeBucket, "hour">) : bucketLabel(new Date(row.bucket as string).getTime(), timeDim, q.site.timezone);
      // A row may hold only visits (a visit that started in the bucket and saw the value later)
      // or only events; it makes a group only when it has what the report counts, as raw rows do.
      if (!((need.events && row.events > 0) || (need.sessions && row.visits > 0))) continue;
      const key = dims.map((d) => (d.kind === "time" ? label : row.value));
      const group = groups.get(key);
      // A group copies a sketch before merging into it, so a kept row's sketch is never changed.
      if (need.events) group.addEvents(row.pageviews, row.events, row.revenue, Distinct.ofSketch(row.visitors ?? new VisitorSketch()), Distinct.ofSketch(new VisitorSketch()));
      if (need.sessions) group.addSessions(row.visits, row.bounces, row.duration, row.sessionPageviews);
    }
  };
  // Without a time dimension, runs of days are read from multi-day blocks where they are built.
  const { days, blocks } = !timeDim && coverage.days.length >= 2
    ? coverDays(coverage.days, (b) => coverage.builtBlocks.has(blockKey(b.level, b.start)))
    : { days: coverage.days, blocks: [] as DayBlock[] };
  const blockVersions = blocks.map((b) => `${blockKey(b.level, b.start)}@${coverage.builtBlocks.get(blockKey(b.level, b.start))}`).join(",");
  await Promise.all([
    days.length > 0 && read("rollups_daily", (p) => `r.day = any(${p.add(days)}::date[])`, "day"),
    coverage.hours.length > 0 && read("rollups_hourly", (p) => `r.hour = any(${p.add(coverage.hours.map((h) => new Date(h).toISOString()))}::timestamptz[])`, "hour"),
    blocks.length > 0 &&
      read("rollups_blocks", (p) => `(r.level, r.start_day) in (select * from unnest(${p.add(blocks.map((b) => b.level))}::int2[], ${p.add(blocks.map((b) => b.start))}::date[]))`),
  ]);
  return blocks.length;
}

/** One summed rollup row as a report uses it: numbers parsed, visitor sketches merged. */
interface SummedRow {
  bucket: unknown;
  value: string;
  pageviews: number;
  events: number;
  revenue: number;
  visits: number;
  bounces: number;
  duration: number;
  sessionPageviews: number;
  visitors: VisitorSketch | undefined;
}

function decodeRow(row: Record<string, unknown>, withVisitors: boolean): SummedRow {
  let visitors: VisitorSketch | undefined;
  if (withVisitors) {
    visitors = new VisitorSketch();
    // The group's sketches, each after its length as 4 bytes: one bytea, which pg turns into a
    // Buffer natively (a bytea[] went through a JavaScript array parser at ~200 ms a megabyte).
    visitors.mergeConcatenated(row.visitors as Buffer);
  }
  return {
    bucket: row.bucket,
    value: String(row.value),
    pageviews: Number(row.pageviews),
    events: Number(row.events),
    revenue: Number(row.revenue),
    visits: Number(row.visits),
    bounces: Number(row.bounces),
    duration: Number(row.duration),
    sessionPageviews: Number(row.session_pageviews),
    visitors,
  };
}

/**
 * Rollup rows already read, by query and versions, up to a byte budget (least recently used go
 * first). Dashboards ask the same questions again and again, while a site's rollups change once
 * per roll (about hourly) and the blocks behind a long range about daily; visitor sketches are
 * most of what a report reads, so this saves Postgres detoasting and sending megabytes per call.
 * One per ReportEngine.
 */
export class RollupRowCache {
  private readonly entries = new Map<string, { rows: SummedRow[]; bytes: number }>();
  private bytes = 0;
  constructor(private readonly maxBytes: number) {}

  get(key: string): SummedRow[] | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    // Most recently used last.
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.rows;
  }

  set(key: string, rows: SummedRow[], bytes: number): void {
    if (bytes > this.maxBytes / 4) return;
    const old = this.entries.get(key);
    if (old) {
      this.bytes -= old.bytes;
      this.entries.delete(key);
    }
    this.entries.set(key, { rows, bytes });
    this.bytes += bytes;
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= entry.bytes;
    }
  }
}
