// Sliding-window rate limits in Redis, shared by every server process. Each limit keeps two
// fixed-window counters and weighs the previous one by how much of it still overlaps the
// sliding window (Cloudflare's approximation): two small counters per limit (keys of their own,
// or fields of their group's hash), and exact for bursts inside one window, which is what 003's
// "10 per minute" needs.
//
// Checks are batched: the ingest buffer's gate sends the checks of every request of one flush
// to Redis in one script call, evaluated in order, so each request gets the verdict it would
// have got alone at a fraction of the per-call cost.
import type { Redis } from "ioredis";
import { LUA_IN_PIECES } from "./lua.js";

export interface RateLimit {
  /** Stable name of what is limited, e.g. `s:<site>`, or a visitor's key within its group. */
  key: string;
  /**
   * Limits of one group (a site's visitors, say) keep their counters as fields of one Redis hash
   * per window, named by the group: one key and one expiry for all of them, where a key per
   * visitor per window cost Redis a key created, expired and deleted for each. Unset: a key of its own.
   */
  group?: string;
  limit: number;
  windowMs: number;
  /** What this check charges this limit; the check's cost when unset. */
  cost?: number;
}

export type RateVerdict = { allowed: true } | { allowed: false; retryAfterMs: number };

// KEYS: every counter key or hash the call touches, each once. ARGV[1]: the call's checks as one
// JSON array (one argument, not ~13 per request: encoding each argument was most of the call's
// cost in ioredis). Each check is a flat array, per limit: KEYS index of the current and of the
// previous window's key, hash field ('' for a key of its own), limit, windowMs, elapsed ms of the
// current window, cost. Returns per check 0 when every limit admits its cost more (and counts
// them), else ms until retry.
// Every counter the call needs is read first, a hash's fields in one HMGET, and every changed
// hash written back in one HSET of the new values (the script runs alone, so nothing moves in
// between). In an interleaved A/B at 60 checks a call, a command per field (two HGETs and an
// HINCRBY per visitor) cost Redis 13–17 µs a check (median 15.4); this way 8–11 (median 10.2).
const SCRIPT = `
local checks = cjson.decode(ARGV[1])
-- value[k][f]: a counter's count as the checks so far leave it; read[k][f]: as stored.
local value, read, fieldsOf, keyList = {}, {}, {}, {}
local function want(k, f)
  local t = value[k]
  if t == nil then
    t = {}
    value[k] = t
    fieldsOf[k] = {}
    keyList[#keyList + 1] = k
  end
  if t[f] == nil then
    t[f] = 0
    if f ~= '' then
      local fs = fieldsOf[k]
      fs[#fs + 1] = f
    end
  end
end
for c = 1, #checks do
  local check = checks[c]
  for b = 1, #check, 7 do
    want(check[b], check[b + 2])
    want(check[b + 1], check[b + 2])
  end
end
${LUA_IN_PIECES}
for i = 1, #keyList do
  local k = keyList[i]
  local t, fs = value[k], fieldsOf[k]
  local r = {}
  read[k] = r
  if t[''] ~= nil then
    t[''] = tonumber(redis.call('GET', KEYS[k]) or '0')
    r[''] = t['']
  end
  inPieces(fs, 2000, function(from, ...)
    local vs = redis.call('HMGET', KEYS[k], ...)
    for j = 1, #vs do
      local f = fs[from + j - 1]
      t[f] = tonumber(vs[j] or '0')
      r[f] = t[f]
    end
  end)
end
local ttlOf = {}
local out = {}
for c = 1, #checks do
  local check = checks[c]
  local wait = 0
  for b = 1, #check, 7 do
    local f, window, elapsed = check[b + 2], check[b + 4], check[b + 5]
    local estimate = value[check[b + 1]][f] * (window - elapsed) / window + value[check[b]][f]
    if estimate + check[b + 6] > check[b + 3] then
      wait = math.max(1, window - elapsed)
      break
    end
  end
  if wait == 0 then
    for b = 1, #check, 7 do
      local t, f = value[check[b]], check[b + 2]
      t[f] = t[f] + check[b + 6]
      ttlOf[check[b]] = check[b + 4] * 2
    end
  end
  out[c] = wait
end
-- A counter belongs to one window: its expiry is set once, when it is created.
for k, ttl in pairs(ttlOf) do
  local t, r = value[k], read[k]
  if t[''] ~= nil and t[''] > r[''] then
    local cost = t[''] - r['']
    if redis.call('INCRBY', KEYS[k], cost) == cost then redis.call('PEXPIRE', KEYS[k], ttl) end
  end
  local changed = {}
  for _, f in ipairs(fieldsOf[k]) do
    if t[f] ~= r[f] then
      changed[#changed + 1] = f
      changed[#changed + 1] = t[f]
    end
  end
  if #changed > 0 then
    inPieces(changed, 4000, function(_, ...) redis.call('HSET', KEYS[k], ...) end)
    if redis.call('PTTL', KEYS[k]) == -1 then redis.call('PEXPIRE', KEYS[k], ttl) end
  end
end
return out
`;

