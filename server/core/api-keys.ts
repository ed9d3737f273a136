// API key secrets: random, shown once, stored only as a SHA-256 hash. A hash (not a slow KDF)
// is right here because the secret has 190 bits of entropy; nothing can be guessed from it.
import { createHash, randomBytes } from "node:crypto";

const KEY_PREFIX = "bk_";

export interface NewApiKeySecret {
  /** The full secret, for the caller, once. */
  secret: string;
  /** What Beacon stores. */
  hash: string;
  /** Shown beside the key in lists so people can tell keys apart. */
  prefix: string;
}

export function generateApiKeySecret(): NewApiKeySecret {
  const secret = KEY_PREFIX + randomBytes(24).toString("base64url");
  return { secret, hash: hashApiKeySecret(secret), prefix: secret.slice(0, KEY_PREFIX.length + 6) };
}

export function hashApiKeySecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/**
 * The key from an Authorization header: `Bearer <key>`, or the bare key as seed 001's clients
 * send it. Returns undefined when there is no header.
 */
export function keyFromAuthorization(header: string | null | undefined): string | undefined {
  if (header === null || header === undefined) return undefined;
  const value = header.trim();
  if (value === "") return undefined;
  const match = /^Bearer\s+(.+)$/i.exec(value);
  return (match ? match[1] : value).trim();
}
