// lowerCpuPriority: every thread of the process, the ones already running and the ones started
// after, ends up at the nice value asked for; it never raises a priority. Run in child processes,
// so the test runner itself keeps its priority. Linux only: it reads the threads from /proc.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { lowerCpuPriority } from "../../server/priority.js";

const repo = fileURLToPath(new URL("../..", import.meta.url));

// The child: starts a worker thread, lowers its priority to NICE, starts another worker thread,
// then prints what lowerCpuPriority returned and every thread's nice value.
const CHILD = `
import { Worker } from "node:worker_threads";
import { lowerCpuPriority } from "./server/priority.ts";
import { threadNiceValues } from "./test/support/threads.ts";
const idle = () => new Worker("setInterval(() => {}, 1000)", { eval: true });
const before = idle();
await new Promise((ready) => before.once("online", ready));
const changed = lowerCpuPriority(Number(process.env.NICE));
const after = idle();
await new Promise((ready) => after.once("online", ready));
const again = lowerCpuPriority(Number(process.env.AGAIN));
console.log(JSON.stringify({ changed, again, nice: [...threadNiceValues(process.pid).values()] }));
process.exit(0);
`;

async function inChild(nice: number, again: number): Promise<{ changed: number; again: number; nice: number[] }> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "--input-type=module", "-e", CHILD], { cwd: repo, env: { ...process.env, NICE: String(nice), AGAIN: String(again) } });
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

describe.skipIf(!existsSync("/proc/self/task"))("lowerCpuPriority", () => {
  const base = os.getPriority();

  it("sets every thread, running or started later, to the nice value", { timeout: 30_000 }, async () => {
    const target = Math.min(19, base + 7);
    const result = await inChild(target, target);
    // The main thread, V8's and libuv's helpers and the first worker thread were all changed.
    expect(result.changed).toBeGreaterThanOrEqual(3);
    expect(result.again).toBe(0);
    expect(result.nice.length).toBeGreaterThanOrEqual(result.changed + 1);
    expect(new Set(result.nice)).toEqual(new Set([target]));
  });

  it("never raises a priority: threads already nicer keep their value", { timeout: 30_000 }, async () => {
    const target = Math.min(19, base + 7);
    const result = await inChild(target, Math.max(0, target - 5));
    expect(result.again).toBe(0);
    expect(new Set(result.nice)).toEqual(new Set([target]));
  });

  it("refuses a value outside 0 … 19, naming it", () => {
    for (const bad of [-1, 20, 2.5]) expect(() => lowerCpuPriority(bad)).toThrow(new RegExp(`got ${bad}`));
  });
});
