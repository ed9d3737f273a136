// ReportingService: web metrics through the report engine; names of defined metrics (KPIs)
// are handed to the metric queries. Thin: parse, authorise the site, plan, run, map to proto.
import { randomUUID } from "node:crypto";
import { create, toJsonString } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { MikroORM } from "@mikro-orm/postgresql";
import { Aggregation, Classification, type Filter, type FilterExpression, FilterOperator, Granularity, SortDirection } from "../../gen/beacon/v1/common_pb.js";
import { MinuteCountSchema, RealtimeCountSchema, RealtimeReportSchema, ReportRowSchema, TimeBucketSchema, TimeSeriesGroupSchema } from "../../gen/beacon/v1/report_pb.js";
import * as pb from "../../gen/beacon/v1/reporting_service_pb.js";
import { Comparison, type ReportingService } from "../../gen/beacon/v1/reporting_service_pb.js";
import { Goal } from "../db/entities/index.js";
import { InvalidArgumentError } from "../core/errors.js";
import { loadSite } from "../core/management/access.js";
import { METRICS, type MetricName, dimension, metric } from "../core/reports/catalog.js";
import { ReportEngine, type ReportResult } from "../core/reports/engine.js";
import { checkFilter, type Classification as ClassificationName, dateRange, type FilterInput, type FilterTreeInput, type GoalDefinition, planReport, type ReportQuery } from "../core/reports/query.js";
import { bucketsBetween, type SeriesBucket } from "../core/reports/timeseries.js";
import { addDays, addYears, daysBetween } from "../core/reports/time.js";
import type { RealtimeState, RealtimeSnapshot } from "../core/realtime.js";
import { encodePageToken } from "../core/page-token.js";
import { principalOf } from "../interceptors/auth.js";

/** The queries over defined metrics (issue 5), routed to when a request names no web metric. */
export type MetricQueryHandlers = Partial<Pick<ServiceImpl<typeof ReportingService>, "getTimeSeries" | "aggregate" | "queryInstant" | "searchSeries">>;

export interface ReportingDeps {
  orm: MikroORM;
  engine: ReportEngine;
  realtime: RealtimeState;
  /** Seconds the oldest accepted-but-not-stored event has waited (ingest lag). */
  ingestLagSeconds: () => Promise<number>;
  metricQueries?: MetricQueryHandlers;
}

const OPERATOR_NAMES: Record<number, string> = {
  [FilterOperator.EQUALS]: "equals",
  [FilterOperator.NOT_EQUALS]: "not_equals",
  [FilterOperator.CONTAINS]: "contains",
  [FilterOperator.NOT_CONTAINS]: "not_contains",
  [FilterOperator.STARTS_WITH]: "starts_with",
  [FilterOperator.REGEX]: "regex",
  [FilterOperator.IN]: "in",
  [FilterOperator.NOT_IN]: "not_in",
};

function filterInput(f: Filter): FilterInput {
  return { dimension: f.dimension, operator: OPERATOR_NAMES[f.operator] ?? `unspecified (${f.operator})`, values: f.values };
}

function treeInput(e: FilterExpression, field: string): FilterTreeInput {
  switch (e.expression.case) {
    case "filter":
      return { filter: filterInput(e.expression.value) };
    case "andGroup":
      return { and: e.expression.value.expressions.map((x, i) => treeInput(x, `${field}.and_group.expressions[${i}]`)) };
    case "orGroup":
      return { or: e.expression.value.expressions.map((x, i) => treeInput(x, `${field}.or_group.expressions[${i}]`)) };
    case "notExpression":
      return { not: treeInput(e.expression.value, `${field}.not_expression`) };
    default:
      throw new InvalidArgumentError(field, "is an empty filter expression");
  }
}

function classificationName(c: Classification): ClassificationName | "" {
  return c === Classification.USER ? "USER" : c === Classification.BOT ? "BOT" : c === Classification.ALL ? "ALL" : "";
}

