// The metric points store (tables in migrations/Migration20261124000000_metrics.ts): writing
// points with their series and pending rollup hours in one transaction, the series registry the
// cardinality cap counts, hourly rollups, retention, and the records of bulk ingestions.
// Every statement is parameterised; batches travel as arrays through unnest, so a statement is
// the same whatever the batch size.
import type { Pool, PoolClient } from "pg";
import { ensurePartitions, forgetPartitions, isMissingPartitionError, type SqlClient, utcDay } from "./partitions.js";

/** A point as stored (and as queued: AcceptedMetricPoint in server/core/metrics/points.ts). Times are epoch ms. */
export interface MetricPointRow {
  siteId: string;
  metric: string;
  /** The tag set's id (decimal int64), see server/core/metrics/series.ts. */
  seriesId: string;
  /** Canonical (keys sorted). */
  tags: Record<string, string>;
  /** When it was measured; fixed at accept so a retry stores the same row. */
  ts: number;
  /** The idempotency key, or one the server assigned. */
  pointId: string;
  value: number;
  source: string;
  metadata: Record<string, unknown> | null;
  receivedAt: number;
}

const HOUR_MS = 3600_000;
const DAY_MS = 86_400_000;

const iso = (ms: number) => new Date(ms).toISOString();

// Times travel as epoch milliseconds (int8), cheaper to send and to read than timestamp text.
const INSERT_POINTS_SQL = `insert into metric_points (site_id, metric, ts, point_id, series_id, value, source, metadata, received_at)
select site_id, metric, timestamptz 'epoch' + ts_ms * interval '1 millisecond', point_id, series_id, value, source, metadata::jsonb,
       timestamptz 'epoch' + received_ms * interval '1 millisecond'
from unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::int8[], $6::float8[], $7::text[], $8::text[], $9::int8[])
  as t(site_id, metric, ts_ms, point_id, series_id, value, source, metadata, received_ms)
on conflict (site_id, metric, ts, point_id) do nothing
returning site_id, metric, (extract(epoch from ts) * 1000)::float8 as ts_ms, point_id`;

// Rows are sorted so that concurrent batches lock series and pending hours in the same order.
// greatest() skips nulls: a series registered at accept time has no last point yet.
const UPSERT_SERIES_SQL = `insert into metric_series (site_id, metric, series_id, tags, first_seen, last_ts, last_value, last_received_at)
select site_id, metric, series_id, tags::jsonb, first_seen, last_ts, last_value, last_received_at
from unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::float8[], $8::timestamptz[])
  as t(site_id, metric, series_id, tags, first_seen, last_ts, last_value, last_received_at)
order by site_id, metric, series_id
on conflict (site_id, metric, series_id) do update set
  last_value = case when metric_series.last_ts is null or excluded.last_ts >= metric_series.last_ts then excluded.last_value else metric_series.last_value end,
  last_ts = greatest(metric_series.last_ts, excluded.last_ts),
  last_received_at = greatest(metric_series.last_received_at, excluded.last_received_at)`;

// "do update" rather than "do nothing": the update takes a row lock that the rollup job's
// FOR UPDATE SKIP LOCKED respects, so it never rolls an hour whose new points are uncommitted
// and then clears its mark (see rollUpPendingHours).
const MARK_PENDING_SQL = `insert into metric_rollup_pending (site_id, metric, hour, marked_at)
select site_id, metric, hour, now()
from unnest($1::uuid[], $2::text[], $3::timestamptz[]) as t(site_id, metric, hour)
order by site_id, metric, hour
on conflict (site_id, metric, hour) do update set marked_at = excluded.marked_at`;

function columns<T>(rows: readonly T[], getters: ((row: T) => unknown)[]): unknown[][] {
  const out = getters.map(() => new Array<unknown>(rows.length));
  rows.forEach((row, r) => getters.forEach((get, c) => (out[c][r] = get(row))));
  return out;
}

