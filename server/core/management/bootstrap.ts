// First start: an empty database gets a default organisation and one admin key, printed once.
// Every later start finds the organisation and prints nothing.
import type { EntityManager } from "@mikro-orm/postgresql";
import { Organisation } from "../../db/entities/index.js";
import { recordAudit, snapshot } from "./audit.js";
import { createApiKey } from "./keys.js";

export interface Bootstrapped {
  organisation: Organisation;
  /** Only on the very first start. */
  adminKey?: string;
}

export async function bootstrap(em: EntityManager): Promise<Bootstrapped> {
  return em.transactional(async (tx) => {
    // Serialise concurrent first starts (server and worker processes starting together).
    await tx.execute("select pg_advisory_xact_lock(6265636)");
    const [existing] = await tx.findAll(Organisation, { orderBy: { createdAt: "asc" }, limit: 1 });
    if (existing) return { organisation: existing };
    const organisation = tx.create(Organisation, { name: "Default organisation" });
    recordAudit(tx, null, { action: "organisation.create", resource: `organisations/${organisation.id}`, after: snapshot(organisation) }, organisation.id);
    await tx.flush();
    const { secret } = await createApiKey(tx, null, organisation.id, { displayName: "first admin key", role: "admin", siteIds: [] });
    return { organisation, adminKey: secret };
  });
}
