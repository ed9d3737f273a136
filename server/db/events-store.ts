// Writing enriched events and their sessions, in one transaction per batch (or per group of
// batches: the worker's group commit). Events travel as COPY text rows, which cost Postgres and
// Node a fraction of what 32 parameter arrays through unnest did (array literals built and
// escaped element by element, then parsed again). Events are deduplicated by (site_id, ts,
// event_id); only the events actually inserted update their sessions (COPYed into a temporary
// table, then one multi-row upsert from it), so a retried batch changes nothing twice.
// Two paths, because duplicates are rare (retried jobs, client resends) and finding them costs
// Postgres several times what storing the rows does: the fast path COPYs the batch straight into
// `events`, and if that succeeds every event was new. Only when it fails with a unique violation
// is the transaction started again on the slow path: COPY into a temporary staging table, then
// one INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING the keys that were new. The fixed
// statements are prepared once per connection.
import { finished } from "node:stream/promises";
import type { Pool, PoolClient } from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { EnrichedEvent } from "../core/ingest/enrich.js";
import { textPieces } from "../core/text-pieces.js";
import { ensurePartitions, isMissingPartitionError, forgetPartitions } from "./partitions.js";

/**
 * An enriched event with its visit assigned: one row of the events table. The visitor id is the
 * one the visit runs under (yesterday's, for a visit that crossed midnight UTC).
 */
export type StoredEvent = Omit<EnrichedEvent, "visitorIdYesterday" | "props"> & {
  sessionId: bigint;
  /** Start of the visit: the sessions table's partition key. */
  sessionStartedAt: number;
  props: Record<string, unknown>;
};

/** Minute → its ISO prefix ("2026-11-23T08:15:"); cleared whole when it grows large. */
const minutePrefixes = new Map<number, string>();

/**
 * Epoch ms → ISO text exactly as Date#toISOString writes it. toISOString cost ~1.1 µs here, and a
 * batch converts four times per session and two per event; a batch's times mostly share their
 * minute, so the minute's prefix is remembered and seconds and milliseconds appended (~0.05 µs).
 */
export function isoTime(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0 || ms >= MAX_FOUR_DIGIT_YEAR_MS) return new Date(ms).toISOString();
  const minute = Math.floor(ms / 60_000);
  let prefix = minutePrefixes.get(minute);
  if (prefix === undefined) {
    if (minutePrefixes.size >= 4096) minutePrefixes.clear();
    minutePrefixes.set(minute, (prefix = new Date(minute * 60_000).toISOString().slice(0, 17)));
  }
  const rest = ms - minute * 60_000;
  const seconds = Math.floor(rest / 1000);
  const milli = rest - seconds * 1000;
  return prefix + (seconds < 10 ? "0" : "") + seconds + (milli < 10 ? ".00" : milli < 100 ? ".0" : ".") + milli + "Z";
}
/** 10000-01-01: from there toISOString writes a six-digit, signed year. */
const MAX_FOUR_DIGIT_YEAR_MS = 253_402_300_800_000;

// The events table's columns, in the order copyLine writes them.
const EVENT_COLUMNS = [
  "site_id", "ts", "event_id", "name", "visitor_id", "session_id", "hostname", "pathname", "title",
  "referrer", "referrer_source", "referrer_medium", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
  "click_id", "country", "region", "city", "browser", "browser_version", "os", "os_version", "device_type", "screen",
  "language", "classification", "props", "revenue", "received_at",
] as const;

const COLUMN_LIST = EVENT_COLUMNS.join(", ");

const COPY_EVENTS_SQL = `copy events (${COLUMN_LIST}) from stdin`;
/** What the fast path's COPY fails with when the batch holds an event already stored (or twice). */
const UNIQUE_VIOLATION = "23505";

/**
 * The slow path's staging table: the events table's columns, private to the connection, emptied
 * at every commit (and rollback). Created once per connection that needs it, outside any
 * transaction (a rolled back transaction would take it away again).
 */
const CREATE_STAGE_SQL = "create temp table if not exists events_stage (like events) on commit delete rows";
const COPY_STAGE_SQL = `copy events_stage (${COLUMN_LIST}) from stdin`;
// The new rows' keys come back with ts as epoch milliseconds: parsing 500 timestamps in
// JavaScript cost more than the rest of the answer.
const INSERT_EVENTS_SQL = `insert into events (${COLUMN_LIST})
select ${COLUMN_LIST} from events_stage
on conflict (site_id, ts, event_id) do nothing
returning site_id, (extract(epoch from ts) * 1000)::int8 as ms, event_id`;

/** Connections that have their staging table. */
const staged = new WeakSet<PoolClient>();
/** Connections that have made their sessions_stage table. */
const sessionsStaged = new WeakSet<PoolClient>();

