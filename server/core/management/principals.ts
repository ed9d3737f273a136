// API key → principal, for the auth interceptor. Lookups are cached for a few seconds because
// every authenticated request needs one; a revoked key stops working within that time (at once
// on the server that revoked it).
import type { MikroORM } from "@mikro-orm/postgresql";
import { ApiKey } from "../../db/entities/index.js";
import { hashApiKeySecret } from "../api-keys.js";
import type { Principal } from "../roles.js";

const CACHE_MS = 5_000;
const CACHE_MAX = 10_000;
/** last_used_at is written at most this often per key, so reads do not become writes. */
const LAST_USED_EVERY_MS = 60_000;

export class ApiKeyPrincipals {
  private readonly cache = new Map<string, { principal: Principal | undefined; expires: number }>();
  private readonly lastUsedWrites = new Map<string, number>();

  constructor(private readonly orm: MikroORM, private readonly now: () => number = Date.now) {}

  async resolve(secret: string): Promise<Principal | undefined> {
    const hash = hashApiKeySecret(secret);
    const cached = this.cache.get(hash);
    const now = this.now();
    if (cached && cached.expires > now) return cached.principal;
    const em = this.orm.em.fork();
    const key = await em.findOne(ApiKey, { hash, revokedAt: null });
    const principal: Principal | undefined = key
      ? { keyId: key.id, organisationId: key.organisationId, role: key.role, siteIds: key.siteIds, actor: `${key.name} (${key.prefix}…)` }
      : undefined;
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(hash, { principal, expires: now + CACHE_MS });
    if (key && (this.lastUsedWrites.get(key.id) ?? 0) + LAST_USED_EVERY_MS < now) {
      this.lastUsedWrites.set(key.id, now);
      // Best effort and off the request path: a failed write must not fail the call.
      void em.getConnection().execute("update api_keys set last_used_at = now() where id = ?", [key.id]).catch(() => {});
    }
    return principal;
  }

  /** Forget cached lookups (after a revoke on this server). */
  invalidate(): void {
    this.cache.clear();
  }
}
