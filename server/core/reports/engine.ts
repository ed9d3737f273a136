// Running a report: plan → choose sources → run → merge → order and page. Whole days and hours
// that rollups cover are read from them; everything else from raw events; the merge makes the
// answer equal to the raw-event computation (distinct visitors exact, or flagged approximate
// once a sketch had to switch to HyperLogLog).
import type { Pool } from "pg";
import { type DimensionKind, type FilterNode, type MetricName, ROLLUP_DIMENSIONS, SESSION_DIMENSIONS, SESSION_METRICS } from "./catalog.js";
import { Distinct, type GroupAggregate, GroupMap } from "./groups.js";
import { conditionsOf, type ReportQuery } from "./query.js";
import { type RollupCoverage, rollupCoverage, readRollups, RollupRowCache } from "./rollup-read.js";
import { VisitorSketch } from "./sketch.js";
import { eventMetricsSql, sessionMetricsSql } from "./sql.js";

export interface ReportRowResult {
  dimensions: Record<string, string>;
  metrics: Record<string, number>;
}

export interface ReportResult {
  rows: ReportRowResult[];
  totalRows: number;
  totals: Record<string, number>;
  approximate: boolean;
  /** Which sources answered, for diagnostics and tests. */
  sources: { rollupDays: number; rollupHours: number; rollupBlocks: number; rawIntervals: number };
}

export interface EngineOptions {
  /** Read rollups where they cover the range (off: raw events only, the reference answer). */
  rollups: boolean;
}

const EVENT_METRICS: ReadonlySet<MetricName> = new Set(["pageviews", "events", "visitors", "conversions", "conversion_rate", "revenue"]);
/** Metrics computed from visitor sketches. */
const VISITOR_METRICS: ReadonlySet<MetricName> = new Set(["visitors", "conversions", "conversion_rate"]);

interface Collected {
  groups: GroupMap;
  sources: ReportResult["sources"];
  /** What rollups covered, when they were asked. */
  coverage?: RollupCoverage;
}

/** Bytes of rollup rows an engine keeps for repeated reports. */
const ROLLUP_ROW_CACHE_BYTES = 64 * 2 ** 20;

export class ReportEngine {
  private readonly rollupRows = new RollupRowCache(ROLLUP_ROW_CACHE_BYTES);

  /** `pool` resolves to the process's pg pool (the ORM's), on first use. */
  constructor(private readonly pool: () => Promise<Pool>, private readonly options: EngineOptions) {}

  /**
   * `totals: false` leaves the totals out (they come back as zeros) when the caller shows only
   * rows, as a time series does: totals over a range cost as much as the rows again. Reports by
   * goal collect them anyway, since conversion rates divide by them.
   */
  async run(q: ReportQuery, options: { totals?: boolean } = {}): Promise<ReportResult> {
    // Without dimensions the one row is the totals: collecting them twice doubled the work.
    if (q.dimensions.length === 0) {
      const only = await this.collect(q, []);
      return this.answer(q, only, only);
    }
    if (options.totals === false && !q.dimensions.some((d) => d.kind === "goal")) return this.answer(q, await this.collect(q, q.dimensions), undefined);
    // Totals over the same filter without dimensions; with a goal dimension, over all traffic,
    // which is what goal conversion rates divide by.
    const totals = this.collect({ ...q, dimensions: [] }, []);
    const sortMetrics = this.sortedWithoutSketches(q);
    if (sortMetrics) {
      const [main, totalsRun] = await Promise.all([this.collect(q, q.dimensions, { sketches: false }), totals]);
      if (totalsRun.groups.values()[0]?.approximate) return this.answerReadingPageSketches(q, sortMetrics, main, totalsRun);
      // A small site: whether a row is approximate needs its sketch, so every row's is read after
      // all (the totals are kept; only the sketch-less rows were read for nothing, and they are cheap).
      return this.answer(q, await this.collect(q, q.dimensions), totalsRun);
    }
    const [main, totalsRun] = await Promise.all([this.collect(q, q.dimensions), totals]);
    return this.answer(q, main, totalsRun);
  }

  private answer(q: ReportQuery, main: Collected, totalsRun: Collected | undefined): ReportResult {
    const goalDim = q.dimensions.some((d) => d.kind === "goal");
    const totalGroup = totalsRun?.groups.values()[0];
    const baseVisitors = goalDim ? (totalGroup?.visitors.count() ?? 0) : undefined;
    const rows = main.groups.values().map((g) => ({ group: g, metrics: metricValues(q.metrics, g, baseVisitors) }));
    sortRows(rows, q);
    const page = rows.slice(q.offset, q.offset + q.limit);
    const totals = totalGroup ? metricValues(q.metrics, totalGroup) : Object.fromEntries(q.metrics.map((m) => [m, 0]));
    return {
      rows: page.map(({ group, metrics }) => ({ dimensions: Object.fromEntries(q.dimensions.map((d, i) => [d.name, group.key[i]])), metrics })),
      totalRows: rows.length,
      totals,
      approximate: rows.some((r) => r.group.approximate) || (totalGroup?.approximate ?? false),
      sources: main.sources,
    };
  }