const isWebMetric = (name: string) => (METRICS as readonly string[]).includes(name);

/** Shifts a row's time-bucket label by the comparison's offset, so periods line up by position. */
function shiftLabel(label: string, days: number, years: number): string {
  const shiftDate = (date: string) => (years !== 0 ? addYears(date, years) : addDays(date, days));
  if (/^\d{4}-\d{2}$/.test(label)) {
    const [y, m] = label.split("-").map(Number);
    const shifted = shiftDate(`${label}-01`);
    return years !== 0 ? `${y + years}-${String(m).padStart(2, "0")}` : shifted.slice(0, 7);
  }
  if (/^\d{4}-\d{2}-\d{2}( \d{2}:\d{2})?$/.test(label)) return shiftDate(label.slice(0, 10)) + label.slice(10);
  return label;
}

export class ReportingServiceImpl implements Partial<ServiceImpl<typeof ReportingService>> {
  private readonly cache = new Map<string, { at: number; response: pb.GetTimeSeriesResponse }>();

  constructor(private readonly deps: ReportingDeps) {}

  private async context(ctx: HandlerContext, siteId: string) {
    const em = this.deps.orm.em.fork();
    const site = await loadSite(em, principalOf(ctx.values), siteId);
    const goals: GoalDefinition[] = (await em.find(Goal, { siteId: site.id }, { orderBy: { createdAt: "asc" } })).map((g) => ({
      name: g.name,
      type: g.type,
      matchType: g.matchType,
      value: g.value,
      propertyKey: g.propertyKey ?? null,
      propertyValue: g.propertyValue ?? null,
      valueNumeric: g.valueNumeric === null || g.valueNumeric === undefined ? null : Number(g.valueNumeric),
    }));
    return { site: { id: site.id, timezone: site.timezone, rollups: site.settings.rollupsEnabled !== false }, goals };
  }

  async runReport(req: pb.RunReportRequest, ctx: HandlerContext): Promise<pb.RunReportResponse> {
    const started = performance.now();
    const { site, goals } = await this.context(ctx, req.siteId);
    if (!req.dateRange) throw new InvalidArgumentError("date_range", "is required");
    const query = planReport(site, goals, {
      startDate: req.dateRange.startDate,
      endDate: req.dateRange.endDate,
      metrics: req.metrics,
      dimensions: req.dimensions,
      filters: req.filters.map(filterInput),
      filter: req.filter ? treeInput(req.filter, "filter") : undefined,
      orderBy: req.orderBy.map((o) => ({
        metric: o.key.case === "metric" ? o.key.value : undefined,
        dimension: o.key.case === "dimension" ? o.key.value : undefined,
        direction: o.direction === SortDirection.ASC ? "asc" : o.direction === SortDirection.DESC ? "desc" : "",
      })),
      limit: req.limit,
      pageToken: req.pageToken,
      classification: classificationName(req.classification),
    });
    const result = await this.deps.engine.run(query);
    const comparison = req.comparison !== Comparison.UNSPECIFIED ? await this.compare(query, req.comparison) : undefined;
    const rows = result.rows.map((row) => {
      let compared: Record<string, number> | undefined;
      if (comparison) {
        const key = JSON.stringify(query.dimensions.map((d) => (d.kind === "time" ? comparison.shift(row.dimensions[d.name]) : row.dimensions[d.name])));
        compared = comparison.rows.get(key) ?? Object.fromEntries(query.metrics.map((m) => [m, 0]));
      }
      return create(ReportRowSchema, { dimensions: row.dimensions, metrics: row.metrics, comparison: compared });
    });
    const next = query.offset + query.limit < result.totalRows ? encodePageToken({ after: query.offset + query.limit, id: "" }) : "";
    return create(pb.RunReportResponseSchema, {
      queryId: `q_${randomUUID().slice(0, 8)}`,
      rows,
      totalRows: BigInt(result.totalRows),
      sampled: false,
      queryTimeMs: BigInt(Math.round(performance.now() - started)),
      nextPageToken: next,
      totals: create(ReportRowSchema, { metrics: result.totals, comparison: comparison?.totals }),
      approximate: result.approximate,
    });
  }

