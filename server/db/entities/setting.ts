// Organisation-wide settings (scope `org`) and per-site overrides (scope = the site id), one row
// per scope so each can be read, versioned and updated on its own.
import { defineEntity, p } from "@mikro-orm/core";
import { updatedAt, version } from "./columns.js";
import { Organisation } from "./organisation.js";

/** The scope of the organisation-wide row; any other scope is a site id. */
export const ORG_SCOPE = "org";

/**
 * The JSON form of `beacon.v1.Settings` (for the `org` scope) with the organisation's
 * `beacon.v1.Quotas` under `quotas`; camelCase keys, unset fields absent. Open on purpose: new
 * settings ship without a migration, and readers apply defaults for missing keys.
 */
export interface SettingValues {
  defaultRetentionDays?: number;
  defaultMetricRetentionDays?: number;
  maxCardinality?: number;
  ingestRateLimit?: number;
  allowedConnectors?: string[];
  quotas?: {
    /** int64, so a decimal string in the JSON form. */
    eventsPerMonth?: string;
    queriesPerMinute?: number;
    maxConcurrentStreams?: number;
    maxSites?: number;
  };
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