  /**
   * For a report by one rollup dimension sorted by metrics other than visitor counts (top pages by
   * pageviews), the metrics it is sorted by; otherwise undefined. Such a report can read visitor
   * sketches, the bulk of what rollups hold (thousands of pages × days of them), only for the rows
   * on the page.
   */
  private sortedWithoutSketches(q: ReportQuery): MetricName[] | undefined {
    const [dim] = q.dimensions;
    if (q.dimensions.length !== 1 || (dim.kind !== "event" && dim.kind !== "session")) return undefined;
    const keys = q.orderBy.length > 0 ? q.orderBy : [{ kind: "metric" as const, name: q.metrics[0], desc: true }];
    if (keys.some((k) => k.kind === "metric" && VISITOR_METRICS.has(k.name as MetricName))) return undefined;
    if (!q.metrics.some((m) => EVENT_METRICS.has(m))) return undefined;
    const needSessions = q.metrics.some((m) => SESSION_METRICS.has(m));
    if (!this.options.rollups || q.site.rollups === false || rollupDimensionFor(q, q.dimensions, needSessions) !== dim.name) return undefined;
    return keys.flatMap((k) => (k.kind === "metric" ? [k.name as MetricName] : []));
  }

  /**
   * `answer` when the totals are approximate (so the response is, whatever the rows are), from
   * rows collected without sketches: rows are sorted on the same sums as `answer` would, then the
   * page's rows are read again with their sketches, from the same rollup rows and raw events.
   */
  private async answerReadingPageSketches(q: ReportQuery, sortMetrics: MetricName[], main: Collected, totalsRun: Collected): Promise<ReportResult> {
    const [dim] = q.dimensions;
    const rows = main.groups.values().map((g) => ({ group: g, metrics: metricValues(sortMetrics, g) }));
    sortRows(rows, q);
    const page = rows.slice(q.offset, q.offset + q.limit);
    if (page.length > 0) {
      // The page's groups again, with sketches: their visitors replace the sketch-less ones.
      const onPage: FilterNode = { op: "condition", condition: { dimension: dim, operator: "in", values: page.map((r) => r.group.key[0]) } };
      // Same range and dimension, so the same rollup coverage: it is not asked for again.
      const withSketches = await this.collect({ ...q, filter: q.filter ? { op: "and", children: [q.filter, onPage] } : onPage }, q.dimensions, { coverage: main.coverage });
      // Rows only grow between the two reads; should one be missing anyway, every row is read with its sketch.
      if (page.some(({ group }) => !withSketches.groups.find(group.key))) return this.answer(q, await this.collect(q, q.dimensions), totalsRun);
      for (const { group } of page) {
        const full = withSketches.groups.find(group.key)!;
        group.visitors = full.visitors;
        group.conversions = full.conversions;
      }
    }
    return {
      rows: page.map(({ group }) => ({ dimensions: { [dim.name]: group.key[0] }, metrics: metricValues(q.metrics, group) })),
      totalRows: rows.length,
      totals: metricValues(q.metrics, totalsRun.groups.values()[0]),
      approximate: true,
      sources: main.sources,
    };
  }

  /**
   * All groups of `dims` over the query's range, from rollups where possible and raw events
   * elsewhere. `sketches: false` leaves out the rollups' visitor sketches (visitor counts are then
   * incomplete: for sorting by other metrics only).
   */
  async collect(q: ReportQuery, dims: DimensionKind[], options: { sketches?: boolean; coverage?: RollupCoverage } = {}): Promise<Collected> {
    const groups = new GroupMap();
    // Only what the report counts makes groups: reading events for a goal dimension when only
    // visit metrics were asked gave goal rows of zeros (goals completed by visits started earlier).
    const needEvents = q.metrics.some((m) => EVENT_METRICS.has(m));
    const needSessions = q.metrics.some((m) => SESSION_METRICS.has(m));
    const rollupDimension = this.options.rollups && q.site.rollups !== false ? rollupDimensionFor(q, dims, needSessions) : undefined;
    let intervals: [number, number][] = [[q.range.start, q.range.end]];
    let coverage: RollupCoverage | undefined;
    let rollupBlocks = 0;
    if (rollupDimension !== undefined) {
      const pool = await this.pool();
      coverage = options.coverage ?? (await rollupCoverage(pool, q, dims));
      rollupBlocks = await readRollups(pool, q, dims, rollupDimension, coverage, groups, { events: needEvents, sessions: needSessions, sketches: options.sketches !== false }, this.rollupRows);
      intervals = coverage.rawIntervals;
    }
    // With rollups in the mix, raw parts bring visitor ids so they merge exactly with sketches.
    const distinct = rollupDimension !== undefined ? "ids" : "count";
    await Promise.all(
      intervals.map(async ([start, end]) => {
        const work: Promise<void>[] = [];
        if (needEvents) work.push(this.rawEvents(q, dims, start, end, distinct, groups));
        if (needSessions) work.push(this.rawSessions(q, dims, start, end, groups));
        await Promise.all(work);
      }),
    );
    if (dims.length === 0 && groups.values().length === 0) groups.get([]);
    return {
      groups,
      sources: { rollupDays: coverage?.days.length ?? 0, rollupHours: coverage?.hours.length ?? 0, rollupBlocks, rawIntervals: intervals.length },
      coverage,
    };
  }

