// Sliding-window rate limits in Redis, shared by every server process. Each limit keeps two
// fixed-window counters and weighs the previous one by how much of it still overlaps the
// sliding window (Cloudflare's approximation): two small keys per limit, and exact for bursts
// inside one window, which is what 003's "10 per minute" needs.
//
// Checks are batched: every admit() made during one turn of the event loop (the requests one
// poll of the sockets delivered) goes to Redis in one script call, evaluated in call order, so
// each caller gets the verdict it would have got alone at a fraction of the per-call cost.
import type { Redis } from "ioredis";

export interface RateLimit {
  /** Stable name of what is limited, e.g. `visitor:<site>:<visitor>`. */
  key: string;
  limit: number;
  windowMs: number;
  /** What this check charges this limit; the check's cost when unset. */
  cost?: number;
}

export type RateVerdict = { allowed: true } | { allowed: false; retryAfterMs: number };

// KEYS: per check, per limit, the current and the previous window's counter.
// ARGV: per check: its number of limits, now, then per limit: limit, windowMs, windowIndex, cost.
// Returns per check 0 when every limit admits its cost more (and counts them), else ms until retry.
const SCRIPT = `
local out = {}
local a = 1
local k = 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local now = tonumber(ARGV[a + 1])
  local wait = 0
  for i = 0, n - 1 do
    local limit = tonumber(ARGV[a + 2 + i * 4])
    local window = tonumber(ARGV[a + 3 + i * 4])
    local index = tonumber(ARGV[a + 4 + i * 4])
    local cost = tonumber(ARGV[a + 5 + i * 4])
    local elapsed = now - index * window
    local current = tonumber(redis.call('GET', KEYS[k + 2 * i]) or '0')
    local previous = tonumber(redis.call('GET', KEYS[k + 2 * i + 1]) or '0')
    local estimate = previous * (window - elapsed) / window + current
    if estimate + cost > limit then
      wait = math.max(1, window - elapsed)
      break
    end
  end
  if wait == 0 then
    for i = 0, n - 1 do
      local window = tonumber(ARGV[a + 3 + i * 4])
      redis.call('INCRBY', KEYS[k + 2 * i], tonumber(ARGV[a + 5 + i * 4]))
      redis.call('PEXPIRE', KEYS[k + 2 * i], window * 2)
    end
  end
  out[#out + 1] = wait
  a = a + 2 + n * 4
  k = k + 2 * n
end
return out
`;

interface Pending {
  keys: string[];
  args: (string | number)[];
  resolve(verdict: RateVerdict): void;
  reject(err: unknown): void;
}

const MAX_CHECKS_PER_CALL = 1000;

type ScriptRedis = { beaconRateLimits(n: number, ...a: (string | number)[]): Promise<number[]> };

export class RateLimiter {
  private pending: Pending[] = [];
  private scheduled = false;

  constructor(private readonly redis: Redis, private readonly prefix: string) {
    if (!("beaconRateLimits" in redis)) redis.defineCommand("beaconRateLimits", { lua: SCRIPT });
  }

  /**
   * Admits `cost` events (or each limit's own cost) under every limit, all or nothing, or says how
   * many ms to wait. Limits of 0 are off.
   */
  admit(limits: RateLimit[], cost: number, now = Date.now()): Promise<RateVerdict> {
    const active = limits.filter((l) => l.limit > 0 && (l.cost ?? cost) > 0);
    if (active.length === 0) return Promise.resolve({ allowed: true });
    const keys: string[] = [];
    const args: (string | number)[] = [active.length, now];
    for (const limit of active) {
      const index = Math.floor(now / limit.windowMs);
      keys.push(`${this.prefix}:rl:${limit.key}:${index}`, `${this.prefix}:rl:${limit.key}:${index - 1}`);
      args.push(limit.limit, limit.windowMs, index, limit.cost ?? cost);
    }
    return new Promise<RateVerdict>((resolve, reject) => {
      this.pending.push({ keys, args, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const pending = this.pending;
    this.pending = [];
    // Slices keep one call's arguments well inside what a function call and Lua's unpack take.
    for (let i = 0; i < pending.length; i += MAX_CHECKS_PER_CALL) this.send(pending.slice(i, i + MAX_CHECKS_PER_CALL));
  }

  private send(batch: Pending[]): void {
    const keys = batch.flatMap((p) => p.keys);
    const args: (string | number)[] = [];
    for (const p of batch) for (const a of p.args) args.push(a);
    (this.redis as unknown as ScriptRedis).beaconRateLimits(keys.length, ...keys, ...args).then(
      (waits) => batch.forEach((p, i) => {
        const wait = Number(waits[i]);
        p.resolve(wait === 0 ? { allowed: true } : { allowed: false, retryAfterMs: wait });
      }),
      (err: unknown) => batch.forEach((p) => p.reject(err)),
    );
  }
}
