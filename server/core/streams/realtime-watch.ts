// WatchRealtime in the domain's terms: the realtime snapshot at once, then at each interval an
// update when the figures differ from the last ones sent, or a heartbeat when they do not. The
// comparison covers changes that come from time passing (visitors leaving the five-minute window,
// the minute turning) as well as from new events.
//
// A subscriber that does not read holds this generator at its `yield`: nothing queues up for it.
// When it reads again, it gets the figures as they are then, and `dropped` counts the intervals
// it missed (coalesced into that one update).
import type { RealtimeSnapshot, RealtimeState } from "../realtime.js";
import type { StreamHub } from "./hub.js";

export type RealtimeUpdateKind = "snapshot" | "update" | "heartbeat";

export interface RealtimeUpdate {
  kind: RealtimeUpdateKind;
  at: number;
  /** Unset on heartbeats. */
  snapshot: RealtimeSnapshot | undefined;
  /** Intervals missed so far because the subscriber read too slowly. */
  dropped: number;
}

/**
 * Snapshots shared by every watcher of a site in this process: computed at most once per
 * `maxAgeMs` unless an event for the site arrived since, so a hundred dashboards on one site cost
 * Redis about what one does.
 */
export class SharedSnapshots {
  private readonly cache = new Map<string, { at: number; generation: number; snapshot: Promise<RealtimeSnapshot> }>();
  private readonly generations = new Map<string, number>();

  constructor(private readonly realtime: Pick<RealtimeState, "snapshot">, private readonly maxAgeMs = 500) {}

  /** Marks the site's cached snapshot stale (an event arrived). */
  invalidate(siteId: string): void {
    this.generations.set(siteId, (this.generations.get(siteId) ?? 0) + 1);
  }

  get(siteId: string, now = Date.now()): Promise<RealtimeSnapshot> {
    const generation = this.generations.get(siteId) ?? 0;
    const cached = this.cache.get(siteId);
    if (cached && cached.generation === generation && now - cached.at < this.maxAgeMs) return cached.snapshot;
    const snapshot = this.realtime.snapshot(siteId, now);
    const entry = { at: now, generation, snapshot };
    this.cache.set(siteId, entry);
    // A failed read is not kept.
    snapshot.catch(() => {
      if (this.cache.get(siteId) === entry) this.cache.delete(siteId);
    });
    return snapshot;
  }

  /** Forgets a site nobody watches any more. */
  forget(siteId: string): void {
    this.cache.delete(siteId);
    this.generations.delete(siteId);
  }
}

export interface WatchOptions {
  intervalMs: number;
  signal: AbortSignal;
}

/** What a snapshot says, without when it was taken: two equal fingerprints mean nothing changed. */
export function realtimeFingerprint(s: RealtimeSnapshot): string {
  return JSON.stringify({ ...s, timestamp: 0 });
}

/** Resolves true at `at`, or false as soon as `signal` aborts. */
function sleepUntil(at: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (value: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve(value);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), Math.max(0, at - Date.now()));
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Ends (returns) when `signal` aborts. */
export async function* watchRealtime(hub: StreamHub, snapshots: SharedSnapshots, siteId: string, options: WatchOptions): AsyncGenerator<RealtimeUpdate> {
  const { intervalMs, signal } = options;
  const leave = await hub.join(siteId, () => snapshots.invalidate(siteId));
  try {
    let at = Date.now();
    const first = await snapshots.get(siteId, at);
    let sent = realtimeFingerprint(first);
    let dropped = 0;
    yield { kind: "snapshot", at, snapshot: first, dropped };
    let due = at + intervalMs;
    for (;;) {
      if (!(await sleepUntil(due, signal))) return;
      at = Date.now();
      // Whole intervals that went by while the subscriber was not reading.
      const missed = Math.max(0, Math.floor((at - due) / intervalMs));
      dropped += missed;
      due += (missed + 1) * intervalMs;
      const snapshot = await snapshots.get(siteId, at);
      if (signal.aborted) return;
      const fingerprint = realtimeFingerprint(snapshot);
      if (fingerprint !== sent) {
        sent = fingerprint;
        yield { kind: "update", at, snapshot, dropped };
      } else {
        yield { kind: "heartbeat", at, snapshot: undefined, dropped };
      }
    }
  } finally {
    leave();
    if (!hub.relays(siteId)) snapshots.forget(siteId);
  }
}