  /** The same report over the earlier period, keyed by the current period's row keys. */
  private async compare(query: ReportQuery, comparison: Comparison) {
    const { startDate, endDate } = query.range;
    const days = daysBetween(startDate!, endDate!) + 1;
    const years = comparison === Comparison.YEAR_OVER_YEAR ? -1 : 0;
    const shiftDays = comparison === Comparison.PREVIOUS_PERIOD ? -days : 0;
    const from = years ? addYears(startDate!, years) : addDays(startDate!, shiftDays);
    const to = years ? addYears(endDate!, years) : addDays(endDate!, shiftDays);
    const earlier: ReportQuery = { ...query, range: dateRange(from, to, query.site.timezone), offset: 0, limit: Number.MAX_SAFE_INTEGER };
    const result: ReportResult = await this.deps.engine.run(earlier);
    const rows = new Map<string, Record<string, number>>();
    for (const row of result.rows) rows.set(JSON.stringify(query.dimensions.map((d) => row.dimensions[d.name])), row.metrics);
    return { rows, totals: result.totals, shift: (label: string) => shiftLabel(label, shiftDays, years) };
  }

  async batchRunReports(req: pb.BatchRunReportsRequest, ctx: HandlerContext): Promise<pb.BatchRunReportsResponse> {
    if (req.requests.length === 0) throw new InvalidArgumentError("requests", "needs at least one report");
    if (req.requests.length > 25) throw new InvalidArgumentError("requests", "at most 25 reports per call");
    const reports = await Promise.all(
      req.requests.map((r, i) =>
        this.runReport(r, ctx).catch((err: unknown) => {
          if (err instanceof InvalidArgumentError) throw new InvalidArgumentError(`requests[${i}].${err.field}`, err.message.replace(/^[^:]*: /, ""));
          throw err;
        }),
      ),
    );
    return create(pb.BatchRunReportsResponseSchema, { reports });
  }

  async aggregate(req: pb.AggregateRequest, ctx: HandlerContext): Promise<pb.AggregateResponse> {
    if (req.metric === "") throw new InvalidArgumentError("metric", "is required");
    if (!isWebMetric(req.metric) && this.deps.metricQueries?.aggregate) return this.deps.metricQueries.aggregate(req, ctx) as Promise<pb.AggregateResponse>;
    const name = metric(req.metric, "metric");
    const { site, goals } = await this.context(ctx, req.siteId);
    let range: ReportQuery["range"];
    if (req.dateRange) range = dateRange(req.dateRange.startDate, req.dateRange.endDate, site.timezone);
    else if (req.timeRange?.start && req.timeRange.end) {
      range = { start: timestampDate(req.timeRange.start).getTime(), end: timestampDate(req.timeRange.end).getTime() };
      if (range.end <= range.start) throw new InvalidArgumentError("time_range.end", "must be after time_range.start");
    } else throw new InvalidArgumentError("time_range", "set time_range (start and end) or date_range");
    if (req.aggregation !== Aggregation.UNSPECIFIED) throw new InvalidArgumentError("aggregation", `web metrics have one aggregation each; leave it unset for ${name}`);
    const query = this.seriesQuery(site, goals, [name], [], req.filters, req.classification, range);
    const result = await this.deps.engine.run(query);
    return create(pb.AggregateResponseSchema, { value: result.totals[name] ?? 0, approximate: result.approximate, calculatedAt: timestampFromMs(Date.now()) });
  }