// COPY's text format: backslash, newline, carriage return and tab are escaped; \N is null.
const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_SPECIAL_ALL = /[\\\n\r\t]/g;
const COPY_ESCAPES: Record<string, string> = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function copyField(value: unknown): string {
  if (value === null || value === undefined) return "\\N";
  return copyString(typeof value === "string" ? value : String(value));
}

function copyString(text: string): string {
  return COPY_SPECIAL.test(text) ? text.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c]) : text;
}

/**
 * One event as a COPY text row, in EVENT_COLUMNS order. Written out as one template: a getter
 * and a field conversion per column, joined one by one, cost a third more (6.2 against 4.1 µs
 * an event, text and its UTF-8 bytes together, measured on 5,000 events). The uuid, numbers
 * and times never hold a character COPY escapes; the strings from callers may.
 */
function copyLine(e: StoredEvent): string {
  const c = copyString;
  return `${e.siteId}\t${isoTime(e.ts)}\t${c(e.eventId)}\t${c(e.name)}\t${e.visitorId}\t${e.sessionId}\t${c(e.hostname)}\t${c(e.pathname)}\t${c(e.title)}\t\
${c(e.referrer)}\t${c(e.referrerSource)}\t${c(e.referrerMedium)}\t${c(e.utmSource)}\t${c(e.utmMedium)}\t${c(e.utmCampaign)}\t${c(e.utmTerm)}\t${c(e.utmContent)}\t\
${c(e.clickId)}\t${c(e.country)}\t${c(e.region)}\t${c(e.city)}\t${c(e.browser)}\t${c(e.browserVersion)}\t${c(e.os)}\t${c(e.osVersion)}\t${c(e.deviceType)}\t${c(e.screen)}\t\
${c(e.language)}\t${e.classification}\t${c(JSON.stringify(e.props))}\t${e.revenue ?? "\\N"}\t${isoTime(e.receivedAt)}\n`;
}

/** Rows as COPY text, UTF-8 encoded a few dozen rows at a time (see textPieces). */
function copyData<T>(rows: readonly T[], line: (row: T) => string): Buffer {
  const pieces = Array.from(textPieces(rows, line), (text) => Buffer.from(text));
  return pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
}

/**
 * COPYs a batch's data in one piece (a few hundred KB at most). Resolves once Postgres is ready
 * for the next statement; rejects with Postgres' error (and its SQLSTATE) if the COPY failed,
 * the connection then taking the next statement as usual.
 */
async function copyEvents(client: PoolClient, sql: string, data: Buffer): Promise<void> {
  const copy = client.query(copyFrom(sql));
  copy.end(data);
  await finished(copy);
}

/**
 * The slow path, in the transaction the fast path's COPY failed in: starts it again and stores
 * only the events not stored yet. Returns those, each once (a copy sent twice counts as the first).
 */
async function insertNewEvents(client: PoolClient, events: StoredEvent[], data: Buffer): Promise<StoredEvent[]> {
  // Nothing but the failed COPY happened in the transaction: rolling it back loses nothing, and
  // is simpler (and cheaper for the fast path) than a savepoint before every COPY.
  await client.query("rollback");
  if (!staged.has(client)) {
    await client.query(CREATE_STAGE_SQL);
    staged.add(client);
  }
  await client.query("begin");
  await copyEvents(client, COPY_STAGE_SQL, data);
  const inserted = await client.query<{ site_id: string; ms: string; event_id: string }>({ name: "beacon-insert-events", text: INSERT_EVENTS_SQL });
  const fresh = new Set(inserted.rows.map((r) => `${r.site_id}/${r.ms}/${r.event_id}`));
  // A batch may carry the same event twice (a client resending within one request): the insert
  // keeps one row, so only the first copy may count towards its session.
  return events.filter((e) => fresh.delete(`${e.siteId}/${e.ts}/${e.eventId}`));
}

// Per session: what this batch adds. `first_*` describe the session's first event in the batch.
const SESSION_COLUMNS = [
  ["site_id", "uuid"], ["session_id", "int8"], ["visitor_id", "int8"], ["started_at", "timestamptz"], ["ended_at", "timestamptz"],
  ["entry_page", "text"], ["entry_at", "timestamptz"], ["exit_page", "text"], ["exit_at", "timestamptz"], ["pageviews", "int4"], ["events", "int4"],
  ["referrer_source", "text"], ["referrer_medium", "text"], ["utm_source", "text"], ["utm_medium", "text"], ["utm_campaign", "text"],
  ["utm_term", "text"], ["utm_content", "text"], ["country", "text"], ["region", "text"], ["city", "text"],
  ["browser", "text"], ["os", "text"], ["device_type", "text"], ["classification", "int2"],
] as const;