export interface StoreOptions {
  /** Runs inside the storing transaction after the points are written (a bulk job's checkpoint). */
  alsoInTransaction?: (client: PoolClient, inserted: number) => Promise<void>;
}

/**
 * Stores points; returns how many were new (the rest were already stored: same site, metric,
 * time and point id). Their series' latest values and their hours' rollup marks change in the
 * same transaction. Throws on any database error, with nothing written.
 */
export async function storeMetricPoints(pool: Pool, points: readonly MetricPointRow[], options: StoreOptions = {}): Promise<number> {
  if (points.length > 0) {
    let min = Infinity;
    let max = -Infinity;
    for (const p of points) {
      min = Math.min(min, p.ts);
      max = Math.max(max, p.ts);
    }
    await ensurePartitions(pool, "metric_points", new Date(min), new Date(max));
  }
  const client = await pool.connect();
  try {
    await client.query("begin");
    let fresh: MetricPointRow[] = [];
    if (points.length > 0) {
      const inserted = await client.query<{ site_id: string; metric: string; ts_ms: number; point_id: string }>(
        INSERT_POINTS_SQL,
        columns(points, [
          (p) => p.siteId, (p) => p.metric, (p) => p.ts, (p) => p.pointId, (p) => p.seriesId, (p) => p.value,
          (p) => p.source, (p) => (p.metadata ? JSON.stringify(p.metadata) : null), (p) => p.receivedAt,
        ]),
      );
      const keys = new Set(inserted.rows.map((r) => `${r.site_id}/${r.metric}/${r.ts_ms}/${r.point_id}`));
      // delete(): a point sent twice within the batch is stored once and counted once.
      fresh = points.filter((p) => keys.delete(`${p.siteId}/${p.metric}/${p.ts}/${p.pointId}`));
    }
    if (fresh.length > 0) {
      const series = new Map<string, { point: MetricPointRow; receivedAt: number; firstTs: number }>();
      const hours = new Map<string, [string, string, number]>();
      for (const p of fresh) {
        const key = `${p.siteId}/${p.metric}/${p.seriesId}`;
        const seen = series.get(key);
        if (!seen) series.set(key, { point: p, receivedAt: p.receivedAt, firstTs: p.receivedAt });
        else {
          if (p.ts >= seen.point.ts) seen.point = p;
          seen.receivedAt = Math.max(seen.receivedAt, p.receivedAt);
        }
        const hour = Math.floor(p.ts / HOUR_MS) * HOUR_MS;
        hours.set(`${p.siteId}/${p.metric}/${hour}`, [p.siteId, p.metric, hour]);
      }
      await client.query(UPSERT_SERIES_SQL, columns([...series.values()], [
        (s) => s.point.siteId, (s) => s.point.metric, (s) => s.point.seriesId, (s) => JSON.stringify(s.point.tags),
        (s) => iso(s.firstTs), (s) => iso(s.point.ts), (s) => s.point.value, (s) => iso(s.receivedAt),
      ]));
      await client.query(MARK_PENDING_SQL, columns([...hours.values()], [(h) => h[0], (h) => h[1], (h) => iso(h[2])]));
    }
    if (options.alsoInTransaction) await options.alsoInTransaction(client, fresh.length);
    await client.query("commit");
    return fresh.length;
  } catch (err) {
    await client.query("rollback").catch(() => {});
    // A partition dropped by retention elsewhere: forget what we knew, and the retry recreates it.
    if (isMissingPartitionError(err)) forgetPartitions(pool);
    throw err;
  } finally {
    client.release();
  }
}

// ---- Series and the cardinality cap ----

/** Which of `seriesIds` the metric already has for the site. */
export async function knownSeries(db: SqlClient, siteId: string, metric: string, seriesIds: readonly string[]): Promise<Set<string>> {
  if (seriesIds.length === 0) return new Set();
  const { rows } = await db.query("select series_id::text as id from metric_series where site_id = $1 and metric = $2 and series_id = any($3::int8[])", [siteId, metric, seriesIds]);
  return new Set(rows.map((r: { id: string }) => r.id));
}

