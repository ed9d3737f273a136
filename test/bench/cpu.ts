// Where the machine's CPU went during a phase, from /proc (Linux): each named process's user +
// system time, Postgres backends split into this bench's database and the rest, Redis, and
// whatever else ran (other engineers' tests share this machine). Reading /proc only.
import { readdirSync, readFileSync } from "node:fs";

const TICK_MS = 10; // USER_HZ is 100 on Linux

interface ProcTimes {
  comm: string;
  ticks: number;
}

function readProc(pid: number): ProcTimes | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const open = stat.indexOf("(");
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(open + 1, close);
    const fields = stat.slice(close + 2).split(" ");
    // After the comm: state(0) ppid(1) … utime(11) stime(12)
    return { comm, ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined;
  }
}

function machineTicks(): { busy: number; total: number; irq: number; steal: number } {
  const line = readFileSync("/proc/stat", "latin1").split("\n")[0];
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const idle = v[3] + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total, irq: (v[5] ?? 0) + (v[6] ?? 0), steal: v[7] ?? 0 };
}

interface Snapshot {
  at: number;
  procs: Map<number, ProcTimes>;
  machine: ReturnType<typeof machineTicks>;
}

function snapshot(): Snapshot {
  const procs = new Map<number, ProcTimes>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const times = readProc(Number(entry));
    if (times) procs.set(Number(entry), times);
  }
  return { at: performance.now(), procs, machine: machineTicks() };
}

export interface CpuBreakdown {
  wallMs: number;
  /** Per group, percent of one core (200 = both cores busy). */
  groups: Record<string, number>;
  /** The whole machine, percent of one core. */
  machineBusy: number;
  cores: number;
}

export interface CpuMeter {
  stop(named: Record<string, number[]>, benchPostgresPids: number[]): CpuBreakdown;
}

/** Starts a measurement; `stop` names pids (server, worker, load generator…) into groups. */
export function startCpuMeter(): CpuMeter {
  const before = snapshot();
  return {
    stop(named, benchPostgresPids) {
      const after = snapshot();
      const wallMs = after.at - before.at;
      const used = (pid: number) => {
        const a = after.procs.get(pid);
        if (!a) return 0;
        const b = before.procs.get(pid);
        return (a.ticks - (b && b.comm === a.comm ? b.ticks : 0)) * TICK_MS;
      };
      const groups: Record<string, number> = {};
      const claimed = new Set<number>();
      let accounted = 0;
      const add = (group: string, ms: number) => {
        groups[group] = (groups[group] ?? 0) + (ms / wallMs) * 100;
        accounted += ms;
      };
      for (const [group, pids] of Object.entries(named)) {
        for (const pid of pids) {
          if (claimed.has(pid)) continue;
          claimed.add(pid);
          add(group, used(pid));
        }
      }
      for (const pid of benchPostgresPids) {
        if (claimed.has(pid)) continue;
        claimed.add(pid);
        add("postgres (bench db)", used(pid));
      }
      for (const [pid, p] of after.procs) {
        if (claimed.has(pid)) continue;
        if (p.comm === "postgres") add("postgres (other)", used(pid));
        else if (p.comm.startsWith("redis-server")) add("redis", used(pid));
        else continue;
        claimed.add(pid);
      }
      const cores = (after.machine.total - before.machine.total) / (wallMs / TICK_MS) || 1;
      const machineBusyMs = (after.machine.busy - before.machine.busy) * TICK_MS;
      // Interrupt and softirq time (loopback networking mostly) is charged to no process.
      add("kernel irq/softirq", (after.machine.irq - before.machine.irq) * TICK_MS);
      // Time the hypervisor gave to someone else while this machine wanted it.
      const stealMs = (after.machine.steal - before.machine.steal) * TICK_MS;
      if (stealMs > 0) add("stolen by the hypervisor", stealMs);
      groups["everything else"] = Math.max(0, ((machineBusyMs - accounted) / wallMs) * 100);
      return { wallMs, groups, machineBusy: (machineBusyMs / wallMs) * 100, cores: Math.round(cores) };
    },
  };
}

/** Percent of the whole machine (0–100) busy over `ms`. */
export async function machineBusyPercent(ms: number): Promise<number> {
  const a = machineTicks();
  await new Promise((r) => setTimeout(r, ms));
  const b = machineTicks();
  return ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * 100;
}

/**
 * Waits (up to `maxWaitMs`) for the machine to be mostly idle before measuring: other work on
 * the same two cores (test suites, builds) would be measured as Beacon's slowness. Returns the
 * last reading and how long it waited.
 */
export async function waitForQuiet(maxWaitMs: number, thresholdPercent = 20): Promise<{ busyPercent: number; waitedMs: number }> {
  const start = performance.now();
  let busy = await machineBusyPercent(1000);
  while (busy > thresholdPercent && performance.now() - start < maxWaitMs) busy = await machineBusyPercent(2000);
  return { busyPercent: busy, waitedMs: performance.now() - start };
}
