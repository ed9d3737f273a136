// A `--role worker` process gives way to the rest of its machine. Its work can wait: an accepted
// event is durable in Redis, and the lag budget is seconds. A server answering beacons, and the
// Postgres and Redis both depend on, cannot. Where they share cores, the worker runs at a higher
// nice value (WORKER_NICE), so the scheduler serves them first and the worker takes what they
// leave. On a machine of its own this changes nothing.
import { readdirSync } from "node:fs";
import os from "node:os";

/**
 * Lowers this process's CPU priority to `nice` (0 … 19); a thread already at that nice value or
 * above keeps its own. Returns how many threads it changed.
 *
 * Linux keeps a nice value per thread, and setpriority() on the process id reaches only the main
 * thread, while V8's and libuv's threads are already running. So every thread listed under
 * /proc/self/task is set; threads started later inherit the value of the thread that starts
 * them. Elsewhere (no /proc) the process's value is set, which there covers every thread.
 */
export function lowerCpuPriority(nice: number): number {
  if (!Number.isInteger(nice) || nice < 0 || nice > 19) throw new RangeError(`nice must be a whole number from 0 to 19, got ${nice}`);
  let threads: number[];
  try {
    threads = readdirSync("/proc/self/task").map(Number);
  } catch {
    threads = [0];
  }
  let changed = 0;
  for (const thread of threads) {
    try {
      if (os.getPriority(thread) >= nice) continue;
      os.setPriority(thread, nice);
      changed++;
    } catch (err) {
      // A helper thread may end between the listing and the call; the main thread cannot.
      if (thread === 0 || thread === process.pid) throw err;
    }
  }
  return changed;
}
