// StreamingService: WatchRealtime and TailEvents as server streams (`async *` handlers that end
// when the client cancels or the server shuts down), and subscriptions that push query results to
// webhooks. Thin like the others: authorise, check the stream quota, run the core's generator and
// map each item to proto.
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { EntityManager, MikroORM } from "@mikro-orm/postgresql";
import { Classification } from "../../gen/beacon/v1/common_pb.js";
import { type EnrichedEvent, EnrichedEventSchema } from "../../gen/beacon/v1/event_pb.js";
import * as pb from "../../gen/beacon/v1/streaming_service_pb.js";
import { RealtimeUpdateType, type StreamingService } from "../../gen/beacon/v1/streaming_service_pb.js";
import { DeliveryKind, type Delivery as DeliveryMsg, DeliverySchema, type Subscription as SubscriptionMsg, SubscriptionQueryKind, SubscriptionSchema } from "../../gen/beacon/v1/subscription_pb.js";
import { BeaconError, InvalidArgumentError } from "../core/errors.js";
import { etagOf, loadSite } from "../core/management/access.js";
import { getQuotas } from "../core/management/settings.js";
import type { Principal } from "../core/roles.js";
import type { StreamHub } from "../core/streams/hub.js";
import type { StreamLease, StreamLeases } from "../core/streams/leases.js";
import type { LiveEvent } from "../core/streams/live-events.js";
import { type RealtimeUpdate, type SharedSnapshots, watchRealtime } from "../core/streams/realtime-watch.js";
import * as subscriptions from "../core/streams/subscriptions.js";
import { tailEvents, tailFilter } from "../core/streams/tail.js";
import type { SubscriptionDelivery, Subscription, SubscriptionQueryKindName } from "../db/entities/index.js";
import { principalOf } from "../interceptors/auth.js";
import { Idempotency } from "./idempotency.js";
import { parseSubscriptionQuery } from "./subscription-queries.js";
import { realtimeToProto } from "./reporting.js";

export interface StreamingDeps {
  orm: MikroORM;
  hub: StreamHub;
  snapshots: SharedSnapshots;
  leases: StreamLeases;
  /** Aborts when the server shuts down: every open stream then ends. */
  shutdown: AbortSignal;
  /** Runs subscription queries; used on create and update to refuse a query that cannot run. */
  queries: subscriptions.SubscriptionQueryRunner;
  /** Events waiting for one TailEvents subscriber at most (1,000 unless a test says). */
  maxQueuedEvents?: number;
  /** A TailEvents heartbeat after this long without an event (15 s unless a test says). */
  heartbeatMs?: number;
}

const DEFAULT_INTERVAL_SECONDS = 5;
const MAX_INTERVAL_SECONDS = 3600;

const UPDATE_TYPES: Record<RealtimeUpdate["kind"], RealtimeUpdateType> = {
  snapshot: RealtimeUpdateType.SNAPSHOT,
  update: RealtimeUpdateType.METRICS_UPDATE,
  heartbeat: RealtimeUpdateType.HEARTBEAT,
};

const QUERY_KINDS: Record<SubscriptionQueryKindName, SubscriptionQueryKind> = {
  run_report: SubscriptionQueryKind.RUN_REPORT,
  get_time_series: SubscriptionQueryKind.GET_TIME_SERIES,
};

function queryKindName(kind: SubscriptionQueryKind): SubscriptionQueryKindName | undefined {
  return kind === SubscriptionQueryKind.RUN_REPORT ? "run_report" : kind === SubscriptionQueryKind.GET_TIME_SERIES ? "get_time_series" : undefined;
}

export function liveEventToProto(e: LiveEvent): EnrichedEvent {
  return create(EnrichedEventSchema, {
    siteId: e.siteId,
    eventId: e.eventId,
    name: e.name,
    timestamp: timestampFromMs(e.ts),
    visitorId: e.visitorId,
    sessionId: e.sessionId,
    hostname: e.hostname,
    pathname: e.pathname,
    title: e.title,
    referrer: e.referrer,
    source: e.referrerSource,
    medium: e.referrerMedium,
    utmSource: e.utmSource,
    utmMedium: e.utmMedium,
    utmCampaign: e.utmCampaign,
    utmTerm: e.utmTerm,
    utmContent: e.utmContent,
    country: e.country,
    region: e.region,
    city: e.city,
    browser: e.browser,
    browserVersion: e.browserVersion,
    os: e.os,
    osVersion: e.osVersion,
    deviceType: e.deviceType,
    screen: e.screen,
    language: e.language,
    classification: e.classification === 2 ? Classification.BOT : Classification.USER,
    properties: Object.keys(e.props).length > 0 ? (e.props as JsonObject) : undefined,
    revenue: e.revenue ?? undefined,
  });
}

