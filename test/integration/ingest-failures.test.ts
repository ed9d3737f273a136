// Ingestion under failure, with real Postgres and Redis: a worker process killed with SIGKILL in
// the middle of a batch, Postgres restarting while events keep arriving, and events that can never
// be stored. In each, every accepted event ends up stored exactly once or in the dead letters
// with its reason: nothing vanishes, nothing is counted twice.
import { type ChildProcess, spawn } from "node:child_process";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { MikroORM } from "@mikro-orm/postgresql";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { EventSchema } from "../../gen/beacon/v1/event_pb.js";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";
import { build } from "../../server/app.js";
import { loadConfig } from "../../server/config.js";
import { createVisitorHasher } from "../../server/core/enrich/visitor.js";
import { bootstrap } from "../../server/core/management/bootstrap.js";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../../server/db/embedded.js";
import { instanceSecret } from "../../server/db/instance-secret.js";
import { closeOrm, createOrm, migrate, sqlPool } from "../../server/db/orm.js";
import { listen } from "../../server/http/listen.js";
import { createLogger } from "../../server/logger.js";
import { connectRedis } from "../../server/redis.js";
import { startWorkers, type Workers } from "../../workers/main.js";
import { createIngestProducer } from "../../workers/producer.js";
import { hitsOf, type IngestBatchJob, QUEUES } from "../../workers/queues.js";
import { deleteRedisKeys, startTestBeacon, TEST_REDIS_URL, type TestBeacon } from "../support/beacon.js";

type EventInit = MessageInitShape<typeof EventSchema>;

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

function bearer(key: string): Interceptor {
  return (next) => (req) => {
    req.header.set("Authorization", `Bearer ${key}`);
    return next(req);
  };
}

function clients(baseUrl: string, adminKey: string) {
  return {
    tracking: createClient(TrackingService, createConnectTransport({ baseUrl, httpVersion: "1.1" })),
    management: createClient(ManagementService, createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer(adminKey)] })),
  };
}

/** A visitor's request headers; each batch below comes from its own visitor, under the per-visitor limit. */
function visitor(n: number) {
  return { headers: { "User-Agent": USER_AGENT, "X-Forwarded-For": `198.18.${Math.floor(n / 250)}.${(n % 250) + 1}` } };
}

function pageviews(domain: string, prefix: string, count: number): EventInit[] {
  return Array.from({ length: count }, (_, i) => ({ eventId: `${prefix}-${i}`, name: i % 5 === 4 ? "scroll" : "pageview", url: `https://${domain}/page/${i % 7}` }));
}

