// Realtime latency: how long a stored event takes to reach a TailEvents subscriber, measured from
// the moment its TrackEvent call was answered (accepted: durable in Redis) to the moment it
// arrives on the stream, under a steady 1,000 events/s. Beacon runs as `--role server` and
// `--role worker` processes (server/main.ts), so the path measured is the production one:
// server → ingest queue → worker (enrich, store, realtime state) → Redis pub/sub → server hub →
// the subscriber's queue → Connect stream over HTTP/1.1.
//
// The load is paced in 10 ms ticks, each tick's events in one TrackEvents call (10 events at
// 1,000 events/s): what is measured is the way to the screen, not how many calls per second the
// server takes (the ingestion bench does that); BENCH_REALTIME_BATCH=1 sends one TrackEvent call
// per event, as browsers' trackers do (on two busy cores the accept queue can then dominate).
// Knobs: BENCH_REALTIME_SECONDS (measured window, 10), BENCH_REALTIME_RATE (events/s, 1000),
// BENCH_REALTIME_BATCH (events per call, 10), BENCH_WARMUP_SECONDS (2).
// Runs alone with `node --import tsx test/bench/realtime.ts`.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import http from "node:http";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { StreamingService } from "../../gen/beacon/v1/streaming_service_pb.js";
import { TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";

const TRACK_EVENTS_PATH = `/${TrackingService.typeName}/${TrackingService.method.trackEvents.name}`;
import { bootstrap } from "../../server/core/management/bootstrap.js";
import { deleteRedisKeys, TEST_REDIS_URL } from "../support/beacon.js";
import { createMigratedTestOrm } from "../support/db.js";
import { envNumber, percentile } from "./common.js";

export interface BenchFigure {
  name: string;
  value: number;
  unit: string;
  target?: string;
  pass?: boolean;
}

const repo = fileURLToPath(new URL("../..", import.meta.url));
const tsxLoader = createRequire(import.meta.url).resolve("tsx");
const USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const TARGET_P95_MS = 500;

const log = (line: string) => process.stderr.write(`[bench realtime] ${line}\n`);

interface Beacon {
  proc: ChildProcess;
  port: number;
  exited: Promise<unknown>;
}

async function startBeacon(role: "server" | "worker", env: Record<string, string>): Promise<Beacon> {
  const proc = spawn(process.execPath, ["--import", tsxLoader, join(repo, "server/main.ts"), "--role", role], {
    cwd: repo,
    env: { ...process.env, ...env, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  proc.stdout!.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000)));
  proc.stderr!.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000)));
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  const ready = role === "server" ? /Beacon is running at http:\/\/127\.0\.0\.1:(\d+)/ : /"msg":"workers started"/;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const match = ready.exec(output);
    if (match) return { proc, port: role === "server" ? Number(match[1]) : 0, exited };
    if (proc.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  proc.kill("SIGKILL");
  throw new Error(`beacon --role ${role} did not start:\n${output}`);
}

