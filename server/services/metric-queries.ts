// The ReportingService RPCs for defined metrics and KPIs (GetTimeSeries, Aggregate, QueryInstant,
// SearchSeries), which the reporting service hands over when a request names no web metric.
// Thin: parse, authorise the site, call the metric query engine, map to proto. A name that is no
// defined metric of the site is NotFound naming it (the field `metrics[i]` or `metric`).
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import type { MikroORM } from "@mikro-orm/postgresql";
import { type Filter, FilterOperator, Granularity } from "../../gen/beacon/v1/common_pb.js";
import { TimeBucketSchema, TimeSeriesGroupSchema } from "../../gen/beacon/v1/report_pb.js";
import * as pb from "../../gen/beacon/v1/reporting_service_pb.js";
import { loadSite } from "../core/management/access.js";
import type { FilterOperatorName, GranularityName, TagFilterInput } from "../core/metrics/query-plan.js";
import type { MetricQueryEngine, QuerySite } from "../core/metrics/queries.js";
import { principalOf } from "../interceptors/auth.js";
import { aggregations } from "./mappers.js";

const OPERATORS = new Map<FilterOperator, FilterOperatorName>([
  [FilterOperator.EQUALS, "equals"],
  [FilterOperator.NOT_EQUALS, "not_equals"],
  [FilterOperator.CONTAINS, "contains"],
  [FilterOperator.NOT_CONTAINS, "not_contains"],
  [FilterOperator.STARTS_WITH, "starts_with"],
  [FilterOperator.REGEX, "regex"],
  [FilterOperator.IN, "in"],
  [FilterOperator.NOT_IN, "not_in"],
]);

const GRANULARITIES = new Map<Granularity, GranularityName>([
  [Granularity.MINUTE, "minute"],
  [Granularity.FIVE_MINUTES, "five_minutes"],
  [Granularity.HOUR, "hour"],
  [Granularity.DAY, "day"],
  [Granularity.WEEK, "week"],
  [Granularity.MONTH, "month"],
]);

/** Epoch ms of a timestamp, rounded down (stored points have millisecond times). */
export function timestampFloorMs(ts: Timestamp): number {
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
}

const filterInputs = (filters: Filter[]): TagFilterInput[] => filters.map((f) => ({ dimension: f.dimension, operator: OPERATORS.get(f.operator), values: f.values }));

export interface MetricQueriesDeps {
  orm: MikroORM;
  engine: MetricQueryEngine;
}

export class MetricQueries {
  constructor(private readonly deps: MetricQueriesDeps) {}

  private async site(siteId: string, ctx: HandlerContext): Promise<QuerySite> {
    const site = await loadSite(this.deps.orm.em.fork(), principalOf(ctx.values), siteId);
    return { id: site.id, organisationId: site.organisationId, timezone: site.timezone };
  }

  /** Which of `names` are defined metrics or KPIs of the site: for routing a request elsewhere. */
  async definedMetrics(siteId: string, names: readonly string[], ctx: HandlerContext): Promise<Set<string>> {
    return this.deps.engine.definedNames(await this.site(siteId, ctx), names);
  }

  async getTimeSeries(req: pb.GetTimeSeriesRequest, ctx: HandlerContext): Promise<pb.GetTimeSeriesResponse> {
    const site = await this.site(req.siteId, ctx);
    const result = await this.deps.engine.timeSeries(site, {
      metrics: req.metrics,
      start: req.start && timestampFloorMs(req.start),
      end: req.end && timestampFloorMs(req.end),
      granularity: GRANULARITIES.get(req.granularity),
      groupBy: req.groupBy,
      filters: filterInputs(req.filters),
      aggregation: aggregations.name(req.aggregation),
      maxStalenessSeconds: req.maxStalenessSeconds,
      forceFresh: req.forceFresh,
    });
    return create(pb.GetTimeSeriesResponseSchema, {
      queryId: result.queryId,
      calculatedAt: timestampFromMs(result.calculatedAt),
      dataFreshnessSeconds: BigInt(result.dataFreshnessSeconds),
      groups: result.groups.map((group) =>
        create(TimeSeriesGroupSchema, {
          key: group.key,
          buckets: group.buckets.map((bucket) => create(TimeBucketSchema, { time: timestampFromMs(bucket.time), values: bucket.values })),
        }),
      ),
      approximate: false,
    });
  }

  async aggregate(req: pb.AggregateRequest, ctx: HandlerContext): Promise<pb.AggregateResponse> {
    const site = await this.site(req.siteId, ctx);
    const result = await this.deps.engine.aggregate(site, {
      metric: req.metric,
      timeRange: req.timeRange && { start: req.timeRange.start && timestampFloorMs(req.timeRange.start), end: req.timeRange.end && timestampFloorMs(req.timeRange.end) },
      dateRange: req.dateRange && { startDate: req.dateRange.startDate, endDate: req.dateRange.endDate },
      filters: filterInputs(req.filters),
      aggregation: aggregations.name(req.aggregation),
    });
    return create(pb.AggregateResponseSchema, { value: result.value, approximate: false, calculatedAt: timestampFromMs(result.calculatedAt) });
  }

  async queryInstant(req: pb.QueryInstantRequest, ctx: HandlerContext): Promise<pb.QueryInstantResponse> {
    const site = await this.site(req.siteId, ctx);
    const { values } = await this.deps.engine.instant(site, { metrics: req.metrics, filters: filterInputs(req.filters) });
    return create(pb.QueryInstantResponseSchema, {
      values: values.map((v) => create(pb.InstantValueSchema, { metric: v.metric, tags: v.tags, value: v.value, time: timestampFromMs(v.time) })),
    });
  }

  async searchSeries(req: pb.SearchSeriesRequest, ctx: HandlerContext): Promise<pb.SearchSeriesResponse> {
    const site = await this.site(req.siteId, ctx);
    const page = await this.deps.engine.searchSeries(site, { metric: req.metric.trim(), filters: filterInputs(req.filters), pageSize: req.pageSize, pageToken: req.pageToken });
    return create(pb.SearchSeriesResponseSchema, {
      series: page.series.map((s) =>
        create(pb.SeriesSchema, { id: s.id, metric: s.metric, tags: s.tags, lastTime: s.lastTime === null ? undefined : timestampFromMs(s.lastTime) }),
      ),
      nextPageToken: page.nextPageToken,
    });
  }
}
