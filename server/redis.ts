// Redis for BullMQ and short-lived state. An operator can point REDIS_URL at their own; without it
// Beacon uses a Redis on the default port, or starts its own `redis-server` under the data
// directory, so `npx beacon` works on a laptop with nothing configured.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { access, constants, mkdir } from "node:fs/promises";
import net from "node:net";
import { delimiter, isAbsolute, join } from "node:path";
import { Redis } from "ioredis";
import type { Logger } from "./logger.js";

export interface RedisOptions {
  /** REDIS_URL; when set, it must answer or the start fails. */
  url?: string;
  /** Beacon's data directory; a Redis started here keeps its files under `<dataDir>/redis`. */
  dataDir: string;
  log: Logger;
  /** Where to look for a running Redis when `url` is unset; `redis://127.0.0.1:6379` unless a test says. */
  defaultUrl?: string;
  /** The executable to start, by name (looked up on PATH) or path; `redis-server` unless a test says. */
  redisServerBin?: string;
  /** How long a Redis may take to answer PING; 3 s unless a test says. */
  pingTimeoutMs?: number;
}

export interface RedisHandle {
  /** The URL in use (credentials included, so do not log it). */
  url: string;
  /** A new client, as BullMQ needs (`maxRetriesPerRequest: null`); stop() quits it. */
  connection(): Redis;
  /** Quits every client handed out, then shuts down the Redis this process started, if any. */
  stop(): Promise<void>;
}

const defaultRedisUrl = "redis://127.0.0.1:6379";
const defaultPingTimeoutMs = 3_000;
const startTimeoutMs = 10_000;
const stopTimeoutMs = 5_000;
const quitTimeoutMs = 1_000;

export class RedisUnavailableError extends Error {
  override name = "RedisUnavailableError";
}

export async function connectRedis(options: RedisOptions): Promise<RedisHandle> {
  const { log } = options;
  const pingTimeoutMs = options.pingTimeoutMs ?? defaultPingTimeoutMs;

  if (options.url !== undefined) {
    const failure = await ping(options.url, pingTimeoutMs);
    if (failure !== undefined) {
      throw new RedisUnavailableError(
        `Redis at ${redact(options.url)} did not answer PING within ${pingTimeoutMs / 1000} s (${failure}); check REDIS_URL and that Redis is running`,
      );
    }
    log.info("redis connected", { url: redact(options.url) });
    return handle(options.url, log, undefined);
  }

  const defaultUrl = options.defaultUrl ?? defaultRedisUrl;
  if ((await ping(defaultUrl, pingTimeoutMs)) === undefined) {
    log.info("redis connected", { url: redact(defaultUrl) });
    return handle(defaultUrl, log, undefined);
  }

  const bin = await findExecutable(options.redisServerBin ?? "redis-server");
  if (bin === undefined) {
    throw new RedisUnavailableError(
      `No Redis answered at ${redact(defaultUrl)} and redis-server is not installed: install it (apt-get install redis-server, or brew install redis) and start it, or set REDIS_URL to a running Redis`,
    );
  }
  const child = await startRedisServer(bin, join(options.dataDir, "redis"), pingTimeoutMs, log);
  return handle(child.url, log, child);
}

interface RedisChild {
  url: string;
  process: ChildProcess;
  exited: Promise<void>;
}

function handle(url: string, log: Logger, child: RedisChild | undefined): RedisHandle {
  const clients = new Set<Redis>();
  let stopping: Promise<void> | undefined;
  return {
    url,
    connection() {
      if (stopping) throw new Error("Redis connection requested after stop()");
      const client = new Redis(url, { maxRetriesPerRequest: null });
      clients.add(client);
      client.once("end", () => clients.delete(client));
      // Without a listener ioredis prints every reconnect failure as an "unhandled error event".
      client.on("error", (error: Error) => log.warn("redis connection error", { error: error.message }));
      return client;
    },
    stop() {
      stopping ??= (async () => {
        await Promise.all([...clients].map(closeClient));
        clients.clear();
        if (child) await stopRedisServer(child, log);
      })();
      return stopping;
    },
  };
}

