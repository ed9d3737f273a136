// Sliding-window rate limits in Redis, shared by every server process. Each limit keeps two
// fixed-window counters and weighs the previous one by how much of it still overlaps the
// sliding window (Cloudflare's approximation): one round trip, two small keys per limit, and
// exact for bursts inside one window, which is what 003's "10 per minute" needs.
import type { Redis } from "ioredis";

export interface RateLimit {
  /** Stable name of what is limited, e.g. `visitor:<site>:<visitor>`. */
  key: string;
  limit: number;
  windowMs: number;
}

// KEYS: per limit, the current and the previous window's counter.
// ARGV: now, cost, then per limit: limit, windowMs, windowIndex.
// Returns 0 when every limit admits `cost` more (and counts them), else ms until retry.
const SCRIPT = `
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local n = #KEYS / 2
for i = 1, n do
  local limit = tonumber(ARGV[3 + (i - 1) * 3])
  local window = tonumber(ARGV[4 + (i - 1) * 3])
  local index = tonumber(ARGV[5 + (i - 1) * 3])
  local elapsed = now - index * window
  local current = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local estimate = previous * (window - elapsed) / window + current
  if estimate + cost > limit then
    return math.max(1, window - elapsed)
  end
end
for i = 1, n do
  local window = tonumber(ARGV[4 + (i - 1) * 3])
  redis.call('INCRBY', KEYS[2 * i - 1], cost)
  redis.call('PEXPIRE', KEYS[2 * i - 1], window * 2)
end
return 0
`;

export class RateLimiter {
  constructor(private readonly redis: Redis, private readonly prefix: string) {
    if (!("beaconRateLimit" in redis)) redis.defineCommand("beaconRateLimit", { lua: SCRIPT });
  }

  /** Admits `cost` events under every limit, or says how many ms to wait. Limits of 0 are off. */
  async admit(limits: RateLimit[], cost: number, now = Date.now()): Promise<{ allowed: true } | { allowed: false; retryAfterMs: number }> {
    const active = limits.filter((l) => l.limit > 0);
    if (active.length === 0 || cost <= 0) return { allowed: true };
    const keys: string[] = [];
    const args: (string | number)[] = [now, cost];
    for (const limit of active) {
      const index = Math.floor(now / limit.windowMs);
      keys.push(`${this.prefix}:rl:${limit.key}:${index}`, `${this.prefix}:rl:${limit.key}:${index - 1}`);
      args.push(limit.limit, limit.windowMs, index);
    }
    const wait = Number(await (this.redis as unknown as { beaconRateLimit(n: number, ...a: (string | number)[]): Promise<number> }).beaconRateLimit(keys.length, ...keys, ...args));
    return wait === 0 ? { allowed: true } : { allowed: false, retryAfterMs: wait };
  }
}
