// Backpressure: while the ingest queue is far behind, new events are refused (503 / Unavailable
// with Retry-After) instead of accepted into an ever longer queue. A client that sends faster
// than the workers store would otherwise have its events accepted and stored minutes later, and
// realtime views and reports would fall that far behind. Events already accepted are never
// affected: they stay queued until stored.
//
// How far behind is read from what the workers report (workers/queues.ts, ingestQueueWaitKey):
// how long the batch a worker last started had waited, first attempts only, so batches waiting
// for a retry while Postgres is down do not count, and events keep being accepted into Redis.
import type { Redis } from "ioredis";
import { ingestQueueWaitKey } from "../../../workers/queues.js";
import { UnavailableError } from "../errors.js";

export interface BackpressureOptions {
  /** Refuse new events while the queue wait exceeds this; 0 turns backpressure off. */
  maxQueueWaitMs: number;
  /** How often the workers' reading is fetched (only while events arrive). */
  refreshMs?: number;
}

export class IngestBackpressure {
  private waitMs = 0;
  private readAt = -Infinity;
  private reading: Promise<void> | undefined;
  private readonly key: string;
  private readonly refreshMs: number;

  constructor(private readonly redis: Redis, prefix: string, private readonly options: BackpressureOptions) {
    this.key = ingestQueueWaitKey(prefix);
    this.refreshMs = options.refreshMs ?? 200;
  }

  /** Throws UnavailableError while the queue is too far behind. Costs no round trip: the reading is refreshed in the background. */
  check(now = Date.now()): void {
    if (this.options.maxQueueWaitMs <= 0) return;
    if (now - this.readAt >= this.refreshMs && !this.reading) this.refresh(now);
    if (this.waitMs > this.options.maxQueueWaitMs) {
      throw new UnavailableError(
        `ingestion is behind (queued events wait ${(this.waitMs / 1000).toFixed(1)} s to be stored, more than ${this.options.maxQueueWaitMs / 1000} s); retry after 1 s`,
        1,
      );
    }
  }

  private refresh(now: number): void {
    this.readAt = now;
    this.reading = this.redis.get(this.key).then(
      (value) => {
        this.waitMs = value === null ? 0 : Number(value);
      },
      // Redis unreachable: the queue write will say so; keep the last reading.
      () => {},
    ).finally(() => {
      this.reading = undefined;
    });
  }
}