  private seriesQuery(site: ReportQuery["site"], goals: GoalDefinition[], metrics: MetricName[], dims: string[], filters: Filter[], classification: Classification, range: ReportQuery["range"]): ReportQuery {
    const filterNodes = filters.map((f, i) => checkFilter(filterInput(f), `filters[${i}]`));
    const dimensions = dims.map((d, i) => dimension(d, `group_by[${i}]`));
    const cls = classificationName(classification);
    const usesClassification = dims.includes("classification") || filters.some((f) => f.dimension === "classification");
    return {
      site,
      range,
      metrics,
      dimensions,
      filter: filterNodes.length === 0 ? undefined : filterNodes.length === 1 ? filterNodes[0] : { op: "and", children: filterNodes },
      classification: cls || (usesClassification ? "ALL" : "USER"),
      goals,
      orderBy: [],
      limit: Number.MAX_SAFE_INTEGER,
      offset: 0,
    };
  }

  async getTimeSeries(req: pb.GetTimeSeriesRequest, ctx: HandlerContext): Promise<pb.GetTimeSeriesResponse> {
    if (req.metrics.length === 0) throw new InvalidArgumentError("metrics", "name at least one metric");
    const web = req.metrics.filter(isWebMetric);
    if (web.length === 0 && this.deps.metricQueries?.getTimeSeries) return this.deps.metricQueries.getTimeSeries(req, ctx) as Promise<pb.GetTimeSeriesResponse>;
    if (web.length !== req.metrics.length) {
      const other = req.metrics.find((m) => !isWebMetric(m))!;
      throw new InvalidArgumentError("metrics", `"${other}" is not a web metric; ask for defined metrics and web metrics in separate calls`);
    }
    if (!req.start || !req.end) throw new InvalidArgumentError(req.start ? "end" : "start", "is required");
    const start = timestampDate(req.start).getTime();
    const end = timestampDate(req.end).getTime() + 1;
    if (end <= start) throw new InvalidArgumentError("end", "must not be before start");
    if (req.aggregation !== Aggregation.UNSPECIFIED && req.aggregation !== Aggregation.SUM && req.aggregation !== Aggregation.COUNT) {
      throw new InvalidArgumentError("aggregation", "web metrics are counts and rates per bucket; leave aggregation unset");
    }
    const bucket = this.bucket(req.granularity, end - start);
    const buckets = end - start;
    const step = { minute: 60_000, five_minutes: 300_000, hour: 3_600_000, day: 86_400_000, week: 7 * 86_400_000, month: 28 * 86_400_000 }[bucket];
    if (buckets / step > 10_000) throw new InvalidArgumentError("granularity", "gives more than 10,000 buckets for this range; choose a coarser one");
    const { site, goals } = await this.context(ctx, req.siteId);
    const key = toJsonString(pb.GetTimeSeriesRequestSchema, { ...req, forceFresh: false, maxStalenessSeconds: undefined });
    const now = Date.now();
    const cached = this.cache.get(`${principalOf(ctx.values).organisationId}:${key}`);
    if (cached && !req.forceFresh && req.maxStalenessSeconds !== undefined && now - cached.at <= req.maxStalenessSeconds * 1000) {
      const age = Math.floor((now - cached.at) / 1000);
      return create(pb.GetTimeSeriesResponseSchema, { ...cached.response, dataFreshnessSeconds: cached.response.dataFreshnessSeconds + BigInt(age) });
    }
    const metrics = web.map((m, i) => metric(m, `metrics[${i}]`));
    const query = this.seriesQuery(site, goals, metrics, req.groupBy, req.filters, req.classification, { start, end });
    const timeDim = { kind: "time" as const, name: bucket };
    query.dimensions = [timeDim, ...query.dimensions];
    // A series shows buckets only: its totals would be computed for nothing.
    const [result, lag] = await Promise.all([this.deps.engine.run(query, { totals: false }), this.deps.ingestLagSeconds()]);
    const series = new Map<string, { key: Record<string, string>; values: Map<string, Record<string, number>> }>();
    for (const row of result.rows) {
      const groupKey = Object.fromEntries(req.groupBy.map((g) => [g, row.dimensions[g]]));
      const id = JSON.stringify(groupKey);
      let entry = series.get(id);
      if (!entry) series.set(id, (entry = { key: groupKey, values: new Map() }));
      entry.values.set(row.dimensions[bucket], row.metrics);
    }
    if (series.size === 0 && req.groupBy.length === 0) series.set("{}", { key: {}, values: new Map() });
    const all = bucketsBetween(start, end, bucket, site.timezone);
    const zero = Object.fromEntries(metrics.map((m) => [m, 0]));
    const groups = [...series.values()]
      .sort((a, b) => JSON.stringify(a.key).localeCompare(JSON.stringify(b.key)))
      .map((s) => create(TimeSeriesGroupSchema, {
        key: s.key,
        buckets: all.map((b) => create(TimeBucketSchema, { time: timestampFromMs(b.time), values: s.values.get(b.label) ?? zero })),
      }));
    const response = create(pb.GetTimeSeriesResponseSchema, {
      queryId: `q_${randomUUID().slice(0, 8)}`,
      calculatedAt: timestampFromMs(now),
      dataFreshnessSeconds: BigInt(Math.max(0, Math.round(lag))),
      groups,
      approximate: result.approximate,
    });
    if (this.cache.size > 500) this.cache.clear();
    this.cache.set(`${principalOf(ctx.values).organisationId}:${key}`, { at: now, response });
    return response;
  }