/** QUIT when the client is connected (pending replies still arrive), else drop it; resolves once ended. */
async function closeClient(client: Redis): Promise<void> {
  if (client.status === "end") return;
  if (client.status === "reconnecting") {
    // Between attempts there is no socket, so no "end" will come: cancelling the next attempt is all.
    client.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const ended = Promise.race([
    new Promise<void>((resolve) => client.once("end", () => resolve())),
    // A server that stopped answering QUIT must not hold up shutdown.
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        client.disconnect();
        resolve();
      }, quitTimeoutMs);
    }),
  ]);
  if (client.status === "ready") await client.quit().catch(() => client.disconnect());
  else client.disconnect();
  await ended;
  clearTimeout(timer);
}

/** Undefined when `url` answered PING in time, else why not. */
async function ping(url: string, timeoutMs: number): Promise<string | undefined> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  let lastError: string | undefined;
  client.on("error", (error: Error) => {
    lastError = error.message;
  });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(lastError ?? "timed out"), timeoutMs);
  });
  try {
    return await Promise.race([
      client.connect().then(
        () => client.ping().then(() => undefined),
        (error: Error) => lastError ?? error.message,
      ).catch((error: Error) => error.message),
      timedOut,
    ]);
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

/** The executable's path, when `name` is a path that exists or a name found on PATH. */
async function findExecutable(name: string): Promise<string | undefined> {
  const candidates = name.includes("/") || isAbsolute(name)
    ? [name]
    : (process.env.PATH ?? "").split(delimiter).filter(Boolean).map((dir) => join(dir, name));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next directory
    }
  }
  return undefined;
}

/** A port nothing listens on right now (6379 stays free for a Redis the operator starts later). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function startRedisServer(bin: string, dir: string, pingTimeoutMs: number, log: Logger): Promise<RedisChild> {
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const args = [
    "--port", String(port),
    "--bind", "127.0.0.1",
    "--dir", dir,
    "--appendonly", "yes",
    // The append-only file is the durable copy; RDB snapshots would only duplicate it.
    "--save", "",
    "--daemonize", "no",
    "--protected-mode", "yes",
    "--logfile", "",
  ];
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line.trim() === "") continue;
      output.push(line.trim());
      if (output.length > 20) output.shift();
      log.debug("redis-server", { line: line.trim() });
    }
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let exitCode: number | string | null | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      exitCode = code ?? signal;
      resolve();
    });
    child.once("error", (error) => {
      exitCode = error.message;
      resolve();
    });
  });

  const giveUpAt = Date.now() + startTimeoutMs;
  for (;;) {
    if (exitCode !== undefined) {
      throw new RedisUnavailableError(`redis-server exited at start (${exitCode}): ${output.at(-1) ?? "no output"}`);
    }
    if ((await ping(url, Math.min(pingTimeoutMs, 1_000))) === undefined) break;
    if (Date.now() > giveUpAt) {
      child.kill("SIGKILL");
      throw new RedisUnavailableError(`redis-server did not answer on port ${port} within ${startTimeoutMs / 1000} s: ${output.at(-1) ?? "no output"}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  log.info("redis-server started", { url, dir, pid: child.pid });
  child.once("exit", (code, signal) => {
    if (!stopped.has(child)) log.error("redis-server exited unexpectedly", { code, signal });
  });
  return { url, process: child, exited };
}

// Children being stopped on purpose, so their exit is not reported as a crash.
const stopped = new WeakSet<ChildProcess>();

async function stopRedisServer(child: RedisChild, log: Logger): Promise<void> {
  if (child.process.exitCode !== null || child.process.signalCode !== null) return;
  stopped.add(child.process);
  // SHUTDOWN flushes the append-only file; the server closes the connection without a reply.
  const client = new Redis(child.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.shutdown();
  } catch {
    // The expected "Connection is closed" once the server has gone.
  } finally {
    client.disconnect();
  }
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      log.warn("redis-server did not stop after SHUTDOWN; killing it", { pid: child.process.pid });
      child.process.kill("SIGKILL");
      resolve();
    }, stopTimeoutMs);
  });
  await Promise.race([child.exited, killed]);
  clearTimeout(timer);
  await child.exited;
  log.info("redis-server stopped", { pid: child.process.pid });
}

/** The URL without its password, for messages and logs. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString().replace(/\/$/, "");
  } catch {
    return "the configured URL";
  }
}
