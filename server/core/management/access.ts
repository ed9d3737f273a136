// Loading resources on behalf of a caller. A resource of another organisation, or a site the key
// is not limited to, is reported as not found: its existence is never revealed.
import type { EntityManager } from "@mikro-orm/postgresql";
import { OptimisticLockError } from "@mikro-orm/core";
import { Site } from "../../db/entities/index.js";
import { NotFoundError, StaleEtagError } from "../errors.js";
import { canReachSite, type Principal } from "../roles.js";
import { requireUuid } from "./validate.js";

export async function loadSite(em: EntityManager, principal: Principal, siteId: string, field = "site_id"): Promise<Site> {
  const id = requireUuid(field, siteId);
  const site = await em.findOne(Site, { id, organisationId: principal.organisationId, deletedAt: null });
  if (!site || !canReachSite(principal, site.id)) throw new NotFoundError(`site ${id}`, field);
  return site;
}

export function etagOf(record: { version: number }): string {
  // A lazily made record (settings an organisation never changed) has no version until its first
  // flush; "0" stands for it, and its first write makes it "1".
  return String(record.version ?? 0);
}

/** Refuses an update based on an older read. An empty etag means "whatever is there now". */
export function checkEtag(resource: string, record: { version: number }, etag: string): void {
  if (etag !== "" && etag !== etagOf(record)) throw new StaleEtagError(resource, etagOf(record));
}

/**
 * Flushes, turning MikroORM's optimistic-lock failure (a concurrent writer won between our read
 * and our write) into the same error a stale etag gives.
 */
export async function flushChecked(em: EntityManager, resource: string): Promise<void> {
  try {
    await em.flush();
  } catch (err) {
    if (err instanceof OptimisticLockError) throw new StaleEtagError(resource, "changed");
    throw err;
  }
}
