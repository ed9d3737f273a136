// build(deps) → { handler, close }: the one place routes, interceptors and plain-HTTP endpoints
// meet. No I/O happens here; main.ts (or a test) provides the database, Redis and logger.
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Redis } from "ioredis";
import { ExportService } from "../gen/beacon/v1/export_service_pb.js";
import { ManagementService } from "../gen/beacon/v1/management_service_pb.js";
import { ReportingService } from "../gen/beacon/v1/reporting_service_pb.js";
import { StreamingService } from "../gen/beacon/v1/streaming_service_pb.js";
import { TrackingService } from "../gen/beacon/v1/tracking_service_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import type { BeaconConfig } from "./config.js";
import { ApiKeyPrincipals } from "./core/management/principals.js";
import { createBeaconRoutes } from "./http/beacons.js";
import { createDataApiRoutes } from "./http/data-api.js";
import { withCors } from "./http/cors.js";
import { handleHealthHttp, type ReadinessProbe } from "./http/health.js";
import type { HttpHandler } from "./http/listen.js";
import { createAuthInterceptor } from "./interceptors/auth.js";
import { createErrorInterceptor } from "./interceptors/errors.js";
import { createLoggingInterceptor, logHttpRequest } from "./interceptors/logging.js";
import type { Logger } from "./logger.js";
import { RedisUsage } from "./core/usage.js";
import { Acceptor, type LimitedRequest, rateLimitGate } from "./core/ingest/accept.js";
import type { RawHit } from "./core/ingest/hit.js";
import { IngestBuffer } from "./core/ingest/buffer.js";
import { IngestBackpressure } from "./core/ingest/backpressure.js";
import { RateLimiter } from "./core/ingest/rate-limit.js";
import { SiteDirectory } from "./core/ingest/sites.js";
import type { VisitorHasher } from "./core/enrich/visitor.js";
import { connectContextValues } from "./http/client.js";
import { TrackingServiceImpl } from "./services/tracking.js";
import { ReportingServiceImpl } from "./services/reporting.js";
import { ReportEngine } from "./core/reports/engine.js";
import { RealtimeState } from "./core/realtime.js";
import { sqlPool } from "./db/orm.js";
import type { IngestProducer } from "../workers/producer.js";
import { HealthService, HealthState } from "./services/health.js";
import { ManagementServiceImpl } from "./services/management.js";
import { MetricQueries } from "./services/metric-queries.js";
import { defaultImportRoot } from "./core/metrics/bulk.js";
import { CardinalityDiagnostics, SeriesRegistry } from "./core/metrics/cardinality.js";
import { MetricCatalog } from "./core/metrics/catalog.js";
import { MetricIntake } from "./core/metrics/intake.js";
import type { AcceptedMetricPoint } from "./core/metrics/points.js";
import { MetricQueryEngine } from "./core/metrics/queries.js";
import { createMetricProducer, type MetricProducer } from "../workers/producer.js";
import { StreamHub } from "./core/streams/hub.js";
import { StreamLeases } from "./core/streams/leases.js";
import { SharedSnapshots } from "./core/streams/realtime-watch.js";
import { StreamingServiceImpl } from "./services/streaming.js";
import { createSubscriptionQueryRunner } from "./services/subscription-queries.js";

export interface AppDeps {
  config: BeaconConfig;
  logger: Logger;
  orm: MikroORM;
  /** A Redis client for request-path state (usage counters, rate limits, dedupe). */
  redis: Redis;
  /** Where accepted events are written (the BullMQ ingest queue). */
  producer: IngestProducer;
  /** Visitor hashing, keyed by the instance secret. */
  hasher: VisitorHasher;
  health?: HealthState;
  /** Where accepted metric points and bulk ingestions go; built on `redis` when not given. */
  metricProducer?: MetricProducer;
}

export interface App {
  handler: HttpHandler;
  health: HealthState;
  /** Ends streams and marks the server NOT_SERVING; the listener drains in-flight calls. */
  shutdown(): void;
  /** After the listener has drained: writes what the ingest buffer still holds. */
  close(): Promise<void>;
}

const RPC_SERVICES = [TrackingService, ReportingService, ManagementService, StreamingService, ExportService];

