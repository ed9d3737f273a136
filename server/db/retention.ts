// Raw-event retention. Partitions hold every site's events of one UTC day, so a partition is
// dropped whole once every site's retention has passed it; a site with a shorter retention than
// the others has its older rows deleted. Rollups are kept: reports over old days read them.
import type { Pool } from "pg";
import { dropPartitionsBefore } from "./partitions.js";

const DAY_MS = 86_400_000;

export interface RetentionResult {
  droppedPartitions: string[];
  deletedEvents: number;
}

export async function applyRetention(pool: Pool, now = Date.now()): Promise<RetentionResult> {
  // Effective retention per site: its own setting, else its organisation's default; 0 = for ever.
  const { rows } = await pool.query<{ id: string; days: number }>(
    `select s.id, coalesce(nullif((s.settings ->> 'retentionDays')::int, 0), nullif((o.values ->> 'retentionDays')::int, 0), 0) as days
     from sites s left join settings o on o.organisation_id = s.organisation_id and o.scope = 'org'`,
  );
  const result: RetentionResult = { droppedPartitions: [], deletedEvents: 0 };
  if (rows.length === 0) return result;
  const keepAll = rows.some((r) => Number(r.days) === 0);
  const longest = Math.max(...rows.map((r) => Number(r.days)));
  if (!keepAll) {
    const cutoff = new Date(now - longest * DAY_MS);
    result.droppedPartitions.push(...(await dropPartitionsBefore(pool, "events", cutoff)), ...(await dropPartitionsBefore(pool, "sessions", cutoff)));
  }
  for (const row of rows) {
    const days = Number(row.days);
    if (days === 0 || (!keepAll && days === longest)) continue;
    const cutoff = new Date(Math.floor((now - days * DAY_MS) / DAY_MS) * DAY_MS).toISOString();
    const deleted = await pool.query("delete from events where site_id = $1 and ts < $2", [row.id, cutoff]);
    await pool.query("delete from sessions where site_id = $1 and started_at < $2", [row.id, cutoff]);
    result.deletedEvents += deleted.rowCount ?? 0;
  }
  return result;
}
