// Subscriptions' queries are ReportingService requests, and their results must be exactly what
// that service answers, with its checks, metrics and routing to defined metrics. So they are run
// through ReportingServiceImpl itself, called in process with a handler context that carries a
// principal of the subscription's organisation limited to its site: no second query planner to
// drift from the first, and no network hop or API key. The worker gets the runner from the server
// side (workers may not import services), see workers/main.ts `subscriptionQueries`.
import { createHash } from "node:crypto";
import { type DescMessage, fromJsonString, type MessageShape, toJson, toJsonString } from "@bufbuild/protobuf";
import { createContextValues, createHandlerContext, type HandlerContext } from "@connectrpc/connect";
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Redis } from "ioredis";
import * as pb from "../../gen/beacon/v1/reporting_service_pb.js";
import { ReportingService } from "../../gen/beacon/v1/reporting_service_pb.js";
import type { BeaconConfig } from "../config.js";
import { InvalidArgumentError } from "../core/errors.js";
import { MetricCatalog } from "../core/metrics/catalog.js";
import { MetricQueryEngine } from "../core/metrics/queries.js";
import { RealtimeState } from "../core/realtime.js";
import { ReportEngine } from "../core/reports/engine.js";
import type { SubscriptionQuery, SubscriptionQueryRunner } from "../core/streams/subscriptions.js";
import type { Principal } from "../core/roles.js";
import type { SubscriptionQueryKindName } from "../db/entities/index.js";
import { sqlPool } from "../db/orm.js";
import { principalKey } from "../interceptors/auth.js";
import { MetricQueries } from "./metric-queries.js";
import { ReportingServiceImpl } from "./reporting.js";

type Reporting = Pick<ReportingServiceImpl, "runReport" | "getTimeSeries">;

function tryParse<D extends DescMessage>(schema: D, json: string): MessageShape<D> | Error {
  try {
    return fromJsonString(schema, json);
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/**
 * Checks `json` is a RunReport or GetTimeSeries request (of `kind`, or whichever it parses as)
 * for `siteId`, and returns it normalised (an empty site id filled in). Structure only; whether
 * its metrics and filters make sense is for the runner to say.
 */
export function parseSubscriptionQuery(kind: SubscriptionQueryKindName | undefined, json: string, siteId: string, field = "query_json"): { kind: SubscriptionQueryKindName; queryJson: string } {
  const report = kind === "get_time_series" ? undefined : tryParse(pb.RunReportRequestSchema, json);
  const series = kind === "run_report" ? undefined : tryParse(pb.GetTimeSeriesRequestSchema, json);
  let parsed: { kind: "run_report"; message: pb.RunReportRequest } | { kind: "get_time_series"; message: pb.GetTimeSeriesRequest };
  if (report && !(report instanceof Error) && (report.dateRange || !series || series instanceof Error)) parsed = { kind: "run_report", message: report };
  else if (series && !(series instanceof Error)) parsed = { kind: "get_time_series", message: series };
  else {
    const reason = kind === "run_report" ? `is not a RunReport request in Connect JSON: ${(report as Error).message}`
      : kind === "get_time_series" ? `is not a GetTimeSeries request in Connect JSON: ${(series as Error).message}`
      : `is neither a RunReport nor a GetTimeSeries request in Connect JSON (as RunReport: ${(report as Error).message})`;
    throw new InvalidArgumentError(field, reason.slice(0, 500));
  }
  const message = parsed.message;
  if (message.siteId === "") message.siteId = siteId;
  else if (message.siteId.toLowerCase() !== siteId.toLowerCase()) throw new InvalidArgumentError(`${field}.site_id`, "must name the subscription's site (or be left out)");
  message.siteId = siteId;
  const queryJson = parsed.kind === "run_report" ? toJsonString(pb.RunReportRequestSchema, parsed.message) : toJsonString(pb.GetTimeSeriesRequestSchema, parsed.message);
  return { kind: parsed.kind, queryJson };
}

const fingerprintOf = (json: string) => createHash("sha256").update(json).digest("hex");

export function createSubscriptionQueryRunner(reporting: Reporting): SubscriptionQueryRunner {
  const context = (query: SubscriptionQuery, method: (typeof ReportingService.method)[keyof typeof ReportingService.method], signal?: AbortSignal): HandlerContext => {
    const principal: Principal = { keyId: "", organisationId: query.organisationId, role: "viewer", siteIds: [query.siteId], actor: "subscription" };
    return createHandlerContext({
      service: ReportingService,
      method,
      protocolName: "in-process",
      requestMethod: "POST",
      url: `in-process:///${ReportingService.typeName}/${method.name}`,
      requestSignal: signal,
      contextValues: createContextValues().set(principalKey, principal),
    });
  };
  return {
    async run(query, signal) {
      if (query.kind === "run_report") {
        const request = fromJsonString(pb.RunReportRequestSchema, query.queryJson);
        const response = await reporting.runReport(request, context(query, ReportingService.method.runReport, signal));
        // Without what differs between two runs of the same query.
        const stable = toJsonString(pb.RunReportResponseSchema, { ...response, queryId: "", queryTimeMs: 0n });
        return { result: toJson(pb.RunReportResponseSchema, response), fingerprint: fingerprintOf(stable) };
      }
      const request = fromJsonString(pb.GetTimeSeriesRequestSchema, query.queryJson);
      const response = await reporting.getTimeSeries(request, context(query, ReportingService.method.getTimeSeries, signal));
      const stable = toJsonString(pb.GetTimeSeriesResponseSchema, { ...response, queryId: "", calculatedAt: undefined, dataFreshnessSeconds: 0n });
      return { result: toJson(pb.GetTimeSeriesResponseSchema, response), fingerprint: fingerprintOf(stable) };
    },
  };
}

export interface SubscriptionQueryDeps {
  orm: MikroORM;
  redis: Redis;
  config: Pick<BeaconConfig, "reportRollups" | "redisPrefix">;
  /** Seconds the oldest accepted-but-not-stored event has waited (GetTimeSeries reports it). */
  ingestLagSeconds: () => Promise<number>;
}

/** The runner for a process that serves no RPCs (a worker): its own ReportingServiceImpl. */
export function buildSubscriptionQueryRunner(deps: SubscriptionQueryDeps): SubscriptionQueryRunner {
  const { orm } = deps;
  const reporting = new ReportingServiceImpl({
    orm,
    engine: new ReportEngine(() => sqlPool(orm), { rollups: deps.config.reportRollups }),
    realtime: new RealtimeState(deps.redis, deps.config.redisPrefix),
    ingestLagSeconds: deps.ingestLagSeconds,
    metricQueries: new MetricQueries({ orm, engine: new MetricQueryEngine({ pool: () => sqlPool(orm), catalog: new MetricCatalog(orm) }) }),
  });
  return createSubscriptionQueryRunner(reporting);
}
