// Realtime across processes, as Beacon scales out: two `--role server` processes and one
// `--role worker` process (server/main.ts each, on one database, Redis and prefix). Events sent to
// server A are stored by the worker, published on Redis, and relayed by server B to its
// subscribers: a TailEvents stream on B receives them in order and a WatchRealtime stream on B
// shows them. The worker process also delivers a webhook subscription created through A (its query
// runner is wired by server/main.ts). Finally B gets SIGTERM with both streams open: they end
// cleanly and B exits 0. Before that: the worker process runs below the servers' CPU priority
// (WORKER_NICE, 10 by default), in every thread.
import { type ChildProcess, spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import http from "node:http";
import { createRequire } from "node:module";
import type net from "node:net";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport as createWebTransport } from "@connectrpc/connect-web";
import { createConnectTransport as createNodeTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { RealtimeUpdateType, StreamingService } from "../../gen/beacon/v1/streaming_service_pb.js";
import { DeliveryKind } from "../../gen/beacon/v1/subscription_pb.js";
import { TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";
import { bootstrap } from "../../server/core/management/bootstrap.js";
import { deleteRedisKeys, TEST_REDIS_URL } from "../support/beacon.js";
import { createMigratedTestOrm, type MigratedTestOrm } from "../support/db.js";
import { threadNiceValues } from "../support/threads.js";
import { caller, createSite, eventually, pageview, StreamReader } from "./streaming-helpers.js";

const repo = fileURLToPath(new URL("../..", import.meta.url));
const tsxLoader = createRequire(import.meta.url).resolve("tsx");
const prefix = `beacon-test-cluster-${randomBytes(4).toString("hex")}`;

interface BeaconProcess {
  child: ChildProcess;
  port: number;
  output: () => string;
  exited: Promise<number | NodeJS.Signals | null>;
}

let database: MigratedTestOrm;
let adminKey: string;
const processes: BeaconProcess[] = [];

/** Starts server/main.ts with `role`; resolves once it listens (servers) or its workers run. */
async function startBeacon(role: "server" | "worker", env: Record<string, string> = {}): Promise<BeaconProcess> {
  const child = spawn(process.execPath, ["--import", tsxLoader, join(repo, "server/main.ts"), "--role", role], {
    cwd: repo,
    env: { ...process.env, ...env, DATABASE_URL: database.url, REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", SHUTDOWN_TIMEOUT_MS: "8000" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
  let exitCode: number | NodeJS.Signals | null | undefined;
  void exited.then((code) => (exitCode = code));
  const ready = role === "server" ? /Beacon is running at http:\/\/127\.0\.0\.1:(\d+)/ : /"msg":"workers started"/;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const match = ready.exec(output);
    if (match) {
      const started = { child, port: role === "server" ? Number(match[1]) : 0, output: () => output, exited };
      processes.push(started);
      return started;
    }
    if (exitCode !== undefined) throw new Error(`beacon --role ${role} exited with ${exitCode}:\n${output}`);
    if (Date.now() > deadline) throw new Error(`beacon --role ${role} did not start:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

let serverA: BeaconProcess;
let serverB: BeaconProcess;
let worker: BeaconProcess;
let management: Client<typeof ManagementService>;
let tracking: Client<typeof TrackingService>;
let streamingB: Client<typeof StreamingService>;

beforeAll(async () => {
  database = await createMigratedTestOrm("streaming_cluster");
  const first = await bootstrap(database.orm.em.fork());
  adminKey = first.adminKey!;
  // One enrichment at a time: batches sent one after another are then stored, and published, in
  // the order they were sent (concurrent batches would be published in the order they finish).
  [serverA, serverB, worker] = await Promise.all([startBeacon("server"), startBeacon("server"), startBeacon("worker", { INGEST_CONCURRENCY: "1" })]);
  const base = (p: BeaconProcess) => `http://127.0.0.1:${p.port}`;
  management = createClient(ManagementService, createNodeTransport({ baseUrl: base(serverA), httpVersion: "1.1", interceptors: [caller(adminKey)] }));
  tracking = createClient(TrackingService, createNodeTransport({ baseUrl: base(serverA), httpVersion: "1.1", interceptors: [caller()] }));
  streamingB = createClient(StreamingService, createWebTransport({ baseUrl: base(serverB), interceptors: [caller(adminKey)] }));
});

afterAll(async () => {
  for (const p of processes) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGTERM");
  }
  await Promise.all(processes.map((p) => Promise.race([p.exited, new Promise((resolve) => setTimeout(resolve, 15_000))])));
  for (const p of processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
  await database?.drop();
  const redis = new Redis(TEST_REDIS_URL);
  try {
    await deleteRedisKeys(redis, prefix);
  } finally {
    redis.disconnect();
  }
});

it.skipIf(process.platform !== "linux")("runs the worker process, every thread of it, at nice 10 and the servers at the nice they started with", () => {
  // Both started from this process, whose nice value they began with.
  const started = os.getPriority();
  const workerThreads = threadNiceValues(worker.child.pid!);
  const serverThreads = threadNiceValues(serverA.child.pid!);
  expect(workerThreads.size).toBeGreaterThan(1);
  expect(new Set(workerThreads.values())).toEqual(new Set([Math.max(10, started)]));
  expect(new Set(serverThreads.values())).toEqual(new Set([started]));
  expect(worker.output()).toContain('"msg":"worker CPU priority lowered"');
});

it("relays events sent to server A, in order, to TailEvents and WatchRealtime subscribers on server B; a webhook is delivered by the worker; B's streams end on SIGTERM", { timeout: 120_000 }, async () => {
  const site = await createSite(management, "cluster");
  const tail = new StreamReader(streamingB.tailEvents({ siteId: site.id }));
  const watch = new StreamReader(streamingB.watchRealtime({ siteId: site.id, intervalSeconds: 1 }));
  expect((await tail.next("B's opening heartbeat")).event).toBeUndefined();
  expect((await watch.next("B's snapshot")).type).toBe(RealtimeUpdateType.SNAPSHOT);

  // A webhook subscription on the site's pageviews, created through server A.
  const received: { body: string; signature: string }[] = [];
  const receiver = http.createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      received.push({ body, signature: String(req.headers["beacon-signature"]) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
  const today = new Date().toISOString().slice(0, 10);
  const streamingA = createClient(StreamingService, createNodeTransport({ baseUrl: `http://127.0.0.1:${serverA.port}`, httpVersion: "1.1", interceptors: [caller(adminKey)] }));

  try {
    const sentIds: string[] = [];
    const base = Date.now() - 120_000;
    for (let batch = 0; batch < 4; batch++) {
      const events = Array.from({ length: 5 }, (_, i) => {
        const n = batch * 5 + i;
        sentIds.push(`c-${n}`);
        return pageview(site, `/page-${n % 3}`, { eventId: `c-${n}`, clientId: `visitor-${n % 4}`, timestamp: { seconds: BigInt(Math.floor((base + n * 1000) / 1000)), nanos: 0 } });
      });
      const response = await tracking.trackEvents({ trackingId: site.trackingId, events });
      expect(response.received).toBe(5);
    }
    let count = sentIds.length;
    const messages = await tail.until("the 20 events on B", (m) => (m.event ? --count === 0 : false));
    expect(messages.filter((m) => m.event).map((m) => m.event!.eventId)).toEqual(sentIds);

    const updates = await watch.until("an update on B with the four visitors", (m) => m.type === RealtimeUpdateType.METRICS_UPDATE && m.report?.activeUsers === 4n);
    expect(updates.at(-1)!.report?.siteId).toBe(site.id);

    const { subscription } = await streamingA.createSubscription({
      siteId: site.id,
      queryJson: JSON.stringify({ metrics: ["pageviews"], dateRange: { startDate: yesterday, endDate: today } }),
      delivery: DeliveryKind.WEBHOOK,
      endpoint: `http://127.0.0.1:${(receiver.address() as net.AddressInfo).port}/hook`,
      throttleSeconds: 60,
    });
    await eventually("a delivery from the worker process", async () => received.length, (n) => n >= 1, 30_000);
    const [delivery] = received;
    const t = /t=(\d+)/.exec(delivery.signature)?.[1];
    expect(delivery.signature).toBe(`t=${t},v1=${createHmac("sha256", subscription!.signingSecret).update(`${t}.${delivery.body}`).digest("hex")}`);
    expect(JSON.parse(delivery.body).result.totals.metrics.pageviews).toBe(20);

    // SIGTERM to B with both streams open: they end cleanly, and B exits 0.
    serverB.child.kill("SIGTERM");
    expect(await tail.end()).toBe("done");
    expect(await watch.end()).toBe("done");
    expect(await serverB.exited).toBe(0);
  } finally {
    receiver.close();
  }
});
