// Monthly usage per organisation, read for GetQuotas. The accept path counts in memory and
// writes the sums to Redis about once a second (one INCRBY per organisation and month, not one
// per request); this process's unwritten counts are added to what it reads.
import type { Redis } from "ioredis";

export function usageKey(prefix: string, organisationId: string, at = new Date()): string {
  const month = `${at.getUTCFullYear()}${String(at.getUTCMonth() + 1).padStart(2, "0")}`;
  return `${prefix}:usage:${organisationId}:${month}`;
}

const KEY_TTL_SECONDS = 40 * 24 * 3600;

export class RedisUsage {
  /** Counts not yet written, by Redis key. */
  private pending = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly redis: Redis, private readonly prefix: string, private readonly flushEveryMs = 1000) {}

  async eventsThisMonth(organisationId: string): Promise<bigint> {
    const key = usageKey(this.prefix, organisationId);
    const value = await this.redis.get(key);
    return BigInt(value ?? 0) + BigInt(this.pending.get(key) ?? 0);
  }

  /** Adds accepted events, written to Redis within `flushEveryMs`. */
  addEvents(organisationId: string, count: number, at = new Date()): void {
    const key = this.keyOf(organisationId, at);
    this.pending.set(key, (this.pending.get(key) ?? 0) + count);
    this.schedule();
  }

  /** The last organisation's key, reused while the month is the same (the accept path asks per request). */
  private last = { organisationId: "", month: NaN, key: "" };

  private keyOf(organisationId: string, at: Date): string {
    const month = at.getUTCFullYear() * 12 + at.getUTCMonth();
    const last = this.last;
    if (last.organisationId === organisationId && last.month === month) return last.key;
    const key = usageKey(this.prefix, organisationId, at);
    this.last = { organisationId, month, key };
    return key;
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => void this.flush(), this.flushEveryMs);
    this.timer.unref();
  }

  /** Writes the counts gathered so far. A failed write keeps them for the next one. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const counts = this.pending;
    if (counts.size === 0) return this.writing;
    this.pending = new Map();
    const multi = this.redis.multi();
    for (const [key, count] of counts) multi.incrby(key, count).expire(key, KEY_TTL_SECONDS);
    this.writing = this.writing.then(() => multi.exec()).then(
      () => undefined,
      () => {
        // Usage is informational: keep the counts and try again with the next flush.
        for (const [key, count] of counts) this.pending.set(key, (this.pending.get(key) ?? 0) + count);
        this.schedule();
      },
    );
    return this.writing;
  }

  /** Writes what is gathered; called on shutdown. */
  close(): Promise<void> {
    return this.flush();
  }
}