/** Polls `read` until `done` holds; fails naming `what` after a generous deadline (no timing is asserted). */
async function eventually<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, deadlineMs = 90_000, diagnostics: () => string = () => ""): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}; last value: ${JSON.stringify(value)}${diagnostics()}`);
    await new Promise((wake) => setTimeout(wake, 25));
  }
}

async function queueIdle(queue: Queue, deadlineMs = 90_000): Promise<void> {
  await eventually(
    "the ingest queue to drain",
    () => queue.getJobCounts("waiting", "active", "delayed", "prioritized", "waiting-children"),
    (counts) => Object.values(counts).every((n) => n === 0),
    deadlineMs,
  );
}

/** What the exactly-once checks read: stored events, event ids stored more than once, and the sessions' event total. */
async function ledger(orm: MikroORM, siteId: string): Promise<{ events: number; repeatedIds: string[]; sessionEvents: number }> {
  const pool = await sqlPool(orm);
  const [{ n }] = (await pool.query<{ n: string }>("select count(*) as n from events where site_id = $1", [siteId])).rows;
  const repeated = await pool.query<{ event_id: string }>("select event_id from events where site_id = $1 group by event_id having count(*) > 1 limit 10", [siteId]);
  const [{ total }] = (await pool.query<{ total: string | null }>("select sum(events) as total from sessions where site_id = $1", [siteId])).rows;
  return { events: Number(n), repeatedIds: repeated.rows.map((r) => r.event_id), sessionEvents: Number(total ?? 0) };
}

async function storedCount(orm: MikroORM, siteId: string): Promise<number> {
  try {
    const [{ n }] = (await (await sqlPool(orm)).query<{ n: string }>("select count(*) as n from events where site_id = $1", [siteId])).rows;
    return Number(n);
  } catch {
    return -1; // The database is away (or a pooled connection died with it); ask again.
  }
}

describe("a worker killed with SIGKILL in the middle of a batch", () => {
  let beacon: TestBeacon;
  const children = new Set<ChildProcess>();
  let output = "";

  beforeAll(async () => {
    // The server only: the workers run in child processes, so one can be killed.
    beacon = await startTestBeacon("ingest-kill");
  });

  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL");
    await Promise.all([...children].map(exited));
    await beacon?.stop();
  });

  function spawnWorker(): ChildProcess {
    const child = spawn(process.execPath, ["--import", "tsx", "server/main.ts", "--role", "worker"], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        DATABASE_URL: beacon.config.databaseUrl,
        REDIS_URL: TEST_REDIS_URL,
        REDIS_PREFIX: beacon.prefix,
        WORKER_LOCK_MS: "2000",
        INGEST_CONCURRENCY: "1",
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("exit", () => children.delete(child));
    return child;
  }

  function exited(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => child.once("exit", () => resolve()));
  }

  it("loses nothing and stores nothing twice once a new worker takes over", { timeout: 300_000 }, async () => {
    const { tracking, management } = clients(beacon.baseUrl, beacon.adminKey);
    const { site } = await management.createSite({ domain: "killed.example.com" });
    const queue = new Queue(QUEUES.ingest, { connection: beacon.connection(), prefix: beacon.prefix });
    const BATCHES = 40;
    const BATCH_SIZE = 500;
    const diagnostics = () => `\nworker output:\n${output.slice(-4000)}`;

    let accepted = 0;
    const sendBatch = async (b: number) => {
      const response = await tracking.trackEvents({ trackingId: site!.trackingId, events: pageviews("killed.example.com", `kill-${b}`, BATCH_SIZE) }, visitor(b));
      accepted += response.received;
    };

    const first = spawnWorker();
    await sendBatch(0);
    await eventually("the first worker to start storing", () => storedCount(beacon.orm, site!.id), (n) => n > 0, 90_000, diagnostics);
    // Hold the worker in the middle of its next batch (enriched, sessions assigned, its COPY
    // waiting for this lock), so the kill lands there however fast the worker is.
    const locker = await (await sqlPool(beacon.orm)).connect();
    let sending: Promise<void> = Promise.resolve();
    try {
      await locker.query("begin");
      // The partitions, not the parent: a worker creating partitions ahead must not wait too.
      const { rows: partitions } = await locker.query("select inhrelid::regclass::text as name from pg_inherits where inhparent = 'events'::regclass");
      await locker.query(`lock table ${partitions.map((p: { name: string }) => p.name).join(", ")} in share mode`);
      // The rest arrive while the worker runs, and go on arriving after it is killed.
      sending = (async () => {
        for (let b = 1; b < BATCHES; b++) await sendBatch(b);
      })();
      // Asked on another connection: within the locker's transaction pg_stat_activity is a snapshot.
      const lockerPid = Number((await locker.query("select pg_backend_pid() as pid")).rows[0].pid);
      const waiting = async () => Number((await (await sqlPool(beacon.orm)).query("select count(*) as n from pg_stat_activity where $1 = any(pg_blocking_pids(pid)) and query ilike 'copy%'", [lockerPid])).rows[0].n);
      await eventually("the worker's store to wait for the lock", waiting, (n) => n > 0, 90_000, diagnostics);
      first.kill("SIGKILL");
      await exited(first);
    } finally {
      await locker.query("rollback");
      locker.release();
    }
    const storedAtKill = await storedCount(beacon.orm, site!.id);
    expect(storedAtKill).toBeLessThan(BATCHES * BATCH_SIZE);
    // The job it was working on is still claimed by the dead worker: it was killed mid-batch.
    expect(await queue.getActiveCount()).toBeGreaterThan(0);

    await sending;
    expect(accepted).toBe(BATCHES * BATCH_SIZE);
    const second = spawnWorker();
    await eventually("every accepted event to be stored", () => storedCount(beacon.orm, site!.id), (n) => n >= accepted, 120_000, diagnostics);
    await queueIdle(queue);

    const result = await ledger(beacon.orm, site!.id);
    expect(result).toEqual({ events: accepted, repeatedIds: [], sessionEvents: accepted });
    expect(await queue.getFailedCount()).toBe(0);

    second.kill("SIGTERM");
    await exited(second);
    await queue.close();
  });
});

/** A TCP forwarder: Beacon keeps one database address while the Postgres behind it stops and starts on another port. */
interface Forwarder {
  port: number;
  /** Where connections go; undefined refuses them (closes them at once). */
  target: number | undefined;
  close(): Promise<void>;
}

async function startForwarder(): Promise<Forwarder> {
  const sockets = new Set<Socket>();
  const forwarder: Forwarder = { port: 0, target: undefined, close: async () => {} };
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => client.destroy());
    if (forwarder.target === undefined) {
      client.destroy();
      return;
    }
    const upstream = connect(forwarder.target, "127.0.0.1");
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    upstream.on("close", () => {
      sockets.delete(upstream);
      drop();
    });
    upstream.on("error", drop);
    client.on("close", drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  forwarder.port = (server.address() as { port: number }).port;
  forwarder.close = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return forwarder;
}

describe("Postgres restarting in the middle of ingestion", () => {
  let dataDir: string;
  let postgres: EmbeddedPostgres | undefined;
  let forwarder: Forwarder;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "beacon-pg-restart-"));
    // mkdtemp makes the directory private; as root, Postgres runs as the postgres user and must enter it.
    await chmod(dataDir, 0o755);
    forwarder = await startForwarder();
  });

  afterAll(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
    await postgres?.stop();
    await forwarder?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** Postgres on `dataDir`, reached through the forwarder; returns the URL Beacon uses. */
  async function startPostgres(): Promise<string> {
    postgres = await startEmbeddedPostgres({ dataDir, log: () => {} });
    const direct = new URL(postgres.url);
    forwarder.target = Number(direct.port);
    direct.port = String(forwarder.port);
    return direct.toString();
  }

  /** Beacon as main.ts wires it (server and workers in one process) on `databaseUrl`. */
  async function startBeacon(databaseUrl: string) {
    const logger = createLogger({ level: "silent" });
    const prefix = `beacon-test-pg-restart-${process.pid}-${Date.now().toString(36)}`;
    const orm = await createOrm({ databaseUrl });
    cleanups.push(() => closeOrm(orm));
    // As main.ts does: an idle pooled connection dropped by the restart must not crash the process.
    (await sqlPool(orm)).on("error", () => {});
    await migrate(orm);
    const { adminKey } = await bootstrap(orm.em.fork());
    const config = loadConfig({ PORT: "0", HOST: "127.0.0.1", DATABASE_URL: databaseUrl, REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix, LOG_LEVEL: "silent" }, []);
    const redisHandle = await connectRedis({ url: config.redisUrl, dataDir: config.dataDir, log: logger });
    const redis: Redis = redisHandle.connection();
    cleanups.push(async () => {
      await deleteRedisKeys(redis, prefix);
      await redisHandle.stop();
    });
    const hasher = createVisitorHasher(await instanceSecret(orm, undefined));
    const producer = createIngestProducer(redisHandle.connection(), prefix);
    cleanups.push(() => producer.close());
    const workers: Workers = await startWorkers({ orm, connection: () => redisHandle.connection(), prefix, logger, hasher });
    cleanups.push(() => workers.close());
    const app = build({ config, logger, orm, redis, producer, hasher });
    const listener = await listen(app.handler, { port: 0, host: "127.0.0.1", logger });
    cleanups.push(async () => {
      app.shutdown();
      await listener.close(2_000);
      await app.close();
    });
    const queue = new Queue(QUEUES.ingest, { connection: redisHandle.connection(), prefix });
    cleanups.push(() => queue.close());
    return { baseUrl: `http://127.0.0.1:${listener.port}`, adminKey: adminKey!, orm, queue };
  }

  it("still accepts events while Postgres is down and stores every accepted one exactly once after it is back", { timeout: 300_000 }, async () => {
    const beacon = await startBeacon(await startPostgres());
    const { tracking, management } = clients(beacon.baseUrl, beacon.adminKey);
    const { site } = await management.createSite({ domain: "restart.example.com" });
    const BATCH_SIZE = 100;
    let batches = 0;
    let accepted = 0;
    const sendBatch = async () => {
      const b = batches++;
      const response = await tracking.trackEvents({ trackingId: site!.trackingId, events: pageviews("restart.example.com", `restart-${b}`, BATCH_SIZE) }, visitor(b));
      expect(response.received).toBe(BATCH_SIZE);
      accepted += response.received;
    };

    for (let i = 0; i < 5; i++) await sendBatch();
    await eventually("ingestion to be running", () => storedCount(beacon.orm, site!.id), (n) => n > 0);

    // Stop Postgres while events keep arriving.
    let down = false;
    const stopping = postgres!.stop().then(() => {
      forwarder.target = undefined;
      down = true;
    });
    while (!down) await sendBatch();
    await stopping;
    // Down for longer than the server caches a site (10 s), so accepting must not need Postgres.
    const downUntil = Date.now() + 11_000;
    while (Date.now() < downUntil) {
      await sendBatch();
      await new Promise((wake) => setTimeout(wake, 100));
    }
    const acceptedWhileDown = accepted;

    await startPostgres();
    for (let i = 0; i < 5; i++) await sendBatch();
    expect(acceptedWhileDown).toBeGreaterThan(5 * BATCH_SIZE);

    await eventually("every accepted event to be stored", () => storedCount(beacon.orm, site!.id), (n) => n >= accepted, 180_000);
    await queueIdle(beacon.queue, 180_000);
    expect(await ledger(beacon.orm, site!.id)).toEqual({ events: accepted, repeatedIds: [], sessionEvents: accepted });
    expect(await beacon.queue.getFailedCount()).toBe(0);
  });
});

