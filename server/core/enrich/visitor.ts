import { createHmac, hash } from "node:crypto";
import { BoundedCache } from "../bounded-cache.js";

export interface VisitorHasher {
  visitorId(siteId: string, ip: string, userAgent: string, day: string): bigint;
  visitorIdsAround(siteId: string, ip: string, userAgent: string, at: Date): { today: bigint; yesterday: bigint };
  clientVisitorId(siteId: string, clientId: string): bigint;
  /**
   * Tells visitors apart where only grouping matters (rate-limit counters in Redis): the same
   * visitor always gets the same key, as with visitorId (or clientVisitorId when `identity` is
   * set), but the key is never stored as an id, so a one-shot salted hash is enough (well under
   * a µs, against ~5 µs for an HMAC, whose key set-up dominates on inputs this short).
   */
  visitorKey(siteId: string, identity: string, ip: string, userAgent: string, day: string): string;
  utcDay(at: Date): string;
}

const DAY_MS = 86_400_000;
const MAX_63 = (1n << 63n) - 1n;

export function utcDay(at: Date): string {
  return at.toISOString().slice(0, 10);
}

// Postgres bigint is signed, so clearing the top bit keeps ids positive and storable.
function first63Bits(digest: Buffer): bigint {
  return digest.readBigUInt64BE(0) & MAX_63;
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

/** Ids remembered per hasher: a visitor's events mostly arrive close together. */
const ID_CACHE_SIZE = 50_000;

export function createVisitorHasher(secret: string): VisitorHasher {
  if (typeof secret !== "string" || secret.length === 0) {
    throw new Error("visitor hasher needs a non-empty secret");
  }
  // Salts are derived, not stored: every process computes the same one and yesterday's is unrecoverable without the secret.
  const salts = new BoundedCache<Buffer>(8);
  const saltFor = (day: string): Buffer => salts.get(day, () => hmac(secret, "salt:" + day));
  const saltHexes = new BoundedCache<string>(8);
  const saltHex = (day: string): string => saltHexes.get(day, () => saltFor(day).toString("hex"));
  // An HMAC costs a few µs, most of it setting up the key; the accept path and the worker ask
  // for the same visitor's id again and again, so ids are remembered (keyed by everything that
  // goes into them, so a hit is always the value the HMAC would give).
  const ids = new BoundedCache<bigint>(ID_CACHE_SIZE);
  const days = new BoundedCache<string>(8);
  const dayOf = (ms: number): string => {
    const n = Math.floor(ms / DAY_MS);
    return days.get(String(n), () => utcDay(new Date(n * DAY_MS)));
  };

  const visitorId = (siteId: string, ip: string, userAgent: string, day: string): bigint => {
    const data = `${siteId}\0${ip}\0${userAgent}`;
    return ids.get(`${day}\0${data}`, () => first63Bits(hmac(saltFor(day), data)));
  };

  return {
    visitorId,
    visitorIdsAround(siteId, ip, userAgent, at) {
      const ms = at.getTime();
      return {
        today: visitorId(siteId, ip, userAgent, dayOf(ms)),
        yesterday: visitorId(siteId, ip, userAgent, dayOf(ms - DAY_MS)),
      };
    },
    clientVisitorId(siteId, clientId) {
      const data = `client:${siteId}\0${clientId}`;
      return ids.get(data, () => first63Bits(hmac(secret, data)));
    },
    visitorKey(siteId, identity, ip, userAgent, day) {
      // The day's salt keeps IP and agent unrecoverable; a client id's key does not change at midnight.
      const data = identity ? `c\0${siteId}\0${identity}` : `d\0${siteId}\0${ip}\0${userAgent}`;
      return hash("sha256", (identity ? secret : saltHex(day)) + "\0" + data, "base64url").slice(0, 22);
    },
    // Asked once per accepted request: remembered per day rather than formatted each time.
    utcDay: (at) => dayOf(at.getTime()),
  };
}