/** One limit of one check: its two window counters and what the check would add. */
interface Counter {
  current: string;
  previous: string;
  /** The hash field, '' for a counter with a key of its own. */
  field: string;
  limit: number;
  windowMs: number;
  /** How far into the current window `now` is, ms. */
  elapsed: number;
  cost: number;
}

/** One all-or-nothing check: every limit must admit its cost. */
export interface RateCheck {
  limits: RateLimit[];
  /** What each limit is charged unless it names its own cost. */
  cost: number;
  now: number;
}

const MAX_CHECKS_PER_CALL = 1000;
const ALLOWED: RateVerdict = { allowed: true };

type ScriptRedis = { beaconRateLimits(n: number, ...a: string[]): Promise<number[]> };

export class RateLimiter {
  constructor(private readonly redis: Redis, private readonly prefix: string) {
    if (!("beaconRateLimits" in redis)) redis.defineCommand("beaconRateLimits", { lua: SCRIPT });
  }

  /**
   * Admits each check's `cost` events (or each limit's own cost) under every one of its limits,
   * all or nothing, or says how many ms to wait; checks are evaluated in order, each as if it
   * were alone, in one script call (the ingest buffer's gate makes one per flush). Limits of 0 are off.
   */
  async check(checks: RateCheck[]): Promise<RateVerdict[]> {
    const verdicts = new Array<RateVerdict>(checks.length).fill(ALLOWED);
    const asked: { at: number; counters: Counter[] }[] = [];
    checks.forEach((check, at) => {
      const counters = this.countersOf(check);
      if (counters.length > 0) asked.push({ at, counters });
    });
    const calls: Promise<void>[] = [];
    // Slices keep one script call short: Redis runs nothing else meanwhile.
    for (let i = 0; i < asked.length; i += MAX_CHECKS_PER_CALL) {
      const slice = asked.slice(i, i + MAX_CHECKS_PER_CALL);
      calls.push(this.send(slice.map((a) => a.counters)).then((answers) => slice.forEach((a, k) => (verdicts[a.at] = answers[k]))));
    }
    await Promise.all(calls);
    return verdicts;
  }

  private countersOf({ limits, cost, now }: RateCheck): Counter[] {
    const counters: Counter[] = [];
    for (const limit of limits) {
      const charged = limit.cost ?? cost;
      if (limit.limit <= 0 || charged <= 0) continue;
      // The script tells a hash field from a key of its own by the field being empty.
      if (limit.group !== undefined && limit.key === "") throw new Error(`rate limit of group ${limit.group} has an empty key`);
      const index = Math.floor(now / limit.windowMs);
      const name = limit.group === undefined ? `${this.prefix}:rl:${limit.key}:` : `${this.prefix}:rl:${limit.group}:`;
      counters.push({ current: name + index, previous: name + (index - 1), field: limit.group === undefined ? "" : limit.key, limit: limit.limit, windowMs: limit.windowMs, elapsed: now - index * limit.windowMs, cost: charged });
    }
    return counters;
  }

  /** One script call for up to MAX_CHECKS_PER_CALL checks. */
  private async send(checks: Counter[][]): Promise<RateVerdict[]> {
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
    const args: (string | number)[][] = [];
    for (const counters of checks) {
      const check: (string | number)[] = [];
      for (const c of counters) check.push(slot(c.current), slot(c.previous), c.field, c.limit, c.windowMs, c.elapsed, c.cost);
      args.push(check);
    }
    const waits = await (this.redis as unknown as ScriptRedis).beaconRateLimits(keys.length, ...keys, JSON.stringify(args));
    return checks.map((_, i) => {
      const wait = Number(waits[i]);
      return wait === 0 ? ALLOWED : { allowed: false, retryAfterMs: wait };
    });
  }
}
