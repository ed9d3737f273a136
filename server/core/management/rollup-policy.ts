// A site's rollup policy (002 §4): which rollups it keeps, whether reports read them, how long
// raw events stay, and how far the rollup job has got.
import type { EntityManager } from "@mikro-orm/postgresql";
import type { Pool } from "pg";
import { ROLLUP_DIMENSIONS } from "../reports/catalog.js";
import type { Principal } from "../roles.js";
import { checkEtag, flushChecked, loadSite } from "./access.js";
import { recordAudit, snapshot } from "./audit.js";
import { requireRange } from "./validate.js";

export interface RollupRuleView {
  fromGranularity: string;
  toGranularity: string;
  dimensions: string[];
  aggregation: string;
}

export interface RollupPolicyView {
  siteId: string;
  enabled: boolean;
  rules: RollupRuleView[];
  rawRetentionDays: number;
  hourlyUntil: Date | undefined;
  dailyUntil: string;
  dirtyHours: number;
  etag: string;
}

const AGGREGATION = "pageviews, events, revenue, visits, bounces and duration summed; visitors merged as distinct-visitor sketches";

export const ROLLUP_RULES: RollupRuleView[] = [
  { fromGranularity: "raw", toGranularity: "1h", dimensions: [...ROLLUP_DIMENSIONS], aggregation: AGGREGATION },
  { fromGranularity: "1h", toGranularity: "1d", dimensions: [...ROLLUP_DIMENSIONS], aggregation: AGGREGATION },
];

export async function getRollupPolicy(em: EntityManager, pool: Pool, principal: Principal, siteId: string): Promise<RollupPolicyView> {
  const site = await loadSite(em, principal, siteId);
  const [mark, dirty] = await Promise.all([
    pool.query<{ hourly_until: string; daily_until: string | null }>("select hourly_until, daily_until::text from rollup_watermarks where site_id = $1", [site.id]),
    pool.query<{ n: string }>("select count(*) as n from rollup_dirty where site_id = $1", [site.id]),
  ]);
  return {
    siteId: site.id,
    enabled: site.settings.rollupsEnabled !== false,
    rules: ROLLUP_RULES,
    rawRetentionDays: Number(site.settings.retentionDays ?? 0),
    hourlyUntil: mark.rows[0] ? new Date(mark.rows[0].hourly_until) : undefined,
    dailyUntil: mark.rows[0]?.daily_until ?? "",
    dirtyHours: Number(dirty.rows[0].n),
    etag: String(site.version),
  };
}

export async function updateRollupPolicy(
  em: EntityManager,
  principal: Principal,
  siteId: string,
  input: { etag: string; enabled?: boolean; rawRetentionDays?: number },
): Promise<void> {
  const site = await loadSite(em, principal, siteId);
  const resource = `sites/${site.id}/rollup-policy`;
  checkEtag(resource, site, input.etag);
  const before = snapshot(site.settings);
  const settings = { ...site.settings };
  if (input.enabled !== undefined) settings.rollupsEnabled = input.enabled;
  if (input.rawRetentionDays !== undefined) settings.retentionDays = requireRange("raw_retention_days", input.rawRetentionDays, 0, 36_500);
  site.settings = settings;
  recordAudit(em, principal, { action: "rollup_policy.update", resource, before, after: snapshot(settings) });
  await flushChecked(em, resource);
}
