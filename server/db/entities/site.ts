// A tracked website or app. Its tracking id is what the browser script and SDKs send; the uuid
// never leaves the API.
import { randomInt } from "node:crypto";
import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, updatedAt, uuidPrimaryKey, version } from "./columns.js";
import { Organisation } from "./organisation.js";

/**
 * Per-site settings, in the JSON form of the `beacon.v1.SiteSettings` message (camelCase keys,
 * unset fields absent), so a service stores `toJson(SiteSettingsSchema, …)` as is. Open on
 * purpose: new settings ship without a migration, and readers fall back to the organisation's
 * settings and then to built-in defaults for anything missing.
 */
export interface SiteSettings {
  allowedEventTypes?: string[];
  respectDoNotTrack?: boolean;
  sessionTimeoutMinutes?: number;
  customEventsPerSessionPerMinute?: number;
  eventsPerVisitorPerMinute?: number;
  eventsPerSitePerSecond?: number;
  retentionDays?: number;
  maxPropertiesPerEvent?: number;
  additionalHostnames?: string[];
  autoDefineMetrics?: boolean;
  [setting: string]: unknown;
}

// No 0/O or 1/I/L: tracking ids get read aloud and copied from screenshots.
const TRACKING_ID_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/** A fresh `BK-XXXXXXXX` tracking id (31^8 ≈ 8.5e11 values; the unique index catches a clash). */
export function generateTrackingId(): string {
  let id = "BK-";
  for (let i = 0; i < 8; i++) id += TRACKING_ID_ALPHABET[randomInt(TRACKING_ID_ALPHABET.length)];
  return id;
}

export const SiteSchema = defineEntity({
  name: "Site",
  tableName: "sites",
  properties: {
    id: uuidPrimaryKey(),
    organisationId: () => p.manyToOne(Organisation).mapToPk().fieldName("organisation_id"),
    trackingId: p.text().unique().onCreate(() => generateTrackingId()),
    /** Hostname without scheme or port, e.g. `example.com`. */
    domain: p.text(),
    name: p.text(),
    /** IANA zone the site's reports use for day boundaries, e.g. `Europe/Berlin`. */
    timezone: p.text(),
    /** ISO 4217 code revenue is reported in. */
    currency: p.text(),
    industry: p.text(),
    settings: p.json<SiteSettings>().onCreate(() => ({})),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    /** Soft delete: events stay until retention removes them, and the site can be restored. */
    deletedAt: p.datetime().nullable(),
    version: version(),
  },
  indexes: [{ properties: ["organisationId", "id"] }],
  uniques: [
    { name: "sites_organisation_id_domain_unique", properties: ["organisationId", "domain"], where: "deleted_at is null" },
  ],
});

export class Site extends SiteSchema.class {}
SiteSchema.setClass(Site);
