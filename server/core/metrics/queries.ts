// Queries over defined metrics and KPIs (002 §3): time series grouped by tags, single aggregates,
// latest values and series search. Each reads as plan → run → assemble: the request is checked
// and planned (query-plan.ts), each metric is one parameterised SQL query (sql/), and derived KPIs
// are evaluated per group and bucket from their operands' results (formula.ts).
import { randomBytes } from "node:crypto";
import type { Pool } from "pg";
import { decodePageToken, encodePageToken, pageSize } from "../page-token.js";
import { InvalidArgumentError, NotFoundError } from "../errors.js";
import type { AggregationName } from "../management/metric-definitions.js";
import type { MetricCatalog, SiteCatalog } from "./catalog.js";
import { evaluateFormula, type Formula, formulaMetrics, parseFormula } from "./formula.js";
import type { MetricDefinitionView } from "./points.js";
import {
  bucketingOf, checkAggregation, checkBucketCount, checkFilters, checkGroupBy, checkMetricNames, defaultGranularity, fixedBucketStarts, type Bucketing,
  type GranularityName, rollupsFit, type TagFilter, type TagFilterInput,
} from "./query-plan.js";
import { ResultCache } from "./result-cache.js";
import { calendarBucketStarts, localDayBounds } from "./sql/bucket-starts.js";
import { newestReceipt } from "./sql/data-freshness.js";
import { latestValues, type LatestValue } from "./sql/latest-values.js";
import { metricValues } from "./sql/metric-values.js";
import { searchSeries as searchSeriesSql } from "./sql/search-series.js";

/** What a metric query needs of its site. */
export interface QuerySite {
  id: string;
  organisationId: string;
  timezone: string;
}

export interface TimeSeriesInput {
  metrics: string[];
  /** Epoch ms; both required, `end` included. */
  start: number | undefined;
  end: number | undefined;
  granularity: GranularityName | undefined;
  groupBy: string[];
  filters: TagFilterInput[];
  aggregation: string | undefined;
  maxStalenessSeconds: number | undefined;
  forceFresh: boolean;
}

export interface TimeSeriesGroupResult {
  key: Record<string, string>;
  /** Every bucket of the window, in time order; a derived KPI is absent where it is undefined. */
  buckets: { time: number; values: Record<string, number> }[];
}

export interface TimeSeriesResult {
  queryId: string;
  calculatedAt: number;
  dataFreshnessSeconds: number;
  groups: TimeSeriesGroupResult[];
}

export interface AggregateInput {
  metric: string;
  /** A half-open window of instants, or days in the site's time zone; exactly one. */
  timeRange: { start: number | undefined; end: number | undefined } | undefined;
  dateRange: { startDate: string; endDate: string } | undefined;
  filters: TagFilterInput[];
  aggregation: string | undefined;
}

export interface AggregateResult {
  /** NaN when a derived KPI is undefined over the window (a division by zero). */
  value: number;
  calculatedAt: number;
}

export interface InstantInput {
  metrics: string[];
  filters: TagFilterInput[];
}

export interface SearchSeriesInput {
  metric: string;
  filters: TagFilterInput[];
  pageSize: number;
  pageToken: string;
}

export interface SeriesResult {
  id: string;
  metric: string;
  tags: Record<string, string>;
  lastTime: number | null;
}

export interface MetricQueryDeps {
  pool: () => Promise<Pool>;
  catalog: MetricCatalog;
  now?: () => number;
}

/** Per group (JSON of its key values) and bucket start: the value, null where undefined. */
type Computed = Map<string, { group: string[]; values: Map<number, number | null> }>;

interface Window {
  from: number;
  to: number;
  bucketing: Bucketing;
  buckets: number[];
  groupBy: string[];
  filters: TagFilter[];
  aggregation: AggregationName | undefined;
}

const MAX_FORMULA_DEPTH = 5;
const MAX_INSTANT_VALUES = 10_000;
const MAX_DATE_RANGE_DAYS = 3660;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