// The rows are COPYed into a per-connection temporary table and upserted from there: Postgres
// parsed the same rows from JSON (json_to_recordset) at ~17 µs a row, more than the upsert itself
// (measured at 117 sessions a statement, single-event traffic: 29-38 µs a row through JSON,
// 19-30 through COPY), and 25 array parameters were slower still.
const CREATE_SESSIONS_STAGE_SQL = `create temp table if not exists sessions_stage (${SESSION_COLUMNS.map(([c, type]) => `${c} ${type}`).join(", ")}) on commit delete rows`;
const COPY_SESSIONS_STAGE_SQL = `copy sessions_stage (${SESSION_COLUMNS.map(([c]) => c).join(", ")}) from stdin`;
const UPSERT_SESSIONS_SQL = `insert into sessions (${SESSION_COLUMNS.map(([c]) => c).join(", ")}, is_bounce, duration_seconds)
select t.*, t.pageviews <= 1 and t.events <= 1, extract(epoch from t.ended_at - t.started_at)::int
from sessions_stage t
on conflict (site_id, started_at, session_id) do update set
  exit_page = case when excluded.exit_at is not null and (sessions.exit_at is null or excluded.exit_at >= sessions.exit_at) then excluded.exit_page else sessions.exit_page end,
  exit_at = greatest(sessions.exit_at, excluded.exit_at),
  entry_page = case when excluded.entry_at is not null and (sessions.entry_at is null or excluded.entry_at < sessions.entry_at) then excluded.entry_page else sessions.entry_page end,
  entry_at = least(sessions.entry_at, excluded.entry_at),
  ended_at = greatest(sessions.ended_at, excluded.ended_at),
  pageviews = sessions.pageviews + excluded.pageviews,
  events = sessions.events + excluded.events,
  is_bounce = sessions.pageviews + excluded.pageviews <= 1 and sessions.events + excluded.events <= 1,
  duration_seconds = extract(epoch from greatest(sessions.ended_at, excluded.ended_at) - sessions.started_at)::int`;

// Late events change hours that were already rolled up: mark those hours dirty, in the same
// transaction, so reports read raw events for them until the rollup job re-rolls them. Taking a
// share lock on the site's watermark orders this against the rollup job, which holds the row
// exclusively while it rolls and advances it: an insert either commits before the roll reads
// (and is included) or after the watermark moved (and marks its hour).
const MARK_DIRTY_SQL = `with w as (
  select site_id, hourly_until from rollup_watermarks where site_id = any($1::uuid[]) for share
)
insert into rollup_dirty (site_id, hour)
select distinct x.site_id, date_trunc('hour', x.t, 'UTC')
from unnest($2::uuid[], $3::timestamptz[]) as x(site_id, t) join w on w.site_id = x.site_id
where x.t < w.hourly_until
on conflict (site_id, hour) do update set marked_at = now()`;

/**
 * Events newer than this need no dirty mark: the rollup job only rolls hours that ended
 * ROLL_GRACE_MS (5 min) ago, so an hour holding such an event is at least 3 min from being rolled.
 */
const RECENT_MS = 2 * 60_000;

interface SessionDelta {
  siteId: string;
  sessionId: bigint;
  visitorId: bigint;
  startedAt: number;
  endedAt: number;
  entryPage: string;
  entryTs: number;
  exitPage: string;
  exitTs: number;
  pageviews: number;
  events: number;
  first: StoredEvent;
}

function sessionDeltas(events: StoredEvent[]): SessionDelta[] {
  const bySession = new Map<string, SessionDelta>();
  let d: SessionDelta | undefined;
  for (const e of events) {
    // Runs of one session's events (a visitor's batch) find it without building its key.
    if (!d || e.sessionId !== d.sessionId || e.sessionStartedAt !== d.startedAt || e.siteId !== d.siteId) {
      const key = `${e.siteId}/${e.sessionStartedAt}/${e.sessionId}`;
      d = bySession.get(key);
      if (!d) {
        d = { siteId: e.siteId, sessionId: e.sessionId, visitorId: e.visitorId, startedAt: e.sessionStartedAt, endedAt: e.ts, entryPage: "", entryTs: Infinity, exitPage: "", exitTs: -Infinity, pageviews: 0, events: 0, first: e };
        bySession.set(key, d);
      }
    }
    d.events++;
    d.endedAt = Math.max(d.endedAt, e.ts);
    if (e.ts < d.first.ts) d.first = e;
    if (e.name === "pageview") {
      d.pageviews++;
      if (e.ts < d.entryTs) [d.entryPage, d.entryTs] = [e.pathname, e.ts];
      if (e.ts >= d.exitTs) [d.exitPage, d.exitTs] = [e.pathname, e.ts];
    }
  }
  return [...bySession.values()];
}