  private bucket(granularity: Granularity, span: number): SeriesBucket {
    switch (granularity) {
      case Granularity.MINUTE:
        return "minute";
      case Granularity.FIVE_MINUTES:
        return "five_minutes";
      case Granularity.HOUR:
        return "hour";
      case Granularity.DAY:
        return "day";
      case Granularity.WEEK:
        return "week";
      case Granularity.MONTH:
        return "month";
      default:
        return span <= 2 * 86_400_000 ? "hour" : "day";
    }
  }

  async getRealtime(req: pb.GetRealtimeRequest, ctx: HandlerContext): Promise<pb.GetRealtimeResponse> {
    const site = await loadSite(this.deps.orm.em.fork(), principalOf(ctx.values), req.siteId);
    return create(pb.GetRealtimeResponseSchema, { report: realtimeToProto(await this.deps.realtime.snapshot(site.id)) });
  }

  async queryInstant(req: pb.QueryInstantRequest, ctx: HandlerContext) {
    if (!this.deps.metricQueries?.queryInstant) throw new InvalidArgumentError("metrics", "no defined metrics can be queried on this server");
    return this.deps.metricQueries.queryInstant(req, ctx) as Promise<pb.QueryInstantResponse>;
  }

  async searchSeries(req: pb.SearchSeriesRequest, ctx: HandlerContext) {
    if (!this.deps.metricQueries?.searchSeries) throw new InvalidArgumentError("metric", "no defined metrics can be queried on this server");
    return this.deps.metricQueries.searchSeries(req, ctx) as Promise<pb.SearchSeriesResponse>;
  }
}

export function realtimeToProto(s: RealtimeSnapshot) {
  const counts = (list: { value: string; activeUsers: number }[]) => list.map((c) => create(RealtimeCountSchema, { value: c.value, activeUsers: BigInt(c.activeUsers) }));
  return create(RealtimeReportSchema, {
    siteId: s.siteId,
    timestamp: timestampFromMs(s.timestamp),
    activeUsers: BigInt(s.activeUsers),
    pageviewsPerMinute: BigInt(s.pageviewsPerMinute),
    pageviewsLastMinute: BigInt(s.pageviewsLastMinute),
    topPages: counts(s.topPages),
    topCountries: counts(s.topCountries),
    topSources: counts(s.topSources),
    pageviewsByMinute: s.pageviewsByMinute.map((m) => create(MinuteCountSchema, { time: timestampFromMs(m.time), pageviews: BigInt(m.pageviews) })),
  });
}