function isRegexError(err: unknown): boolean {
  return (err as { code?: string }).code === "2201B";
}

export class MetricQueryEngine {
  private readonly cache = new ResultCache<TimeSeriesResult>();
  private readonly now: () => number;

  constructor(private readonly deps: MetricQueryDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Which of `names` are defined metrics or KPIs of the site (for routing web metrics elsewhere). */
  async definedNames(site: QuerySite, names: readonly string[]): Promise<Set<string>> {
    const catalog = await this.deps.catalog.resolve(site.organisationId, site.id, names);
    return new Set(names.filter((name) => catalog.definitions.has(name)));
  }

  async timeSeries(site: QuerySite, input: TimeSeriesInput): Promise<TimeSeriesResult> {
    const metrics = checkMetricNames(input.metrics);
    if (input.start === undefined) throw new InvalidArgumentError("start", "is required");
    if (input.end === undefined) throw new InvalidArgumentError("end", "is required");
    if (input.end < input.start) throw new InvalidArgumentError("end", "must not be before start");
    const from = input.start;
    const to = input.end + 1; // end is included; timestamps are stored to the millisecond
    const groupBy = checkGroupBy(input.groupBy);
    const filters = checkFilters(input.filters);
    const aggregation = checkAggregation(input.aggregation);
    if (input.maxStalenessSeconds !== undefined && input.maxStalenessSeconds < 0) throw new InvalidArgumentError("max_staleness_seconds", "must not be negative");
    const bucketing = bucketingOf(input.granularity ?? defaultGranularity(from, to), site.timezone);
    checkBucketCount(bucketing, from, to);

    const catalog = await this.deps.catalog.resolve(site.organisationId, site.id, metrics);
    const definitions = metrics.map((name, i) => this.checkFormulas(catalog, name, `metrics[${i}]`));
    this.checkTagKeys(catalog, definitions, groupBy, filters);

    const key = JSON.stringify([site.id, metrics, from, to, bucketing, groupBy, filters, aggregation ?? ""]);
    const now = this.now();
    if (!input.forceFresh && input.maxStalenessSeconds) {
      const cached = this.cache.get(key, input.maxStalenessSeconds * 1000, now);
      if (cached) {
        // The answer is as old as the cache entry, plus however stale its data already was.
        const age = Math.floor((now - cached.calculatedAt) / 1000);
        return { ...cached.result, dataFreshnessSeconds: cached.result.dataFreshnessSeconds + age };
      }
    }

    const pool = await this.deps.pool();
    const buckets = bucketing.kind === "fixed" ? fixedBucketStarts(bucketing.widthMs, from, to) : bucketing.kind === "calendar" ? await calendarBucketStarts(pool, bucketing.unit, bucketing.timeZone, from, to) : [from];
    const window: Window = { from, to, bucketing, buckets, groupBy, filters, aggregation };
    const calculatedAt = this.now();
    const memo = new Map<string, Promise<Computed>>();
    const [computed, newest] = await Promise.all([
      Promise.all(metrics.map((name, i) => this.compute(pool, catalog, site, window, name, `metrics[${i}]`, memo, 0))),
      newestReceipt(pool, site.id, this.plainOperands(catalog, metrics)),
    ]);

    const groups = new Map<string, string[]>();
    for (const result of computed) for (const [k, { group }] of result) groups.set(k, group);
    if (groupBy.length === 0 && groups.size === 0) groups.set("[]", []);
    const ordered = [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const result: TimeSeriesResult = {
      queryId: `q_${randomBytes(8).toString("hex")}`,
      calculatedAt,
      dataFreshnessSeconds: newest === null ? 0 : Math.max(0, Math.floor((calculatedAt - newest) / 1000)),
      groups: ordered.map(([k, group]) => ({
        key: Object.fromEntries(groupBy.map((name, i) => [name, group[i]])),
        buckets: buckets.map((time) => {
          const values: Record<string, number> = {};
          metrics.forEach((name, m) => {
            const value = computed[m].get(k)?.values.get(time);
            if (value === undefined) {
              // No points in this bucket: 0, or for a KPI its formula over empty operands.
              const empty = this.emptyValue(catalog, name);
              if (empty !== null) values[name] = empty;
            } else if (value !== null) values[name] = value;
          });
          return { time, values };
        }),
      })),
    };
    this.cache.set(key, result, calculatedAt);
    return result;
  }

  async aggregate(site: QuerySite, input: AggregateInput): Promise<AggregateResult> {
    const [metric] = checkMetricNames(input.metric === "" ? [] : [input.metric], "metric");
    const filters = checkFilters(input.filters);
    const aggregation = checkAggregation(input.aggregation);
    if (input.timeRange && input.dateRange) throw new InvalidArgumentError("time_range", "give time_range or date_range, not both");
    if (!input.timeRange && !input.dateRange) throw new InvalidArgumentError("time_range", "is required (or date_range)");
    const pool = await this.deps.pool();
    let from: number;
    let to: number;
    if (input.timeRange) {
      if (input.timeRange.start === undefined) throw new InvalidArgumentError("time_range.start", "is required");
      if (input.timeRange.end === undefined) throw new InvalidArgumentError("time_range.end", "is required");
      if (input.timeRange.end <= input.timeRange.start) throw new InvalidArgumentError("time_range.end", "must be after start");
      ({ start: from, end: to } = input.timeRange as { start: number; end: number });
    } else {
      const { startDate, endDate } = input.dateRange!;
      if (!DATE.test(startDate) || Number.isNaN(Date.parse(startDate))) throw new InvalidArgumentError("date_range.start_date", "must be a date as YYYY-MM-DD");
      if (!DATE.test(endDate) || Number.isNaN(Date.parse(endDate))) throw new InvalidArgumentError("date_range.end_date", "must be a date as YYYY-MM-DD");
      if (endDate < startDate) throw new InvalidArgumentError("date_range.end_date", "must not be before start_date");
      if ((Date.parse(endDate) - Date.parse(startDate)) / 86_400_000 > MAX_DATE_RANGE_DAYS) throw new InvalidArgumentError("date_range", `must span at most ${MAX_DATE_RANGE_DAYS} days`);
      ({ from, to } = await localDayBounds(pool, site.timezone, startDate, endDate));
    }
    const catalog = await this.deps.catalog.resolve(site.organisationId, site.id, [metric]);
    const definition = this.checkFormulas(catalog, metric, "metric");
    this.checkTagKeys(catalog, [definition], [], filters);
    const window: Window = { from, to, bucketing: { kind: "whole" }, buckets: [from], groupBy: [], filters, aggregation };
    const calculatedAt = this.now();
    const computed = await this.compute(pool, catalog, site, window, metric, "metric", new Map(), 0);
    const value = computed.get("[]")?.values.get(from);
    const result = value === undefined ? this.emptyValue(catalog, metric) : value;
    return { value: result === null ? Number.NaN : result, calculatedAt };
  }

  async instant(site: QuerySite, input: InstantInput): Promise<{ values: LatestValue[] }> {
    const metrics = checkMetricNames(input.metrics);
    const filters = checkFilters(input.filters);
    const catalog = await this.deps.catalog.resolve(site.organisationId, site.id, metrics);
    const definitions = metrics.map((name, i) => {
      const definition = this.definition(catalog, name, `metrics[${i}]`);
      if (definition.formula) throw new InvalidArgumentError(`metrics[${i}]`, `"${name}" is a derived KPI and has no stored series; query it with GetTimeSeries or Aggregate`);
      return definition;
    });
    this.checkTagKeys(catalog, definitions, [], filters);
    const pool = await this.deps.pool();
    return { values: await this.withRegexCheck(() => latestValues(pool, site.id, metrics, filters, MAX_INSTANT_VALUES)) };
  }

  async searchSeries(site: QuerySite, input: SearchSeriesInput): Promise<{ series: SeriesResult[]; nextPageToken: string }> {
    const filters = checkFilters(input.filters);
    const size = pageSize(input.pageSize);
    const cursor = decodePageToken(input.pageToken);
    if (cursor && (typeof cursor.after !== "string" || !/^-?\d{1,19}$/.test(cursor.id))) throw new InvalidArgumentError("page_token", "is not a token from a previous response");
    let metrics: string[] | undefined;
    if (input.metric !== "") {
      const catalog = await this.deps.catalog.resolve(site.organisationId, site.id, [input.metric]);
      this.definition(catalog, input.metric, "metric");
      metrics = [input.metric];
    }
    const pool = await this.deps.pool();
    const rows = await this.withRegexCheck(() =>
      searchSeriesSql(pool, site.id, metrics, filters, cursor ? { metric: String(cursor.after), seriesId: cursor.id } : undefined, size + 1),
    );
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return {
      series: page.map((r) => ({ id: seriesResourceId(r.metric, r.seriesId), metric: r.metric, tags: r.tags, lastTime: r.lastTime })),
      nextPageToken: rows.length > size && last ? encodePageToken({ after: last.metric, id: last.seriesId }) : "",
    };
  }

  private definition(catalog: SiteCatalog, name: string, field: string): MetricDefinitionView {
    const definition = catalog.definitions.get(name);
    if (!definition) throw new NotFoundError(`metric ${name}`, field);
    return definition;
  }

  /**
   * The definition of `name`, after checking that its formula (and theirs, recursively) reads
   * only defined metrics and never itself, so computing it terminates.
   */
  private checkFormulas(catalog: SiteCatalog, name: string, field: string, path: string[] = []): MetricDefinitionView {
    const definition = this.definition(catalog, name, field);
    if (!definition.formula) return definition;
    if (path.includes(name)) throw new InvalidArgumentError(field, `the formula of "${path[0]}" refers back to itself (${[...path, name].join(" → ")})`);
    if (path.length >= MAX_FORMULA_DEPTH) throw new InvalidArgumentError(field, `"${path[0]}" nests derived KPIs more than ${MAX_FORMULA_DEPTH} deep`);
    for (const operand of formulaMetrics(this.parse(definition, field))) {
      if (!catalog.definitions.has(operand)) throw new NotFoundError(`metric ${operand} (used by the formula of ${name})`, field);
      this.checkFormulas(catalog, operand, field, [...path, name]);
    }
    return definition;
  }

  /** A group-by key or filter must be a tag some involved metric may carry (or one allows any). */
  private checkTagKeys(catalog: SiteCatalog, definitions: MetricDefinitionView[], groupBy: string[], filters: TagFilter[]): void {
    const plain = new Set<MetricDefinitionView>();
    const visit = (d: MetricDefinitionView, depth: number) => {
      if (!d.formula) plain.add(d);
      else if (depth < MAX_FORMULA_DEPTH) {
        for (const name of formulaMetrics(this.parse(d, "metrics"))) {
          const operand = catalog.definitions.get(name);
          if (operand) visit(operand, depth + 1);
        }
      }
    };
    definitions.forEach((d) => visit(d, 0));
    if ([...plain].some((d) => d.tags.length === 0)) return;
    const allowed = new Set([...plain].flatMap((d) => d.tags));
    const names = [...plain].map((d) => d.name).join(", ");
    groupBy.forEach((key, i) => {
      if (!allowed.has(key)) throw new InvalidArgumentError(`group_by[${i}]`, `"${key}" is not a tag of ${names}`);
    });
    filters.forEach((f, i) => {
      if (!allowed.has(f.dimension)) throw new InvalidArgumentError(`filters[${i}].dimension`, `"${f.dimension}" is not a tag of ${names}`);
    });
  }

  private readonly parsed = new Map<string, Formula>();

  private parse(definition: MetricDefinitionView, field: string): Formula {
    const text = definition.formula ?? "";
    let formula = this.parsed.get(text);
    if (!formula) {
      try {
        formula = parseFormula(text, field);
      } catch (err) {
        if (err instanceof InvalidArgumentError) throw new InvalidArgumentError(field, `the formula of "${definition.name}" cannot be read: ${err.message}`);
        throw err;
      }
      if (this.parsed.size > 1000) this.parsed.clear();
      this.parsed.set(text, formula);
    }
    return formula;
  }

  /** The stored metrics a set of metrics reads, through any formulas: whose receipts bound freshness. */
  private plainOperands(catalog: SiteCatalog, names: string[]): string[] {
    const out = new Set<string>();
    const visit = (name: string, depth: number) => {
      const d = catalog.definitions.get(name);
      if (!d) return;
      if (!d.formula) out.add(name);
      else if (depth < MAX_FORMULA_DEPTH) formulaMetrics(this.parse(d, "metrics")).forEach((operand) => visit(operand, depth + 1));
    };
    names.forEach((name) => visit(name, 0));
    return [...out];
  }

  /** A metric's value in a bucket without points: 0, or a KPI's formula over zeros (null if undefined). */
  private emptyValue(catalog: SiteCatalog, name: string): number | null {
    const d = catalog.definitions.get(name);
    if (!d?.formula) return 0;
    return evaluateFormula(this.parse(d, "metrics"), new Map());
  }

  private compute(pool: Pool, catalog: SiteCatalog, site: QuerySite, window: Window, name: string, field: string, memo: Map<string, Promise<Computed>>, depth: number): Promise<Computed> {
    let pending = memo.get(name);
    if (!pending) {
      pending = this.computeOnce(pool, catalog, site, window, name, field, memo, depth);
      memo.set(name, pending);
    }
    return pending;
  }

  private async computeOnce(pool: Pool, catalog: SiteCatalog, site: QuerySite, window: Window, name: string, field: string, memo: Map<string, Promise<Computed>>, depth: number): Promise<Computed> {
    const definition = this.definition(catalog, name, field);
    if (definition.formula) {
      // checkFormulas has ruled out cycles and missing operands.
      const formula = this.parse(definition, field);
      const operands = formulaMetrics(formula);
      const results = await Promise.all(operands.map((operand) => this.compute(pool, catalog, site, window, operand, field, memo, depth + 1)));
      const keys = new Map<string, string[]>();
      for (const result of results) for (const [k, { group }] of result) keys.set(k, group);
      const out: Computed = new Map();
      for (const [k, group] of keys) {
        const values = new Map<number, number | null>();
        for (const time of window.buckets) {
          const inputs = new Map<string, number | null>();
          operands.forEach((operand, i) => {
            const value = results[i].get(k)?.values.get(time);
            if (value !== undefined) inputs.set(operand, value);
          });
          values.set(time, evaluateFormula(formula, inputs));
        }
        out.set(k, { group, values });
      }
      return out;
    }
    const rows = await this.withRegexCheck(() =>
      metricValues(pool, {
        siteId: site.id,
        metric: name,
        aggregation: window.aggregation ?? definition.aggregationDefault,
        from: window.from,
        to: window.to,
        bucketing: window.bucketing,
        groupBy: window.groupBy,
        filters: window.filters,
        useRollups: rollupsFit(window.bucketing),
      }),
    );
    const out: Computed = new Map();
    for (const row of rows) {
      const k = JSON.stringify(row.group);
      let entry = out.get(k);
      if (!entry) out.set(k, (entry = { group: row.group, values: new Map() }));
      entry.values.set(row.bucket, row.value);
    }
    return out;
  }

  /** Postgres reads regular expressions a little differently from JavaScript; its refusal is the caller's error. */
  private async withRegexCheck<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (isRegexError(err)) throw new InvalidArgumentError("filters", "holds a regular expression Postgres cannot read");
      throw err;
    }
  }
}

/** The opaque id of a series (SearchSeries' Series.id). */
export function seriesResourceId(metric: string, seriesId: string): string {
  return Buffer.from(`${metric}\n${seriesId}`).toString("base64url");
}
