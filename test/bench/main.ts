// `npm run bench`: Beacon's ingestion measured in one run on this machine, beside references
// measured in the same run, and written to docs/benchmarks.md.
//
//   references   bare node:http answering 204 · Beacon's listener answering 204 · the accept floor
//                (ref-server.ts), alone and with Beacon's worker behind it · a no-op Connect unary handler ·
//                Postgres COPY FROM STDIN and multi-row INSERT … unnest rows/s
//   Beacon       single-event beacons (POST /collect, or Connect JSON TrackEvent while /collect is
//                missing) · TrackEvent over Connect · batches of 500 events end to end (accepted →
//                stored and counted in `events`) · accept latency · accept-to-stored lag
//
// Beacon runs as two processes, `--role server` and `--role worker` (start() from server/main.ts;
// the worker at its default WORKER_NICE), on its own database (beacon_t_bench_*, dropped at the
// end) and Redis prefix (beacon-bench-*, its keys deleted at the end). Load comes from
// test/bench/loadgen.ts in a child process over keep-alive HTTP/1.1 connections to 127.0.0.1.
// Every phase is bounded in time and requests.
//
// Knobs (environment): BENCH_SECONDS (measured window per phase, 12), BENCH_WARMUP_SECONDS (2),
// BENCH_CONNECTIONS (single-event connections, closed loop, 128), BENCH_RATE_CONNECTIONS
// (the open-loop phase at the target rate, and the bare node:http reference run the same way,
// 256), BENCH_RATE (that phase at another rate, for diagnosis: nothing is written),
// BENCH_NODE_FLAGS (Node/V8 flags for Beacon's server and worker, e.g. --trace-gc-nvp, for
// diagnosis: their stdout is copied to a file, nothing is written), BENCH_BATCH_CONNECTIONS (8),
// BENCH_BATCH_SIZE (500), BENCH_DRAIN_SECONDS (how long a phase waits for its events to be stored, 60), BENCH_PROFILE=1 (CPU-profile the server and worker during each
// Beacon phase and print where the time went; profiling slows them, so figures from such a run
// are marked), BENCH_TRACE=1 (time each ingest step, Redis command and Postgres statement in the
// server and worker: see trace.ts), BENCH_METRICS=1 (also run issue 5's metrics bench,
// test/bench/metrics.ts, and print its figures), BENCH_REPORTS=1 (also run issue 4's reports
// bench, test/bench/reports.ts, which writes its own section of the doc), BENCH_WHATIF=no-rate-limit,no-usage,no-realtime
// (diagnosis only: those steps become no-ops; such a run is labelled and never written to the
// docs), BENCH_NO_DOC=1 (do not rewrite docs/benchmarks.md).
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdirSync } from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { bootstrap } from "../../server/core/management/bootstrap.js";
import { createMigratedTestOrm, type MigratedTestOrm } from "../support/db.js";
import { deleteRedisKeys, TEST_REDIS_URL } from "../support/beacon.js";
import { type CpuBreakdown, startCpuMeter, waitForQuiet } from "./cpu.js";
import { LagSampler, type LagResult } from "./lag.js";
import type { LoadgenOptions, LoadgenResult } from "./loadgen.js";
import { measurePostgres, type PostgresReference } from "./postgres-ref.js";
import { summariseProfile, type ProfileSummary } from "./profile.js";
import { type Scenario, TRACK_EVENT_PATH, TRACK_EVENTS_PATH } from "./scenarios.js";
import { envNumber, table, writeDocSection } from "./common.js";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");

/** What the issue measured a bare node:http server at on the machine its targets assume. */
const ISSUE_BARE_RPS = 35_000;
const SECONDS = envNumber("BENCH_SECONDS", 12);
const WARMUP_SECONDS = envNumber("BENCH_WARMUP_SECONDS", 2);
/** Unmeasured single-event load on a fresh Beacon before its first phase (0: none). */
const BEACON_WARMUP_SECONDS = envNumber("BENCH_BEACON_WARMUP_SECONDS", 10, true);
const CONNECTIONS = envNumber("BENCH_CONNECTIONS", 128);
/** Connections the open-loop phase may use: enough that requests rarely wait for one. */
const RATE_CONNECTIONS = envNumber("BENCH_RATE_CONNECTIONS", 256);
const BATCH_CONNECTIONS = envNumber("BENCH_BATCH_CONNECTIONS", 8);
const BATCH_SIZE = envNumber("BENCH_BATCH_SIZE", 500);
const PROFILE = process.env.BENCH_PROFILE === "1";
/** Diagnosis only: steps replaced by no-ops in the Beacon processes (see trace.ts). */
const WHATIF = (process.env.BENCH_WHATIF ?? "").trim();
/** Diagnosis only: run just these Beacon phases (single, rate, track, batch), no references. */
const ONLY = (process.env.BENCH_ONLY ?? "").split(",").map((s) => s.trim()).filter(Boolean);
/** Diagnosis only: the open-loop phase's rate, where it is not the target's (never written to the doc). */
const RATE_OVERRIDE = process.env.BENCH_RATE ? envNumber("BENCH_RATE", 10_000) : undefined;
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? "").split(" ").filter(Boolean);
const WRITE_DOC = process.env.BENCH_NO_DOC !== "1" && WHATIF === "" && ONLY.length === 0 && RATE_OVERRIDE === undefined && NODE_FLAGS.length === 0;
/** Requests one phase may send at most, whatever the rate (a bound, not a target). */
const MAX_REQUESTS = 2_000_000;
/** How long a phase waits for its accepted events to be stored. */
const DRAIN_TIMEOUT_MS = envNumber("BENCH_DRAIN_SECONDS", 60) * 1000;

const TARGETS = {
  beaconRps: 10_000,
  batchedEventsPerSec: 50_000,
  p99AcceptMs: 20,
  p95LagMs: 2_000,
};

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

// ---------------------------------------------------------------------------------------------
// Child processes

interface Child {
  proc: ChildProcess;
  pid: number;
  stderrTail: string[];
  stdoutLines: string[];
  /** Resolves with the first stdout line that parses as JSON and passes `match`. */
  line(match: (v: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

const children = new Set<ChildProcess>();

function spawnTs(file: string, args: string[], opts: { env?: Record<string, string>; ipc?: boolean; stdin?: boolean } = {}): Child {
  const flags = file === "beacon-proc.ts" ? NODE_FLAGS : [];
  const proc = spawn(process.execPath, [...flags, "--import", "tsx", join(here, file), ...args], {
    cwd: root,
    env: { ...process.env, ...opts.env },
    stdio: [opts.stdin ? "pipe" : "ignore", "pipe", "pipe", ...(opts.ipc ? (["ipc"] as const) : [])],
  });
  children.add(proc);
  const stderrTail: string[] = [];
  const stdoutLines: string[] = [];
  const waiters: { match: (v: Record<string, unknown>) => boolean; resolve: (v: Record<string, unknown>) => void }[] = [];
  let outBuf = "";
  if (flags.length > 0) {
    // What the flags print (--trace-gc-nvp, say) goes to the process's stdout: kept whole in a file.
    const role = opts.env?.BEACON_ROLE ?? "beacon";
    const copy = join(os.tmpdir(), `beacon-bench-${role}-${proc.pid}.out`);
    proc.stdout!.pipe(createWriteStream(copy));
    log(`${role} runs with ${flags.join(" ")}; its stdout is copied to ${copy}`);
  }
  proc.stdout!.setEncoding("utf8");
  proc.stdout!.on("data", (chunk: string) => {
    outBuf += chunk;
    let nl: number;
    while ((nl = outBuf.indexOf("\n")) >= 0) {
      const text = outBuf.slice(0, nl);
      outBuf = outBuf.slice(nl + 1);
      stdoutLines.push(text);
      if (stdoutLines.length > 200) stdoutLines.shift();
      let parsed: Record<string, unknown> | undefined;
      try {
        parsed = JSON.parse(text) as Record<string, unknown>;
      } catch {
        continue;
      }
      for (let i = 0; i < waiters.length; i++) {
        if (waiters[i].match(parsed)) {
          waiters[i].resolve(parsed);
          waiters.splice(i, 1);
          break;
        }
      }
    }
  });
  proc.stderr!.setEncoding("utf8");
  proc.stderr!.on("data", (chunk: string) => {
    for (const l of chunk.split("\n")) if (l.trim()) stderrTail.push(l);
    while (stderrTail.length > 40) stderrTail.shift();
  });
  const exited = new Promise<number | null>((res) => proc.once("exit", (code) => {
    children.delete(proc);
    res(code);
  }));
  return {
    proc,
    pid: proc.pid!,
    stderrTail,
    stdoutLines,
    exited,
    line(match, timeoutMs) {
      return new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`${file}: no expected output within ${timeoutMs} ms\n${[...stdoutLines.slice(-10), ...stderrTail.slice(-10)].join("\n")}`)), timeoutMs);
        void exited.then((code) => rej(new Error(`${file} exited (${code}) early\n${[...stdoutLines.slice(-10), ...stderrTail.slice(-20)].join("\n")}`)));
        waiters.push({ match, resolve: (v) => { clearTimeout(timer); res(v); } });
      });
    },
  };
}

