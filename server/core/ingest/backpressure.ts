// Backpressure: while the ingest queue is far behind, new events are refused (503 / Unavailable
// with Retry-After) instead of accepted into an ever longer queue. A client that sends faster
// than the workers store would otherwise have its events accepted and stored minutes later, and
// realtime views and reports would fall that far behind. Events already accepted are never
// affected: they stay queued until stored.
//
// How far behind is estimated as the wait of an event accepted now: the events waiting ahead of
// it, divided by how fast the workers have been draining the queue while it was not empty (both
// from the running totals in workers/queues.ts, ingestEventCountKeys). The wait the batches taken
// last had (ingestQueueWaitKey) would be simpler, but it is old news: it describes batches
// queued a wait ago, so under overload the refusals started a second late and went on a second
// after the queue had emptied, and the queue swung well past its bound. Until the drain rate has
// been seen (a queue that has not been behind lately), the last taken batch's wait stands in;
// with no worker running at all (no report for 5 s), events are accepted into Redis.
// Batches waiting for a retry while Postgres is down do not count either way: their first
// attempt was taken, so events keep being accepted into Redis.
import type { Redis } from "ioredis";
import { ingestEventCountKeys, ingestQueueWaitKey } from "../../../workers/queues.js";
import { UnavailableError } from "../errors.js";

export interface BackpressureOptions {
  /** Refuse new events while the queue wait exceeds this; 0 turns backpressure off. */
  maxQueueWaitMs: number;
  /** How often the workers' readings are fetched (only while events arrive). */
  refreshMs?: number;
  /**
   * How long a request that finds the queue too far behind is held, in case it catches up,
   * before it is refused (default 500 ms; 0 refuses at once).
   */
  holdMs?: number;
}

/** How fast the drain-rate measure forgets: its samples count half after this long. */
const DRAIN_HALF_LIFE_MS = 2_000;
/** The drain rate is trusted once the queue has been seen busy for this long (decayed). */
const MIN_DRAIN_OBSERVED_MS = 300;

export class IngestBackpressure {
  private waitMs = 0;
  private readAt = -Infinity;
  private reading: Promise<void> | undefined;
  private readonly keys: [wait: string, queued: string, taken: string];
  private readonly refreshMs: number;
  /** The previous reading of the totals. */
  private last: { at: number; taken: number; waiting: number } | undefined;
  /** Events taken, and time passed, over intervals that had events waiting throughout (decayed). */
  private drainedEvents = 0;
  private drainedMs = 0;

  constructor(private readonly redis: Redis, prefix: string, private readonly options: BackpressureOptions) {
    const { queued, taken } = ingestEventCountKeys(prefix);
    this.keys = [ingestQueueWaitKey(prefix), queued, taken];
    this.refreshMs = options.refreshMs ?? 200;
  }

  /**
   * Undefined when new events may be accepted now (the usual case: no promise to wait for).
   * While the queue is too far behind, a promise: the request is held for up to `holdMs`,
   * re-reading the workers' reports, and the promise resolves as soon as the queue is back within
   * its bound, else rejects with UnavailableError (thrown at once when holdMs is 0). Costs no
   * round trip: the reading is refreshed in the background every refreshMs.
   *
   * Under overload a refusal sends a client away for a whole second (Retry-After has no finer
   * unit), and when several come back together the queue has emptied meanwhile and the workers
   * idle. Held, requests are let in at the pace the workers drain, within the same bound.
   */
  admit(now = Date.now()): Promise<void> | undefined {
    if (this.options.maxQueueWaitMs <= 0) return undefined;
    if (now - this.readAt >= this.refreshMs && !this.reading) void this.refresh(now);
    if (this.waitMs <= this.options.maxQueueWaitMs) return undefined;
    const holdMs = this.options.holdMs ?? 500;
    if (holdMs <= 0) throw this.refusal();
    return this.hold(now + holdMs);
  }

  private async hold(until: number): Promise<void> {
    for (;;) {
      const wait = Math.min(this.refreshMs, until - Date.now());
      if (wait <= 0) throw this.refusal();
      await new Promise((resolve) => setTimeout(resolve, wait));
      // One reading at a time, shared by every request held.
      await (this.reading ?? (Date.now() - this.readAt >= this.refreshMs ? this.refresh() : undefined));
      if (this.waitMs <= this.options.maxQueueWaitMs) return;
    }
  }

  private refusal(): UnavailableError {
    return new UnavailableError(
      `ingestion is behind (queued events wait ${(this.waitMs / 1000).toFixed(1)} s to be stored, more than ${this.options.maxQueueWaitMs / 1000} s); retry after 1 s`,
      1,
    );
  }

  /** Reads the workers' reports now (admit does so in the background every refreshMs). */
  refresh(now = Date.now()): Promise<void> {
    this.readAt = now;
    this.reading = this.redis.mget(...this.keys).then(
      ([wait, queued, taken]) => this.estimate(now, wait === null ? undefined : Number(wait), Number(queued ?? 0), Number(taken ?? 0)),
      // Redis unreachable: the queue write will say so; keep the last reading.
      () => {},
    ).finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  /** `lastTakenWaitMs` is undefined when no worker has reported for a while: none is running. */
  private estimate(now: number, lastTakenWaitMs: number | undefined, queued: number, taken: number): void {
    const waiting = Math.max(0, queued - taken);
    const last = this.last;
    if (last && now > last.at) {
      const decay = 0.5 ** ((now - last.at) / DRAIN_HALF_LIFE_MS);
      this.drainedEvents *= decay;
      this.drainedMs *= decay;
      // Only intervals with events waiting at both ends say how fast workers can go; an idle
      // queue's drain is just the arrival rate.
      if (last.waiting > 0 && waiting > 0 && taken >= last.taken) {
        this.drainedEvents += taken - last.taken;
        this.drainedMs += now - last.at;
      }
    }
    this.last = { at: now, taken, waiting };
    // No worker running: events are still accepted into Redis, to be stored once one starts.
    if (lastTakenWaitMs === undefined) this.waitMs = 0;
    else if (this.drainedMs >= MIN_DRAIN_OBSERVED_MS && this.drainedEvents > 0) this.waitMs = waiting / (this.drainedEvents / this.drainedMs);
    else this.waitMs = lastTakenWaitMs;
  }
}
