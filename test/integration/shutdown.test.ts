// Graceful shutdown of a real Beacon process: SIGTERM while a call is still arriving. The call
// finishes with a correct answer, the port stops accepting at once, and the process exits 0
// within 10 s. The slow call is a Connect unary request over HTTP/1.1 whose chunked body is sent
// in two halves, with the signal in between.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import http from "node:http";
import { createRequire } from "node:module";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { deleteRedisKeys, TEST_REDIS_URL } from "../support/beacon.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const repo = fileURLToPath(new URL("../..", import.meta.url));
const tsxLoader = createRequire(import.meta.url).resolve("tsx");
const redisPrefix = `beacon_t_shutdown_${randomBytes(4).toString("hex")}`;

/** Logged by the last step of a start (role all); the signal handlers are installed right after. */
const STARTED = '"msg":"workers started"';

let database: TestDatabase;
let child: ChildProcess;
/** The exit code, or the signal that ended the process. */
let exited: Promise<number | NodeJS.Signals | null>;
let port: number;
let stdout = "";
let stderr = "";

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port: free } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return free;
}

/** How a new connection fares: `connected`, or the error code (ECONNREFUSED once the port is closed). */
function tryConnect(): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

beforeAll(async () => {
  database = await createTestDatabase("shutdown");
  port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: database.url, PORT: String(port), REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: redisPrefix };
  delete env.LOG_LEVEL;
  child = spawn(process.execPath, ["--import", tsxLoader, join(repo, "server/main.ts")], { cwd: repo, env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
  let exitCode: number | NodeJS.Signals | null | undefined;
  void exited.then((code) => (exitCode = code));
  const giveUpAt = Date.now() + 60_000;
  for (;;) {
    if (exitCode !== undefined) throw new Error(`beacon exited with ${exitCode}:\n${stderr}\n${stdout}`);
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((response) => response.ok, () => false);
    // The port answers before the workers have started, and main.ts installs its signal handlers
    // only once start() has returned: a SIGTERM in between would kill the process outright.
    if (ok && stdout.includes(STARTED)) break;
    if (Date.now() > giveUpAt) throw new Error(`no answer on /healthz:\n${stderr}\n${stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
});

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await exited;
  }
  await database?.drop();
  const redis = new Redis(TEST_REDIS_URL);
  try {
    await deleteRedisKeys(redis, redisPrefix);
  } finally {
    redis.disconnect();
  }
});

it("finishes a call in flight at SIGTERM, refuses new connections, and exits 0 within 10 s", { timeout: 30_000 }, async () => {
  const adminKey = /^\s+(bk_[A-Za-z0-9_-]+)\s*$/m.exec(stdout)?.[1];
  expect(adminKey, `no admin key in:\n${stdout}`).toBeDefined();

  const body = JSON.stringify({ domain: "slow.example.com", name: "Slow", timezone: "Europe/Paris" });
  const half = Math.floor(body.length / 2);
  const request = http.request({
    host: "127.0.0.1",
    port,
    method: "POST",
    path: "/beacon.v1.ManagementService/CreateSite",
    agent: false,
    headers: {
      "Content-Type": "application/json",
      Authorization: `Bearer ${adminKey}`,
      "Transfer-Encoding": "chunked",
      // The server's "100 Continue" proves it has the request in hand before the signal is sent.
      Expect: "100-continue",
    },
  });
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    request.once("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on("error", reject);
    });
    request.on("error", reject);
  });
  // Awaited below; a failure before then must not count as an unhandled rejection.
  response.catch(() => {});
  await new Promise<void>((resolve) => request.once("continue", () => resolve()));
  await new Promise<void>((resolve) => request.write(body.slice(0, half), () => resolve()));

  const signalledAt = Date.now();
  child.kill("SIGTERM");

  // The port closes while the call is still open.
  let attempt = await tryConnect();
  while (attempt !== "ECONNREFUSED" && Date.now() - signalledAt < 3_000) {
    await new Promise((resolve) => setTimeout(resolve, 25));
    attempt = await tryConnect();
  }
  expect(attempt).toBe("ECONNREFUSED");
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, 300 - (Date.now() - signalledAt))));

  request.end(body.slice(half));
  const answer = await response.catch(async (error: Error) => {
    // Say why: a server that crashed on the signal shows it in its last lines.
    const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve("still running"), 2_000))]);
    throw new Error(`the call in flight failed (${error.message}); beacon exit code: ${String(code)}\n${stdout.slice(-3000)}\n${stderr}`);
  });
  expect(answer.status).toBe(200);
  const { site } = JSON.parse(answer.body) as { site: { id: string; domain: string; name: string; timezone: string } };
  expect(site).toMatchObject({ domain: "slow.example.com", name: "Slow", timezone: "Europe/Paris" });
  expect(site.id).toMatch(/^[0-9a-f-]{36}$/);

  const code = await Promise.race([exited, new Promise<"still running">((resolve) => setTimeout(() => resolve("still running"), 10_000 - (Date.now() - signalledAt)))]);
  expect(code, stderr).toBe(0);
  expect(Date.now() - signalledAt).toBeLessThan(10_000);
});
