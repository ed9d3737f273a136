// The per-metric cardinality cap (settings max_cardinality): how many distinct tag combinations
// a metric may have on a site. A point of a new series is admitted while the metric has room and
// refused once it is full; points of series it already has are always admitted. The series
// table is the record (registerSeries counts and inserts under a lock); this process remembers
// the series it has seen, so the hot path asks Postgres only about new ones.
import type { Redis } from "ioredis";
import type { Pool } from "pg";
import { countSeries, knownSeries, registerSeries } from "../../db/metric-points-store.js";
import type { Tags } from "./series.js";

export interface SeriesCandidate {
  seriesId: string;
  tags: Tags;
}

const MAX_REMEMBERED = 1_000_000;

export class SeriesRegistry {
  private readonly seen = new Map<string, Set<string>>();
  private remembered = 0;

  constructor(private readonly pool: () => Promise<Pool>) {}

  /** Registers what fits under `cap`; returns the series ids refused because the metric is full. */
  async admit(siteId: string, metric: string, candidates: readonly SeriesCandidate[], cap: number): Promise<Set<string>> {
    const { pool, unseen, fresh } = await this.newSeries(siteId, metric, candidates);
    const refused = fresh.length > 0 ? await registerSeries(pool, siteId, metric, fresh, cap) : new Set<string>();
    this.remember(siteId, metric, unseen.map((c) => c.seriesId).filter((id) => !refused.has(id)));
    return refused;
  }

  /** What admit would refuse, registering nothing (ValidateMetricPoints). */
  async wouldRefuse(siteId: string, metric: string, candidates: readonly SeriesCandidate[], cap: number): Promise<Set<string>> {
    const { pool, fresh } = await this.newSeries(siteId, metric, candidates);
    if (fresh.length === 0) return new Set();
    const room = Math.max(0, cap - (await countSeries(pool, siteId, metric)));
    return new Set(fresh.slice(room).map((c) => c.seriesId));
  }

  /** The candidates this process has not seen, and of those the ones the series table lacks. */
  private async newSeries(siteId: string, metric: string, candidates: readonly SeriesCandidate[]) {
    const unseen = this.unseen(siteId, metric, candidates);
    const pool = await this.pool();
    if (unseen.length === 0) return { pool, unseen, fresh: [] };
    const known = await knownSeries(pool, siteId, metric, unseen.map((c) => c.seriesId));
    return { pool, unseen, fresh: unseen.filter((c) => !known.has(c.seriesId)) };
  }

  private unseen(siteId: string, metric: string, candidates: readonly SeriesCandidate[]): SeriesCandidate[] {
    const seen = this.seen.get(`${siteId}/${metric}`);
    const out = new Map<string, SeriesCandidate>();
    for (const c of candidates) if (!seen?.has(c.seriesId)) out.set(c.seriesId, c);
    return [...out.values()];
  }

  private remember(siteId: string, metric: string, seriesIds: string[]): void {
    if (this.remembered + seriesIds.length > MAX_REMEMBERED) {
      this.seen.clear();
      this.remembered = 0;
    }
    const key = `${siteId}/${metric}`;
    let set = this.seen.get(key);
    if (!set) this.seen.set(key, (set = new Set()));
    for (const id of seriesIds) {
      if (!set.has(id)) {
        set.add(id);
        this.remembered++;
      }
    }
  }
}

/**
 * Points refused for cardinality, counted per site and metric in Redis: the diagnostics a
 * operator reads to see which metric is hitting max_cardinality and how hard.
 */
export class CardinalityDiagnostics {
  constructor(private readonly redis: Redis, private readonly prefix: string) {}

  private key(siteId: string): string {
    return `${this.prefix}:metrics:cardinality-refused:${siteId}`;
  }

  async record(siteId: string, metric: string, points: number): Promise<void> {
    if (points > 0) await this.redis.hincrby(this.key(siteId), metric, points);
  }

  /** Points refused so far for each metric of the site. */
  async read(siteId: string): Promise<Record<string, number>> {
    const counts = await this.redis.hgetall(this.key(siteId));
    return Object.fromEntries(Object.entries(counts).map(([metric, n]) => [metric, Number(n)]));
  }
}