export function build(deps: AppDeps): App {
  const { config, logger, orm, redis } = deps;
  const health = deps.health ?? new HealthState();
  for (const service of RPC_SERVICES) health.setServing(service.typeName, true);
  const principals = new ApiKeyPrincipals(orm);
  const usage = new RedisUsage(redis, config.redisPrefix);
  const sites = new SiteDirectory(orm);
  const engine = new ReportEngine(() => sqlPool(orm), { rollups: config.reportRollups });
  const realtime = new RealtimeState(redis, config.redisPrefix);
  // Rate limits are checked as the buffer flushes, for all of the flush's requests in one call.
  const buffer = new IngestBuffer<RawHit, LimitedRequest>((hits) => deps.producer.write(hits), undefined, rateLimitGate(new RateLimiter(redis, config.redisPrefix)));
  const acceptor = new Acceptor({
    redis,
    prefix: config.redisPrefix,
    buffer,
    hasher: deps.hasher,
    usage,
    backpressure: new IngestBackpressure(redis, config.redisPrefix, { maxQueueWaitMs: config.ingestMaxQueueWaitMs }),
  });
  const metricProducer = deps.metricProducer ?? createMetricProducer(redis, config.redisPrefix);
  const metricBuffer = new IngestBuffer<AcceptedMetricPoint>((points) => metricProducer.writePoints(points), { maxEvents: 1000, maxWaitMs: 4 });
  const metricCatalog = new MetricCatalog(orm);
  const metricIntake = new MetricIntake({
    catalog: metricCatalog,
    registry: new SeriesRegistry(() => sqlPool(orm)),
    diagnostics: new CardinalityDiagnostics(redis, config.redisPrefix),
    redis,
    prefix: config.redisPrefix,
    write: (points) => metricBuffer.add(points),
  });
  const metricQueries = new MetricQueries({ orm, engine: new MetricQueryEngine({ pool: () => sqlPool(orm), catalog: metricCatalog }) });
  const reporting = new ReportingServiceImpl({ orm, engine, realtime, ingestLagSeconds: () => deps.producer.lagSeconds(), metricQueries });
  // Live streams: one pub/sub connection for the process (opened with the first stream), and a
  // signal that ends every open stream when the server shuts down.
  const streamsShutdown = new AbortController();
  const hub = new StreamHub({ connect: () => redis.duplicate(), prefix: config.redisPrefix, logger });
  const leases = new StreamLeases(redis, config.redisPrefix);

  const routes = (router: ConnectRouter) => {
    router.service(Health, new HealthService(health));
    router.service(ManagementService, new ManagementServiceImpl({ orm, usage, onKeyRevoked: () => principals.invalidate() }));
    router.service(TrackingService, new TrackingServiceImpl({
      orm,
      sites,
      acceptor,
      maxBatchEvents: config.maxBatchEvents,
      metrics: { intake: metricIntake, bulk: metricProducer, importRoots: [defaultImportRoot(config.dataDir)] },
    }));
    router.service(ReportingService, reporting);
    router.service(StreamingService, new StreamingServiceImpl({
      orm,
      hub,
      snapshots: new SharedSnapshots(realtime),
      leases,
      shutdown: streamsShutdown.signal,
      queries: createSubscriptionQueryRunner(reporting),
    }));
    // Services whose RPCs later issues implement are registered so they are discoverable and
    // authenticated; their unimplemented RPCs answer Unimplemented.
    router.service(ExportService, {});
  };

  const probes: Record<string, ReadinessProbe> = {
    postgres: async () => {
      await orm.em.getConnection().execute("select 1");
    },
    redis: async () => {
      await redis.ping();
    },
  };

  const notFound: HttpHandler = (req, res) => {
    const started = performance.now();
    res.statusCode = 404;
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ error: "not_found", message: `no route for ${req.method} ${(req.url ?? "").split("?")[0]}` }));
    logHttpRequest(logger, { method: req.method ?? "", path: (req.url ?? "").split("?")[0], status: 404, durationMs: performance.now() - started });
  };

  const beacons = createBeaconRoutes({ acceptor, sites, principals, logger, maxBodyBytes: config.maxBodyBytes, maxBatchEvents: config.maxBatchEvents });
  const dataApi = createDataApiRoutes({ orm, principals, engine, logger });

  const rpc = connectNodeAdapter({
    routes,
    interceptors: [createLoggingInterceptor(logger), createErrorInterceptor(logger), createAuthInterceptor(principals)],
    readMaxBytes: config.maxBodyBytes,
    contextValues: connectContextValues,
    fallback: (req, res) => {
      // connect-node types the fallback's response loosely; it is one of the two Node responses.
      const response = res as Parameters<HttpHandler>[1];
      if (dataApi(req, response)) return;
      if (handleHealthHttp(req, response, { state: health, probes })) return;
      notFound(req, response);
    },
  });

  return {
    // Beacons are the hottest path and none of Connect's business: they are matched by path first,
    // so a single-event hit does not pay for the adapter's routing and fallback.
    handler: withCors((req, res) => {
      if (!beacons(req, res)) rpc(req, res);
    }, { origins: config.corsOrigins }),
    health,
    shutdown() {
      health.shutdown();
      streamsShutdown.abort();
    },
    async close() {
      leases.close();
      await hub.close();
      await buffer.close();
      await metricBuffer.close();
      await usage.close();
      if (!deps.metricProducer) await metricProducer.close();
    },
  };
}