function subscriptionToProto(s: Subscription, withSecret = false): SubscriptionMsg {
  return create(SubscriptionSchema, {
    id: s.id,
    siteId: s.siteId,
    queryJson: s.queryJson,
    queryKind: QUERY_KINDS[s.queryKind],
    delivery: DeliveryKind.WEBHOOK,
    endpoint: s.endpoint,
    throttleSeconds: s.throttleSeconds,
    signingSecret: withSecret ? s.signingSecret : "",
    createTime: timestampFromDate(s.createdAt),
    etag: etagOf(s),
    lastDeliveryTime: s.lastDeliveredAt ? timestampFromDate(s.lastDeliveredAt) : undefined,
  });
}

function deliveryToProto(d: SubscriptionDelivery): DeliveryMsg {
  return create(DeliverySchema, {
    id: d.id,
    subscriptionId: d.subscriptionId,
    attemptTime: timestampFromDate(d.createdAt),
    statusCode: d.statusCode,
    attempt: d.attempt,
    succeeded: d.succeeded,
    error: d.error,
    durationMs: d.durationMs,
  });
}

export class StreamingServiceImpl implements ServiceImpl<typeof StreamingService> {
  private readonly idempotency: Idempotency;

  constructor(private readonly deps: StreamingDeps) {
    this.idempotency = new Idempotency(deps.orm);
  }

  private em(): EntityManager {
    return this.deps.orm.em.fork();
  }

  /** Takes one of the key's concurrent streams (ResourceExhausted beyond its quota). */
  private async openStream(em: EntityManager, principal: Principal): Promise<StreamLease> {
    const { values } = await getQuotas(em, principal.organisationId);
    return this.deps.leases.acquire(principal.keyId, values.maxConcurrentStreams);
  }

  /** Ends with the call (client cancel, deadline) or with the server. */
  private streamSignal(ctx: HandlerContext): AbortSignal {
    return AbortSignal.any([ctx.signal, this.deps.shutdown]);
  }

  async *watchRealtime(req: pb.WatchRealtimeRequest, ctx: HandlerContext): AsyncGenerator<pb.WatchRealtimeResponse> {
    const principal = principalOf(ctx.values);
    const em = this.em();
    const site = await loadSite(em, principal, req.siteId);
    const seconds = req.intervalSeconds === 0 ? DEFAULT_INTERVAL_SECONDS : req.intervalSeconds;
    if (seconds < 1 || seconds > MAX_INTERVAL_SECONDS) throw new InvalidArgumentError("interval_seconds", `must be between 1 and ${MAX_INTERVAL_SECONDS} (default ${DEFAULT_INTERVAL_SECONDS}), got ${req.intervalSeconds}`);
    const lease = await this.openStream(em, principal);
    try {
      for await (const update of watchRealtime(this.deps.hub, this.deps.snapshots, site.id, { intervalMs: seconds * 1000, signal: this.streamSignal(ctx) })) {
        yield create(pb.WatchRealtimeResponseSchema, {
          type: UPDATE_TYPES[update.kind],
          timestamp: timestampFromMs(update.at),
          report: update.snapshot ? realtimeToProto(update.snapshot) : undefined,
          dropped: BigInt(update.dropped),
        });
      }
    } finally {
      await lease.release();
    }
  }

  async *tailEvents(req: pb.TailEventsRequest, ctx: HandlerContext): AsyncGenerator<pb.TailEventsResponse> {
    const principal = principalOf(ctx.values);
    const em = this.em();
    const site = await loadSite(em, principal, req.siteId);
    const filter = tailFilter({ eventNames: req.eventNames, pagePrefix: req.pagePrefix, countries: req.countries, includeBots: req.includeBots });
    const lease = await this.openStream(em, principal);
    try {
      const items = tailEvents(this.deps.hub, site.id, filter, {
        signal: this.streamSignal(ctx),
        maxQueued: this.deps.maxQueuedEvents ?? 1000,
        heartbeatMs: this.deps.heartbeatMs ?? 15_000,
      });
      for await (const item of items) {
        yield create(pb.TailEventsResponseSchema, { event: item.event ? liveEventToProto(item.event) : undefined, dropped: BigInt(item.dropped) });
      }
    } finally {
      await lease.release();
    }
  }

