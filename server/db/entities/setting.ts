// Organisation-wide settings (scope `org`) and per-site overrides (scope = the site id), one row
// per scope so each can be read, versioned and updated on its own.
import { defineEntity, p } from "@mikro-orm/core";
import { updatedAt, version } from "./columns.js";
import { Organisation } from "./organisation.js";

/** The scope of the organisation-wide row; any other scope is a site id. */
export const ORG_SCOPE = "org";

/** Open on purpose: new settings ship without a migration; readers apply defaults for missing keys. */
export interface SettingValues {
  /** Default raw-event retention for sites without their own. */
  retentionDays?: number;
  /** Distinct values kept per custom property before the rest group as `(other)`. */
  maxCardinality?: number;
  /** Events per second accepted for the organisation. */
  ingestRateLimit?: number;
  /** Monthly event and site quotas. */
  quotas?: { eventsPerMonth?: number; sites?: number };
  [setting: string]: unknown;
}

export const SettingSchema = defineEntity({
  name: "Setting",
  tableName: "settings",
  properties: {
    organisationId: () => p.manyToOne(Organisation).mapToPk().fieldName("organisation_id").primary(),
    scope: p.text().primary(),
    values: p.json<SettingValues>().onCreate(() => ({})),
    updatedAt: updatedAt(),
    version: version(),
  },
  primaryKeys: ["organisationId", "scope"],
});

export class Setting extends SettingSchema.class {}
SettingSchema.setClass(Setting);