export async function countSeries(db: SqlClient, siteId: string, metric: string): Promise<number> {
  const { rows } = await db.query("select count(*)::int as n from metric_series where site_id = $1 and metric = $2", [siteId, metric]);
  return rows[0].n as number;
}

/**
 * Registers new series of a metric up to `cap` series in all, first come first served; returns
 * the ids refused because the metric is full. Concurrent registrations for the same metric take
 * turns on an advisory lock, so the cap holds exactly.
 */
export async function registerSeries(pool: Pool, siteId: string, metric: string, candidates: readonly { seriesId: string; tags: Record<string, string> }[], cap: number): Promise<Set<string>> {
  const client = await pool.connect();
  try {
    await client.query("begin");
    await client.query("select pg_advisory_xact_lock(hashtextextended($1, 7))", [`metric-series/${siteId}/${metric}`]);
    const known = await knownSeries(client, siteId, metric, candidates.map((c) => c.seriesId));
    const fresh = candidates.filter((c) => !known.has(c.seriesId));
    const room = Math.max(0, cap - (await countSeries(client, siteId, metric)));
    const admitted = fresh.slice(0, room);
    if (admitted.length > 0) {
      await client.query(
        `insert into metric_series (site_id, metric, series_id, tags)
         select $1, $2, series_id, tags::jsonb from unnest($3::int8[], $4::text[]) as t(series_id, tags)
         on conflict do nothing`,
        [siteId, metric, admitted.map((c) => c.seriesId), admitted.map((c) => JSON.stringify(c.tags))],
      );
    }
    await client.query("commit");
    return new Set(fresh.slice(room).map((c) => c.seriesId));
  } catch (err) {
    await client.query("rollback").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

// ---- Hourly rollups ----

/**
 * Re-rolls up to `limit` marked hours that ended before `before`, each from its raw points (so
 * re-running is harmless), and clears their marks, all in one transaction: a query sees either
 * the mark (and reads raw points) or the new rollup. Marks whose points are still being written
 * are locked by that write and skipped until the next run. Returns how many hours were rolled.
 */
export async function rollUpPendingHours(pool: Pool, before: Date, limit: number): Promise<number> {
  const client = await pool.connect();
  try {
    await client.query("begin");
    const { rows } = await client.query<{ site_id: string; metric: string; hour: string }>(
      `select site_id, metric, hour::text as hour from metric_rollup_pending
        where hour + interval '1 hour' <= $1
        order by hour, site_id, metric limit $2
        for update skip locked`,
      [before.toISOString(), limit],
    );
    if (rows.length > 0) {
      const todo = [rows.map((r) => r.site_id), rows.map((r) => r.metric), rows.map((r) => r.hour)];
      await client.query(
        `delete from metric_rollups r using unnest($1::uuid[], $2::text[], $3::timestamptz[]) as t(site_id, metric, hour)
          where r.site_id = t.site_id and r.metric = t.metric and r.hour = t.hour`,
        todo,
      );
      await client.query(
        `insert into metric_rollups (site_id, metric, hour, series_id, count, sum, min, max, last_ts, last_value)
         select p.site_id, p.metric, t.hour, p.series_id, count(*), sum(p.value), min(p.value), max(p.value),
                max(p.ts), (array_agg(p.value order by p.ts desc, p.point_id desc))[1]
           from unnest($1::uuid[], $2::text[], $3::timestamptz[]) as t(site_id, metric, hour)
           join metric_points p on p.site_id = t.site_id and p.metric = t.metric and p.ts >= t.hour and p.ts < t.hour + interval '1 hour'
          group by p.site_id, p.metric, t.hour, p.series_id`,
        todo,
      );
      await client.query(
        `delete from metric_rollup_pending m using unnest($1::uuid[], $2::text[], $3::timestamptz[]) as t(site_id, metric, hour)
          where m.site_id = t.site_id and m.metric = t.metric and m.hour = t.hour`,
        todo,
      );
    }
    await client.query("commit");
    return rows.length;
  } catch (err) {
    await client.query("rollback").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

// ---- Retention ----

/** Each (site, metric) that has series, with the site's organisation. */
export async function metricsWithSeries(db: SqlClient): Promise<{ siteId: string; organisationId: string; metric: string }[]> {
  const { rows } = await db.query(
    `select distinct m.site_id, s.organisation_id, m.metric
       from metric_series m join sites s on s.id = m.site_id`,
  );
  return rows.map((r: { site_id: string; organisation_id: string; metric: string }) => ({ siteId: r.site_id, organisationId: r.organisation_id, metric: r.metric }));
}

/** The start of the UTC day of the oldest stored point, or undefined when there is none. */
export async function oldestPointDay(db: SqlClient, siteId: string, metric: string): Promise<Date | undefined> {
  const { rows } = await db.query("select (extract(epoch from min(ts)) * 1000)::float8 as ms from metric_points where site_id = $1 and metric = $2", [siteId, metric]);
  const ms = rows[0]?.ms as number | null;
  return ms === null || ms === undefined ? undefined : utcDay(new Date(ms));
}

/**
 * Deletes a metric's points, rollups and idle series older than `cutoff`, a day at a time so no
 * single statement holds locks for long. Returns the points deleted.
 */
export async function deleteMetricDataBefore(pool: Pool, siteId: string, metric: string, cutoff: Date): Promise<number> {
  let deleted = 0;
  const oldest = await oldestPointDay(pool, siteId, metric);
  if (oldest) {
    for (let day = oldest.getTime(); day < cutoff.getTime(); day += DAY_MS) {
      const result = await pool.query(
        "delete from metric_points where site_id = $1 and metric = $2 and ts >= $3 and ts < $4",
        [siteId, metric, iso(day), iso(Math.min(day + DAY_MS, cutoff.getTime()))],
      );
      deleted += result.rowCount ?? 0;
    }
  }
  await deleteRollupsAndSeriesBefore(pool, siteId, metric, cutoff);
  return deleted;
}

/** Rollups of hours wholly before `cutoff`, and series with no point since it (freeing cardinality). */
export async function deleteRollupsAndSeriesBefore(db: SqlClient, siteId: string, metric: string, cutoff: Date): Promise<void> {
  await db.query("delete from metric_rollups where site_id = $1 and metric = $2 and hour + interval '1 hour' <= $3", [siteId, metric, cutoff.toISOString()]);
  await db.query("delete from metric_rollup_pending where site_id = $1 and metric = $2 and hour + interval '1 hour' <= $3", [siteId, metric, cutoff.toISOString()]);
  await db.query(
    "delete from metric_series where site_id = $1 and metric = $2 and coalesce(last_ts, first_seen) < $3",
    [siteId, metric, cutoff.toISOString()],
  );
}

// ---- Bulk ingestions ----

export type BulkState = "pending" | "running" | "done" | "failed";

export interface BulkIngestRow {
  id: string;
  organisationId: string;
  siteId: string;
  keyId: string;
  actor: string;
  sourceKind: "file" | "url" | "inline";
  source: string;
  state: BulkState;
  linesRead: number;
  pointsStored: number;
  lineErrors: { line: number; message: string }[];
  lineErrorCount: number;
  error: string;
  receivedAt: number;
}

export interface NewBulkIngest {
  id: string;
  organisationId: string;
  siteId: string;
  requestId: string | null;
  requestHash: string;
  keyId: string;
  actor: string;
  sourceKind: "file" | "url" | "inline";
  source: string;
  ndjson: Buffer | null;
  receivedAt: number;
}

const BULK_COLUMNS = `id, organisation_id, site_id, key_id, actor, source_kind, source, state, lines_read::float8 as lines_read,
  points_stored::float8 as points_stored, line_errors, line_error_count::float8 as line_error_count, error,
  (extract(epoch from received_at) * 1000)::float8 as received_ms`;

function bulkRow(r: Record<string, any>): BulkIngestRow {
  return {
    id: r.id,
    organisationId: r.organisation_id,
    siteId: r.site_id,
    keyId: r.key_id,
    actor: r.actor,
    sourceKind: r.source_kind,
    source: r.source,
    state: r.state,
    linesRead: r.lines_read,
    pointsStored: r.points_stored,
    lineErrors: r.line_errors,
    lineErrorCount: r.line_error_count,
    error: r.error,
    receivedAt: r.received_ms,
  };
}

/**
 * Records a new bulk ingestion. When the id was already used (a retried start), returns the
 * existing one instead, saying whether it was started by the same request.
 */
export async function createBulkIngest(db: SqlClient, job: NewBulkIngest): Promise<{ row: BulkIngestRow; created: boolean; sameRequest: boolean }> {
  const inserted = await db.query(
    `insert into metric_bulk_ingests (id, organisation_id, site_id, request_id, request_hash, key_id, actor, source_kind, source, ndjson, state, received_at)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11)
     on conflict (id) do nothing
     returning ${BULK_COLUMNS}`,
    [job.id, job.organisationId, job.siteId, job.requestId, job.requestHash, job.keyId, job.actor, job.sourceKind, job.source, job.ndjson, iso(job.receivedAt)],
  );
  if (inserted.rows[0]) return { row: bulkRow(inserted.rows[0]), created: true, sameRequest: true };
  const { rows } = await db.query(`select ${BULK_COLUMNS}, request_hash from metric_bulk_ingests where id = $1`, [job.id]);
  return { row: bulkRow(rows[0]), created: false, sameRequest: rows[0].request_hash === job.requestHash };
}

export async function getBulkIngest(db: SqlClient, id: string): Promise<BulkIngestRow | undefined> {
  const { rows } = await db.query(`select ${BULK_COLUMNS} from metric_bulk_ingests where id = $1`, [id]);
  return rows[0] ? bulkRow(rows[0]) : undefined;
}

/** The inline NDJSON of a bulk ingestion (null for files and URLs, and once it has finished). */
export async function bulkIngestNdjson(db: SqlClient, id: string): Promise<Buffer | null> {
  const { rows } = await db.query("select ndjson from metric_bulk_ingests where id = $1", [id]);
  return (rows[0]?.ndjson as Buffer | null) ?? null;
}

export async function markBulkRunning(db: SqlClient, id: string): Promise<void> {
  await db.query("update metric_bulk_ingests set state = 'running', updated_at = now() where id = $1 and state = 'pending'", [id]);
}

/**
 * Advances a bulk ingestion's checkpoint: lines read so far, points newly stored, the bad lines to
 * keep (the caller keeps the first 1,000) and how many bad lines the chunk had. Run inside the
 * transaction that stored the chunk's points, so a retried job resumes exactly after the last
 * committed chunk and counts nothing twice.
 */
export async function checkpointBulkIngest(db: SqlClient, id: string, linesRead: number, pointsStored: number, keptErrors: { line: number; message: string }[], errorCount: number): Promise<void> {
  await db.query(
    `update metric_bulk_ingests set lines_read = $2, points_stored = points_stored + $3, line_errors = line_errors || $4::jsonb,
       line_error_count = line_error_count + $5, updated_at = now()
     where id = $1`,
    [id, linesRead, pointsStored, JSON.stringify(keptErrors), errorCount],
  );
}

export async function finishBulkIngest(db: SqlClient, id: string, state: "done" | "failed", error = ""): Promise<void> {
  await db.query(
    "update metric_bulk_ingests set state = $2, error = $3, ndjson = null, finished_at = now(), updated_at = now() where id = $1 and state in ('pending', 'running')",
    [id, state, error.slice(0, 2000)],
  );
}
