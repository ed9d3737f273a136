// Recent query results, for requests that accept stale answers (max_staleness_seconds): a small
// in-process cache keyed by the request, least recently used first out. Per process on purpose:
// it saves repeated dashboard queries, and a miss only costs a query.
export interface CachedResult<T> {
  result: T;
  /** When it was computed, epoch ms. */
  calculatedAt: number;
}

export class ResultCache<T> {
  private readonly entries = new Map<string, CachedResult<T>>();

  constructor(private readonly maxEntries = 500, private readonly maxAgeMs = 10 * 60_000) {}

  /** The entry for `key` if it is at most `maxAgeMs` old (and never older than the cache keeps). */
  get(key: string, maxAgeMs: number, now: number): CachedResult<T> | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    const age = now - entry.calculatedAt;
    if (age > this.maxAgeMs) {
      this.entries.delete(key);
      return undefined;
    }
    if (age > maxAgeMs) return undefined;
    // Re-insert: a Map iterates in insertion order, so the first key is the least recently used.
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry;
  }

  set(key: string, result: T, calculatedAt: number): void {
    this.entries.delete(key);
    this.entries.set(key, { result, calculatedAt });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }
}
