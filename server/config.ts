// Environment → one typed, validated object. A bad value stops the start with one line that
// names the variable, so an operator never has to guess which setting was wrong.
import { resolve } from "node:path";

export type Role = "all" | "server" | "worker";

export interface BeaconConfig {
  /** TCP port for every protocol (Connect, gRPC, gRPC-web, plain HTTP beacons). 0 picks a free one. */
  port: number;
  host: string;
  /** Process role: `all` runs the server and the workers in one process. */
  role: Role;
  /** Postgres URL; undefined means the embedded Postgres under `dataDir`. */
  databaseUrl: string | undefined;
  /** Redis URL; undefined means redis://127.0.0.1:6379, started as a child process if nothing answers. */
  redisUrl: string | undefined;
  /** Prefix of every Redis key Beacon writes (BullMQ queues, sessions, rate limits). */
  redisPrefix: string;
  /** Where the embedded Postgres and Redis keep their data. */
  dataDir: string;
  /** Origins allowed to call from a browser; `*` allows any. */
  corsOrigins: string[] | "*";
  /** Optional GeoLite2/GeoIP2 City database for region and city lookups. */
  geoCityDbPath: string | undefined;
  /** How long graceful shutdown waits for in-flight calls before closing them. */
  shutdownTimeoutMs: number;
  /** Secret for visitor-id hashing salts and page tokens; generated and kept in the database when unset. */
  secret: string | undefined;
  logLevel: "debug" | "info" | "warn" | "error" | "silent";
  /** Largest accepted request body in bytes (beacons and RPCs). */
  maxBodyBytes: number;
  /** Events per TrackEvents / batch request. */
  maxBatchEvents: number;
  /**
   * How long a worker's claim on a job lasts without renewal. A worker that dies mid-batch has its
   * batch taken over by another after this long (BullMQ's stalled-job check).
   */
  workerLockMs: number;
  /**
   * Nice value a `--role worker` process lowers its CPU priority to (0 leaves it), so a server,
   * Postgres and Redis sharing its cores are served first (server/priority.ts).
   */
  workerNice: number;
  /** Ingest batches a worker process enriches at once. */
  ingestConcurrency: number;
  /** Stores of ready ingest batches (group commits) a worker process runs side by side (3: see DEFAULT_PARALLEL_STORES). */
  ingestParallelStores: number;
  /** How long a free store waits for more ready batches before storing a small group, ms (50: see DEFAULT_STORE_LINGER_MS). */
  ingestStoreLingerMs: number;
  /** New events are held, then refused (503, Retry-After), while one accepted now would wait longer than this to be taken; 0 = never. */
  ingestMaxQueueWaitMs: number;
  /** Read rollups in reports (off: every report computed from raw events). */
  reportRollups: boolean;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a whole number, got "${raw}"`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
  return value;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(", ")}, got "${raw}"`);
  }
  return raw as T;
}

function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name} is not a valid URL`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${name} must use ${protocols.join(" or ")}, got "${parsed.protocol}"`);
  }
  return raw;
}

/** Reads `--role X` or `--role=X` from the command line, if given. */
function roleFromArgv(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--role") return argv[i + 1] ?? "";
    if (arg.startsWith("--role=")) return arg.slice("--role=".length);
  }
  return undefined;
}

export function loadConfig(env: Env = process.env, argv: readonly string[] = process.argv.slice(2)): BeaconConfig {
  const roleArg = roleFromArgv(argv);
  const role = oneOf({ ...env, BEACON_ROLE: roleArg ?? env.BEACON_ROLE }, "BEACON_ROLE", ["all", "server", "worker"] as const, "all");
  const cors = (env.CORS_ORIGINS ?? "*").trim();
  let corsOrigins: string[] | "*" = "*";
  if (cors !== "*" && cors !== "") {
    corsOrigins = cors.split(",").map((o) => o.trim()).filter(Boolean);
    for (const origin of corsOrigins) {
      try {
        new URL(origin);
      } catch {
        throw new ConfigError(`CORS_ORIGINS has an invalid origin "${origin}"`);
      }
    }
  }
  const prefix = env.REDIS_PREFIX ?? "beacon";
  if (!/^[A-Za-z0-9_.-]+$/.test(prefix)) throw new ConfigError(`REDIS_PREFIX may hold only letters, digits, "_", "." and "-", got "${prefix}"`);
  const secret = env.BEACON_SECRET || undefined;
  if (secret !== undefined && secret.length < 16) throw new ConfigError("BEACON_SECRET must be at least 16 characters");
  return {
    port: integer(env, "PORT", 8787, 0, 65535),
    host: env.HOST || "0.0.0.0",
    role,
    databaseUrl: url(env, "DATABASE_URL", ["postgres:", "postgresql:"]),
    redisUrl: url(env, "REDIS_URL", ["redis:", "rediss:"]),
    redisPrefix: prefix,
    dataDir: resolve(env.BEACON_DATA_DIR || ".beacon"),
    corsOrigins,
    geoCityDbPath: env.GEOIP_CITY_DB || undefined,
    shutdownTimeoutMs: integer(env, "SHUTDOWN_TIMEOUT_MS", 8000, 0, 600_000),
    secret,
    logLevel: oneOf(env, "LOG_LEVEL", ["debug", "info", "warn", "error", "silent"] as const, "info"),
    maxBodyBytes: integer(env, "MAX_BODY_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
    maxBatchEvents: integer(env, "MAX_BATCH_EVENTS", 1000, 1, 100_000),
    workerLockMs: integer(env, "WORKER_LOCK_MS", 30_000, 1000, 600_000),
    workerNice: integer(env, "WORKER_NICE", 10, 0, 19),
    ingestConcurrency: integer(env, "INGEST_CONCURRENCY", 16, 1, 64),
    ingestParallelStores: integer(env, "INGEST_PARALLEL_STORES", 3, 1, 16),
    ingestStoreLingerMs: integer(env, "INGEST_STORE_LINGER_MS", 50, 0, 1000),
    ingestMaxQueueWaitMs: integer(env, "INGEST_MAX_QUEUE_WAIT_MS", 800, 0, 3_600_000),
    reportRollups: oneOf(env, "REPORT_ROLLUPS", ["on", "off"] as const, "on") === "on",
  };
}