/** The deltas as COPY text rows, in SESSION_COLUMNS order. */
function sessionCopyLine(d: SessionDelta): string {
  const f = d.first;
  return `${d.siteId}\t${d.sessionId}\t${d.visitorId}\t${isoTime(d.startedAt)}\t${isoTime(d.endedAt)}\t${copyField(d.entryPage)}\t${d.entryTs === Infinity ? "\\N" : isoTime(d.entryTs)}\t${copyField(d.exitPage)}\t${d.exitTs === -Infinity ? "\\N" : isoTime(d.exitTs)}\t${d.pageviews}\t${d.events}\t${copyField(f.referrerSource)}\t${copyField(f.referrerMedium)}\t${copyField(f.utmSource)}\t${copyField(f.utmMedium)}\t${copyField(f.utmCampaign)}\t${copyField(f.utmTerm)}\t${copyField(f.utmContent)}\t${copyField(f.country)}\t${copyField(f.region)}\t${copyField(f.city)}\t${copyField(f.browser)}\t${copyField(f.os)}\t${copyField(f.deviceType)}\t${f.classification}\n`;
}

const DAY_MS = 86_400_000;

async function ensureDays(client: Pool | PoolClient, events: StoredEvent[]): Promise<void> {
  let min = Infinity;
  let max = -Infinity;
  for (const e of events) {
    min = Math.min(min, e.ts, e.sessionStartedAt);
    max = Math.max(max, e.ts, e.sessionStartedAt);
  }
  await ensurePartitions(client, "events", new Date(min), new Date(max));
  await ensurePartitions(client, "sessions", new Date(min - DAY_MS), new Date(max));
}

/**
 * Stores a batch; returns how many events were new (the rest were duplicates). Throws on any
 * database error, with nothing of the batch written.
 */
export async function storeEvents(pool: Pool, events: StoredEvent[]): Promise<number> {
  return (await insertEvents(pool, events)).size;
}

/**
 * Stores several batches in one transaction (the worker's group commit); returns how many of
 * each batch's events were new. All or nothing, as storeEvents: a failure writes none of them.
 */
export async function storeEventBatches(pool: Pool, batches: StoredEvent[][]): Promise<number[]> {
  const fresh = await insertEvents(pool, batches.flat());
  return batches.map((batch) => batch.reduce((n, e) => n + (fresh.has(e) ? 1 : 0), 0));
}

/** The events of `events` that were new, each once (a copy sent twice counts as the first). */
async function insertEvents(pool: Pool, events: StoredEvent[]): Promise<Set<StoredEvent>> {
  if (events.length === 0) return new Set();
  await ensureDays(pool, events);
  const client = await pool.connect();
  try {
    const data = copyData(events, copyLine);
    // Outside the transaction, so a rollback never takes the table away from a connection
    // that remembers having made it.
    if (!sessionsStaged.has(client)) {
      await client.query(CREATE_SESSIONS_STAGE_SQL);
      sessionsStaged.add(client);
    }
    await client.query("begin");
    let newEvents: StoredEvent[];
    try {
      // The partitions exist (ensureDays): if the COPY succeeds, every event was new (and none twice).
      await copyEvents(client, COPY_EVENTS_SQL, data);
      newEvents = events;
    } catch (err) {
      // Any other error (a bad value: 22…) goes up with its SQLSTATE, as the slow path's would.
      if ((err as { code?: unknown }).code !== UNIQUE_VIOLATION) throw err;
      newEvents = await insertNewEvents(client, events, data);
    }
    const deltas = sessionDeltas(newEvents);
    if (deltas.length > 0) {
      await copyEvents(client, COPY_SESSIONS_STAGE_SQL, copyData(deltas, sessionCopyLine));
      await client.query({ name: "beacon-upsert-sessions", text: UPSERT_SESSIONS_SQL });
    }
    // An event changes its own hour's rollup and, through its session, the session's start hour.
    // Hours that ended less than the rollup grace period ago cannot have been rolled yet (nor be
    // rolled before this transaction commits, unless it takes minutes), so the usual batch of
    // fresh events skips the lock and the statement.
    const lockFrom = Date.now() - RECENT_MS;
    const touched = newEvents
      .flatMap((e) => [[e.siteId, e.ts], [e.siteId, e.sessionStartedAt]] as const)
      .filter(([, t]) => t < lockFrom);
    if (touched.length > 0) {
      await client.query(MARK_DIRTY_SQL, [
        [...new Set(touched.map(([site]) => site))],
        touched.map(([site]) => site),
        touched.map(([, t]) => isoTime(t)),
      ]);
    }
    await client.query("commit");
    return new Set(newEvents);
  } catch (err) {
    await client.query("rollback").catch(() => {});
    // Someone dropped a partition we thought existed (retention): forget and let the retry create it.
    if (isMissingPartitionError(err)) forgetPartitions(pool);
    throw err;
  } finally {
    client.release();
  }
}
