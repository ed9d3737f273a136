// Ingest batches: enrich, assign sessions, store. Jobs that are ready together are stored
// together (a group commit, below). Idempotent: a retried batch finds its events already stored
// (deduplicated by key) and its sessions already assigned (see SessionTracker).
// A batch that fails for a database-side data error is stored event by event, so one bad event
// goes to the dead letters and the rest are kept; a batch failing for any other reason (Postgres
// down) is retried with backoff, and on its last attempt dead-letters whatever still cannot be stored.
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Job } from "bullmq";
import type { Redis } from "ioredis";
import type { Pool } from "pg";
import type { GeoLookup } from "../../server/core/enrich/geo.js";
import type { VisitorHasher } from "../../server/core/enrich/visitor.js";
import { type EnrichedEvent, enrichHit } from "../../server/core/ingest/enrich.js";
import type { RawHit } from "../../server/core/ingest/hit.js";
import { SessionTracker } from "../../server/core/ingest/sessions.js";
import type { IngestSite, SiteDirectory } from "../../server/core/ingest/sites.js";
import { type StoredEvent, storeEventBatches, storeEvents } from "../../server/db/events-store.js";
import { sqlPool } from "../../server/db/orm.js";
import type { Logger } from "../../server/logger.js";
import { hitsOf, type IngestBatchJob, IngestProgressReports } from "../queues.js";

export interface IngestProcessorDeps {
  orm: MikroORM;
  redis: Redis;
  prefix: string;
  geo: GeoLookup;
  hasher: VisitorHasher;
  sites: SiteDirectory;
  logger: Logger;
  /** Where taken batches are reported for backpressure (default: reports of its own on `redis`). */
  reports?: Pick<IngestProgressReports, "taken">;
  /** Group commits run side by side (default DEFAULT_PARALLEL_STORES). */
  parallelStores?: number;
  /** How long a free store waits for more jobs before storing a small group, ms (default DEFAULT_STORE_LINGER_MS). */
  storeLingerMs?: number;
  /**
   * Told of every stored event (realtime state, live streams): once per store, with each job's
   * events apart (a group commit stores several jobs; a live stream's message is one job's).
   */
  onStored?: (batches: StoredEvent[][]) => Promise<void>;
}

/** SQLSTATE classes that mean "this data cannot be stored", as opposed to "the database is not there". */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && /^(22|23|42)/.test(code) && code !== "42P01";
}

/** A group commit stores at most this many events at once; the rest wait for the next one. */
const MAX_GROUP_EVENTS = 5_000;
/**
 * Group commits one worker process runs at once, by default. Measured on 2 cores, batched traffic
 * (six interleaved runs each): three stores drained 51k events/s end to end against 48k for two,
 * and never fell far enough behind to refuse events; four gained nothing over three.
 */
export const DEFAULT_PARALLEL_STORES = 3;
/**
 * How long a free store waits, by default, for more ready jobs to join its group while fewer
 * than GROUP_START_EVENTS wait. Single-event traffic arrives as many small jobs (a server's
 * flush each, ~100 events at 10,000 events/s) that the stores would otherwise take one at a
 * time, as soon as each is ready: a transaction, a sessions call and their round trips per job.
 * Measured on 2 cores, open loop at 10,000 single events/s (two interleaved rounds): pipeline
 * CPU 158 µs an event without waiting, 152 at 10 ms, 142 at 25 ms, 131 at 50 ms; 100 ms and more
 * gained little and let the lag's p95 climb towards a second.
 */
export const DEFAULT_STORE_LINGER_MS = 50;
/** Ready events that start a store at once, without waiting for more. */
const GROUP_START_EVENTS = 2_000;

interface Prepared {
  job: Job<IngestBatchJob>;
  /** The job's raw hits of known sites, in time order, and their enriched events. */
  known: RawHit[];
  enriched: EnrichedEvent[];
  timeouts: Map<string, number>;
}

interface GroupMember {
  prepared: Prepared;
  /** When it became ready (performance.now()). */
  readyAt: number;
  resolve(stored: number): void;
  reject(err: unknown): void;
}

