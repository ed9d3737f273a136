// One line of the audit log: who changed which resource, and how it looked before and after.
// Append-only, so it has no foreign keys: entries outlive the keys and sites they mention.
import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, uuidPrimaryKey } from "./columns.js";

export const AuditEntrySchema = defineEntity({
  name: "AuditEntry",
  tableName: "audit_log",
  properties: {
    organisationId: p.uuid(),
    id: uuidPrimaryKey(),
    /** The API key that made the change; null for the system (migrations, retention jobs). */
    actorKeyId: p.uuid().nullable(),
    /** Human-readable actor, e.g. the key's name or `system`. */
    actor: p.text(),
    /** `<resource type>.<verb>`, e.g. `site.create`. */
    action: p.text(),
    /** Resource name, e.g. `sites/<id>`. */
    resource: p.text(),
    before: p.json<Record<string, unknown>>().nullable(),
    after: p.json<Record<string, unknown>>().nullable(),
    createdAt: createdAt(),
  },
  indexes: [
    {
      name: "audit_log_organisation_id_created_at_index",
      columns: [{ name: "organisation_id" }, { name: "created_at", sort: "desc" }],
    },
  ],
});

export class AuditEntry extends AuditEntrySchema.class {}
AuditEntrySchema.setClass(AuditEntry);
