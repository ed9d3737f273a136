// Needs the real Redis on 127.0.0.1:6379 and `redis-server` on PATH (apt-get install redis-server).
import { afterEach, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectRedis } from "../../server/redis.js";
import type { RedisHandle } from "../../server/redis.js";
import { createLogger } from "../../server/logger.js";

const localRedis = "redis://127.0.0.1:6379";

function capture() {
  const records: Record<string, unknown>[] = [];
  const log = createLogger({ level: "debug", stream: { write: (line: string) => records.push(JSON.parse(line)) } });
  return { log, records };
}

/** A port with nothing listening on it. */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("connectRedis", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  const track = (handle: RedisHandle) => {
    cleanups.push(() => handle.stop());
    return handle;
  };
  const tempDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), "beacon-redis-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  };
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it("uses REDIS_URL and hands out BullMQ-ready connections that stop() quits", async () => {
    const { log } = capture();
    const redis = track(await connectRedis({ url: localRedis, dataDir: await tempDir(), log }));
    expect(redis.url).toBe(localRedis);
    const client = redis.connection();
    expect(client.options.maxRetriesPerRequest).toBeNull();
    expect(await client.ping()).toBe("PONG");
    const other = redis.connection();
    await other.ping();
    await redis.stop();
    expect(client.status).toBe("end");
    expect(other.status).toBe("end");
    expect(() => redis.connection()).toThrow(/after stop/);
  });

  it("fails with one clear line when REDIS_URL does not answer", async () => {
    const { log } = capture();
    const url = `redis://:secret@127.0.0.1:${await deadPort()}`;
    const error = await connectRedis({ url, dataDir: await tempDir(), log, pingTimeoutMs: 500 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toMatch(/did not answer PING within 0\.5 s.*REDIS_URL/);
    expect(message).not.toContain("secret");
    expect(message).not.toContain("\n");
  });

  it("uses a Redis already answering on the default URL", async () => {
    const { log } = capture();
    const dataDir = await tempDir();
    const redis = track(await connectRedis({ dataDir, log, defaultUrl: localRedis }));
    expect(redis.url).toBe(localRedis);
    expect(await redis.connection().ping()).toBe("PONG");
    expect(existsSync(join(dataDir, "redis"))).toBe(false);
  });

  it("starts redis-server on a free port under the data dir when nothing answers, and stops it", async () => {
    const { log, records } = capture();
    const dataDir = await tempDir();
    const defaultUrl = `redis://127.0.0.1:${await deadPort()}`;
    const redis = track(await connectRedis({ dataDir, log, defaultUrl }));
    const port = Number(new URL(redis.url).port);
    expect(redis.url).not.toBe(defaultUrl);
    expect(port).not.toBe(6379);

    const client = redis.connection();
    await client.set("beacon:test", "kept");
    expect(await client.get("beacon:test")).toBe("kept");
    expect(await client.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
    expect(await client.config("GET", "dir")).toEqual(["dir", join(dataDir, "redis")]);
    expect(await readdir(join(dataDir, "redis"))).toContain("appendonlydir");

    const started = records.find((r) => r.msg === "redis-server started");
    const pid = started?.pid as number;
    expect(alive(pid)).toBe(true);
    await redis.stop();
    expect(alive(pid)).toBe(false);
    expect(records).toContainEqual(expect.objectContaining({ msg: "redis-server stopped", pid }));
    expect(records).not.toContainEqual(expect.objectContaining({ msg: "redis-server exited unexpectedly" }));
    const probe = net.connect(port, "127.0.0.1");
    const refused = await new Promise<string>((resolve) => {
      probe.once("connect", () => resolve("connected"));
      probe.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? ""));
    });
    probe.destroy();
    expect(refused).toBe("ECONNREFUSED");
  });

  it("stops promptly when its redis-server died and connections are reconnecting", async () => {
    const { log, records } = capture();
    const defaultUrl = `redis://127.0.0.1:${await deadPort()}`;
    const redis = track(await connectRedis({ dataDir: await tempDir(), log, defaultUrl }));
    const client = redis.connection();
    await client.ping();
    const pid = records.find((r) => r.msg === "redis-server started")?.pid as number;
    process.kill(pid, "SIGKILL");
    await new Promise<void>((resolve) => client.once("reconnecting", () => resolve()));
    await expect.poll(() => records).toContainEqual(expect.objectContaining({ msg: "redis-server exited unexpectedly", signal: "SIGKILL" }));
    let attempts = 0;
    client.on("connecting", () => attempts++);
    await redis.stop();
    // Between attempts ioredis has no socket to close, so "end" never comes; no attempt may follow.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(attempts).toBe(0);
    expect(["end", "reconnecting"]).toContain(client.status);
  });

  it("says how to install Redis when nothing answers and redis-server is not on PATH", async () => {
    const { log } = capture();
    const defaultUrl = `redis://127.0.0.1:${await deadPort()}`;
    const error = await connectRedis({
      dataDir: await tempDir(),
      log,
      defaultUrl,
      redisServerBin: "beacon-test-redis-server-not-installed",
      pingTimeoutMs: 500,
    }).catch((e: unknown) => e);
    const message = (error as Error).message;
    expect(message).toContain("apt-get install redis-server");
    expect(message).toContain("brew install redis");
    expect(message).toContain("REDIS_URL");
    expect(message).not.toContain("\n");
  });
});