export function createIngestProcessor(deps: IngestProcessorDeps) {
  const sessions = new SessionTracker(deps.redis, deps.prefix);
  const reports = deps.reports ?? new IngestProgressReports(deps.redis, deps.prefix);
  let assignments: Promise<unknown> = Promise.resolve();

  /** Assigns sessions to one or more jobs' events, in time order across all of them. */
  async function withSessions(group: Prepared[]): Promise<StoredEvent[][]> {
    const all = group.flatMap((p, j) => p.enriched.map((event, i) => ({ event, j, i })));
    all.sort((a, b) => a.event.ts - b.event.ts);
    const timeouts = new Map(group.flatMap((p) => [...p.timeouts]));
    // One assignment at a time, in the order groups were formed (the queue's order), so a
    // visitor's events in two groups stored side by side still meet their sessions in time order.
    const assigning = assignments.then(() => sessions.assign(all.map((a) => a.event), (siteId) => timeouts.get(siteId)!));
    assignments = assigning.catch(() => undefined);
    const assigned = await assigning;
    const rows = group.map((p) => new Array<StoredEvent>(p.enriched.length));
    all.forEach(({ event, j, i }, k) => {
      rows[j][i] = { ...event, visitorId: assigned[k].visitorId, sessionId: assigned[k].sessionId, sessionStartedAt: assigned[k].startedAt };
    });
    return rows;
  }

  async function published(batches: StoredEvent[][]): Promise<void> {
    const stored = batches.filter((rows) => rows.length > 0);
    if (deps.onStored && stored.length > 0) await deps.onStored(stored).catch((err: unknown) => deps.logger.warn("realtime update failed", { err: String(err) }));
  }

  // Group commit: jobs that finish enriching while the stores are busy wait for one to end and
  // are then stored together, in one sessions call and one transaction. Under load the
  // per-transaction cost (round trips to Redis and Postgres, planning, commit) is shared by many
  // jobs (realtime state and live streams are told once per store, each job's events apart). A
  // free store waits up to storeLingerMs after the oldest job became ready for others to join
  // it, unless a big enough group is ready already. A few stores run side by side, so Postgres
  // works on one while the worker prepares the next. A group that fails sends each job back to be
  // stored on its own, so one bad job (or its retry policy) never decides for the others.
  const parallelStores = deps.parallelStores ?? DEFAULT_PARALLEL_STORES;
  const lingerMs = deps.storeLingerMs ?? DEFAULT_STORE_LINGER_MS;
  const waiting: GroupMember[] = [];
  let waitingEvents = 0;
  let storing = 0;
  let lingering: NodeJS.Timeout | undefined;

  function storeInGroup(prepared: Prepared): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      waiting.push({ prepared, readyAt: performance.now(), resolve, reject });
      waitingEvents += prepared.enriched.length;
      startStores();
    });
  }

  function startStores(): void {
    while (storing < parallelStores && waiting.length > 0) {
      const waited = performance.now() - waiting[0].readyAt;
      if (waitingEvents < GROUP_START_EVENTS && waited < lingerMs) {
        lingering ??= setTimeout(() => {
          lingering = undefined;
          startStores();
        }, lingerMs - waited);
        return;
      }
      let events = 0;
      let take = 0;
      while (take < waiting.length && (take === 0 || events + waiting[take].prepared.enriched.length <= MAX_GROUP_EVENTS)) {
        events += waiting[take].prepared.enriched.length;
        take++;
      }
      storing++;
      waitingEvents -= events;
      void storeGroup(waiting.splice(0, take)).finally(() => {
        storing--;
        startStores();
      });
    }
  }

  async function storeGroup(group: GroupMember[]): Promise<void> {
    try {
      const pool = await sqlPool(deps.orm);
      const rows = await withSessions(group.map((m) => m.prepared));
      const counts = await storeEventBatches(pool, rows);
      // Told once, job by job: a live stream's message stays the size of one batch, which a
      // subscriber's queue is sized for (a group's thousands of events at once would overflow a
      // reader that keeps up), while the realtime state and the subscriber check take one round
      // trip each for the whole group.
      await published(rows);
      group.forEach((m, i) => m.resolve(counts[i]));
    } catch (err) {
      group.forEach((m) => m.reject(err));
    }
  }

  /** One job on its own: stored as a batch, else event by event with dead letters (see top). */
  async function storeAlone(prepared: Prepared, pool: Pool): Promise<{ stored: number; deadLettered: number }> {
    const { job, known } = prepared;
    const [rows] = await withSessions([prepared]);
    let stored = 0;
    let deadLettered = 0;
    try {
      stored = await storeEvents(pool, rows);
    } catch (err) {
      const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (!isDataError(err) && !lastAttempt) throw err;
      deps.logger.warn("storing a batch failed; storing its events one by one", { job: job.id, err: (err as Error).message });
      for (let i = 0; i < rows.length; i++) {
        try {
          stored += await storeEvents(pool, [rows[i]]);
        } catch (single) {
          if (!isDataError(single) && !lastAttempt) throw single;
          deadLettered += await deadLetter(pool, [known[i]], `store_failed: ${(single as Error).message}`, job.attemptsMade + 1);
        }
      }
    }
    await published([rows]);
    return { stored, deadLettered };
  }

  return async (job: Job<IngestBatchJob>): Promise<{ stored: number; duplicates: number; deadLettered: number }> => {
    const hits = hitsOf(job.data).sort((a, b) => a.ts - b.ts);
    // Retries waited for their backoff, not for the queue: only first attempts say how far behind it is.
    if (job.attemptsMade === 0) reports.taken(Date.now() - job.timestamp, hits.length);
    const pool = await sqlPool(deps.orm);
    const sites = new Map<string, IngestSite | undefined>();
    for (const siteId of new Set(hits.map((h) => h.siteId))) sites.set(siteId, await deps.sites.byId(siteId));
    const unknown = hits.filter((h) => !sites.get(h.siteId));
    const known = hits.filter((h) => sites.get(h.siteId));
    const timeouts = new Map<string, number>();
    for (const [siteId, site] of sites) if (site) timeouts.set(siteId, site.settings.sessionTimeoutMinutes * 60_000);
    const prepared: Prepared = { job, known, enriched: known.map((hit) => enrichHit(hit, sites.get(hit.siteId)!.domains, deps)), timeouts };

    let deadLettered = 0;
    if (unknown.length > 0) deadLettered += await deadLetter(pool, unknown, "site_not_found: the site was deleted before its events were stored", job.attemptsMade + 1);
    let stored: number;
    try {
      stored = await storeInGroup(prepared);
    } catch {
      // The group failed: this job alone, with its own retry and dead-letter policy.
      const alone = await storeAlone(prepared, pool);
      stored = alone.stored;
      deadLettered += alone.deadLettered;
    }
    return { stored, duplicates: known.length - stored - (deadLettered - unknown.length), deadLettered };
  };
}

// What jsonb refuses in a string: NUL, and a surrogate without its pair. An event is often
// dead-lettered for holding one of them, so its dead letter must not fail the same way.
const NOT_IN_JSONB = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function storableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === "string" ? v.replace(NOT_IN_JSONB, "\uFFFD") : v));
}

/** Keeps events that can never be stored, without the IP, with their reason. */
async function deadLetter(pool: Pool, hits: RawHit[], reason: string, attempts: number): Promise<number> {
  for (const hit of hits) {
    const { ip: _ip, ...payload } = hit;
    await pool.query(
      // The id is derived from the event, so a retried batch does not dead-letter an event twice.
      // The site id goes in twice: once as the uuid column, once as text for the hash (one
      // parameter cannot be both).
      "insert into dead_letters (site_id, id, reason, payload, attempts, created_at) values ($1::uuid, md5($6::text || '/' || $5::text)::uuid, $2, $3::jsonb, $4, now()) on conflict (id) do nothing",
      [hit.siteId, reason.replace(NOT_IN_JSONB, "\uFFFD").slice(0, 2000), storableJson(payload), attempts, hit.eventId, hit.siteId],
    );
  }
  return hits.length;
}
