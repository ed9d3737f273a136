// Ingest batches: enrich, assign sessions, store. Idempotent: a retried batch finds its events
// already stored (deduplicated by key) and its sessions already assigned (see SessionTracker).
// A batch that fails for a database-side data error is stored event by event, so one bad event
// goes to the dead letters and the rest are kept; a batch failing for any other reason (Postgres
// down) is retried with backoff, and on its last attempt dead-letters whatever still cannot be stored.
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Job } from "bullmq";
import type { Redis } from "ioredis";
import type { Pool } from "pg";
import type { GeoLookup } from "../../server/core/enrich/geo.js";
import type { VisitorHasher } from "../../server/core/enrich/visitor.js";
import { enrichHit } from "../../server/core/ingest/enrich.js";
import type { RawHit } from "../../server/core/ingest/hit.js";
import { SessionTracker } from "../../server/core/ingest/sessions.js";
import type { IngestSite, SiteDirectory } from "../../server/core/ingest/sites.js";
import { type StoredEvent, storeEvents } from "../../server/db/events-store.js";
import { sqlPool } from "../../server/db/orm.js";
import type { Logger } from "../../server/logger.js";
import { type IngestBatchJob, reportIngestQueueWait } from "../queues.js";

export interface IngestProcessorDeps {
  orm: MikroORM;
  redis: Redis;
  prefix: string;
  geo: GeoLookup;
  hasher: VisitorHasher;
  sites: SiteDirectory;
  logger: Logger;
  /** Told of every stored event (realtime state, live streams). */
  onStored?: (events: StoredEvent[]) => Promise<void>;
}

/** SQLSTATE classes that mean "this data cannot be stored", as opposed to "the database is not there". */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && /^(22|23|42)/.test(code) && code !== "42P01";
}

export function createIngestProcessor(deps: IngestProcessorDeps) {
  const sessions = new SessionTracker(deps.redis, deps.prefix);

  return async (job: Job<IngestBatchJob>): Promise<{ stored: number; duplicates: number; deadLettered: number }> => {
    // Retries waited for their backoff, not for the queue: only first attempts say how far behind it is.
    if (job.attemptsMade === 0) reportIngestQueueWait(deps.redis, deps.prefix, Date.now() - job.timestamp);
    const pool = await sqlPool(deps.orm);
    const hits = [...job.data.hits].sort((a, b) => a.ts - b.ts);
    const sites = new Map<string, IngestSite | undefined>();
    for (const siteId of new Set(hits.map((h) => h.siteId))) sites.set(siteId, await deps.sites.byId(siteId));
    const unknown = hits.filter((h) => !sites.get(h.siteId));
    const known = hits.filter((h) => sites.get(h.siteId));

    const enriched = known.map((hit) => enrichHit(hit, sites.get(hit.siteId)!.domains, deps));
    const assigned = await sessions.assign(enriched, (siteId) => sites.get(siteId)!.settings.sessionTimeoutMinutes * 60_000);
    const rows: StoredEvent[] = enriched.map((e, i) => ({
      ...e,
      visitorId: assigned[i].visitorId,
      sessionId: assigned[i].sessionId,
      sessionStartedAt: assigned[i].startedAt,
    }));

    let deadLettered = 0;
    if (unknown.length > 0) deadLettered += await deadLetter(pool, unknown, "site_not_found: the site was deleted before its events were stored", job.attemptsMade + 1);
    let stored: number;
    try {
      stored = await storeEvents(pool, rows);
    } catch (err) {
      const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (!isDataError(err) && !lastAttempt) throw err;
      deps.logger.warn("storing a batch failed; storing its events one by one", { job: job.id, err: (err as Error).message });
      stored = 0;
      for (let i = 0; i < rows.length; i++) {
        try {
          stored += await storeEvents(pool, [rows[i]]);
        } catch (single) {
          if (!isDataError(single) && !lastAttempt) throw single;
          deadLettered += await deadLetter(pool, [known[i]], `store_failed: ${(single as Error).message}`, job.attemptsMade + 1);
        }
      }
    }
    if (deps.onStored && rows.length > 0) await deps.onStored(rows).catch((err: unknown) => deps.logger.warn("realtime update failed", { err: String(err) }));
    return { stored, duplicates: rows.length - stored - deadLettered, deadLettered };
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
