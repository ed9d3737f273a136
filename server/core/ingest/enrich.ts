// Enrichment: a raw hit becomes a row of the events table. Pure given its lookups: user agent,
// bot or human, IP → place, referrer → source and medium, campaign tags, visitor id. The IP is
// used here and dropped: nothing after this step carries it.
import { classifyAgent } from "../enrich/bot.js";
import { extractCampaign, pageParts } from "../enrich/campaign.js";
import type { GeoLookup } from "../enrich/geo.js";
import { classifyReferrer } from "../enrich/referrer.js";
import { parseUserAgent } from "../enrich/ua.js";
import type { VisitorHasher } from "../enrich/visitor.js";
import type { RawHit } from "./hit.js";

export const CLASSIFICATION = { USER: 1, BOT: 2 } as const;

/** One events-table row before sessions are assigned. */
export interface EnrichedEvent {
  siteId: string;
  ts: number;
  eventId: string;
  name: string;
  /** Visitor id under today's salt (or the client's stable id). */
  visitorId: bigint;
  /** Under yesterday's salt, so a visit that began before midnight UTC continues; null for client ids. */
  visitorIdYesterday: bigint | null;
  hostname: string;
  pathname: string;
  title: string;
  referrer: string;
  referrerSource: string;
  referrerMedium: string;
  utmSource: string;
  utmMedium: string;
  utmCampaign: string;
  utmTerm: string;
  utmContent: string;
  clickId: string;
  country: string;
  region: string;
  city: string;
  browser: string;
  browserVersion: string;
  os: string;
  osVersion: string;
  deviceType: string;
  screen: string;
  language: string;
  classification: 1 | 2;
  props: Record<string, string | number | boolean>;
  revenue: number | null;
  receivedAt: number;
}

export interface EnrichContext {
  geo: GeoLookup;
  hasher: VisitorHasher;
}

export function enrichHit(hit: RawHit, siteDomains: string[], ctx: EnrichContext): EnrichedEvent {
  const { hostname, pathname } = pageParts(hit.url);
  const campaign = extractCampaign(hit.url);
  const referrer = classifyReferrer({ referrer: hit.referrer, pageHostname: hostname, siteDomains, campaign });
  const agent = parseUserAgent(hit.userAgent);
  const place = ctx.geo.lookup(hit.ip);
  const identity = hit.userId || hit.clientId;
  let visitorId: bigint;
  let visitorIdYesterday: bigint | null = null;
  if (identity) {
    visitorId = ctx.hasher.clientVisitorId(hit.siteId, identity);
  } else {
    const ids = ctx.hasher.visitorIdsAround(hit.siteId, hit.ip, hit.userAgent, new Date(hit.ts));
    visitorId = ids.today;
    visitorIdYesterday = ids.yesterday;
  }
  return {
    siteId: hit.siteId,
    ts: hit.ts,
    eventId: hit.eventId,
    name: hit.name,
    visitorId,
    visitorIdYesterday,
    hostname,
    pathname,
    title: hit.title,
    referrer: referrer.referrer,
    referrerSource: referrer.source,
    referrerMedium: referrer.medium,
    utmSource: campaign.utmSource,
    utmMedium: campaign.utmMedium,
    utmCampaign: campaign.utmCampaign,
    utmTerm: campaign.utmTerm,
    utmContent: campaign.utmContent,
    clickId: campaign.clickId ? `${campaign.clickIdKind}:${campaign.clickId}` : "",
    country: place.country,
    region: place.region,
    city: place.city,
    browser: agent.browser,
    browserVersion: agent.browserVersion,
    os: agent.os,
    osVersion: agent.osVersion,
    deviceType: agent.deviceType === "unknown" ? "" : agent.deviceType,
    screen: hit.screen,
    language: hit.language,
    classification: classifyAgent(hit.userAgent) === "BOT" ? CLASSIFICATION.BOT : CLASSIFICATION.USER,
    props: hit.props,
    revenue: hit.revenue,
    receivedAt: hit.receivedAt,
  };
}
