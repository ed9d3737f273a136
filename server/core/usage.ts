// Monthly usage per organisation, counted in Redis by the accept path and read for GetQuotas.
import type { Redis } from "ioredis";

export function usageKey(prefix: string, organisationId: string, at = new Date()): string {
  const month = `${at.getUTCFullYear()}${String(at.getUTCMonth() + 1).padStart(2, "0")}`;
  return `${prefix}:usage:${organisationId}:${month}`;
}

export class RedisUsage {
  constructor(private readonly redis: Redis, private readonly prefix: string) {}

  async eventsThisMonth(organisationId: string): Promise<bigint> {
    const value = await this.redis.get(usageKey(this.prefix, organisationId));
    return BigInt(value ?? 0);
  }

  /** Adds accepted events; the key expires after the month so Redis does not grow for ever. */
  async addEvents(organisationId: string, count: number, at = new Date()): Promise<void> {
    const key = usageKey(this.prefix, organisationId, at);
    await this.redis.multi().incrby(key, count).expire(key, 40 * 24 * 3600).exec();
  }
}
