// When subscriptions are evaluated. Each tick claims the subscriptions that are due and moves
// their next evaluation a throttle ahead, in one statement (`for update skip locked`, so two
// workers ticking at once never claim the same one). A successful delivery also pushes the next
// evaluation to at least a throttle after itself, so deliveries are never closer together than
// the throttle, retries included. Plain SQL on purpose: these columns are the worker's
// bookkeeping, and an ORM update would bump the record's version (its etag).
import type { Pool } from "pg";

const CLAIM_DUE_SQL = `update subscriptions s
set next_evaluation_at = $1::timestamptz + make_interval(secs => s.throttle_seconds)
where s.id in (
  select id from subscriptions where next_evaluation_at <= $1::timestamptz
    -- A deleted site's subscriptions wait (its queries could only fail) until it is purged.
    and site_id in (select id from sites where deleted_at is null)
  order by next_evaluation_at limit $2 for update skip locked
)
returning s.id`;

const MARK_DELIVERED_SQL = `update subscriptions
set last_result_hash = $2, last_delivered_at = $3::timestamptz,
  next_evaluation_at = greatest(next_evaluation_at, $3::timestamptz + make_interval(secs => throttle_seconds))
where id = $1`;

// Keeps the newest `$2` attempts of a subscription; older ones go.
const PRUNE_DELIVERIES_SQL = `delete from subscription_deliveries
where subscription_id = $1 and id not in (
  select id from subscription_deliveries where subscription_id = $1 order by created_at desc, id desc limit $2
)`;

/** Ids of the subscriptions due at `now`, now claimed until a throttle later. */
export async function claimDueSubscriptions(pool: Pool, now: Date, limit = 500): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>(CLAIM_DUE_SQL, [now.toISOString(), limit]);
  return rows.map((row) => row.id);
}

export async function markDelivered(pool: Pool, subscriptionId: string, fingerprint: string, at: Date): Promise<void> {
  await pool.query(MARK_DELIVERED_SQL, [subscriptionId, fingerprint, at.toISOString()]);
}

export async function pruneDeliveries(pool: Pool, subscriptionId: string, keep: number): Promise<void> {
  await pool.query(PRUNE_DELIVERIES_SQL, [subscriptionId, keep]);
}
