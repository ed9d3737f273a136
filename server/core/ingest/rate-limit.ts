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

// KEYS: every counter the call touches, each once. ARGV: per check: its number of limits, then
// per limit: the KEYS indexes of its current and previous window's counters, limit, windowMs,
// elapsed ms of the current window, cost. Returns per check 0 when every limit admits its cost
// more (and counts them), else ms until retry. Each counter is read once and written once per
// call however many checks share it (a site's limit is in every check of a busy moment).
const SCRIPT = `
local value, added, ttl = {}, {}, {}
local function get(k)
  local v = value[k]
  if v == nil then
    v = tonumber(redis.call('GET', KEYS[k]) or '0')
    value[k] = v
  end
  return v
end
local out = {}
local a = 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local wait = 0
  for i = 0, n - 1 do
    local b = a + 1 + i * 6
    local window, elapsed = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
    local estimate = get(tonumber(ARGV[b + 1])) * (window - elapsed) / window + get(tonumber(ARGV[b]))
    if estimate + tonumber(ARGV[b + 5]) > tonumber(ARGV[b + 2]) then
      wait = math.max(1, window - elapsed)
      break
    end
  end
  if wait == 0 then
    for i = 0, n - 1 do
      local b = a + 1 + i * 6
      local k, cost = tonumber(ARGV[b]), tonumber(ARGV[b + 5])
      value[k] = get(k) + cost
      added[k] = (added[k] or 0) + cost
      ttl[k] = tonumber(ARGV[b + 3]) * 2
    end
  end
  out[#out + 1] = wait
  a = a + 1 + n * 6
end
for k, cost in pairs(added) do
  -- A counter belongs to one window: its expiry is set once, when it is created.
  if redis.call('INCRBY', KEYS[k], cost) == cost then redis.call('PEXPIRE', KEYS[k], ttl[k]) end
end
return out
`;

/** One limit of one check: its two window counters and what the check would add. */
interface Counter {
  current: string;
  previous: string;
  limit: number;
  windowMs: number;
  /** How far into the current window `now` is, ms. */
  elapsed: number;
  cost: number;
}

interface Pending {
  counters: Counter[];
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
    const counters: Counter[] = active.map((limit) => {
      const index = Math.floor(now / limit.windowMs);
      const name = `${this.prefix}:rl:${limit.key}:`;
      return { current: name + index, previous: name + (index - 1), limit: limit.limit, windowMs: limit.windowMs, elapsed: now - index * limit.windowMs, cost: limit.cost ?? cost };
    });
    return new Promise<RateVerdict>((resolve, reject) => {
      this.pending.push({ counters, resolve, reject });
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
    const keys: string[] = [];
    const at = new Map<string, number>();
    const slot = (key: string) => {
      let i = at.get(key);
      if (i === undefined) {
        i = keys.push(key);
        at.set(key, i);
      }
      return i;
    };
    const args: number[] = [];
    for (const p of batch) {
      args.push(p.counters.length);
      for (const c of p.counters) args.push(slot(c.current), slot(c.previous), c.limit, c.windowMs, c.elapsed, c.cost);
    }
    (this.redis as unknown as ScriptRedis).beaconRateLimits(keys.length, ...keys, ...args).then(
      (waits) => batch.forEach((p, i) => {
        const wait = Number(waits[i]);
        p.resolve(wait === 0 ? { allowed: true } : { allowed: false, retryAfterMs: wait });
      }),
      (err: unknown) => batch.forEach((p) => p.reject(err)),
    );
  }
}
