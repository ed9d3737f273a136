// Time series over web metrics: the report engine grouped by a time bucket, with every bucket of
// the range present (empty ones as zeros), split by group-by dimensions.
import type { FineBucket } from "./catalog.js";
import { addDays, bucketLabel, localDate, localParts, localToUtc, startOfLocalDay, type TimeBucket, weekOf } from "./time.js";

export type SeriesBucket = TimeBucket | FineBucket;

const MINUTE = 60_000;

/** Every bucket of [start, end) as (label, start instant), in order. */
export function bucketsBetween(start: number, end: number, bucket: SeriesBucket, timeZone: string): { label: string; time: number }[] {
  const out: { label: string; time: number }[] = [];
  if (bucket === "minute" || bucket === "five_minutes") {
    const step = bucket === "minute" ? MINUTE : 5 * MINUTE;
    // Local minute boundaries equal UTC ones for every zone offset in use (whole minutes).
    for (let t = Math.floor(start / step) * step; t < end; t += step) out.push({ label: labelOf(t, bucket, timeZone), time: t });
    return out;
  }
  if (bucket === "hour") {
    const p = localParts(start, timeZone);
    let t = localToUtc(p.year, p.month, p.day, p.hour, timeZone);
    if (t > start) t -= 3_600_000;
    for (; t < end; t += 3_600_000) {
      const label = bucketLabel(t, "hour", timeZone);
      // When clocks go back, a local hour happens twice. Reports group by the label, so both
      // hours' events are in one row: give it one bucket (the first), or the hour's numbers
      // would appear twice and the buckets would add up to more than the range holds.
      if (out.length > 0 && out[out.length - 1].label === label) continue;
      out.push({ label, time: t });
    }
    return out;
  }
  let date = localDate(start, timeZone);
  if (bucket === "week") date = weekOf(date);
  if (bucket === "month") date = `${date.slice(0, 7)}-01`;
  while (startOfLocalDay(date, timeZone) < end) {
    out.push({ label: bucket === "month" ? date.slice(0, 7) : date, time: startOfLocalDay(date, timeZone) });
    if (bucket === "day") date = addDays(date, 1);
    else if (bucket === "week") date = addDays(date, 7);
    else {
      const [y, m] = date.split("-").map(Number);
      date = new Date(Date.UTC(y, m, 1)).toISOString().slice(0, 10);
    }
  }
  return out;
}

export function labelOf(instant: number, bucket: SeriesBucket, timeZone: string): string {
  if (bucket === "minute" || bucket === "five_minutes") {
    const p = localParts(instant, timeZone);
    const minute = bucket === "five_minutes" ? p.minute - (p.minute % 5) : p.minute;
    const pad = (n: number) => String(n).padStart(2, "0");
    return `${p.year}-${pad(p.month)}-${pad(p.day)} ${pad(p.hour)}:${pad(minute)}`;
  }
  return bucketLabel(instant, bucket, timeZone);
}
