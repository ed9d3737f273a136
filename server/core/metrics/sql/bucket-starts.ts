// The start of every calendar bucket (day, ISO week, month) in a site's time zone that overlaps
// [from, to), so that empty buckets are listed too. Generated over local times and converted
// back, which keeps days 23 or 25 hours long across daylight-saving changes.
import type { SqlClient } from "../../../db/partitions.js";

export async function calendarBucketStarts(db: SqlClient, unit: "day" | "week" | "month", timeZone: string, from: number, to: number): Promise<number[]> {
  const { rows } = await db.query(
    `select (extract(epoch from (g at time zone $2::text)) * 1000)::float8 as ms
       from generate_series(date_trunc($1::text, $3::timestamptz at time zone $2::text),
                            ($4::timestamptz - interval '1 millisecond') at time zone $2::text,
                            ('1 ' || $1::text)::interval) as g
      order by 1`,
    [unit, timeZone, new Date(from).toISOString(), new Date(to).toISOString()],
  );
  return rows.map((r: { ms: number }) => r.ms);
}

/** [start of `startDate`, start of the day after `endDate`) in the site's time zone, epoch ms. */
export async function localDayBounds(db: SqlClient, timeZone: string, startDate: string, endDate: string): Promise<{ from: number; to: number }> {
  const { rows } = await db.query(
    `select (extract(epoch from ($2::date::timestamp at time zone $1::text)) * 1000)::float8 as from_ms,
            (extract(epoch from (($3::date + 1)::timestamp at time zone $1::text)) * 1000)::float8 as to_ms`,
    [timeZone, startDate, endDate],
  );
  return { from: rows[0].from_ms, to: rows[0].to_ms };
}