  private async rawEvents(q: ReportQuery, dims: DimensionKind[], start: number, end: number, distinct: "count" | "ids", groups: GroupMap): Promise<void> {
    const sql = eventMetricsSql(q, { dims, start, end, distinct });
    const { rows } = await (await this.pool()).query(sql.text, sql.values);
    for (const row of rows) {
      const key = dims.map((_, i) => String(row[`d${i}`] ?? ""));
      const visitors = distinct === "count" ? Distinct.ofCount(Number(row.visitors)) : Distinct.ofSketch(VisitorSketch.fromIds(row.visitor_ids ?? []));
      const conversions = distinct === "count" ? Distinct.ofCount(Number(row.conversions)) : Distinct.ofSketch(VisitorSketch.fromIds(row.conversion_ids ?? []));
      groups.get(key).addEvents(Number(row.pageviews), Number(row.events), Number(row.revenue), visitors, conversions);
    }
  }

  private async rawSessions(q: ReportQuery, dims: DimensionKind[], start: number, end: number, groups: GroupMap): Promise<void> {
    const sql = sessionMetricsSql(q, { dims, start, end });
    const { rows } = await (await this.pool()).query(sql.text, sql.values);
    for (const row of rows) {
      const key = dims.map((_, i) => String(row[`d${i}`] ?? ""));
      groups.get(key).addSessions(Number(row.visits), Number(row.bounces), Number(row.duration), Number(row.session_pageviews));
    }
  }
}

export function metricValues(metrics: MetricName[], group: GroupAggregate, baseVisitors?: number): Record<string, number> {
  return Object.fromEntries(metrics.map((m) => [m, group.value(m, baseVisitors)]));
}

function sortRows(rows: { group: GroupAggregate; metrics: Record<string, number> }[], q: ReportQuery): void {
  const keys = q.orderBy.length > 0 ? q.orderBy : [{ kind: "metric" as const, name: q.metrics[0], desc: true }];
  const dimIndex = new Map(q.dimensions.map((d, i) => [d.name, i]));
  rows.sort((a, b) => {
    for (const key of keys) {
      const diff = key.kind === "metric"
        ? a.metrics[key.name] - b.metrics[key.name]
        : a.group.key[dimIndex.get(key.name)!].localeCompare(b.group.key[dimIndex.get(key.name)!]);
      if (diff !== 0) return key.desc ? -diff : diff;
    }
    // Ties are broken by the dimension values, so pages never shuffle between calls.
    for (let i = 0; i < a.group.key.length; i++) {
      const diff = a.group.key[i] < b.group.key[i] ? -1 : a.group.key[i] > b.group.key[i] ? 1 : 0;
      if (diff !== 0) return diff;
    }
    return 0;
  });
}

/**
 * The rollup dimension that can answer this query ('' for the site total), or undefined when
 * only raw events can: rollups keep one dimension at a time, per hour or local day.
 */
export function rollupDimensionFor(q: ReportQuery, dims: DimensionKind[], needSessions: boolean): string | undefined {
  const timeDims = dims.filter((d) => d.kind === "time");
  const others = dims.filter((d) => d.kind !== "time");
  if (timeDims.length > 1 || others.length > 1) return undefined;
  if (timeDims[0] && !["hour", "day", "week", "month"].includes(timeDims[0].name)) return undefined;
  if (others[0] && !(ROLLUP_DIMENSIONS as readonly string[]).includes(others[0].name)) return undefined;
  // Goal conversions and goal-valued revenue need goal matching over raw events.
  if (q.metrics.some((m) => m === "conversions" || m === "conversion_rate")) return undefined;
  if (q.metrics.includes("revenue") && q.goals.some((g) => g.valueNumeric !== null)) return undefined;
  const conditions = conditionsOf(q.filter).map((n) => (n as Extract<FilterNode, { op: "condition" }>).condition);
  const filtered = new Set(conditions.map((c) => c.dimension.name));
  if (filtered.size > 1) return undefined;
  const filterDim = [...filtered][0];
  if (filterDim !== undefined && !(ROLLUP_DIMENSIONS as readonly string[]).includes(filterDim)) return undefined;
  if (others[0] && filterDim !== undefined && filterDim !== others[0].name) return undefined;
  const dimensionName = others[0]?.name ?? filterDim ?? "";
  // Without grouping by it, a filter matching several values of an event dimension would count a
  // visit once per value: visits are not additive across values of page, event_name, hostname…
  if (needSessions && !others[0] && filterDim !== undefined && !(filterDim in SESSION_DIMENSIONS)) {
    const single = conditions.length === 1 && conditions[0].operator === "equals" && q.filter?.op === "condition";
    if (!single) return undefined;
  }
  return dimensionName;
}