export async function runRealtimeBench(): Promise<BenchFigure[]> {
  const seconds = envNumber("BENCH_REALTIME_SECONDS", 10);
  const rate = envNumber("BENCH_REALTIME_RATE", 1000);
  const batch = Math.max(1, Math.floor(envNumber("BENCH_REALTIME_BATCH", 10)));
  const warmupSeconds = envNumber("BENCH_WARMUP_SECONDS", 2);
  const prefix = `beacon-bench-realtime-${randomBytes(4).toString("hex")}`;
  const database = await createMigratedTestOrm("bench_realtime");
  const processes: Beacon[] = [];
  try {
    const { adminKey } = await bootstrap(database.orm.em.fork());
    const env = { DATABASE_URL: database.url, REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix };
    processes.push(...(await Promise.all([startBeacon("server", env), startBeacon("worker", env)])));
    const baseUrl = `http://127.0.0.1:${processes[0].port}`;
    // A browser's user agent, so the events count as people (TailEvents leaves bots out).
    const as = (key?: string): Interceptor => (next) => (req) => {
      if (key) req.header.set("Authorization", `Bearer ${key}`);
      req.header.set("User-Agent", USER_AGENT);
      return next(req);
    };
    const headers = (key?: string) => ({ interceptors: [as(key)] });
    const management = createClient(ManagementService, createConnectTransport({ baseUrl, httpVersion: "1.1", ...headers(adminKey!) }));
    // The load is plain Connect JSON over keep-alive connections: a client library per call would
    // cost the bench process more CPU than the server spends, on a machine with two cores.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const trackEvents = (body: string) =>
      new Promise<void>((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port: processes[0].port, method: "POST", path: TRACK_EVENTS_PATH, agent, headers: { "Content-Type": "application/json", "User-Agent": USER_AGENT, "Content-Length": Buffer.byteLength(body) } }, (res) => {
          res.resume();
          res.once("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
        });
        req.once("error", reject);
        req.end(body);
      });
    const streaming = createClient(StreamingService, createConnectTransport({ baseUrl, httpVersion: "1.1", ...headers(adminKey!) }));
    const { site } = await management.createSite({ domain: "realtime-bench.example.com", timezone: "UTC", settings: { eventsPerVisitorPerMinute: 0, eventsPerSitePerSecond: 0 } });

    const accepted = new Map<string, number>();
    const acceptLatencies: number[] = [];
    const arrived = new Map<string, number>();
    let dropped = 0n;
    const abort = new AbortController();
    const stream = streaming.tailEvents({ siteId: site!.id }, { signal: abort.signal })[Symbol.asyncIterator]();
    await stream.next(); // the opening heartbeat: the subscription is live
    const reading = (async () => {
      try {
        for (;;) {
          const { value, done } = await stream.next();
          if (done) return;
          if (value.event) arrived.set(value.event.eventId, performance.now());
          dropped = value.dropped;
        }
      } catch {
        // cancelled at the end
      }
    })();

    log(`${rate} events/s for ${warmupSeconds} s warm-up + ${seconds} s measured, ${batch} per TrackEvents call`);
    const started = performance.now();
    const measureFrom = started + warmupSeconds * 1000;
    const endAt = measureFrom + seconds * 1000;
    const inFlight = new Set<Promise<void>>();
    let sent = 0;
    let failed = 0;
    for (let tick = 0; ; tick++) {
      const now = performance.now();
      if (now >= endAt) break;
      // Whatever the schedule owes by now, even if a tick came late.
      const due = Math.floor((rate * (now - started)) / 1000);
      while (sent < due) {
        const count = Math.min(batch, due - sent);
        const ids = Array.from({ length: count }, () => `rt-${sent++}`);
        const measured = now >= measureFrom;
        const body = JSON.stringify({
          trackingId: site!.trackingId,
          events: ids.map((eventId, i) => ({ eventId, name: "pageview", url: `https://realtime-bench.example.com/p/${(sent + i) % 100}`, clientId: `v-${(sent + i) % 1000}` })),
        });
        const sentAt = performance.now();
        const call = trackEvents(body).then(() => {
          const at = performance.now();
          if (measured) {
            for (const id of ids) accepted.set(id, at);
            acceptLatencies.push(at - sentAt);
          }
        }, (err: unknown) => {
          if (failed++ === 0) log(`first refused call: ${String(err)}`);
        });
        inFlight.add(call);
        void call.finally(() => inFlight.delete(call));
      }
      const wait = started + (tick + 1) * 10 - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    const pacedFor = (performance.now() - started) / 1000;
    await Promise.all([...inFlight]);
    // Events answered per second of the run: below the offered rate when the server falls behind.
    const achieved = sent / ((performance.now() - started) / 1000);
    acceptLatencies.sort((a, b) => a - b);
    log(`offered ${(sent / pacedFor).toFixed(0)}/s; send → accepted p50 ${percentile(acceptLatencies, 50).toFixed(1)} ms, p95 ${percentile(acceptLatencies, 95).toFixed(1)} ms`);
    // Let the last events arrive.
    const drainUntil = performance.now() + 10_000;
    while (performance.now() < drainUntil && [...accepted.keys()].some((id) => !arrived.has(id))) await new Promise((resolve) => setTimeout(resolve, 50));
    abort.abort();
    await reading;
    agent.destroy();

    const latencies = [...accepted].filter(([id]) => arrived.has(id)).map(([id, at]) => Math.max(0, arrived.get(id)! - at)).sort((a, b) => a - b);
    const p50 = percentile(latencies, 50);
    const p95 = percentile(latencies, 95);
    const p99 = percentile(latencies, 99);
    const delivered = accepted.size === 0 ? 0 : (latencies.length / accepted.size) * 100;
    log(`sent ${sent} (${achieved.toFixed(0)}/s, ${failed} calls refused); measured ${accepted.size}, arrived ${latencies.length}, dropped ${dropped}`);
    log(`accept → arrival p50 ${p50.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);
    return [
      { name: `realtime load (${batch} events per TrackEvents call)`, value: Math.round(achieved), unit: "events/s", target: `${rate}` },
      { name: "realtime accept→arrival p50 (TailEvents)", value: Math.round(p50 * 10) / 10, unit: "ms" },
      { name: "realtime accept→arrival p95 (TailEvents)", value: Math.round(p95 * 10) / 10, unit: "ms", target: `< ${TARGET_P95_MS} ms`, pass: p95 < TARGET_P95_MS },
      { name: "realtime accept→arrival p99 (TailEvents)", value: Math.round(p99 * 10) / 10, unit: "ms" },
      { name: "realtime events delivered", value: Math.round(delivered * 100) / 100, unit: "%", target: "100 %", pass: delivered === 100 },
    ];
  } finally {
    for (const p of processes) p.proc.kill("SIGTERM");
    await Promise.all(processes.map((p) => Promise.race([p.exited, new Promise((resolve) => setTimeout(resolve, 15_000))])));
    for (const p of processes) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill("SIGKILL");
    await database.drop();
    const redis = new Redis(TEST_REDIS_URL);
    try {
      await deleteRedisKeys(redis, prefix);
    } finally {
      redis.disconnect();
    }
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const figures = await runRealtimeBench();
  for (const f of figures) console.log(`${f.name.padEnd(44)} ${String(f.value).padStart(10)} ${f.unit}${f.target ? `   target ${f.target}${f.pass === undefined ? "" : f.pass ? " ✓" : " ✗"}` : ""}`);
}
