// The metrics part of `npm run bench` (issue 5), measured in one run on this machine:
//
//   ingest   IngestMetricPoints in batches of 1,000 points from BENCH_METRIC_CONNECTIONS concurrent
//            Connect clients for BENCH_SECONDS: points accepted per second (durable in the queue),
//            and points stored per second end to end (first request → last point in Postgres).
//   query    10,000,000 points of one metric over 30 days (20 series: 5 countries × 4 channels),
//            generated in SQL with generate_series and rolled up by the rollup job's own code;
//            then GetTimeSeries over the 30 days at 1h granularity grouped by country, with
//            force_fresh (no cache): p50/p95 of BENCH_METRIC_QUERIES runs. Beside it, the same
//            series with p95 aggregation, which always reads the raw points: the rollups' effect.
//
// Beacon runs as two processes (test/bench/beacon-proc.ts: `--role server` and `--role worker`)
// on its own database (beacon_t_bench_metrics_*, dropped at the end) and Redis prefix (its keys
// deleted at the end). The load and the SQL come from this process.
//
// main.ts calls runMetricsBench(); `node --import tsx test/bench/metrics.ts` runs it alone.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { Aggregation, Granularity } from "../../gen/beacon/v1/common_pb.js";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { MetricType } from "../../gen/beacon/v1/metric_definition_pb.js";
import { ReportingService } from "../../gen/beacon/v1/reporting_service_pb.js";
import { TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";
import { bootstrap } from "../../server/core/management/bootstrap.js";
import { seriesIdOf } from "../../server/core/metrics/series.js";
import { rollUpPendingHours } from "../../server/db/metric-points-store.js";
import { sqlPool } from "../../server/db/orm.js";
import { ensurePartitions } from "../../server/db/partitions.js";
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

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");

const SECONDS = envNumber("BENCH_SECONDS", 12);
const CONNECTIONS = envNumber("BENCH_METRIC_CONNECTIONS", 4);
const BATCH = 1000;
const GENERATED_POINTS = envNumber("BENCH_METRIC_POINTS", 10_000_000);
const QUERY_RUNS = envNumber("BENCH_METRIC_QUERIES", 30);
const TARGETS = { pointsPerSecond: 50_000, queryP95Ms: 200 };

const HOUR = 3_600_000;
const DAY = 86_400_000;
const COUNTRIES = ["GB", "IE", "US", "DE", "FR"];
const CHANNELS = ["web", "mobile", "store", "partner"];

const log = (line: string) => process.stderr.write(`[bench:metrics] ${line}\n`);

interface Child {
  proc: ChildProcess;
  ready: Promise<Record<string, unknown>>;
}

function startBeaconProcess(env: Record<string, string>): Child {
  const proc = spawn(process.execPath, ["--import", "tsx", join(here, "beacon-proc.ts")], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  const tail: string[] = [];
  proc.stderr!.on("data", (chunk: Buffer) => {
    tail.push(chunk.toString());
    if (tail.length > 20) tail.shift();
  });
  const ready = new Promise<Record<string, unknown>>((resolveReady, reject) => {
    let buffered = "";
    const timer = setTimeout(() => reject(new Error(`Beacon (${env.BEACON_ROLE}) did not start within 90 s: ${tail.join("")}`)), 90_000);
    proc.stdout!.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      for (const line of buffered.split("\n").slice(0, -1)) {
        try {
          const message = JSON.parse(line) as Record<string, unknown>;
          if (message.bench === "ready") {
            clearTimeout(timer);
            resolveReady(message);
          }
        } catch {
          // not ours
        }
      }
      buffered = buffered.slice(buffered.lastIndexOf("\n") + 1);
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`Beacon (${env.BEACON_ROLE}) exited with ${code}: ${tail.join("")}`));
    });
  });
  return { proc, ready };
}

