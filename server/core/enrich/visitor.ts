import { createHmac } from "node:crypto";

export interface VisitorHasher {
  visitorId(siteId: string, ip: string, userAgent: string, day: string): bigint;
  visitorIdsAround(siteId: string, ip: string, userAgent: string, at: Date): { today: bigint; yesterday: bigint };
  clientVisitorId(siteId: string, clientId: string): bigint;
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

export function createVisitorHasher(secret: string): VisitorHasher {
  if (typeof secret !== "string" || secret.length === 0) {
    throw new Error("visitor hasher needs a non-empty secret");
  }
  // Salts are derived, not stored: every process computes the same one and yesterday's is unrecoverable without the secret.
  const salts = new Map<string, Buffer>();
  const saltFor = (day: string): Buffer => {
    let salt = salts.get(day);
    if (!salt) {
      salt = hmac(secret, "salt:" + day);
      if (salts.size >= 8) salts.delete(salts.keys().next().value as string);
      salts.set(day, salt);
    }
    return salt;
  };

  const visitorId = (siteId: string, ip: string, userAgent: string, day: string): bigint =>
    first63Bits(hmac(saltFor(day), `${siteId}\0${ip}\0${userAgent}`));

  return {
    visitorId,
    visitorIdsAround(siteId, ip, userAgent, at) {
      return {
        today: visitorId(siteId, ip, userAgent, utcDay(at)),
        yesterday: visitorId(siteId, ip, userAgent, utcDay(new Date(at.getTime() - DAY_MS))),
      };
    },
    clientVisitorId(siteId, clientId) {
      return first63Bits(hmac(secret, `client:${siteId}\0${clientId}`));
    },
    utcDay,
  };
}

export function sessionIdFor(siteId: string, visitorId: bigint, startedAt: number): bigint {
  return first63Bits(hmac("beacon-session", `${siteId}\0${visitorId.toString()}\0${startedAt}`));
}
