// Organisation settings and quotas (002 §12), each its own row of the settings table so each has
// its own etag: changing a quota does not invalidate someone's pending settings edit.
import type { EntityManager } from "@mikro-orm/postgresql";
import { UniqueConstraintViolationException } from "@mikro-orm/core";
import { Setting, type SettingValues } from "../../db/entities/index.js";
import { StaleEtagError } from "../errors.js";
import type { Principal } from "../roles.js";
import { checkEtag, flushChecked } from "./access.js";
import { recordAudit } from "./audit.js";
import { requireRange, requireText } from "./validate.js";

export const SETTINGS_SCOPE = "org";
export const QUOTAS_SCOPE = "org.quotas";

export const SETTINGS_DEFAULTS = {
  retentionDays: 0,
  metricRetentionDays: 0,
  maxCardinality: 10_000,
  ingestRateLimit: 0,
  allowedConnectors: ["webhook"] as string[],
};

export const QUOTA_DEFAULTS = {
  eventsPerMonth: 0,
  queriesPerMinute: 600,
  maxConcurrentStreams: 20,
  maxSites: 0,
};

export type OrganisationSettings = typeof SETTINGS_DEFAULTS;
export type OrganisationQuotas = typeof QUOTA_DEFAULTS;

async function loadRow(em: EntityManager, organisationId: string, scope: string): Promise<Setting> {
  const row = await em.findOne(Setting, { organisationId, scope });
  // Rows are created lazily: an organisation that never changed a setting has none.
  return row ?? em.create(Setting, { organisationId, scope, values: {} });
}

export async function getSettings(em: EntityManager, organisationId: string): Promise<{ values: OrganisationSettings; row: Setting }> {
  const row = await loadRow(em, organisationId, SETTINGS_SCOPE);
  return { values: { ...SETTINGS_DEFAULTS, ...(row.values as Partial<OrganisationSettings>) }, row };
}

export async function getQuotas(em: EntityManager, organisationId: string): Promise<{ values: OrganisationQuotas; row: Setting }> {
  const row = await loadRow(em, organisationId, QUOTAS_SCOPE);
  return { values: { ...QUOTA_DEFAULTS, ...(row.values as Partial<OrganisationQuotas>) }, row };
}

/**
 * flushChecked, plus the race only lazily made rows have: two first writes both insert the row,
 * and the loser's insert clashes. Like any concurrent write that won, that is a stale etag.
 */
async function flushRow(em: EntityManager, resource: string): Promise<void> {
  try {
    await flushChecked(em, resource);
  } catch (err) {
    if (err instanceof UniqueConstraintViolationException) throw new StaleEtagError(resource, "changed");
    throw err;
  }
}

export interface UpdateSettingsInput {
  etag: string;
  retentionDays?: number;
  metricRetentionDays?: number;
  maxCardinality?: number;
  ingestRateLimit?: number;
  allowedConnectors?: string[];
}

export async function updateSettings(em: EntityManager, principal: Principal, input: UpdateSettingsInput) {
  const { values, row } = await getSettings(em, principal.organisationId);
  const resource = "settings";
  checkEtag(resource, row, input.etag);
  const next: SettingValues = { ...row.values };
  if (input.retentionDays !== undefined) next.retentionDays = requireRange("default_retention_days", input.retentionDays, 0, 36_500);
  if (input.metricRetentionDays !== undefined) next.metricRetentionDays = requireRange("default_metric_retention_days", input.metricRetentionDays, 0, 36_500);
  if (input.maxCardinality !== undefined) next.maxCardinality = requireRange("max_cardinality", input.maxCardinality, 1, 10_000_000);
  if (input.ingestRateLimit !== undefined) next.ingestRateLimit = requireRange("ingest_rate_limit", input.ingestRateLimit, 0, 100_000_000);
  if (input.allowedConnectors !== undefined) {
    next.allowedConnectors = [...new Set(input.allowedConnectors.map((c, i) => requireText(`allowed_connectors[${i}]`, c, 40)))];
  }
  row.values = next;
  recordAudit(em, principal, { action: "settings.update", resource, before: values, after: { ...SETTINGS_DEFAULTS, ...next } });
  await flushRow(em, resource);
  return getSettings(em, principal.organisationId);
}

export interface UpdateQuotasInput {
  etag: string;
  eventsPerMonth?: number;
  queriesPerMinute?: number;
  maxConcurrentStreams?: number;
  maxSites?: number;
}

export async function updateQuotas(em: EntityManager, principal: Principal, input: UpdateQuotasInput) {
  const { values, row } = await getQuotas(em, principal.organisationId);
  const resource = "quotas";
  checkEtag(resource, row, input.etag);
  const next: SettingValues = { ...row.values };
  if (input.eventsPerMonth !== undefined) {
    if (!Number.isSafeInteger(input.eventsPerMonth) || input.eventsPerMonth < 0) requireRange("events_per_month", -1, 0, Number.MAX_SAFE_INTEGER);
    next.eventsPerMonth = input.eventsPerMonth;
  }
  if (input.queriesPerMinute !== undefined) next.queriesPerMinute = requireRange("queries_per_minute", input.queriesPerMinute, 0, 1_000_000);
  if (input.maxConcurrentStreams !== undefined) next.maxConcurrentStreams = requireRange("max_concurrent_streams", input.maxConcurrentStreams, 1, 10_000);
  if (input.maxSites !== undefined) next.maxSites = requireRange("max_sites", input.maxSites, 0, 1_000_000);
  row.values = next;
  recordAudit(em, principal, { action: "quotas.update", resource, before: values, after: { ...QUOTA_DEFAULTS, ...next } });
  await flushRow(em, resource);
  return getQuotas(em, principal.organisationId);
}
