// Sites: the tracked websites of an organisation (000's "create website").
import type { EntityManager } from "@mikro-orm/postgresql";
import { UniqueConstraintViolationException } from "@mikro-orm/core";
import { Site, type SiteSettings } from "../../db/entities/index.js";
import { AlreadyExistsError, InvalidArgumentError, PermissionDeniedError } from "../errors.js";
import type { Principal } from "../roles.js";
import { canReachSite } from "../roles.js";
import { checkEtag, flushChecked, loadSite } from "./access.js";
import { recordAudit, snapshot } from "./audit.js";
import { listPage, type Page } from "./paging.js";
import { optionalText, requireCurrency, requireDomain, requireRange, requireText, requireTimeZone } from "./validate.js";

export interface SiteSettingsInput {
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
}

export interface CreateSiteInput {
  domain: string;
  name: string;
  timezone: string;
  currency: string;
  industry: string;
  settings: SiteSettingsInput;
}

export interface UpdateSiteInput {
  etag: string;
  domain?: string;
  name?: string;
  timezone?: string;
  currency?: string;
  industry?: string;
  settings?: SiteSettingsInput;
}

/** The built-in defaults every unset site setting falls back to. */
export const SITE_SETTING_DEFAULTS = {
  allowedEventTypes: [] as string[],
  respectDoNotTrack: true,
  sessionTimeoutMinutes: 30,
  customEventsPerSessionPerMinute: 0,
  eventsPerVisitorPerMinute: 600,
  eventsPerSitePerSecond: 0,
  retentionDays: 0,
  maxPropertiesPerEvent: 30,
  additionalHostnames: [] as string[],
  autoDefineMetrics: false,
};

export type EffectiveSiteSettings = typeof SITE_SETTING_DEFAULTS;

export function effectiveSettings(settings: SiteSettings): EffectiveSiteSettings {
  return { ...SITE_SETTING_DEFAULTS, ...(settings as Partial<EffectiveSiteSettings>) };
}

function checkSettings(input: SiteSettingsInput): SiteSettings {
  const out: SiteSettings = {};
  const f = (name: string) => `settings.${name}`;
  if (input.allowedEventTypes !== undefined) {
    out.allowedEventTypes = [...new Set(input.allowedEventTypes.map((name, i) => requireText(`${f("allowed_event_types")}[${i}]`, name, 120)))];
  }
  if (input.respectDoNotTrack !== undefined) out.respectDoNotTrack = input.respectDoNotTrack;
  if (input.sessionTimeoutMinutes !== undefined) out.sessionTimeoutMinutes = requireRange(f("session_timeout_minutes"), input.sessionTimeoutMinutes, 1, 1440);
  if (input.customEventsPerSessionPerMinute !== undefined) {
    out.customEventsPerSessionPerMinute = requireRange(f("custom_events_per_session_per_minute"), input.customEventsPerSessionPerMinute, 0, 100_000);
  }
  if (input.eventsPerVisitorPerMinute !== undefined) {
    out.eventsPerVisitorPerMinute = requireRange(f("events_per_visitor_per_minute"), input.eventsPerVisitorPerMinute, 0, 1_000_000);
  }
  if (input.eventsPerSitePerSecond !== undefined) {
    out.eventsPerSitePerSecond = requireRange(f("events_per_site_per_second"), input.eventsPerSitePerSecond, 0, 10_000_000);
  }
  if (input.retentionDays !== undefined) out.retentionDays = requireRange(f("retention_days"), input.retentionDays, 0, 36_500);
  if (input.maxPropertiesPerEvent !== undefined) out.maxPropertiesPerEvent = requireRange(f("max_properties_per_event"), input.maxPropertiesPerEvent, 0, 1000);
  if (input.additionalHostnames !== undefined) {
    out.additionalHostnames = [...new Set(input.additionalHostnames.map((host, i) => requireDomain(`${f("additional_hostnames")}[${i}]`, host)))];
  }
  if (input.autoDefineMetrics !== undefined) out.autoDefineMetrics = input.autoDefineMetrics;
  return out;
}

function rethrowDomainClash(err: unknown, domain: string): never {
  if (err instanceof UniqueConstraintViolationException) {
    throw new AlreadyExistsError("domain", `the organisation already has a site for ${domain}`);
  }
  throw err;
}

export async function createSite(em: EntityManager, principal: Principal, input: CreateSiteInput): Promise<Site> {
  if (principal.siteIds.length > 0) throw new PermissionDeniedError("a key limited to some sites cannot create sites");
  const domain = requireDomain("domain", input.domain);
  const site = em.create(Site, {
    organisationId: principal.organisationId,
    domain,
    name: input.name.trim() === "" ? domain : requireText("name", input.name, 200),
    timezone: input.timezone === "" ? "UTC" : requireTimeZone("timezone", input.timezone),
    currency: input.currency === "" ? "USD" : requireCurrency("currency", input.currency),
    industry: optionalText("industry", input.industry, 100),
    settings: checkSettings(input.settings),
  });
  recordAudit(em, principal, { action: "site.create", resource: `sites/${site.id}`, after: snapshot(site) });
  try {
    await em.flush();
  } catch (err) {
    rethrowDomainClash(err, domain);
  }
  return site;
}

export async function listSites(em: EntityManager, principal: Principal, request: { pageSize: number; pageToken: string }): Promise<Page<Site>> {
  const where = principal.siteIds.length > 0
    ? { organisationId: principal.organisationId, deletedAt: null, id: { $in: [...principal.siteIds] } }
    : { organisationId: principal.organisationId, deletedAt: null };
  return listPage(em, Site, where, request);
}

export async function updateSite(em: EntityManager, principal: Principal, id: string, input: UpdateSiteInput): Promise<Site> {
  const site = await loadSite(em, principal, id, "id");
  const resource = `sites/${site.id}`;
  checkEtag(resource, site, input.etag);
  const before = snapshot(site);
  if (input.domain !== undefined) site.domain = requireDomain("domain", input.domain);
  if (input.name !== undefined) site.name = requireText("name", input.name, 200);
  if (input.timezone !== undefined && input.timezone !== site.timezone) {
    site.timezone = requireTimeZone("timezone", input.timezone);
    // Daily rollups are per local day: a new time zone makes them wrong, so they start over
    // (reports read raw events until the rollup job has caught up again).
    for (const table of ["rollups_blocks", "rollup_blocks_built", "rollups_daily", "rollups_hourly", "rollup_dirty", "rollup_watermarks"]) {
      await em.execute(`delete from ${table} where site_id = ?`, [site.id]);
    }
  }
  if (input.currency !== undefined) site.currency = requireCurrency("currency", input.currency);
  if (input.industry !== undefined) site.industry = optionalText("industry", input.industry, 100);
  if (input.settings !== undefined) site.settings = { ...site.settings, ...checkSettings(input.settings) };
  recordAudit(em, principal, { action: "site.update", resource, before, after: snapshot(site) });
  try {
    await flushChecked(em, resource);
  } catch (err) {
    rethrowDomainClash(err, site.domain);
  }
  return site;
}

export async function deleteSite(em: EntityManager, principal: Principal, id: string, etag: string): Promise<void> {
  const site = await loadSite(em, principal, id, "id");
  const resource = `sites/${site.id}`;
  checkEtag(resource, site, etag);
  if (!canReachSite(principal, site.id)) throw new InvalidArgumentError("id", "not reachable");
  const before = snapshot(site);
  site.deletedAt = new Date();
  recordAudit(em, principal, { action: "site.delete", resource, before });
  await flushChecked(em, resource);
}
