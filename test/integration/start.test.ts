// `npm start` on a fresh machine: no DATABASE_URL, so Beacon runs its embedded Postgres under
// ./.beacon of its working directory. The process is started as npm starts it (node with the tsx
// loader on server/main.ts) from a fresh temporary directory, and must answer /healthz within
// 60 s, print its admin key once, keep a site across a SIGTERM and a restart, and share its
// Postgres with the `beacon` CLI while it runs. Slow: initdb and four Postgres starts.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { deleteRedisKeys, TEST_REDIS_URL } from "../support/beacon.js";

const repo = fileURLToPath(new URL("../..", import.meta.url));
// Absolute, because the working directory (the temporary one) has no node_modules.
const tsxLoader = createRequire(import.meta.url).resolve("tsx");
const redisPrefix = `beacon_t_start_${randomBytes(4).toString("hex")}`;

/** Logged by the last step of a start (role all); the signal handlers are installed right after. */
const STARTED = '"msg":"workers started"';

let workDir: string;
let port: number;
let server: BeaconProcess | undefined;

interface BeaconProcess {
  child: ChildProcess;
  /** Everything written to stdout so far. */
  stdout(): string;
  stderr(): string;
  /** The exit code, or the signal that ended the process. */
  exited: Promise<number | NodeJS.Signals | null>;
}

/** The environment of a fresh install: nothing set but the port and the shared test Redis. */
function beaconEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: redisPrefix };
  delete env.DATABASE_URL;
  delete env.BEACON_DATA_DIR;
  delete env.LOG_LEVEL;
  return env;
}

function startBeacon(): BeaconProcess {
  const child = spawn(process.execPath, ["--import", tsxLoader, join(repo, "server/main.ts")], {
    cwd: workDir,
    env: beaconEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function waitForHealthz(beacon: BeaconProcess, timeoutMs: number): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  let exitCode: number | NodeJS.Signals | null | undefined;
  void beacon.exited.then((code) => (exitCode = code));
  for (;;) {
    if (exitCode !== undefined) throw new Error(`beacon exited with ${exitCode} before answering /healthz:\n${beacon.stderr()}\n${beacon.stdout().slice(-2000)}`);
    try {
      const response = await fetch(`http://127.0.0.1:${port}/healthz`);
      // The port answers before the workers have started, and main.ts installs its signal
      // handlers only once start() has returned: a SIGTERM in between would kill the process.
      if (response.status === 200 && beacon.stdout().includes(STARTED)) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > giveUpAt) throw new Error(`no answer on /healthz within ${timeoutMs / 1000} s:\n${beacon.stderr()}\n${beacon.stdout().slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function stopBeacon(beacon: BeaconProcess): Promise<number | NodeJS.Signals | null> {
  beacon.child.kill("SIGTERM");
  return beacon.exited;
}

/** A Connect unary call with the JSON codec, as any HTTP client can make it. */
async function callManagement(method: string, key: string, body: object): Promise<{ status: number; json: Record<string, any> }> {
  const response = await fetch(`http://127.0.0.1:${port}/beacon.v1.ManagementService/${method}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, any> };
}

const run = promisify(execFile);

/** `beacon …` from the same working directory, as an operator beside `npm start` would run it. */
async function cli(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [join(repo, "bin/beacon.js"), ...args], { cwd: workDir, env: beaconEnv() });
  return stdout;
}

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port: free } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return free;
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), "beacon-start-"));
  // mkdtemp makes the directory private; as root, Postgres runs as the postgres user and must enter it.
  await chmod(workDir, 0o755);
  port = await freePort();
});

afterAll(async () => {
  if (server && server.child.exitCode === null && server.child.signalCode === null) await stopBeacon(server);
  // A Postgres left behind by a failed run would hold the directory: stop it before removing it.
  const pidFile = join(workDir, ".beacon", "postgres", "postmaster.pid");
  if (existsSync(pidFile)) {
    const pid = Number.parseInt((await readFile(pidFile, "utf8")).split("\n")[0], 10);
    try {
      process.kill(pid, "SIGINT");
    } catch {
      // already gone
    }
  }
  await rm(workDir, { recursive: true, force: true });
  const redis = new Redis(TEST_REDIS_URL);
  try {
    await deleteRedisKeys(redis, redisPrefix);
  } finally {
    redis.disconnect();
  }
});

it("starts with one command from an empty directory, keeps its data across a restart, and shares it with the CLI", { timeout: 240_000 }, async () => {
  // First start: initdb, migrations, the default organisation and its admin key.
  server = startBeacon();
  await waitForHealthz(server, 60_000);
  expect(server.stdout()).toContain(`Beacon is running at http://localhost:${port}`);
  const adminKey = /^\s+(bk_[A-Za-z0-9_-]+)\s*$/m.exec(server.stdout())?.[1];
  expect(adminKey, `no admin key in:\n${server.stdout()}`).toBeDefined();
  expect(existsSync(join(workDir, ".beacon", "postgres", "PG_VERSION"))).toBe(true);

  const created = await callManagement("CreateSite", adminKey!, { domain: "shop.example.com", name: "Shop", timezone: "Europe/Berlin" });
  expect(created.status).toBe(200);
  const siteId = created.json.site.id as string;
  expect(created.json.site.trackingId).toMatch(/^BK-[A-Z0-9]{8}$/);

  // The CLI joins the server's Postgres (advertised in .beacon/postgres.json) instead of starting its own.
  expect(JSON.parse(await readFile(join(workDir, ".beacon", "postgres.json"), "utf8"))).toMatchObject({ pid: server.child.pid });
  const viewerKey = (await cli("keys", "create", "--role", "viewer")).trim();
  expect(viewerKey).toMatch(/^bk_\S+$/);
  const read = await callManagement("GetSite", viewerKey, { id: siteId });
  expect(read.status).toBe(200);
  expect(read.json.site.domain).toBe("shop.example.com");

  expect(await stopBeacon(server)).toBe(0);
  expect(existsSync(join(workDir, ".beacon", "postgres.json"))).toBe(false);

  // Second start in the same directory: same data, no new admin key.
  server = startBeacon();
  await waitForHealthz(server, 60_000);
  expect(server.stdout()).not.toContain("admin API key");
  const listed = await callManagement("ListSites", adminKey!, {});
  expect(listed.status).toBe(200);
  expect(listed.json.sites.map((site: { id: string; domain: string; timezone: string }) => [site.id, site.domain, site.timezone])).toEqual([
    [siteId, "shop.example.com", "Europe/Berlin"],
  ]);
  expect(await stopBeacon(server)).toBe(0);

  // With no server running, the CLI starts the embedded Postgres itself for the command, and stops it.
  const site = JSON.parse(await cli("sites", "create", "--domain", "blog.example.com")) as { id: string; domain: string };
  expect(site.domain).toBe("blog.example.com");
  expect(existsSync(join(workDir, ".beacon", "postgres.json"))).toBe(false);
  expect(existsSync(join(workDir, ".beacon", "postgres", "postmaster.pid"))).toBe(false);
});