  /** Checks a query by running it once, so a subscription that could never deliver is refused. */
  private async checkQuery(principal: Principal, siteId: string, kind: SubscriptionQueryKind, json: string, signal: AbortSignal) {
    const parsed = parseSubscriptionQuery(queryKindName(kind), subscriptions.checkQueryJson("query_json", json), siteId);
    try {
      await this.deps.queries.run({ organisationId: principal.organisationId, siteId, kind: parsed.kind, queryJson: parsed.queryJson }, signal);
    } catch (err) {
      if (err instanceof InvalidArgumentError) {
        const problem = err.field ? err.message.slice(err.field.length + 2) : err.message;
        throw new InvalidArgumentError(err.field ? `query_json.${err.field}` : "query_json", problem);
      }
      if (err instanceof BeaconError && err.reason === "NOT_FOUND") throw new InvalidArgumentError("query_json", err.message);
      throw err;
    }
    return parsed;
  }

  async createSubscription(req: pb.CreateSubscriptionRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    const site = await loadSite(this.em(), principal, req.siteId);
    if (req.delivery !== DeliveryKind.WEBHOOK) throw new InvalidArgumentError("delivery", "is required: DELIVERY_KIND_WEBHOOK");
    subscriptions.checkEndpoint("endpoint", req.endpoint);
    subscriptions.checkThrottle("throttle_seconds", req.throttleSeconds, subscriptions.DEFAULT_THROTTLE_SECONDS);
    const query = await this.checkQuery(principal, site.id, req.queryKind, req.queryJson, ctx.signal);
    return this.idempotency.run(
      // The secret is kept (deliveries are signed with it), so a retried create may show it again.
      { ctx, principal, requestSchema: pb.CreateSubscriptionRequestSchema, request: req, responseSchema: pb.CreateSubscriptionResponseSchema },
      async (em) => {
        const subscription = await subscriptions.createSubscription(em, principal, site.id, {
          kind: query.kind,
          queryJson: query.queryJson,
          delivery: "webhook",
          endpoint: req.endpoint,
          throttleSeconds: req.throttleSeconds,
        });
        return create(pb.CreateSubscriptionResponseSchema, { subscription: subscriptionToProto(subscription, true) });
      },
    );
  }

  async getSubscription(req: pb.GetSubscriptionRequest, ctx: HandlerContext) {
    const subscription = await subscriptions.loadSubscription(this.em(), principalOf(ctx.values), req.siteId, req.id);
    return create(pb.GetSubscriptionResponseSchema, { subscription: subscriptionToProto(subscription) });
  }

  async listSubscriptions(req: pb.ListSubscriptionsRequest, ctx: HandlerContext) {
    const page = await subscriptions.listSubscriptions(this.em(), principalOf(ctx.values), req.siteId, req);
    return create(pb.ListSubscriptionsResponseSchema, { subscriptions: page.items.map((s) => subscriptionToProto(s)), nextPageToken: page.nextPageToken });
  }

  async updateSubscription(req: pb.UpdateSubscriptionRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    let query: { kind: SubscriptionQueryKindName; queryJson: string } | undefined;
    if (req.queryJson !== undefined) {
      const site = await loadSite(this.em(), principal, req.siteId);
      query = await this.checkQuery(principal, site.id, SubscriptionQueryKind.UNSPECIFIED, req.queryJson, ctx.signal);
    }
    const subscription = await this.em().transactional((em) =>
      subscriptions.updateSubscription(em, principal, req.siteId, req.id, {
        etag: req.etag,
        kind: query?.kind,
        queryJson: query?.queryJson,
        endpoint: req.endpoint,
        throttleSeconds: req.throttleSeconds,
      }),
    );
    return create(pb.UpdateSubscriptionResponseSchema, { subscription: subscriptionToProto(subscription) });
  }

  async deleteSubscription(req: pb.DeleteSubscriptionRequest, ctx: HandlerContext) {
    await this.em().transactional((em) => subscriptions.deleteSubscription(em, principalOf(ctx.values), req.siteId, req.id, req.etag));
    return create(pb.DeleteSubscriptionResponseSchema);
  }

  async listDeliveries(req: pb.ListDeliveriesRequest, ctx: HandlerContext) {
    const page = await subscriptions.listDeliveries(this.em(), principalOf(ctx.values), req.siteId, req.subscriptionId, req);
    return create(pb.ListDeliveriesResponseSchema, { deliveries: page.items.map(deliveryToProto), nextPageToken: page.nextPageToken });
  }
}
