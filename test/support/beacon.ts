// A whole Beacon server for integration tests: its own migrated database, its own Redis key
// prefix, the app as main.ts wires it, listening on port 0, and one admin key from bootstrap.
// stop() undoes all of it: only this server's Redis keys are deleted (never FLUSHALL) and its
// database is dropped, so test files can run side by side.
import { randomBytes } from "node:crypto";
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Redis } from "ioredis";
import { type App, build } from "../../server/app.js";
import { type BeaconConfig, loadConfig } from "../../server/config.js";
import { bootstrap } from "../../server/core/management/bootstrap.js";
import { createVisitorHasher, type VisitorHasher } from "../../server/core/enrich/visitor.js";
import { createApiKey } from "../../server/core/management/keys.js";
import type { RoleName } from "../../server/core/roles.js";
import { Organisation } from "../../server/db/entities/index.js";
import { instanceSecret } from "../../server/db/instance-secret.js";
import { type HttpListener, listen } from "../../server/http/listen.js";
import { createLogger } from "../../server/logger.js";
import { connectRedis } from "../../server/redis.js";
import { startWorkers, type WorkerDeps, type Workers } from "../../workers/main.js";
import { createIngestProducer, type IngestProducer } from "../../workers/producer.js";
import { createMigratedTestOrm } from "./db.js";

export const TEST_REDIS_URL = process.env.TEST_REDIS_URL || "redis://127.0.0.1:6379";

export interface StartTestBeaconOptions {
  /** Extra environment for loadConfig (e.g. `MAX_BATCH_EVENTS`); the harness's own keys win. */
  env?: Record<string, string>;
  /**
   * Also run the BullMQ workers in this process, as `--role all` does, so accepted events get
   * stored. Off by default: tests of the API alone need no workers.
   */
  workers?: boolean | Pick<WorkerDeps, "ingestConcurrency" | "onStored">;
}

export interface MakeKeyOptions {
  /** Sites the key is limited to; every site of its organisation when empty. */
  siteIds?: string[];
  /** The key's organisation; the bootstrapped one when unset. */
  organisationId?: string;
  displayName?: string;
}

export interface TestBeacon {
  /** `http://127.0.0.1:<port>`: every protocol on one port. */
  baseUrl: string;
  port: number;
  /** The admin key bootstrap printed, for the bootstrapped organisation. */
  adminKey: string;
  organisationId: string;
  config: BeaconConfig;
  orm: MikroORM;
  redis: Redis;
  /** The Redis key prefix this server writes under (`config.redisPrefix`). */
  prefix: string;
  app: App;
  listener: HttpListener;
  /** The server's ingest queue producer. */
  producer: IngestProducer;
  hasher: VisitorHasher;
  /** The workers, when `workers` was asked for. */
  workers: Workers | undefined;
  /** Another Redis client (as BullMQ needs one per Queue or Worker); stop() quits it. */
  connection(): Redis;
  /** A new API key secret with `role`, in the bootstrapped organisation unless told otherwise. */
  makeKey(role: RoleName, opts?: MakeKeyOptions): Promise<string>;
  /** A new, empty organisation; returns its id. */
  makeOrganisation(name: string): Promise<string>;
  /** Closes the listener, deletes this server's Redis keys, quits Redis and drops the database. */
  stop(): Promise<void>;
}

/**
 * Deletes every key under `prefix` (`<prefix>:…`, as BullMQ and Beacon name them) with SCAN + DEL,
 * touching nothing else in the shared Redis. The prefix holds no glob characters (config checks).
 */
export async function deleteRedisKeys(redis: Redis, prefix: string): Promise<number> {
  let deleted = await redis.del(prefix);
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== "0");
  return deleted;
}

export async function startTestBeacon(label: string, options: StartTestBeaconOptions = {}): Promise<TestBeacon> {
  const safeLabel = label.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 30) || "beacon";
  const prefix = `beacon-test-${safeLabel}-${randomBytes(4).toString("hex")}`;
  const logger = createLogger({ level: "silent" });
  const database = await createMigratedTestOrm(label);
  const cleanups: (() => Promise<unknown>)[] = [() => database.drop()];
  // Runs every cleanup, newest first, even when one fails; the first failure is rethrown.
  const undo = async () => {
    const failures: unknown[] = [];
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((error: unknown) => failures.push(error));
    if (failures.length > 0) throw failures[0];
  };

  try {
    const config = loadConfig(
      {
        // Backpressure refuses events while the queue lags; on a test machine shared by many test
        // files that happens for reasons no test is about, so it is off unless a test turns it on.
        INGEST_MAX_QUEUE_WAIT_MS: "0",
        ...options.env,
        PORT: "0",
        HOST: "127.0.0.1",
        DATABASE_URL: database.url,
        REDIS_URL: TEST_REDIS_URL,
        REDIS_PREFIX: prefix,
        LOG_LEVEL: "silent",
      },
      [],
    );
    const { orm } = database;
    const first = await bootstrap(orm.em.fork());
    if (!first.adminKey) throw new Error("bootstrap of a fresh test database returned no admin key");
    const adminKey = first.adminKey;
    const organisationId = first.organisation.id;

    const redisHandle = await connectRedis({ url: config.redisUrl, dataDir: config.dataDir, log: logger });
    const redis = redisHandle.connection();
    cleanups.push(async () => {
      await deleteRedisKeys(redis, prefix);
      await redisHandle.stop();
    });

    const hasher = createVisitorHasher(await instanceSecret(orm, config.secret));
    const producer = createIngestProducer(redisHandle.connection(), prefix);
    cleanups.push(() => producer.close());

    let workers: Workers | undefined;
    if (options.workers) {
      const extra = options.workers === true ? {} : options.workers;
      const started = await startWorkers({ orm, connection: () => redisHandle.connection(), prefix, logger, hasher, ...extra });
      workers = started;
      cleanups.push(() => started.close());
    }

    const app = build({ config, logger, orm, redis, producer, hasher });
    const listener = await listen(app.handler, { port: 0, host: "127.0.0.1", logger });
    cleanups.push(async () => {
      app.shutdown();
      await listener.close(2_000);
      await app.close();
    });

    let stopping: Promise<void> | undefined;
    return {
      baseUrl: `http://127.0.0.1:${listener.port}`,
      port: listener.port,
      adminKey,
      organisationId,
      config,
      orm,
      redis,
      prefix,
      app,
      listener,
      producer,
      hasher,
      workers,
      connection: () => redisHandle.connection(),
      async makeKey(role, opts = {}) {
        const em = orm.em.fork();
        const { secret } = await createApiKey(em, null, opts.organisationId ?? organisationId, {
          displayName: opts.displayName ?? `test ${role} key`,
          role,
          siteIds: opts.siteIds ?? [],
        });
        return secret;
      },
      async makeOrganisation(name) {
        const em = orm.em.fork();
        const organisation = em.create(Organisation, { name });
        await em.flush();
        return organisation.id;
      },
      stop() {
        stopping ??= undo();
        return stopping;
      },
    };
  } catch (error) {
    await undo().catch(() => {});
    throw error;
  }
}