async function stopChild(child: Child | undefined, timeoutMs = 15_000): Promise<void> {
  if (!child || child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.proc.kill("SIGTERM");
  const timer = setTimeout(() => child.proc.kill("SIGKILL"), timeoutMs);
  await child.exited;
  clearTimeout(timer);
}

/** Runs the load generator; the CPU meter covers exactly its run (not its start-up). */
async function runLoadgen(
  options: LoadgenOptions,
  named: () => Record<string, number[]>,
  benchPgPids: () => Promise<number[]>,
  hooks: { running?: () => void; done?: () => Promise<void>; keepAlive?: boolean } = {},
): Promise<{ result: LoadgenResult; cpu: CpuBreakdown; pid: number; release: () => Promise<void> }> {
  const child = spawnTs("loadgen.ts", [JSON.stringify(options)], { stdin: true });
  await child.line((v) => v.bench === "running", 60_000);
  const meter = startCpuMeter();
  hooks.running?.();
  const result = (await child.line((v) => "okInWindow" in v, options.warmupMs + options.durationMs + 60_000)) as unknown as LoadgenResult;
  const cpu = meter.stop({ ...named(), "load generator": [child.pid] }, await benchPgPids());
  await hooks.done?.();
  // The finished load generator may be kept (idle) so a longer CPU meter can still read its total.
  const release = async () => {
    child.proc.stdin!.end();
    await child.exited;
  };
  if (!hooks.keepAlive) await release();
  return { result, cpu, pid: child.pid, release };
}

// ---------------------------------------------------------------------------------------------
// Formatting

const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a");
const fmtMs = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toLocaleString("en-US")) : "n/a");
const fmtRatio = (n: number) => (Number.isFinite(n) ? (n >= 0.1 ? n.toFixed(2) : n.toFixed(3)) : "n/a");

function cpuLine(cpu: CpuBreakdown): string {
  const parts = Object.entries(cpu.groups)
    .filter(([, pct]) => pct >= 0.5)
    .sort((a, b) => b[1] - a[1])
    .map(([group, pct]) => `${group} ${Math.round(pct)}%`);
  return `${parts.join(", ")} (machine busy ${Math.round(cpu.machineBusy)}% of ${cpu.cores * 100}%)`;
}

/**
 * What the machine left the p99 target in this run, from the open-loop references at the target
 * rate: the accept floor does the least a server of Beacon's design can (parse, one Redis write
 * per window, answer), so when even it misses the target, with no worker or Postgres beside it,
 * no implementation of the design could have met it on this machine during this run.
 */
function latencyRoomText(bareP99: number, floorP99: number, floorPipelineP99: number, rate: number): string {
  const target = TARGETS.p99AcceptMs;
  const room =
    bareP99 >= target ? "none: a server that does nothing missed it on this machine"
    : floorP99 >= target ? "none: the least a server of Beacon's design does missed it with nothing else running, so no implementation of the design could meet it on this machine in this run"
    : floorPipelineP99 >= target ? "only without the rest of the pipeline"
    : "some";
  return `Room for the p99 < ${target} ms target in this run: ${room}. At ${fmtInt(rate)} req/s (open loop) the bare node:http server's p99 was ${fmtMs(bareP99)} ms, the accept floor's ${fmtMs(floorP99)} ms alone and ${fmtMs(floorPipelineP99)} ms with Beacon's worker storing what it queued.`;
}

// ---------------------------------------------------------------------------------------------

interface PhaseResult {
  name: string;
  what: string;
  load: LoadgenResult;
  cpu: CpuBreakdown;
  /** From the start of the load until every accepted event was stored (or the drain gave up). */
  cpuAll?: CpuBreakdown;
  lag?: LagResult;
  /** Events the site holds after the drain, and what it should hold. */
  stored?: number;
  expected?: number;
  /** Epoch ms when the stored count first reached `expected` (undefined: it never did in time). */
  allStoredAt?: number;
  /** When `stored` was last counted. */
  storedAt?: number;
  /** What was stored when the drain began (the load had ended). */
  storedAtLoadEnd?: { at: number; count: number };
  maxQueueWaiting?: number;
  profiles?: { role: string; summary: ProfileSummary }[];
  traces?: { role: string; trace: Trace }[];
}

interface Trace {
  rows: { label: string; count: number; totalMs: number; meanMs: number; p50Ms: number; p99Ms: number }[];
  eventLoopUtilization: number;
  cpuPercent: number;
  wallMs: number;
}

/** Sends `message` to a Beacon process and waits for the answer that `match` recognises. */
function ask<T>(child: Child, message: object, match: (m: Record<string, unknown>) => T | undefined, timeoutMs = 30_000): Promise<T> {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      child.proc.off("message", onMessage);
      rej(new Error(`no answer to ${JSON.stringify(message)}`));
    }, timeoutMs);
    const onMessage = (m: unknown) => {
      const found = match(m as Record<string, unknown>);
      if (found === undefined) return;
      clearTimeout(timer);
      child.proc.off("message", onMessage);
      res(found);
    };
    child.proc.on("message", onMessage);
    child.proc.send(message);
  });
}

