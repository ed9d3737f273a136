// Counters for "where does a request's time go", installed into a Beacon process by
// beacon-proc.ts when BENCH_TRACE=1. It wraps methods on the prototypes of the ingest steps
// (nothing in the server changes): each wrapped call's wall time from call to settled promise,
// per step, plus every Redis command's round trip and every Postgres statement. Wall time, not
// CPU: a step that waits on Redis shows the wait. The event loop's utilisation is always kept.
import { performance } from "node:perf_hooks";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import { Acceptor } from "../../server/core/ingest/accept.js";
import { IngestBuffer } from "../../server/core/ingest/buffer.js";
import { RateLimiter } from "../../server/core/ingest/rate-limit.js";
import { SessionTracker } from "../../server/core/ingest/sessions.js";
import { SiteDirectory } from "../../server/core/ingest/sites.js";
import { RealtimeState } from "../../server/core/realtime.js";
import { RedisUsage } from "../../server/core/usage.js";

const MAX_KEPT = 200_000;

interface Series {
  count: number;
  totalMs: number;
  kept: number[];
}

const series = new Map<string, Series>();
let enabled = false;

function record(label: string, ms: number): void {
  if (!enabled) return;
  let s = series.get(label);
  if (!s) series.set(label, (s = { count: 0, totalMs: 0, kept: [] }));
  s.count++;
  s.totalMs += ms;
  if (s.kept.length < MAX_KEPT) s.kept.push(ms);
}

function wrap(proto: object, method: string, label: string): void {
  const target = proto as Record<string, unknown>;
  const original = target[method];
  if (typeof original !== "function") return;
  target[method] = function (this: unknown, ...args: unknown[]) {
    const start = performance.now();
    const result = (original as (...a: unknown[]) => unknown).apply(this, args);
    if (result && typeof (result as Promise<unknown>).then === "function") {
      (result as Promise<unknown>).then(
        () => record(label, performance.now() - start),
        () => record(`${label} (failed)`, performance.now() - start),
      );
    } else {
      record(label, performance.now() - start);
    }
    return result;
  };
}

let installed = false;

export function installTracing(): void {
  if (installed) return;
  installed = true;
  wrap(Acceptor.prototype, "accept", "server: Acceptor.accept (whole accept step)");
  wrap(Acceptor.prototype, "validate", "server: Acceptor.validate (sync)");
  wrap(RateLimiter.prototype, "check", "server: RateLimiter.check (Redis script, one per buffer flush)");
  wrap(Acceptor.prototype, "pinDuplicateTimes", "server: Acceptor.pinDuplicateTimes (Redis)");
  wrap(IngestBuffer.prototype, "add", "server: IngestBuffer.add (wait until durable)");
  wrap(RedisUsage.prototype, "addEvents", "server: RedisUsage.addEvents (not awaited)");
  wrap(SiteDirectory.prototype, "byTrackingId", "both: SiteDirectory.byTrackingId");
  wrap(SiteDirectory.prototype, "byId", "both: SiteDirectory.byId");
  wrap(Queue.prototype, "add", "server: BullMQ Queue.add (one job per buffer flush)");
  wrap(Worker.prototype, "callProcessJob", "worker: ingest job (whole processor)");
  wrap(SessionTracker.prototype, "assign", "worker: SessionTracker.assign (Redis script)");
  wrap(RealtimeState.prototype, "record", "worker: RealtimeState.record (Redis pipeline)");

  // Every Redis command's round trip, by command name (scripts by the first 8 hex of their sha).
  const redisProto = Redis.prototype as unknown as { sendCommand(command: { name: string; args: unknown[]; promise: Promise<unknown> }, stream?: unknown): unknown };
  const sendCommand = redisProto.sendCommand;
  redisProto.sendCommand = function (this: unknown, command, stream) {
    const start = performance.now();
    const result = sendCommand.call(this, command, stream);
    if (enabled) {
      const name = command.name === "evalsha" ? `evalsha ${String(command.args[0]).slice(0, 8)}` : command.name;
      command.promise?.then(
        () => record(`redis: ${name}`, performance.now() - start),
        () => record(`redis: ${name} (failed)`, performance.now() - start),
      );
    }
    return result;
  };

  // Every Postgres statement, by its first words.
  const clientProto = pg.Client.prototype as unknown as { query(...args: unknown[]): unknown };
  const query = clientProto.query;
  clientProto.query = function (this: unknown, ...args: unknown[]) {
    const start = performance.now();
    const result = query.apply(this, args);
    const first = args[0];
    const text = typeof first === "string" ? first : (first as { text?: string } | undefined)?.text ?? "";
    if (enabled && result && typeof (result as Promise<unknown>).then === "function") {
      const label = `postgres: ${text.replace(/\s+/g, " ").trim().slice(0, 48)}`;
      (result as Promise<unknown>).then(
        () => record(label, performance.now() - start),
        () => record(`${label} (failed)`, performance.now() - start),
      );
    }
    return result;
  };
}

export interface TraceRow {
  label: string;
  count: number;
  totalMs: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
}

let eluStart = performance.eventLoopUtilization();
let cpuStart = process.cpuUsage();
let wallStart = performance.now();

export function startTrace(): void {
  series.clear();
  enabled = installed;
  eluStart = performance.eventLoopUtilization();
  cpuStart = process.cpuUsage();
  wallStart = performance.now();
}

export function stopTrace(): { rows: TraceRow[]; eventLoopUtilization: number; cpuPercent: number; wallMs: number } {
  enabled = false;
  const elu = performance.eventLoopUtilization(eluStart);
  const cpu = process.cpuUsage(cpuStart);
  const wallMs = performance.now() - wallStart;
  const rows: TraceRow[] = [];
  for (const [label, s] of series) {
    const sorted = [...s.kept].sort((a, b) => a - b);
    const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
    rows.push({ label, count: s.count, totalMs: s.totalMs, meanMs: s.totalMs / s.count, p50Ms: pct(50), p99Ms: pct(99) });
  }
  rows.sort((a, b) => b.totalMs - a.totalMs);
  return { rows, eventLoopUtilization: elu.utilization, cpuPercent: ((cpu.user + cpu.system) / 1000 / wallMs) * 100, wallMs };
}

/**
 * What-if experiments for diagnosis only (BENCH_WHATIF=a,b): steps replaced by no-ops, to
 * measure what they cost end to end. A run with any of these is not Beacon as shipped, and
 * main.ts labels it so and does not write docs/benchmarks.md.
 *   no-rate-limit  RateLimiter.check admits every check without asking Redis
 *   no-usage       RedisUsage.addEvents counts nothing
 *   no-realtime    RealtimeState.record records nothing (worker)
 */
export function applyWhatIf(list: string[]): void {
  for (const what of list) {
    if (what === "no-rate-limit") RateLimiter.prototype.check = async (checks) => checks.map(() => ({ allowed: true }));
    else if (what === "no-usage") RedisUsage.prototype.addEvents = () => {};
    else if (what === "no-realtime") RealtimeState.prototype.record = async () => {};
    else throw new Error(`unknown BENCH_WHATIF "${what}" (known: no-rate-limit, no-usage, no-realtime)`);
  }
}
