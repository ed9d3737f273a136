// The cap on concurrent streams per API key, across every server process: a sorted set per key in
// Redis whose members are the open streams, scored by when their lease runs out. Opening a stream
// drops expired leases, counts the rest and adds one, atomically (a Lua script, timed by Redis's
// own clock so servers with skewed clocks agree). Each process renews its streams' leases while
// they are open and removes them when they end; a process that dies leaves leases that expire on
// their own, so a crash never locks a key out for longer than one lease.
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { QuotaExceededError } from "../errors.js";

// KEYS[1]: the key's set. ARGV: max, lease ms, member. Returns 1 when added, 0 when at the cap.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1
`;

// KEYS[1]: the key's set. ARGV: lease ms, members. Extends the members still present.
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return 0
`;

type LeaseCommands = {
  beaconStreamAcquire(key: string, max: number, leaseMs: number, member: string): Promise<number>;
  beaconStreamRenew(key: string, leaseMs: number, ...members: string[]): Promise<number>;
};

export interface StreamLease {
  /** Ends the lease; safe to call more than once. */
  release(): Promise<void>;
}

export class StreamLeases {
  /** Open streams of this process: member → its key's set. */
  private readonly held = new Map<string, string>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly redis: Redis, private readonly prefix: string, private readonly leaseMs = 60_000) {
    if (!("beaconStreamAcquire" in redis)) {
      redis.defineCommand("beaconStreamAcquire", { numberOfKeys: 1, lua: ACQUIRE });
      redis.defineCommand("beaconStreamRenew", { numberOfKeys: 1, lua: RENEW });
    }
    this.timer = setInterval(() => void this.renew(), Math.max(1000, Math.floor(leaseMs / 3)));
    this.timer.unref();
  }

  private get commands(): LeaseCommands {
    return this.redis as unknown as LeaseCommands;
  }

  /** Opens one of at most `max` concurrent streams for the key, or throws QuotaExceededError. */
  async acquire(keyId: string, max: number): Promise<StreamLease> {
    const key = `${this.prefix}:streams:${keyId}`;
    const member = randomUUID();
    const added = Number(await this.commands.beaconStreamAcquire(key, max, this.leaseMs, member));
    if (added !== 1) throw new QuotaExceededError(`this API key already has ${max} open streams (max_concurrent_streams); close one or raise the quota`);
    this.held.set(member, key);
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        this.held.delete(member);
        await this.redis.zrem(key, member).catch(() => {
          // Unreachable Redis: the lease expires on its own.
        });
      },
    };
  }

  /** Open streams of this process. */
  get open(): number {
    return this.held.size;
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async renew(): Promise<void> {
    const byKey = new Map<string, string[]>();
    for (const [member, key] of this.held) {
      let members = byKey.get(key);
      if (!members) byKey.set(key, (members = []));
      members.push(member);
    }
    for (const [key, members] of byKey) {
      await this.commands.beaconStreamRenew(key, this.leaseMs, ...members).catch(() => {
        // Missed renewals are retried at the next tick, well within the lease.
      });
    }
  }
}
