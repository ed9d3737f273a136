// Every mutation through the management API writes an audit entry in the same transaction as the
// change itself, so the log can never miss a change or record one that was rolled back.
import type { EntityManager } from "@mikro-orm/postgresql";
import { AuditEntry } from "../../db/entities/index.js";
import type { Principal } from "../roles.js";

export interface AuditInput {
  action: string;
  resource: string;
  before?: Record<string, unknown> | null;
  after?: Record<string, unknown> | null;
}

export function recordAudit(em: EntityManager, principal: Principal | null, input: AuditInput, organisationId = principal?.organisationId): AuditEntry {
  if (!organisationId) throw new Error("audit entry needs an organisation");
  return em.create(AuditEntry, {
    organisationId,
    // A principal without a key (the `beacon` CLI) has an empty keyId.
    actorKeyId: principal?.keyId || null,
    actor: principal?.actor ?? "system",
    action: input.action,
    resource: input.resource,
    before: input.before ?? null,
    after: input.after ?? null,
  });
}

/** A plain JSON copy of a record for the audit log, without secrets. */
export function snapshot(record: object, omit: readonly string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    if (omit.includes(key) || typeof value === "function") continue;
    out[key] = value instanceof Date ? value.toISOString() : value;
  }
  return JSON.parse(JSON.stringify(out)) as Record<string, unknown>;
}
