// A series is one metric with one set of tag values. Its id is a hash of the tag set, computed
// the same way everywhere (ingestion, bulk, benchmark), so no lookup is needed to find it.
import { createHash } from "node:crypto";

export type Tags = Record<string, string>;

/** The tags with their keys sorted: the one spelling every tag set is stored and hashed in. */
export function canonicalTags(tags: Tags): Tags {
  const sorted: Tags = {};
  for (const key of Object.keys(tags).sort()) sorted[key] = tags[key];
  return sorted;
}

// Memo of seriesIdOf: points repeat a few tag sets over and over, and hashing is most of what
// checking a point costs. A pure function's memo, bounded, so no request state lives here.
const memo = new Map<string, string>();
const MEMO_ENTRIES = 100_000;

/**
 * The series id of a tag set: the first 8 bytes of sha256 over its canonical JSON, as a signed
 * 64-bit integer in decimal (Postgres bigint). Collisions among a metric's series are as likely as
 * a random 64-bit clash, which is negligible at the cardinalities Beacon caps.
 */
export function seriesIdOf(tags: Tags): string {
  const canonical = JSON.stringify(Object.keys(tags).sort().map((key) => [key, tags[key]]));
  let id = memo.get(canonical);
  if (id === undefined) {
    id = createHash("sha256").update(canonical).digest().readBigInt64BE(0).toString();
    if (memo.size >= MEMO_ENTRIES) memo.clear();
    memo.set(canonical, id);
  }
  return id;
}
