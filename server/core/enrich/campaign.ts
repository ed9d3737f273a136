import { BoundedCache } from "../bounded-cache.js";
import { CACHED_URL_LENGTH } from "./sanitize.js";

export interface Campaign {
  utmSource: string;
  utmMedium: string;
  utmCampaign: string;
  utmTerm: string;
  utmContent: string;
  clickIdKind: string;
  clickId: string;
}

export const CLICK_ID_PARAMS = [
  "gclid",
  "gbraid",
  "wbraid",
  "dclid",
  "fbclid",
  "msclkid",
  "ttclid",
  "twclid",
  "li_fat_id",
  "yclid",
] as const;

const MAX_PARAM_LENGTH = 200;

export function emptyCampaign(): Campaign {
  return {
    utmSource: "",
    utmMedium: "",
    utmCampaign: "",
    utmTerm: "",
    utmContent: "",
    clickIdKind: "",
    clickId: "",
  };
}

function parseUrl(raw: string): URL | null {
  if (typeof raw !== "string" || raw === "") return null;
  try {
    return new URL(raw);
  } catch {
    return null;
  }
}

function param(params: URLSearchParams, name: string): string {
  const value = params.get(name);
  if (value === null) return "";
  // Control characters would otherwise leak into stored dimensions and CSV exports.
  return value.replace(/[\u0000-\u001f\u007f]/g, "").trim().slice(0, MAX_PARAM_LENGTH);
}

export function extractCampaign(pageUrl: string): Campaign {
  const campaign = emptyCampaign();
  // Most page URLs carry no query string, and then nothing here: no need to parse them.
  if (typeof pageUrl !== "string" || !pageUrl.includes("?")) return campaign;
  const url = parseUrl(pageUrl);
  if (!url) return campaign;
  const p = url.searchParams;
  // Same precedence as Plausible: explicit utm_source wins over the informal source/ref tags.
  campaign.utmSource = param(p, "utm_source") || param(p, "source") || param(p, "ref");
  campaign.utmMedium = param(p, "utm_medium");
  campaign.utmCampaign = param(p, "utm_campaign");
  campaign.utmTerm = param(p, "utm_term");
  campaign.utmContent = param(p, "utm_content");
  for (const name of CLICK_ID_PARAMS) {
    const value = param(p, name);
    if (value) {
      campaign.clickIdKind = name;
      campaign.clickId = value;
      break;
    }
  }
  return campaign;
}

/** Parts of recently seen page URLs: a site's pages repeat, and parsing is most of the cost. */
const partsCache = new BoundedCache<{ hostname: string; pathname: string }>(10_000);

function parseParts(url: string): { hostname: string; pathname: string } {
  const parsed = parseUrl(url);
  return parsed ? { hostname: parsed.hostname.toLowerCase(), pathname: parsed.pathname || "/" } : { hostname: "", pathname: "" };
}

export function pageParts(url: string): { hostname: string; pathname: string } {
  // Long URLs are rare and would make the cache large.
  if (typeof url !== "string" || url.length > CACHED_URL_LENGTH) return parseParts(url);
  return { ...partsCache.get(url, () => parseParts(url)) };
}
