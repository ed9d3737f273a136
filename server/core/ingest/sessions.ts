// Sessions: a visitor's events belong to one visit until `timeout` passes without an event. The
// state (session id, start, last event) lives in Redis so every worker agrees, and is updated
// for a whole batch in one script call. A retried batch meets the state its first attempt left
// and derives the same sessions: an event never more than `timeout` after the last one joins
// it, and new session ids are a hash of (site, visitor, start), not a counter: the script takes
// the first 60 bits of SHA-1 of them (as "0x…", a positive int8), computed only when a visit starts.
import type { Redis } from "ioredis";
import type { EnrichedEvent } from "./enrich.js";

export interface SessionAssignment {
  sessionId: bigint;
  /** Start of the session (its first event's time): the sessions table's partition key. */
  startedAt: number;
  /** The visitor id the session runs under (yesterday's, for a visit crossing midnight UTC). */
  visitorId: bigint;
}

// ARGV: ttlSeconds, then per event: keyToday, keyYesterday ('' if none), ts, timeoutMs, seed
// (site and visitor, from which a new session's id is derived).
// Returns per event: id, start, usedYesterday (0/1).
const SCRIPT = `
local ttl = tonumber(ARGV[1])
local out = {}
local i = 2
while i <= #ARGV do
  local keyToday, keyYesterday = ARGV[i], ARGV[i + 1]
  local ts, timeout, seed = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), ARGV[i + 4]
  local key = keyToday
  local today = redis.call('HMGET', keyToday, 'id', 'start', 'last')
  local s = today
  if not s[1] and keyYesterday ~= '' then
    s = redis.call('HMGET', keyYesterday, 'id', 'start', 'last')
    if s[1] then key = keyYesterday end
  end
  local id, start
  if s[1] and ts - tonumber(s[3]) <= timeout and tonumber(s[2]) - ts <= timeout then
    id, start = s[1], s[2]
    if ts > tonumber(s[3]) then redis.call('HSET', key, 'last', ts) end
  else
    key = keyToday
    id, start = '0x' .. string.sub(redis.sha1hex(seed .. '/' .. ARGV[i + 2]), 1, 15), ARGV[i + 2]
    -- An event older than the visitor's current session (a batch retried late) gets the session
    -- it got the first time, but must not replace the current one: later events belong to that.
    if not today[1] or ts > tonumber(today[3]) then
      redis.call('HSET', key, 'id', id, 'start', start, 'last', ts)
    end
  end
  redis.call('EXPIRE', key, ttl)
  out[#out + 1] = id
  out[#out + 1] = start
  out[#out + 1] = (key == keyYesterday and keyYesterday ~= '') and 1 or 0
  i = i + 5
end
return out
`;

export class SessionTracker {
  constructor(private readonly redis: Redis, private readonly prefix: string) {
    if (!("beaconSessions" in redis)) redis.defineCommand("beaconSessions", { lua: SCRIPT, numberOfKeys: 0 });
  }

  /**
   * Assigns sessions to `events`, which must be in time order. `timeoutMs(siteId)` gives each
   * site's session timeout.
   */
  async assign(events: EnrichedEvent[], timeoutMs: (siteId: string) => number): Promise<SessionAssignment[]> {
    if (events.length === 0) return [];
    let maxTimeout = 0;
    const args: (string | number)[] = [];
    for (const event of events) {
      const timeout = timeoutMs(event.siteId);
      maxTimeout = Math.max(maxTimeout, timeout);
      args.push(
        this.key(event.siteId, event.visitorId),
        event.visitorIdYesterday === null ? "" : this.key(event.siteId, event.visitorIdYesterday),
        event.ts,
        timeout,
        `beacon-session/${event.siteId}/${event.visitorId}`,
      );
    }
    // Keep state a little longer than the longest timeout, so late retries still find it.
    const ttlSeconds = Math.ceil((maxTimeout * 2) / 1000) + 60;
    const reply = (await (this.redis as unknown as { beaconSessions(...a: (string | number)[]): Promise<(string | number)[]> }).beaconSessions(ttlSeconds, ...args));
    return events.map((event, i) => ({
      sessionId: BigInt(reply[i * 3]),
      startedAt: Number(reply[i * 3 + 1]),
      visitorId: Number(reply[i * 3 + 2]) === 1 && event.visitorIdYesterday !== null ? event.visitorIdYesterday : event.visitorId,
    }));
  }

  private key(siteId: string, visitorId: bigint): string {
    return `${this.prefix}:session:${siteId}:${visitorId}`;
  }
}