describe("events that can never be stored", () => {
  let beacon: TestBeacon;
  let workers: Workers | undefined;
  let queue: Queue<IngestBatchJob>;

  beforeAll(async () => {
    // Workers are started by the tests, so events can be accepted (and their batches inspected)
    // before any is processed.
    beacon = await startTestBeacon("ingest-dead-letters");
    queue = new Queue<IngestBatchJob>(QUEUES.ingest, { connection: beacon.connection(), prefix: beacon.prefix });
  });

  afterEach(async () => {
    await workers?.close();
    workers = undefined;
  });

  afterAll(async () => {
    await queue?.close();
    await beacon?.stop();
  });

  async function startIngesting(): Promise<void> {
    workers = await startWorkers({ orm: beacon.orm, connection: () => beacon.connection(), prefix: beacon.prefix, logger: createLogger({ level: "silent" }), hasher: beacon.hasher });
  }

  /**
   * Sends requests at once until the server's buffer has put an event of `first` and one of
   * `second` into the same queued batch (it groups concurrent requests, but when is up to the
   * scheduler). Every attempt sends the same event ids, so repeats are duplicates.
   */
  async function acceptIntoOneBatch(send: () => Promise<unknown>[], first: string, second: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await Promise.all(send());
      const batches = (await queue.getJobs(["waiting"])).map((job) => hitsOf(job.data).map((hit) => hit.eventId));
      if (batches.some((ids) => ids.includes(first) && ids.includes(second))) return;
      if (attempt === 20) throw new Error(`no batch held both ${first} and ${second}: ${JSON.stringify(batches)}`);
    }
  }

  async function deadLetters(siteId: string): Promise<{ reason: string; payload: Record<string, unknown>; attempts: number }[]> {
    const pool = await sqlPool(beacon.orm);
    return (await pool.query("select reason, payload, attempts from dead_letters where site_id = $1 order by payload->>'eventId'", [siteId])).rows;
  }

  async function storedIds(siteId: string): Promise<string[]> {
    const pool = await sqlPool(beacon.orm);
    return (await pool.query<{ event_id: string }>("select event_id from events where site_id = $1 order by event_id", [siteId])).rows.map((r) => r.event_id);
  }

  it("dead-letters an event Postgres rejects, with its reason, lists it through ListDeadLetters, and stores the rest of its batch", async () => {
    const { tracking, management } = clients(beacon.baseUrl, beacon.adminKey);
    const { site } = await management.createSite({ domain: "unstorable.example.com" });
    // A measurement-protocol hit may name its user agent (`ua`), and nothing removes a NUL from it.
    // ua-parser reads this Xbox agent's OS version as "O\0ne", a text Postgres refuses: this event
    // can never be stored as sent.
    const nulAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox O\u0000ne) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.18363";
    await acceptIntoOneBatch(
      () => [
        tracking.collect({ v: "1", tid: site!.trackingId, t: "pageview", dl: "https://unstorable.example.com/console", cid: "xbox-1", ua: nulAgent, eventId: "unstorable" }),
        tracking.trackEvents({ trackingId: site!.trackingId, events: pageviews("unstorable.example.com", "good", 4) }, visitor(3)),
      ],
      "unstorable",
      "good-0",
    );
    await startIngesting();

    await eventually("the rest of the batch", () => storedCount(beacon.orm, site!.id), (n) => n >= 4, 45_000);
    await queueIdle(queue);
    expect(await storedIds(site!.id)).toEqual(["good-0", "good-1", "good-2", "good-3"]);

    const listed = await management.listDeadLetters({ siteId: site!.id });
    expect(listed.deadLetters).toHaveLength(1);
    const [letter] = listed.deadLetters;
    expect(letter.siteId).toBe(site!.id);
    expect(letter.reason).toMatch(/^store_failed: invalid byte sequence/);
    expect(letter.payload).toMatchObject({ eventId: "unstorable", name: "pageview", url: "https://unstorable.example.com/console", clientId: "xbox-1" });
    expect(letter.payload?.userAgent).toMatch(/^Mozilla\/5\.0 .*Xbox O.ne\)/);
    expect(letter.payload).not.toHaveProperty("ip");
    expect(letter.attempts).toBeGreaterThanOrEqual(1);
    expect(await queue.getFailedCount()).toBe(0);
  });

  it("dead-letters the events of a site deleted after they were accepted, and stores the rest of their batch", async () => {
    const { tracking, management } = clients(beacon.baseUrl, beacon.adminKey);
    const { site: gone } = await management.createSite({ domain: "gone.example.com" });
    const { site: kept } = await management.createSite({ domain: "kept.example.com" });
    await acceptIntoOneBatch(
      () => [
        tracking.trackEvents({ trackingId: gone!.trackingId, events: pageviews("gone.example.com", "gone", 3) }, visitor(1)),
        tracking.trackEvents({ trackingId: kept!.trackingId, events: pageviews("kept.example.com", "kept", 3) }, visitor(2)),
      ],
      "gone-0",
      "kept-0",
    );
    // Removed for good before any worker saw its events (an operator's purge, not DeleteSite).
    await (await sqlPool(beacon.orm)).query("delete from sites where id = $1", [gone!.id]);
    await startIngesting();

    await eventually("the kept site's events", () => storedCount(beacon.orm, kept!.id), (n) => n >= 3, 45_000);
    await queueIdle(queue);
    expect(await storedIds(kept!.id)).toEqual(["kept-0", "kept-1", "kept-2"]);
    expect(await storedIds(gone!.id)).toEqual([]);
    const letters = await deadLetters(gone!.id);
    expect(letters.map((l) => l.payload.eventId)).toEqual(["gone-0", "gone-1", "gone-2"]);
    for (const letter of letters) {
      expect(letter.reason).toMatch(/^site_not_found/);
      expect(letter.payload).not.toHaveProperty("ip");
      expect(JSON.stringify(letter.payload)).not.toContain("198.18.");
    }
    expect(await queue.getFailedCount()).toBe(0);
  });
});