async function stopChild(child: Child | undefined): Promise<void> {
  if (!child || child.proc.exitCode !== null) return;
  const exited = new Promise((r) => child.proc.once("exit", r));
  child.proc.kill("SIGTERM");
  const timer = setTimeout(() => child.proc.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

export async function runMetricsBench(): Promise<BenchFigure[]> {
  const figures: BenchFigure[] = [];
  const prefix = `beacon-bench-metrics-${randomBytes(4).toString("hex")}`;
  const database = await createMigratedTestOrm("bench_metrics");
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  let server: Child | undefined;
  let worker: Child | undefined;
  try {
    const pool = await sqlPool(database.orm);
    const { adminKey } = await bootstrap(database.orm.em.fork());
    if (!adminKey) throw new Error("bootstrap returned no admin key");
    const env = {
      DATABASE_URL: database.url,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: prefix,
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "warn",
      BEACON_DATA_DIR: join(tmpdir(), `beacon-bench-metrics-${process.pid}`),
    };
    log("starting Beacon (--role server, --role worker)");
    server = startBeaconProcess({ ...env, BEACON_ROLE: "server" });
    const port = Number((await server.ready).port);
    worker = startBeaconProcess({ ...env, BEACON_ROLE: "worker" });
    await worker.ready;

    const auth: Interceptor = (next) => (req) => {
      req.header.set("Authorization", `Bearer ${adminKey}`);
      return next(req);
    };
    const transport = () => createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1", useBinaryFormat: true, interceptors: [auth] });
    const management = createClient(ManagementService, transport());
    const reporting = createClient(ReportingService, transport());
    const siteId = (await management.createSite({ domain: "bench-metrics.example.com", timezone: "UTC" })).site!.id;
    await management.createMetricDefinition({ name: "orders_count", type: MetricType.COUNTER, tags: ["country", "channel"] });
    await management.createMetricDefinition({ name: "bench_orders", type: MetricType.COUNTER, tags: ["country", "channel"] });

    // --- ingest: batches of 1,000 from concurrent clients
    log(`ingest: ${CONNECTIONS} clients × batches of ${BATCH} for ${SECONDS} s`);
    const batch = (n: number) =>
      Array.from({ length: BATCH }, (_, i) => ({
        metricName: "orders_count",
        value: (i % 9) + 1,
        timestamp: timestampFromMs(Date.now() - ((n * BATCH + i) % 3_600_000)),
        tags: { country: COUNTRIES[i % COUNTRIES.length], channel: CHANNELS[(i >> 3) % CHANNELS.length] },
      }));
    const started = performance.now();
    const stopAt = started + SECONDS * 1000;
    let accepted = 0;
    let requests = 0;
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async (_, c) => {
        const tracking = createClient(TrackingService, transport());
        for (let n = c; performance.now() < stopAt; n += CONNECTIONS) {
          const response = await tracking.ingestMetricPoints({ siteId, points: batch(n) });
          if (response.errors.length > 0) throw new Error(`refused points: ${response.errors[0].message}`);
          accepted += response.ids.length;
          requests++;
        }
      }),
    );
    const acceptSeconds = (performance.now() - started) / 1000;
    let stored = 0;
    const drainDeadline = performance.now() + 180_000;
    while (performance.now() < drainDeadline) {
      stored = Number((await pool.query("select count(*) as n from metric_points where site_id = $1 and metric = 'orders_count'", [siteId])).rows[0].n);
      if (stored >= accepted) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const storeSeconds = (performance.now() - started) / 1000;
    log(`ingest: ${accepted} points accepted in ${requests} requests; ${stored} stored`);
    figures.push(
      { name: "metric points accepted per second (IngestMetricPoints, batches of 1,000)", value: Math.round(accepted / acceptSeconds), unit: "points/s", target: `≥ ${TARGETS.pointsPerSecond}`, pass: accepted / acceptSeconds >= TARGETS.pointsPerSecond },
      { name: "metric points stored per second end to end (accepted → in Postgres)", value: Math.round(stored / storeSeconds), unit: "points/s" },
    );
    if (stored < accepted) throw new Error(`only ${stored} of ${accepted} accepted points were stored within 180 s`);

    // --- query: 10M points generated in SQL, rolled up, then a 30-day hourly series by country
    const end = Math.floor(Date.now() / HOUR) * HOUR;
    const start = end - 30 * DAY;
    log(`query: generating ${GENERATED_POINTS.toLocaleString("en")} points over 30 days`);
    const series = COUNTRIES.flatMap((country) => CHANNELS.map((channel) => ({ tags: { channel, country }, id: seriesIdOf({ channel, country }) })));
    await pool.query(
      `insert into metric_series (site_id, metric, series_id, tags, first_seen, last_received_at)
       select $1, 'bench_orders', id, tags::jsonb, now(), now() from unnest($2::int8[], $3::text[]) as t(id, tags)`,
      [siteId, series.map((s) => s.id), series.map((s) => JSON.stringify(s.tags))],
    );
    await ensurePartitions(pool, "metric_points", new Date(start), new Date(end));
    const generateStarted = performance.now();
    const chunk = 1_000_000;
    const stepMs = (30 * DAY) / GENERATED_POINTS;
    for (let from = 0; from < GENERATED_POINTS; from += chunk) {
      await pool.query(
        `insert into metric_points (site_id, metric, ts, point_id, series_id, value, source, received_at)
         select $1, 'bench_orders', to_timestamp(floor($2::float8 + i * $3::float8) / 1000.0), 'g' || i, ($4::int8[])[(i % $5) + 1], (i % 100)::float8, '', now()
           from generate_series($6::bigint, $7::bigint) as i`,
        [siteId, start, stepMs, series.map((s) => s.id), series.length, from, Math.min(GENERATED_POINTS, from + chunk) - 1],
      );
      log(`query: ${Math.min(GENERATED_POINTS, from + chunk).toLocaleString("en")} points`);
    }
    const generateSeconds = (performance.now() - generateStarted) / 1000;
    await pool.query(
      `insert into metric_rollup_pending (site_id, metric, hour, marked_at)
       select $1, 'bench_orders', h, now() from generate_series($2::timestamptz, $3::timestamptz - interval '1 hour', interval '1 hour') as h
       on conflict do nothing`,
      [siteId, new Date(start).toISOString(), new Date(end).toISOString()],
    );
    const rollupStarted = performance.now();
    let hours = 0;
    for (let rolled = -1; rolled !== 0; hours += rolled) rolled = await rollUpPendingHours(pool, new Date(), 48);
    const rollupSeconds = (performance.now() - rollupStarted) / 1000;
    await pool.query("analyze metric_points");
    await pool.query("analyze metric_rollups");
    await pool.query("analyze metric_series");
    log(`query: generated in ${generateSeconds.toFixed(1)} s, ${hours} hours rolled up in ${rollupSeconds.toFixed(1)} s`);

    const request = (aggregation: Aggregation) => ({
      siteId,
      metrics: ["bench_orders"],
      start: timestampFromMs(start),
      end: timestampFromMs(end - 1),
      granularity: Granularity.HOUR,
      groupBy: ["country"],
      aggregation,
      forceFresh: true,
    });
    const timed = async (aggregation: Aggregation, runs: number) => {
      const times: number[] = [];
      for (let i = 0; i < runs + 2; i++) {
        const t0 = performance.now();
        const response = await reporting.getTimeSeries(request(aggregation));
        const ms = performance.now() - t0;
        if (response.groups.length !== COUNTRIES.length || response.groups[0].buckets.length !== 720) throw new Error(`unexpected answer: ${response.groups.length} groups`);
        if (i >= 2) times.push(ms); // the first two warm the caches and plans
      }
      return times.sort((a, b) => a - b);
    };
    const sums = await timed(Aggregation.SUM, QUERY_RUNS);
    const p95s = await timed(Aggregation.P95, Math.max(3, Math.ceil(QUERY_RUNS / 6)));
    figures.push(
      {
        name: `GetTimeSeries p95: 30 days × 1h by country over ${GENERATED_POINTS.toLocaleString("en")} points (sum, rollups)`,
        value: Math.round(percentile(sums, 95) * 10) / 10,
        unit: "ms",
        target: `< ${TARGETS.queryP95Ms}`,
        pass: percentile(sums, 95) < TARGETS.queryP95Ms,
      },
      { name: "  same query, p50", value: Math.round(percentile(sums, 50) * 10) / 10, unit: "ms" },
      { name: "  same series with p95 aggregation (always raw points), p50", value: Math.round(percentile(p95s, 50)), unit: "ms" },
      { name: `generating ${GENERATED_POINTS.toLocaleString("en")} points in SQL (generate_series, with the primary key)`, value: Math.round(GENERATED_POINTS / generateSeconds), unit: "points/s" },
      // The worker's scheduled rollup may take a share of the hours meanwhile (SKIP LOCKED).
      { name: "rolling up the 720 hours of those points (the rollup job's code)", value: Math.round(rollupSeconds * 10) / 10, unit: "s" },
    );
    return figures;
  } finally {
    await stopChild(server);
    await stopChild(worker);
    await deleteRedisKeys(redis, prefix).catch(() => {});
    redis.disconnect();
    await database.drop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const figures = await runMetricsBench();
  const width = Math.max(...figures.map((f) => f.name.length));
  for (const f of figures) {
    process.stdout.write(`${f.name.padEnd(width)}  ${String(f.value).padStart(10)} ${f.unit}${f.target ? `  (target ${f.target}: ${f.pass ? "pass" : "FAIL"})` : ""}\n`);
  }
}