async function main(): Promise<void> {
  const started = new Date();
  const prefix = `beacon-bench-${randomBytes(4).toString("hex")}`;
  let database: MigratedTestOrm | undefined;
  let server: Child | undefined;
  let worker: Child | undefined;
  let redis: Redis | undefined;
  let pool: pg.Pool | undefined;
  let queue: Queue | undefined;
  const profileDir = join(os.tmpdir(), `beacon-bench-prof-${process.pid}`);

  const cleanup = async () => {
    for (const child of [...children]) child.kill("SIGTERM");
    await stopChild(server);
    await stopChild(worker);
    await queue?.close().catch(() => {});
    if (redis) {
      await deleteRedisKeys(redis, prefix).catch(() => {});
      redis.disconnect();
    }
    await pool?.end().catch(() => {});
    await database?.drop().catch((err: unknown) => log(`could not drop the bench database: ${String(err)}`));
  };
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log("interrupted: cleaning up");
    void cleanup().finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    // --- Machine and versions
    log("preparing the bench database and Redis prefix");
    database = await createMigratedTestOrm("bench");
    const dbName = new URL(database.url).pathname.slice(1);
    const boot = await bootstrap(database.orm.em.fork());
    if (!boot.adminKey) throw new Error("bootstrap of the bench database returned no admin key");
    pool = new pg.Pool({ connectionString: database.url, max: 3 });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const pgVersion = ((await pool.query<{ v: string }>("select version() as v")).rows[0].v.split(" on ")[0]).trim();
    const redisVersion = /redis_version:(\S+)/.exec(await redis.info("server"))?.[1] ?? "unknown";
    const cpus = os.cpus();
    const machine = {
      cpu: `${cpus.length} × ${cpus[0]?.model ?? "unknown"}${cpus[0]?.speed ? ` @ ${cpus[0].speed} MHz` : ""}`,
      memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
      os: `${os.type()} ${os.release()} (${os.arch()})`,
      node: process.version,
      postgres: pgVersion,
      redis: `Redis ${redisVersion}`,
      loadBefore: os.loadavg().map((l) => l.toFixed(2)).join(" "),
    };
    const benchPgPids = async () =>
      (await pool!.query<{ pid: number }>("select pid from pg_stat_activity where datname = $1", [dbName])).rows.map((r) => r.pid);

    // --- Beacon: server and worker processes
    const beaconEnv = {
      DATABASE_URL: database.url,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: prefix,
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "warn",
      BEACON_DATA_DIR: join(os.tmpdir(), `beacon-bench-data-${process.pid}`),
    };
    log("starting Beacon (--role server, then --role worker)");
    server = spawnTs("beacon-proc.ts", [], { env: { ...beaconEnv, BEACON_ROLE: "server" }, ipc: true });
    const serverReady = await server.line((v) => v.bench === "ready", 90_000);
    const port = Number(serverReady.port);
    worker = spawnTs("beacon-proc.ts", [], { env: { ...beaconEnv, BEACON_ROLE: "worker" }, ipc: true });
    await worker.line((v) => v.bench === "ready", 90_000);
    queue = new Queue("ingest", { connection: new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null }), prefix });

    const management = createClient(
      ManagementService,
      createConnectTransport({
        baseUrl: `http://127.0.0.1:${port}`,
        httpVersion: "1.1",
        interceptors: [(next) => (req) => { req.header.set("Authorization", `Bearer ${boot.adminKey}`); return next(req); }],
      }),
    );
    const madeSites = new Map<string, number>();
    const makeSite = async (label: string) => {
      // A phase run again (BENCH_ONLY=single,single) gets a site of its own.
      const made = (madeSites.get(label) ?? 0) + 1;
      madeSites.set(label, made);
      const domain = `${label}${made > 1 ? made : ""}.bench.example.com`;
      const { site } = await management.createSite({ domain, name: `Bench ${label}` });
      if (!site) throw new Error("CreateSite returned no site");
      return { id: site.id, trackingId: site.trackingId, domain };
    };

    // --- Which plain-HTTP beacon paths exist yet
    const probeSite = await makeSite("probe");
    const probe = async (path: string, body: unknown) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", headers: { "Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9" }, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.text()).slice(0, 200) };
    };
    const collectProbe = await probe("/collect", { v: "1", tid: probeSite.trackingId, cid: "probe", t: "pageview", dh: probeSite.domain, dp: "/probe" });
    const batchProbe = await probe("/batch", { tracking_id: probeSite.trackingId, events: [{ type: "pageview", page: "/probe" }] });
    const haveCollect = collectProbe.status >= 200 && collectProbe.status < 300;
    const haveBatch = batchProbe.status >= 200 && batchProbe.status < 300;
    const notes: string[] = [];
    if (!haveCollect) {
      notes.push(`POST /collect answered ${collectProbe.status} (${collectProbe.body.replace(/\s+/g, " ")}): the single-event beacon was measured as Connect JSON TrackEvent over plain HTTP/1.1 POST (${TRACK_EVENT_PATH}), so it and "TrackEvent over Connect" are one measurement.`);
    }
    if (!haveBatch) {
      notes.push(`POST /batch answered ${batchProbe.status} (${batchProbe.body.replace(/\s+/g, " ")}): batches were sent as Connect JSON TrackEvents (${TRACK_EVENTS_PATH}).`);
    }
    for (const note of notes) log(note);

    const single = (site: { trackingId: string; domain: string }): Scenario =>
      haveCollect ? { kind: "collect", trackingId: site.trackingId, host: site.domain, visitors: 20_000 } : { kind: "track-json", trackingId: site.trackingId, host: site.domain, visitors: 20_000 };
    const singleLabel = haveCollect ? "POST /collect, JSON body" : "Connect JSON TrackEvent, no /collect yet";
    const baseLoad = { warmupMs: WARMUP_SECONDS * 1000, durationMs: SECONDS * 1000, maxRequests: MAX_REQUESTS };
    let seed = 1;

    // --- References: bare node:http, Beacon's listener, the accept floor, no-op Connect
    const refNamed = (ref: Child, pipeline: boolean) => () => ({
      "reference server": [ref.pid],
      "beacon server (idle)": [server!.pid],
      [pipeline ? "beacon worker" : "beacon worker (idle)"]: [worker!.pid],
      "bench main": [process.pid],
    });
    const countStored = async (siteId: string) => Number((await pool!.query<{ n: string }>("select count(*) as n from events where site_id = $1", [siteId])).rows[0].n);
    // Until Beacon's worker has stored everything queued.
    const drainQueue = async () => {
      for (const deadline = Date.now() + DRAIN_TIMEOUT_MS; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
        const c = await queue!.getJobCounts("wait", "active", "prioritized", "delayed");
        if ((c.wait ?? 0) + (c.active ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0) === 0) break;
      }
    };
    // Closed loop with the single-event phase's connections, or open loop (ratePerSec) with the
    // rate phase's. `pipelineSite`: the accept floor queues real jobs for that site, which
    // Beacon's worker stores (waited for before the next measurement).
    const runReference = async (mode: string, scenario: Scenario, path?: string, ratePerSec?: number, pipelineSite?: { id: string }) => {
      log(`reference: ${mode}${ratePerSec ? ` at ${fmtInt(ratePerSec)} req/s (open loop)` : ""}`);
      const env = { REDIS_URL: TEST_REDIS_URL, FLOOR_KEY: `${prefix}:floor`, REDIS_PREFIX: prefix, FLOOR_SITE_ID: pipelineSite?.id ?? "" };
      const ref = spawnTs("ref-server.ts", [mode], { env });
      let measured: Awaited<ReturnType<typeof runLoadgen>>;
      try {
        const ready = await ref.line((v) => v.bench === "ready", 60_000);
        const connections = ratePerSec ? RATE_CONNECTIONS : CONNECTIONS;
        measured = await runLoadgen({ ...baseLoad, port: Number(ready.port), connections, scenario, path, seed: seed++, ratePerSec }, refNamed(ref, pipelineSite !== undefined), benchPgPids);
      } finally {
        await stopChild(ref);
        if (pipelineSite) await drainQueue();
      }
      // What the worker stored of it: the floor's jobs are real work, not discarded.
      const stored = pipelineSite ? await countStored(pipelineSite.id) : undefined;
      return { ...measured, stored };
    };
    /** " (N of M answered stored)" for a reference whose events the worker stored, else "". */
    const storedNote = (ref: { result: LoadgenResult; stored?: number }) => (ref.stored === undefined ? "" : ` (${fmtInt(ref.stored)} of ${fmtInt(ref.result.okTotal)} answered stored)`);
    // Other work on the same two cores would be measured as Beacon's slowness: wait a while
    // for the machine to go quiet (it is reported either way).
    log("waiting for the machine to be quiet (up to 45 s)");
    const quiet = await waitForQuiet(45_000);
    const quietText = `Machine busy before the first phase: ${Math.round(quiet.busyPercent)}% of both cores (after waiting ${fmtMs(quiet.waitedMs / 1000)} s for other work to finish)`;
    log(quietText);


    // --- Beacon phases
    const beaconNamed = () => ({ "beacon server": [server!.pid], "beacon worker": [worker!.pid], "bench main (sampler, poller)": [process.pid] });

    const runBeaconPhase = async (name: string, what: string, label: string, scenario: Scenario, site: { id: string; trackingId: string; domain: string }, connections: number, ratePerSec?: number): Promise<PhaseResult> => {
      log(`beacon: ${name}`);
      const sampler = new LagSampler({ port, trackingId: site.trackingId, host: site.domain, siteId: site.id, label, pool: pool! });
      let maxWaiting = 0;
      const queueTimer = setInterval(() => {
        void queue!.getJobCounts("wait", "prioritized").then((c) => { maxWaiting = Math.max(maxWaiting, (c.wait ?? 0) + (c.prioritized ?? 0)); }, () => {});
      }, 500);
      if (PROFILE) {
        mkdirSync(profileDir, { recursive: true });
        for (const c of [server!, worker!]) await ask(c, { cmd: "profile-start" }, (m) => (m.profiling ? true : undefined));
      }
      const samplerStart = setTimeout(() => sampler.start(), WARMUP_SECONDS * 1000);
      let load: LoadgenResult;
      let cpu: CpuBreakdown;
      let loadgenPid = 0;
      let releaseLoadgen = async () => {};
      // A second meter runs from the start of the load until every accepted event is stored:
      // the whole pipeline's CPU per event, the worker's catch-up included.
      let meterAll: ReturnType<typeof startCpuMeter> | undefined;
      const traces: { role: string; trace: Trace }[] = [];
      try {
        ({ result: load, cpu, pid: loadgenPid, release: releaseLoadgen } = await runLoadgen({ ...baseLoad, port, connections, scenario, seed: seed++, ratePerSec }, beaconNamed, benchPgPids, {
          keepAlive: true,
          running: () => {
            meterAll = startCpuMeter();
            for (const c of [server!, worker!]) c.proc.send({ cmd: "trace-start" });
          },
          done: async () => {
            for (const [role, c] of [["server", server!], ["worker", worker!]] as const) {
              traces.push({ role, trace: await ask(c, { cmd: "trace-stop" }, (m) => m.trace as Trace | undefined) });
            }
          },
        }));
      } finally {
        clearTimeout(samplerStart);
        clearInterval(queueTimer);
      }
      const profiles: { role: string; summary: ProfileSummary }[] = [];
      if (PROFILE) {
        for (const [role, c] of [["server", server!], ["worker", worker!]] as const) {
          const file = join(profileDir, `${label}-${role}.cpuprofile`);
          await ask(c, { cmd: "profile-stop", file }, (m) => (m.profiled === file ? true : undefined), 60_000);
          profiles.push({ role, summary: summariseProfile(file) });
        }
      }
      // Drain: every accepted event (load + samples) must be stored and counted. The sampler's
      // poller and this count run side by side.
      await sampler.stopSending();
      const lagPromise = sampler.finish(DRAIN_TIMEOUT_MS);
      const expected = load.eventsAcceptedTotal + sampler.acceptedCount;
      let stored = await countStored(site.id);
      let storedAt = Date.now();
      const storedAtLoadEnd = { at: storedAt, count: stored };
      let allStoredAt: number | undefined = stored >= expected ? Date.now() : undefined;
      const deadline = Date.now() + DRAIN_TIMEOUT_MS;
      // Counting a phase's rows scans hundreds of thousands of them: done every 200 ms, the count
      // took a good part of Postgres's CPU from the worker it waits for. The queue says cheaply
      // when there is nothing left to store; the rows are counted then (and every 5 s meanwhile).
      let countedAt = Date.now();
      while (allStoredAt === undefined && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        const at = Date.now();
        const c = await queue!.getJobCounts("wait", "active", "prioritized", "delayed");
        const idle = (c.wait ?? 0) + (c.active ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0) === 0;
        if (!idle && at - countedAt < 5_000) continue;
        countedAt = at;
        stored = await countStored(site.id);
        storedAt = at;
        if (stored >= expected) allStoredAt = at;
      }
      const lag = await lagPromise;
      const cpuAll = meterAll!.stop({ ...beaconNamed(), "load generator": [loadgenPid] }, await benchPgPids());
      await releaseLoadgen();
      return { name, what, load, cpu, cpuAll, lag, stored, storedAt, expected, allStoredAt, storedAtLoadEnd, maxQueueWaiting: maxWaiting, profiles, traces };
    };

    // CPU per event over load + drain: what each part of the pipeline spends on one event,
    // robust to how long the phase ran; and the rate those costs allow on this machine's cores.
    const costGroups = ["beacon server", "beacon worker", "postgres (bench db)", "redis", "load generator", "bench main (sampler, poller)"];
    const costHeader = ["Phase", "Events", "server µs/event", "worker µs/event", "postgres µs/event", "redis µs/event", "load gen µs/event", "bench µs/event", "pipeline µs/event", `events/s that allows on ${os.cpus().length} cores`, "other work (avg % of a core)"];
    const costRow = (p: PhaseResult) => {
      const all = p.cpuAll!;
      // Events the meter's CPU went into: all of them, or what was stored when the drain gave up.
      const events = p.allStoredAt !== undefined ? p.expected! : p.stored!;
      const usPerEvent = (group: string) => (((all.groups[group] ?? 0) / 100) * all.wallMs * 1000) / Math.max(events, 1);
      const pipeline = ["beacon server", "beacon worker", "postgres (bench db)", "redis"].reduce((a, g) => a + usPerEvent(g), 0);
      return [
        p.name,
        fmtInt(events),
        ...costGroups.map((g) => fmtInt(usPerEvent(g))),
        fmtInt(pipeline),
        fmtInt((all.cores * 1e6) / pipeline),
        fmtInt((all.groups["everything else"] ?? 0) + (all.groups["postgres (other)"] ?? 0)) + "%",
      ];
    };

    const traceLines = (of: PhaseResult[]) => {
      const lines: string[] = [];
      for (const p of of) {
        for (const { role, trace } of p.traces ?? []) {
          if (trace.rows.length === 0) continue;
          lines.push(`${p.name} phase, ${role} (event loop busy ${Math.round(trace.eventLoopUtilization * 100)}%, CPU ${Math.round(trace.cpuPercent)}% of a core):`);
          lines.push(
            table(
              ["Step (wall time, call → settled)", "Calls", "Calls/s", "Mean ms", "p50 ms", "p99 ms"],
              trace.rows.slice(0, 14).map((r) => [r.label, fmtInt(r.count), fmtInt(r.count / (trace.wallMs / 1000)), fmtMs(r.meanMs), fmtMs(r.p50Ms), fmtMs(r.p99Ms)]),
            ),
          );
        }
      }
      return lines;
    };

    // Each Beacon phase on a site of its own; the full run takes them all, BENCH_ONLY the named ones.
    const rate = RATE_OVERRIDE ?? TARGETS.beaconRps;
    const phaseRunners = {
      single: async () => {
        const site = await makeSite("single");
        return runBeaconPhase("single", `single-event beacon: ${singleLabel}`, "single", single(site), site, CONNECTIONS);
      },
      // The latency target is "at that load": single events due at the target rate on a fixed
      // schedule (open loop), as independent browsers send them, whatever the answers' pace.
      rate: async () => {
        const site = await makeSite("rate");
        return runBeaconPhase("rate", `single-event beacon at ${fmtInt(rate)} req/s (open loop): ${singleLabel}`, "rate", single(site), site, RATE_CONNECTIONS, rate);
      },
      track: async () => {
        const site = await makeSite("track");
        return runBeaconPhase("track", "TrackEvent over Connect (JSON, HTTP/1.1)", "track", { kind: "track-json", trackingId: site.trackingId, host: site.domain, visitors: 20_000 }, site, CONNECTIONS);
      },
      batch: async () => {
        const site = await makeSite("batch");
        const scenario: Scenario = haveBatch
          ? { kind: "batch-http", trackingId: site.trackingId, host: site.domain, size: BATCH_SIZE }
          : { kind: "batch-connect", trackingId: site.trackingId, host: site.domain, size: BATCH_SIZE };
        return runBeaconPhase("batch", `batches of ${BATCH_SIZE}: ${haveBatch ? "POST /batch" : "Connect JSON TrackEvents"}`, "batch", scenario, site, BATCH_CONNECTIONS);
      },
    };

    // A fresh Beacon's code is not at speed for a while (JIT, caches): the first phase after start
    // ran a third slower than the same phase run again (4.6k against 7.4k req/s single events).
    // A long-running server is past that, so Beacon is warmed, unmeasured, before any phase.
    const warmUp = async () => {
      if (BEACON_WARMUP_SECONDS <= 0) return;
      const site = await makeSite("warm-up");
      log(`beacon: warm-up, ${BEACON_WARMUP_SECONDS} s unmeasured`);
      const { release } = await runLoadgen({ ...baseLoad, warmupMs: 0, durationMs: BEACON_WARMUP_SECONDS * 1000, port, connections: CONNECTIONS, scenario: single(site), seed: seed++ }, beaconNamed, benchPgPids);
      await release();
      // The worker's backlog is stored before the first phase starts.
      await drainQueue();
    };

    if (ONLY.length > 0) {
      // Diagnosis: the named phases alone, their rates, lag and CPU per event; nothing written.
      const only: PhaseResult[] = [];
      const refLines: string[] = [];
      // This machine's yardsticks, as in the full run: the bare node:http server (closed and open loop), it behind Beacon's listener, and the accept floor.
      const references: Record<string, { mode: string; label: string; ratePerSec?: number; pipeline?: boolean }> = {
        bare: { mode: "http", label: "bare node:http" },
        "bare-rate": { mode: "http", label: `bare node:http at ${fmtInt(rate)} req/s (open loop)`, ratePerSec: rate },
        listen: { mode: "listen", label: "Beacon's listener" },
        floor: { mode: "floor", label: "accept floor" },
        "floor-rate": { mode: "floor", label: `accept floor at ${fmtInt(rate)} req/s (open loop)`, ratePerSec: rate },
        "floor-pipeline": { mode: "floor-pipeline", label: `accept floor at ${fmtInt(rate)} req/s (open loop) with Beacon's worker behind it`, ratePerSec: rate, pipeline: true },
      };
      if (ONLY.some((name) => !Object.hasOwn(references, name) || references[name].pipeline)) await warmUp();
      for (const name of ONLY) {
        if (Object.hasOwn(references, name)) {
          const { mode, label, ratePerSec, pipeline } = references[name];
          const site = pipeline ? await makeSite("floor") : { id: "", trackingId: "BK-BENCH000", domain: "ref.bench.example.com" };
          const ref = await runReference(mode, single(site), "/", ratePerSec, pipeline ? site : undefined);
          const serverUs = (((ref.cpu.groups["reference server"] ?? 0) / 100) * ref.cpu.wallMs * 1000) / Math.max(ref.result.okTotal, 1);
          refLines.push(`${label}: ${fmtInt(ref.result.okInWindow / (ref.result.windowMs / 1000))} req/s${storedNote(ref)}; latency p50/p99 ${fmtMs(ref.result.latency.p50)}/${fmtMs(ref.result.latency.p99)} ms; server ${fmtInt(serverUs)} µs a request; ${cpuLine(ref.cpu)}`);
          continue;
        }
        if (!Object.hasOwn(phaseRunners, name)) throw new Error(`BENCH_ONLY: unknown phase "${name}" (${[...Object.keys(references), ...Object.keys(phaseRunners)].join(", ")})`);
        only.push(await phaseRunners[name as keyof typeof phaseRunners]());
      }
      const lines = only.map((p) => {
        const secs = p.load.windowMs / 1000;
        const endToEnd = p.allStoredAt !== undefined ? p.expected! / ((p.allStoredAt - p.load.startedAt) / 1000) : NaN;
        return `${p.name}: ${fmtInt(p.load.okInWindow / secs)} req/s, ${fmtInt(p.load.eventsInWindow / secs)} events/s accepted, ${fmtInt(endToEnd)} events/s end to end; latency p50/p99 ${fmtMs(p.load.latency.p50)}/${fmtMs(p.load.latency.p99)} ms; lag p50/p95 ${fmtMs(p.lag!.p50)}/${fmtMs(p.lag!.p95)} ms (${p.lag!.seen}/${p.lag!.accepted}); statuses ${JSON.stringify(p.load.statuses)}; queue peak ${p.maxQueueWaiting}; ${cpuLine(p.cpu)}`;
      });
      const profiles = only.flatMap((p) => (p.profiles ?? []).map((prof) => `${p.name} ${prof.role}: ${prof.summary.topSelf.slice(0, 10).map(([k, v]) => `${k} ${v.toFixed(1)}%`).join("; ")}`));
      process.stdout.write([...refLines, ...lines, table(costHeader, only.map(costRow)), ...traceLines(only), ...profiles].join("\n") + "\n");
      return;
    }

    const placeholder = { trackingId: "BK-BENCH000", domain: "ref.bench.example.com" };
    const bareRef = await runReference("http", single(placeholder), "/");
    // The latency target's yardstick: what this machine and load generator allow a server that does nothing.
    const bareRateRef = await runReference("http", single(placeholder), "/", rate);
    const listenRef = await runReference("listen", single(placeholder), "/");
    // The least a server of Beacon's design can do per event (again after the rate phase, with the worker behind it).
    const floorRef = await runReference("floor", single(placeholder), "/collect");
    const floorRateRef = await runReference("floor", single(placeholder), "/collect", rate);
    const connectRef = await runReference("connect", { kind: "track-json", trackingId: placeholder.trackingId, host: placeholder.domain, visitors: 20_000 }, TRACK_EVENT_PATH);

    log("reference: Postgres COPY and INSERT … unnest");
    const pgRef: PostgresReference = await measurePostgres(database.url);

    const phases: PhaseResult[] = [];
    await warmUp();
    phases.push(await phaseRunners.single());
    const ratePhase = await phaseRunners.rate();
    phases.push(ratePhase);
    // The accept floor again, at the same rate, now with Beacon's worker, Postgres and Redis storing what it queues.
    const floorSite = await makeSite("floor");
    const floorPipelineRef = await runReference("floor-pipeline", single(floorSite), "/collect", rate, floorSite);
    let trackPhase: PhaseResult | undefined;
    if (haveCollect) {
      trackPhase = await phaseRunners.track();
      phases.push(trackPhase);
    } else {
      trackPhase = phases[0];
    }
    const batchPhase = await phaseRunners.batch();
    phases.push(batchPhase);

    // --- Figures
    const rps = (r: LoadgenResult) => r.okInWindow / (r.windowMs / 1000);
    const evps = (r: LoadgenResult) => r.eventsInWindow / (r.windowMs / 1000);
    // Accepted → stored rate. When the drain gave up before everything was stored, what was
    // stored by then over the time taken: a lower bound, marked "≥" where printed.
    const e2e = (p: PhaseResult) =>
      p.allStoredAt !== undefined ? p.expected! / ((p.allStoredAt - p.load.startedAt) / 1000) : p.stored! / ((p.storedAt! - p.load.startedAt) / 1000);
    const e2eText = (p: PhaseResult) => `${p.allStoredAt === undefined ? "≥ " : ""}${fmtInt(e2e(p))}`;
    const singlePhase = phases[0];
    const beaconRps = rps(singlePhase.load);
    const trackRps = rps(trackPhase.load);
    const batchedE2e = e2e(batchPhase);
    const passFail = (ok: boolean) => (ok ? "PASS" : "FAIL");

    const refUs = (r: { result: LoadgenResult; cpu: CpuBreakdown }) => fmtInt((((r.cpu.groups["reference server"] ?? 0) / 100) * r.cpu.wallMs * 1000) / Math.max(r.result.okTotal, 1));
    // Each HTTP reference once: its row in the doc, and its name where disturbances and errors are listed.
    type HttpRef = { result: LoadgenResult; cpu: CpuBreakdown; stored?: number };
    const httpRefs: [label: string, name: string, ref: HttpRef][] = [
      ["bare node:http server answering 204 (reads the body)", "bare", bareRef],
      [`bare node:http server answering 204, open loop at ${fmtInt(rate)} req/s (${RATE_CONNECTIONS} conns)`, "bare-rate", bareRateRef],
      ["Beacon's listener (server/http/listen.ts) answering 204", "listen", listenRef],
      ["accept floor: Beacon's listener, reads and parses the body, one Redis write per 4 ms window, answers 200", "floor", floorRef],
      [`accept floor, open loop at ${fmtInt(rate)} req/s (${RATE_CONNECTIONS} conns)`, "floor-rate", floorRateRef],
      [`accept floor, open loop at ${fmtInt(rate)} req/s, queueing real ingest jobs that Beacon's worker stores (after the rate phase)`, "floor-pipeline", floorPipelineRef],
      ["no-op Connect unary handler (TrackEvent, JSON)", "connect", connectRef],
    ];
    const refRows = [
      ...httpRefs.map(([label, , r]) => [
        label,
        `${fmtInt(rps(r.result))} req/s${storedNote(r)}`,
        `p50 ${fmtMs(r.result.latency.p50)} / p99 ${fmtMs(r.result.latency.p99)} ms`,
        `${refUs(r)} µs`,
        cpuLine(r.cpu),
      ]),
      [`Postgres COPY FROM STDIN, ${fmtInt(pgRef.chunkRows)} rows/statement`, `${fmtInt(pgRef.copyRowsPerSec)} rows/s`, `${fmtInt(pgRef.copyRows)} rows in ${fmtMs(pgRef.copyMs)} ms`, "", "one connection, unpartitioned copy of events with its primary key"],
      [`Postgres INSERT … SELECT FROM unnest, ${fmtInt(pgRef.chunkRows)} rows/statement`, `${fmtInt(pgRef.insertRowsPerSec)} rows/s`, `${fmtInt(pgRef.insertRows)} rows in ${fmtMs(pgRef.insertMs)} ms`, "", "the statement shape events-store.ts uses (ON CONFLICT DO NOTHING RETURNING)"],
    ];

    const figureRows: string[][] = [
      [`Single-event beacon req/s (${singleLabel}, ${CONNECTIONS} conns)`, fmtInt(beaconRps), `bare node:http ${fmtInt(rps(bareRef.result))}`, fmtRatio(beaconRps / rps(bareRef.result)), `≥ ${fmtInt(TARGETS.beaconRps)}`, passFail(beaconRps >= TARGETS.beaconRps)],
      [`  accept latency p50 / p99 at that pace (closed loop)`, `${fmtMs(singlePhase.load.latency.p50)} / ${fmtMs(singlePhase.load.latency.p99)} ms`, `bare node:http p99 ${fmtMs(bareRef.result.latency.p99)} ms`, "", "", ""],
      [`Accept latency p50 / p99 at ${fmtInt(TARGETS.beaconRps)} req/s (open loop, ${RATE_CONNECTIONS} conns; answered ${fmtInt(rps(ratePhase.load))} req/s)`, `${fmtMs(ratePhase.load.latency.p50)} / ${fmtMs(ratePhase.load.latency.p99)} ms`, `bare node:http p99 ${fmtMs(bareRateRef.result.latency.p99)} ms; accept floor ${fmtMs(floorRateRef.result.latency.p99)} ms, with the worker behind it ${fmtMs(floorPipelineRef.result.latency.p99)} ms`, "", `p99 < ${TARGETS.p99AcceptMs} ms`, passFail(ratePhase.load.latency.p99 < TARGETS.p99AcceptMs && rps(ratePhase.load) >= TARGETS.beaconRps * 0.98)],
      [`TrackEvent over Connect req/s (JSON, ${CONNECTIONS} conns)${trackPhase === singlePhase ? " [same run as above]" : ""}`, fmtInt(trackRps), `no-op Connect ${fmtInt(rps(connectRef.result))}`, fmtRatio(trackRps / rps(connectRef.result)), "—", ""],
      [`Batched events/s end to end (${BATCH_SIZE}/batch, ${BATCH_CONNECTIONS} conns, accepted → counted in events)${batchPhase.allStoredAt === undefined ? " [drain cut short: lower bound]" : ""}`, e2eText(batchPhase), `COPY ${fmtInt(pgRef.copyRowsPerSec)} rows/s`, fmtRatio(batchedE2e / pgRef.copyRowsPerSec), `≥ ${fmtInt(TARGETS.batchedEventsPerSec)}`, passFail(batchedE2e >= TARGETS.batchedEventsPerSec)],
      [`  batched events/s accepted (HTTP answers only)`, fmtInt(evps(batchPhase.load)), `INSERT…unnest ${fmtInt(pgRef.insertRowsPerSec)} rows/s`, fmtRatio(evps(batchPhase.load) / pgRef.insertRowsPerSec), "", ""],
      [`  batch accept latency p50 / p99`, `${fmtMs(batchPhase.load.latency.p50)} / ${fmtMs(batchPhase.load.latency.p99)} ms`, "", "", "", ""],
    ];
    for (const p of phases) {
      const l = p.lag!;
      figureRows.push([`Accept → stored lag p95 (${p.name} phase; p50 / p99 / max ${fmtMs(l.p50)} / ${fmtMs(l.p99)} / ${fmtMs(l.max)} ms; ${l.seen}/${l.accepted} samples)`, `${fmtMs(l.p95)} ms`, "", "", `p95 < ${fmtInt(TARGETS.p95LagMs)} ms`, passFail(l.seen > 0 && l.seen === l.accepted && l.p95 < TARGETS.p95LagMs)]);
    }

    const phaseRows = phases.map((p) => {
      const statuses = Object.entries(p.load.statuses).map(([s, n]) => `${s}×${fmtInt(n)}`).join(" ");
      let drained = p.allStoredAt !== undefined ? `all ${fmtInt(p.expected!)} stored ${fmtMs((p.allStoredAt - p.load.endedAt) / 1000)} s after the load ended` : `NOT all stored within ${DRAIN_TIMEOUT_MS / 1000} s: ${fmtInt(p.stored!)} of ${fmtInt(p.expected!)}`;
      const backlog = p.expected! - (p.storedAtLoadEnd?.count ?? 0);
      // With a real backlog, the drain shows the store side's rate with no accepts competing.
      if (p.allStoredAt !== undefined && p.storedAtLoadEnd && backlog > 5_000 && p.allStoredAt - p.storedAtLoadEnd.at > 1_000) {
        drained += ` (backlog ${fmtInt(backlog)} drained at ${fmtInt(backlog / ((p.allStoredAt - p.storedAtLoadEnd.at) / 1000))} events/s with no load)`;
      }
      const elu = (p.traces ?? []).map((t) => `${t.role} ${Math.round(t.trace.eventLoopUtilization * 100)}%`).join(", ");
      return [p.what, `${fmtInt(rps(p.load))} req/s, ${fmtInt(evps(p.load))} events/s`, statuses, `${drained}; queue peak ${fmtInt(p.maxQueueWaiting ?? 0)} waiting jobs`, elu, cpuLine(p.cpu)];
    });

    // Issue 5's metrics figures (test/bench/metrics.ts): on unless BENCH_METRICS=0. Its own phases
    // start their own Beacon; ingestion's processes are stopped first.
    const metricsText: string[] = [];
    if (process.env.BENCH_METRICS !== "0") {
      await stopChild(server);
      await stopChild(worker);
      log("metrics bench (test/bench/metrics.ts)");
      try {
        const { runMetricsBench } = (await import("./metrics.js")) as { runMetricsBench(): Promise<{ name: string; value: number; unit: string; target?: string; pass?: boolean }[]> };
        const figures = await runMetricsBench();
        metricsText.push(
          table(
            ["Metrics figure", "Measured", "Target", "Result"],
            figures.map((f) => [f.name, `${fmtInt(f.value)} ${f.unit}`, f.target ?? "—", f.pass === undefined ? "" : passFail(f.pass)]),
          ),
        );
      } catch (err) {
        metricsText.push(`metrics bench failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }

    // Issue 6's realtime figures (test/bench/realtime.ts): accept → TailEvents arrival latency at
    // 1,000 events/s. On unless BENCH_REALTIME=0.
    const realtimeText: string[] = [];
    if (process.env.BENCH_REALTIME !== "0") {
      await stopChild(server);
      await stopChild(worker);
      log("realtime bench (test/bench/realtime.ts)");
      try {
        const { runRealtimeBench } = (await import("./realtime.js")) as { runRealtimeBench(): Promise<{ name: string; value: number; unit: string; target?: string; pass?: boolean }[]> };
        const figures = await runRealtimeBench();
        realtimeText.push(
          table(
            ["Realtime figure", "Measured", "Target", "Result"],
            figures.map((f) => [f.name, `${f.value.toFixed(1)} ${f.unit}`, f.target ?? "—", f.pass === undefined ? "" : passFail(f.pass)]),
          ),
        );
      } catch (err) {
        realtimeText.push(`realtime bench failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }

    // Issue 4's reports bench (test/bench/reports.ts: seeds 10 million events, so it takes several
    // minutes): on unless BENCH_REPORTS=0. It writes its own `## Reports` section.
    const reportsText: string[] = [];
    if (process.env.BENCH_REPORTS !== "0") {
      await stopChild(server);
      await stopChild(worker);
      log("reports bench (test/bench/reports.ts)");
      try {
        const { runReportsBench } = (await import("./reports.js")) as { runReportsBench(): Promise<{ name: string; value: number; unit: string; target?: string; pass?: boolean }[]> };
        const figures = await runReportsBench();
        reportsText.push(
          table(
            ["Reports figure", "Measured", "Target", "Result"],
            figures.map((f) => [f.name, `${fmtMs(f.value)} ${f.unit}`, f.target ?? "—", f.pass === undefined ? "" : passFail(f.pass)]),
          ),
        );
      } catch (err) {
        reportsText.push(`reports bench failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }

    const header = `Beacon ingestion benchmark — ${started.toISOString()}${PROFILE ? " — WITH CPU PROFILING (slower than normal)" : ""}${WHATIF ? ` — WHAT-IF RUN, NOT BEACON AS SHIPPED: ${WHATIF} replaced by no-ops` : ""}`;
    const machineText = [
      `CPU: ${machine.cpu}`,
      `Memory: ${machine.memory}; OS: ${machine.os}`,
      `Node ${machine.node}; ${machine.postgres}; ${machine.redis}`,
      `Load average before the run: ${machine.loadBefore}. ${quietText}`,
      `Machine speed in this run: bare node:http answered ${fmtInt(rps(bareRef.result))} req/s, ${(rps(bareRef.result) / ISSUE_BARE_RPS).toFixed(2)}× the ~${fmtInt(ISSUE_BARE_RPS)} the issue's targets were set against. This shared machine's speed varies by more than that between runs: an absolute target (single-event req/s above all) is easier in a fast spell, while ratios to the same run's references compare across runs.`,
      latencyRoomText(bareRateRef.result.latency.p99, floorRateRef.result.latency.p99, floorPipelineRef.result.latency.p99, rate),
      `Beacon first warmed by ${BEACON_WARMUP_SECONDS} s of unmeasured single-event load; then each phase: ${WARMUP_SECONDS} s warm-up + ${SECONDS} s measured; load generator in its own process, keep-alive HTTP/1.1, no pipelining.`,
    ];
    const figuresTable = table(["Figure", "Measured", "Reference (same run)", "Ratio", "Target", "Result"], figureRows);
    const refsTable = table(["Reference", "Rate", "Latency / size", "Server CPU per request", "CPU during it (% of one core)"], refRows);
    const phasesTable = table(["Beacon phase", "Accepted (measured window)", "HTTP statuses (whole run)", "Stored", "Event loop busy", "CPU during the load (% of one core)"], phaseRows);

    const costTable = table(costHeader, phases.map(costRow));

    const traceText = traceLines(phases);

    for (const p of phases) {
      const accepted = evps(p.load);
      const storedRate = e2e(p);
      if (Number.isFinite(storedRate) && accepted > storedRate * 1.2) {
        notes.push(`${p.name} phase: events were accepted at ${fmtInt(accepted)}/s but stored at ${fmtInt(storedRate)}/s end to end, so the ingest queue grew (peak ${fmtInt(p.maxQueueWaiting ?? 0)} waiting jobs) and the accept-to-stored lag grows with the length of the run.`);
      }
    }
    const disturbed: string[] = [];
    for (const [name, cpu] of [...httpRefs.map(([, n, r]) => [n, r.cpu] as const), ...phases.map((p) => [p.name, p.cpu] as const)]) {
      const other = (cpu.groups["everything else"] ?? 0) + (cpu.groups["postgres (other)"] ?? 0);
      if (other > 15) disturbed.push(`${name} (${Math.round(other)}% of a core)`);
    }
    if (disturbed.length) {
      notes.push(`Other work used CPU during: ${disturbed.join(", ")}. Other work is "everything else" (processes not part of this bench) plus "postgres (other)" (backends of other databases on the shared Postgres); figures of those phases are lower than on a quiet machine, while the CPU-per-event table is less affected.`);
    }
    const errorLines: string[] = [];
    for (const [name, r] of [...httpRefs.map(([, n, ref]) => [n, ref.result] as const), ...phases.map((p) => [p.name, p.load] as const)]) {
      if (r.errorSamples.length || r.socketErrors) errorLines.push(`${name}: ${r.socketErrors} socket errors; ${r.errorSamples.join(" | ")}`);
    }
    for (const p of phases) if (p.lag!.refused) errorLines.push(`${p.name}: ${p.lag!.refused} lag samples refused`);

    const profileText: string[] = [];
    for (const p of phases) {
      for (const prof of p.profiles ?? []) {
        profileText.push(`${p.name} phase, ${prof.role} (${fmtMs(prof.summary.totalMs)} ms of CPU sampled):`);
        profileText.push(`  by package: ${prof.summary.byPackage.map(([k, v]) => `${k} ${v.toFixed(1)}%`).join(", ")}`);
        profileText.push(`  by nearest Beacon frame: ${prof.summary.byBeaconFrame.slice(0, 8).map(([k, v]) => `${k} ${v.toFixed(1)}%`).join("; ")}`);
        profileText.push(`  top self: ${prof.summary.topSelf.slice(0, 8).map(([k, v]) => `${k} ${v.toFixed(1)}%`).join("; ")}`);
      }
    }

    const out = [
      header,
      "",
      ...machineText,
      "",
      figuresTable,
      "",
      refsTable,
      "",
      phasesTable,
      "",
      "CPU per event, from the start of each load until all its events were stored (server + worker + Postgres backends of the bench database + Redis = pipeline):",
      costTable,
      ...(notes.length ? ["", ...notes.map((n) => `Note: ${n}`)] : []),
      ...(errorLines.length ? ["", "Refusals and errors:", ...errorLines] : []),
      ...(metricsText.length ? ["", ...metricsText] : []),
      ...(realtimeText.length ? ["", ...realtimeText] : []),
      ...(reportsText.length ? ["", ...reportsText] : []),
      ...(traceText.length ? ["", "Step timings (BENCH_TRACE=1):", ...traceText] : []),
      ...(profileText.length ? ["", "CPU profiles:", ...profileText] : []),
    ].join("\n");
    process.stdout.write(`${out}\n`);

    if (WRITE_DOC) {
      const section = [
        "## Ingestion",
        "",
        "Written by `npm run bench` (test/bench/main.ts); every figure and ratio in this section was measured in one run, on the machine described.",
        "Targets (issue 3): ≥ 10,000 single-event beacon requests/s and ≥ 50,000 batched events/s end to end, p99 accept latency < 20 ms at that load, p95 accept-to-stored lag < 2 s — on 2 cores shared by the server, the worker, Postgres, Redis and the load generator.",
        "",
        `### Run of ${started.toISOString()}${PROFILE ? " (with CPU profiling: slower than normal)" : ""}`,
        "",
        ...machineText.map((l) => `- ${l}`),
        "",
        "#### Figures",
        "",
        figuresTable,
        "",
        "#### References (same run)",
        "",
        refsTable,
        "",
        "#### Beacon phases",
        "",
        phasesTable,
        "",
        "#### CPU per event",
        "",
        "From the start of each phase's load until all its events were stored. Pipeline = server + worker + Postgres backends of the bench database + Redis; the last columns are the rate those costs would allow if the pipeline had every core to itself.",
        "",
        costTable,
        ...(notes.length ? ["", ...notes.map((n) => `- Note: ${n}`)] : []),
        ...(errorLines.length ? ["", "Refusals and errors:", "", ...errorLines.map((l) => `- ${l}`)] : []),
        ...(traceText.length ? ["", "#### Step timings (BENCH_TRACE=1)", "", ...traceText.flatMap((t) => [t, ""])] : []),
        ...(profileText.length ? ["", "#### CPU profiles", "", "```", ...profileText, "```"] : []),
        "",
        "### How it is measured",
        "",
        "- Beacon runs as two processes started with `start()` from server/main.ts: `--role server` (HTTP/Connect, accept → ingest buffer → BullMQ) and `--role worker` (enrich → sessions → Postgres; at its default `WORKER_NICE` of 10, below the other processes' CPU priority), on a fresh database `beacon_t_bench_*` and Redis prefix `beacon-bench-*`, both removed at the end.",
        "- The load generator (test/bench/loadgen.ts) is a separate Node process with raw keep-alive HTTP/1.1 sockets to 127.0.0.1, no pipelining: each connection sends its next request when the previous answer is complete (closed loop). Requests per second count 2xx answers completed in the measured window, after the warm-up; latency is from writing a request to the end of its answer, over the measured window. The closed loop measures the most Beacon answers with that many clients; its latency grows with the number of connections (each waits for every request ahead of it), so the latency target is measured apart, in the open-loop phase: single events are due at the target rate on a fixed schedule, as independent browsers send them, and go out on whichever of its connections is free; their latency counts from when each was due, so requests waiting for a connection count too (no coordinated omission).",
        "- Visitors vary as in real traffic: 20,000 client ids and `X-Forwarded-For` addresses for single events, ten user agents, ten pages; each batch comes from 50 visitors and a new first visitor (the per-visitor rate limit charges a whole batch to its first event's visitor).",
        "- References run against the same load generator with the same request bodies: a bare `node:http` server that reads the body and answers 204 (closed loop, and in the open loop at the rate phase's rate: the accept-latency target's yardstick, what this machine and load generator allow a server that does nothing), the same handler behind Beacon's listener (server/http/listen.ts), the accept floor (test/bench/ref-server.ts: the least a server of Beacon's design does for a single-event beacon — Beacon's listener, reads and parses the JSON body, waits for the ingest buffer's window, writes the window's events to Redis in one round trip, answers /collect's 200 — in the closed loop, in the open loop at the rate phase's rate, and there again, after the rate phase, queueing real ingest jobs through Beacon's buffer and producer for a site of its own, which Beacon's worker enriches and stores as it does Beacon's: its latency is what the machine leaves for Beacon's own work, alone and with the rest of the pipeline running), and a Connect router whose TrackEvent returns an empty response at once. Postgres: 200,000 event-shaped rows with COPY FROM STDIN (text) and 100,000 with the INSERT … SELECT FROM unnest statement events-store.ts uses, 10,000 rows per statement, one connection, into unpartitioned copies of `events` (same columns, primary key and BRIN index); payloads are built before the clock starts.",
        "- Batched events/s end to end = every event the batched phase had accepted (warm-up included, plus the lag samples) ÷ (time the stored count for the site first reached that number − time the first request was sent); the count is polled every 200 ms after the load ends.",
        "- Accept → stored lag: during each phase's measured window a sampler sends ~20 TrackEvent calls/s with an event id and a client timestamp through the same acceptor, buffer, queue and worker; a poller looks them up by primary key every 100 ms; lag = first poll that sees the row − its `received_at` (set at accept). Resolution 100 ms, on the late side.",
        "- CPU per process is read from /proc during the measured load; interrupt/softirq time (loopback networking) and time stolen by the hypervisor are read from /proc/stat; \"everything else\" and \"postgres (other)\" are what other work on the same machine used at the time (it disturbs the rates, and shows there). Redis is shared, so its CPU includes other users'.",
        "- Before the first reference the bench waits up to 45 s for the machine to be under 20% busy, and reports what it saw: other work on the same two cores (test suites, builds) is measured as slowness otherwise.",
        "- Diagnosis: BENCH_TRACE=1 adds per-step wall times (test/bench/trace.ts wraps the ingest steps, every Redis command and Postgres statement in the Beacon processes); BENCH_PROFILE=1 adds CPU profiles summarised by package and by the nearest Beacon function; BENCH_WHATIF=no-rate-limit,no-usage,no-realtime replaces those steps with no-ops to measure what they cost (such runs are labelled and never written here).",
        "- Knobs: BENCH_SECONDS, BENCH_WARMUP_SECONDS, BENCH_CONNECTIONS, BENCH_RATE_CONNECTIONS, BENCH_BATCH_CONNECTIONS, BENCH_BATCH_SIZE, BENCH_PROFILE=1 (CPU profiles of the server and worker per phase), BENCH_TRACE=1 (wall time of each ingest step, Redis command and Postgres statement), BENCH_METRICS=0 / BENCH_REALTIME=0 / BENCH_REPORTS=0 (skip test/bench/metrics.ts / realtime.ts / reports.ts, which run by default after the ingestion phases), BENCH_DRAIN_SECONDS, BENCH_RATE (the open-loop phase's rate instead of the target's, for diagnosis; such runs are never written here), BENCH_NODE_FLAGS (Node/V8 flags for the Beacon processes, e.g. --trace-gc-nvp, whose output is copied to a file; diagnosis only, never written here), BENCH_BEACON_WARMUP_SECONDS (unmeasured single-event load before the first Beacon phase, 10; 0 for none), BENCH_NO_DOC=1, BENCH_ONLY=bare,bare-rate,listen,floor,floor-rate,floor-pipeline,single,rate,track,batch (just those phases, `bare` the bare node:http reference, `bare-rate` it in the open loop at the rate phase's rate, `listen` it behind Beacon's listener, `floor`, `floor-rate` and `floor-pipeline` the accept floor closed, open, and open with Beacon's worker storing what it queues; figures printed, nothing written).",
        "",
      ].join("\n");
      writeDocSection("Ingestion", section);
      if (metricsText.length) writeDocSection("Metrics", ["## Metrics", "", `Measured by test/bench/metrics.ts in \`npm run bench\` on ${started.toISOString()}.`, "", ...metricsText, ""].join("\n"));
      if (realtimeText.length) writeDocSection("Realtime", ["## Realtime", "", `Measured by test/bench/realtime.ts in \`npm run bench\` on ${started.toISOString()}.`, "", ...realtimeText, ""].join("\n"));
      log("wrote the Ingestion section of docs/benchmarks.md");
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (!interrupted) await cleanup();
  }
}

await main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
