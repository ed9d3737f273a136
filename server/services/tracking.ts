// TrackingService: reads each RPC's events into the shared event shape, finds the site, and
// hands them to the Acceptor, which answers only once they are durable.
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { isIP } from "node:net";
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Event } from "../../gen/beacon/v1/event_pb.js";
import { ItemErrorSchema } from "../../gen/beacon/v1/event_pb.js";
import * as pb from "../../gen/beacon/v1/tracking_service_pb.js";
import { TrackStatus, type TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";
import type { AcceptResult, Acceptor, EventError } from "../core/ingest/accept.js";
import { emptyIncomingEvent, type IncomingEvent } from "../core/ingest/hit.js";
import { fromMeasurementProtocol } from "../core/ingest/measurement-protocol.js";
import type { IngestSite, SiteDirectory } from "../core/ingest/sites.js";
import { InvalidArgumentError, NotFoundError, UnavailableError } from "../core/errors.js";
import { loadSite } from "../core/management/access.js";
import { principalKey, principalOf } from "../interceptors/auth.js";
import { clientIpKey, requestContext } from "../http/client.js";
import { type BulkScheduler, readBulkIngest, startBulkIngest, type BulkSource } from "../core/metrics/bulk.js";
import type { IntakeSite, MetricIntake } from "../core/metrics/intake.js";
import type { IncomingMetricPoint, PointError } from "../core/metrics/points.js";
import { canReachSite } from "../core/roles.js";
import { requireUuid } from "../core/management/validate.js";
import { sqlPool } from "../db/orm.js";
import type { BulkState } from "../db/metric-points-store.js";
import type { MetricPoint } from "../../gen/beacon/v1/event_pb.js";

export interface TrackingDeps {
  orm: MikroORM;
  sites: SiteDirectory;
  acceptor: Acceptor;
  maxBatchEvents: number;
  /** The metric RPCs (IngestMetricPoints, ValidateMetricPoints, bulk); Unavailable without them. */
  metrics?: MetricTracking;
}

export interface MetricTracking {
  intake: MetricIntake;
  bulk: BulkScheduler;
  /** Directories file_path bulk sources must be in. */
  importRoots: string[];
}

/** Points per IngestMetricPoints or ValidateMetricPoints request (the proto's 1 to 1,000). */
export const MAX_METRIC_POINTS = 1000;

export function metricPointFromProto(point: MetricPoint): IncomingMetricPoint {
  return {
    metricName: point.metricName,
    value: point.value,
    timestamp: point.timestamp ? Number(point.timestamp.seconds) * 1000 + Math.floor(point.timestamp.nanos / 1_000_000) : undefined,
    source: point.source,
    tags: point.tags,
    metadata: point.metadata,
    idempotencyKey: point.idempotencyKey,
  };
}

function pointErrors(errors: PointError[]) {
  return errors.map((e) => create(ItemErrorSchema, { index: e.index, field: `points[${e.index}].${e.field}`, message: e.message, reason: e.reason }));
}

const BULK_STATES: Record<BulkState, pb.BulkIngestState> = {
  pending: pb.BulkIngestState.PENDING,
  running: pb.BulkIngestState.RUNNING,
  done: pb.BulkIngestState.DONE,
  failed: pb.BulkIngestState.FAILED,
};

export function eventFromProto(event: Event): IncomingEvent {
  return {
    ...emptyIncomingEvent(),
    eventId: event.eventId,
    name: event.name,
    url: event.url,
    referrer: event.referrer,
    timestamp: event.timestamp ? timestampMs(event.timestamp) : undefined,
    title: event.title,
    clientId: event.clientId,
    userId: event.userId,
    screen: event.screen,
    language: event.language,
    properties: {
      ...(event.category ? { category: event.category } : {}),
      ...(event.action ? { action: event.action } : {}),
      ...(event.label ? { label: event.label } : {}),
      ...(event.value !== undefined ? { value: event.value } : {}),
      ...(event.properties ?? {}),
    },
    revenue: event.revenue,
    currency: event.currency,
  };
}

function itemErrors(errors: EventError[], prefix: string) {
  return errors.map((e) => create(ItemErrorSchema, { index: e.index, field: `${prefix}[${e.index}].${e.field}`, message: e.message, reason: e.reason }));
}

export class TrackingServiceImpl implements Partial<ServiceImpl<typeof TrackingService>> {
  constructor(private readonly deps: TrackingDeps) {}

  private async site(trackingId: string, field = "tracking_id"): Promise<IngestSite> {
    if (trackingId.trim() === "") throw new InvalidArgumentError(field, "is required (the site's tracking id)");
    const site = await this.deps.sites.byTrackingId(trackingId);
    if (!site) throw new NotFoundError(`site with tracking id ${trackingId.slice(0, 64)}`, field);
    return site;
  }

  private context(ctx: HandlerContext) {
    return requestContext(ctx.requestHeader, ctx.values.get(clientIpKey));
  }

  private static single(result: AcceptResult, field: string) {
    const error = result.errors[0];
    if (error) throw new InvalidArgumentError(`${field}.${error.field}`, error.message, { reason: error.reason });
  }

  async trackEvent(req: pb.TrackEventRequest, ctx: HandlerContext) {
    const site = await this.site(req.trackingId);
    if (!req.event) throw new InvalidArgumentError("event", "is required");
    const result = await this.deps.acceptor.accept(site, [eventFromProto(req.event)], this.context(ctx));
    TrackingServiceImpl.single(result, "event");
    return create(pb.TrackEventResponseSchema, {
      eventId: result.accepted[0]?.eventId ?? "",
      status: result.ignoredDoNotTrack ? TrackStatus.IGNORED_DO_NOT_TRACK : TrackStatus.ACCEPTED,
    });
  }

  async trackEvents(req: pb.TrackEventsRequest, ctx: HandlerContext) {
    const site = await this.site(req.trackingId);
    if (req.events.length === 0) throw new InvalidArgumentError("events", "must hold at least one event");
    if (req.events.length > this.deps.maxBatchEvents) throw new InvalidArgumentError("events", `must hold at most ${this.deps.maxBatchEvents} events, got ${req.events.length}`);
    const result = await this.deps.acceptor.accept(site, req.events.map(eventFromProto), this.context(ctx));
    return create(pb.TrackEventsResponseSchema, {
      received: result.ignoredDoNotTrack ? 0 : result.accepted.length,
      failed: result.errors.length,
      errors: itemErrors(result.errors, "events"),
      eventIds: result.accepted.map((a) => a.eventId),
      status: result.ignoredDoNotTrack ? TrackStatus.IGNORED_DO_NOT_TRACK : TrackStatus.ACCEPTED,
    });
  }

  async collect(req: pb.CollectRequest, ctx: HandlerContext) {
    const params: Record<string, string | undefined> = {};
    for (const [key, value] of Object.entries(req)) {
      if (key === "$typeName" || value === undefined || value === "") continue;
      params[key === "eventId" ? "event_id" : key] = typeof value === "bigint" || typeof value === "number" ? String(value) : (value as string);
    }
    const rctx = this.context(ctx);
    const hit = fromMeasurementProtocol(params, rctx.receivedAt);
    const site = await this.site(hit.trackingId, "tid");
    if (hit.userAgent) rctx.userAgent = hit.userAgent;
    // uip overrides the client IP only for callers with a key: anyone could claim any IP otherwise.
    if (hit.ip && ctx.values.get(principalKey)) rctx.ip = hit.ip;
    const result = await this.deps.acceptor.accept(site, [hit.event], rctx);
    TrackingServiceImpl.single(result, "hit");
    return create(pb.CollectResponseSchema, { status: "ok", received: result.ignoredDoNotTrack ? 0 : 1 });
  }

  async recordHit(req: pb.RecordHitRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    if (req.url.trim() === "") throw new InvalidArgumentError("url", "is required");
    if (req.ip.trim() === "" || isIP(req.ip.trim()) === 0) throw new InvalidArgumentError("ip", `must be an IPv4 or IPv6 address, got "${req.ip.slice(0, 60)}"`);
    let site: IngestSite | undefined;
    if (req.siteId) {
      const record = await loadSite(this.deps.orm.em.fork(), principal, req.siteId);
      site = await this.deps.sites.byId(record.id);
    } else {
      let host = "";
      try {
        host = new URL(req.url).hostname;
      } catch {
        throw new InvalidArgumentError("url", "must be absolute (or site_id must be set)");
      }
      site = await this.deps.sites.byHostname(host);
      if (site && (site.organisationId !== principal.organisationId || (principal.siteIds.length > 0 && !principal.siteIds.includes(site.id)))) site = undefined;
    }
    if (!site) throw new NotFoundError("site for this url", req.siteId ? "site_id" : "url");
    let url = req.url.trim();
    if (url.startsWith("/")) url = `https://${site.domain}${url}`;
    const event: IncomingEvent = {
      ...emptyIncomingEvent(),
      eventId: req.eventId,
      name: "pageview",
      url,
      referrer: req.referrer,
      timestamp: req.timestamp ? timestampMs(req.timestamp) : undefined,
      language: req.language.split(",")[0]?.split(";")[0]?.trim() ?? "",
    };
    const rctx = { ...this.context(ctx), ip: req.ip.trim(), userAgent: req.userAgent, doNotTrack: false };
    const result = await this.deps.acceptor.accept(site, [event], rctx);
    TrackingServiceImpl.single(result, "hit");
    return create(pb.RecordHitResponseSchema, { eventId: result.accepted[0]?.eventId ?? "" });
  }

  async validateEvents(req: pb.ValidateEventsRequest, ctx: HandlerContext) {
    const site = await this.site(req.trackingId);
    if (req.events.length === 0) throw new InvalidArgumentError("events", "must hold at least one event");
    if (req.events.length > this.deps.maxBatchEvents) throw new InvalidArgumentError("events", `must hold at most ${this.deps.maxBatchEvents} events, got ${req.events.length}`);
    const { hits, errors } = this.deps.acceptor.validate(site, req.events.map(eventFromProto), this.context(ctx));
    return create(pb.ValidateEventsResponseSchema, { valid: hits.length, invalid: errors.length, errors: itemErrors(errors, "events") });
  }

  private metrics(): MetricTracking {
    if (!this.deps.metrics) throw new UnavailableError("metric ingestion is not configured on this server");
    return this.deps.metrics;
  }

  /** The site metric points are for: one the key may reach, from the cached directory. */
  private async metricSite(siteId: string, ctx: HandlerContext): Promise<IntakeSite> {
    const principal = principalOf(ctx.values);
    const id = requireUuid("site_id", siteId);
    const site = await this.deps.sites.byId(id);
    if (!site || site.organisationId !== principal.organisationId || !canReachSite(principal, site.id)) throw new NotFoundError(`site ${id}`, "site_id");
    return { id: site.id, organisationId: site.organisationId, autoDefineMetrics: site.settings.autoDefineMetrics };
  }

  private static checkPointCount(points: unknown[]): void {
    if (points.length === 0) throw new InvalidArgumentError("points", "must hold at least one point");
    if (points.length > MAX_METRIC_POINTS) throw new InvalidArgumentError("points", `must hold at most ${MAX_METRIC_POINTS} points, got ${points.length}`);
  }

  async ingestMetricPoints(req: pb.IngestMetricPointsRequest, ctx: HandlerContext) {
    const metrics = this.metrics();
    const site = await this.metricSite(req.siteId, ctx);
    TrackingServiceImpl.checkPointCount(req.points);
    const result = await metrics.intake.accept(site, principalOf(ctx.values), req.points.map(metricPointFromProto), Date.now(), ctx.requestHeader.get("idempotency-key") ?? "");
    return create(pb.IngestMetricPointsResponseSchema, { ids: result.accepted.map((a) => a.pointId), errors: pointErrors(result.errors) });
  }

  async validateMetricPoints(req: pb.ValidateMetricPointsRequest, ctx: HandlerContext) {
    const metrics = this.metrics();
    const site = await this.metricSite(req.siteId, ctx);
    TrackingServiceImpl.checkPointCount(req.points);
    const prepared = await metrics.intake.prepare(site, principalOf(ctx.values), req.points.map(metricPointFromProto), {
      receivedAt: Date.now(),
      defaultPointId: () => "",
      dryRun: true,
    });
    return create(pb.ValidateMetricPointsResponseSchema, { valid: prepared.accepted.length, errors: pointErrors(prepared.errors) });
  }

  async startBulkIngest(req: pb.StartBulkIngestRequest, ctx: HandlerContext) {
    const metrics = this.metrics();
    const site = await this.metricSite(req.siteId, ctx);
    let source: BulkSource | undefined;
    if (req.source.case === "filePath") source = { kind: "file", path: req.source.value };
    else if (req.source.case === "url") source = { kind: "url", url: req.source.value };
    else if (req.source.case === "ndjson") source = { kind: "inline", ndjson: req.source.value };
    const row = await startBulkIngest(await sqlPool(this.deps.orm), metrics.bulk, principalOf(ctx.values), site, {
      source,
      requestId: req.requestId || (ctx.requestHeader.get("idempotency-key") ?? ""),
      receivedAt: Date.now(),
    }, metrics.importRoots);
    return create(pb.StartBulkIngestResponseSchema, { jobId: row.id });
  }

  async getBulkIngest(req: pb.GetBulkIngestRequest, ctx: HandlerContext) {
    const row = await readBulkIngest(await sqlPool(this.deps.orm), principalOf(ctx.values), req.jobId);
    return create(pb.GetBulkIngestResponseSchema, {
      jobId: row.id,
      state: BULK_STATES[row.state],
      linesRead: BigInt(row.linesRead),
      pointsStored: BigInt(row.pointsStored),
      lineErrors: row.lineErrors.map((e) => create(pb.BulkIngestLineErrorSchema, { line: BigInt(e.line), message: e.message })),
      error: row.error,
    });
  }
}
