import type { Campaign } from "./campaign.js";

export type Medium = "direct" | "search" | "social" | "email" | "campaign" | "referral" | "internal";

export interface ReferrerInput {
  referrer: string;
  pageHostname: string;
  siteDomains: string[];
  campaign: Campaign;
}

export interface ReferrerClassification {
  referrer: string;
  source: string;
  medium: Medium;
}

export interface KnownSource {
  source: string;
  medium: "search" | "social" | "email";
}

const search = (source: string): KnownSource => ({ source, medium: "search" });
const social = (source: string): KnownSource => ({ source, medium: "social" });
const email = (source: string): KnownSource => ({ source, medium: "email" });

/**
 * Host suffix → source. A key ending in ".*" matches that label under any country TLD
 * (google.co.uk, yandex.ru). Longer, more specific suffixes win, so mail.google.com is
 * email even though google.* is search.
 */
export const KNOWN_HOSTS: Readonly<Record<string, KnownSource>> = {
  // Search engines
  "google.*": search("Google"),
  "bing.com": search("Bing"),
  "duckduckgo.com": search("DuckDuckGo"),
  "yahoo.*": search("Yahoo!"),
  "search.yahoo.com": search("Yahoo!"),
  "yandex.*": search("Yandex"),
  "ya.ru": search("Yandex"),
  "baidu.com": search("Baidu"),
  "m.baidu.com": search("Baidu"),
  "ecosia.org": search("Ecosia"),
  "search.brave.com": search("Brave"),
  "qwant.com": search("Qwant"),
  "naver.com": search("Naver"),
  "seznam.cz": search("Seznam"),
  "search.seznam.cz": search("Seznam"),
  "startpage.com": search("Startpage"),
  "ask.com": search("Ask"),
  "aol.com": search("AOL"),
  "search.aol.com": search("AOL"),
  "sogou.com": search("Sogou"),
  "so.com": search("360 Search"),
  "kagi.com": search("Kagi"),
  "mojeek.com": search("Mojeek"),
  "search.lilo.org": search("Lilo"),
  "presearch.com": search("Presearch"),
  "yep.com": search("Yep"),
  "daum.net": search("Daum"),
  "com.google.android.googlequicksearchbox": search("Google"),

  // Social networks
  "facebook.com": social("Facebook"),
  "fb.com": social("Facebook"),
  "fb.me": social("Facebook"),
  "messenger.com": social("Facebook"),
  "com.facebook.katana": social("Facebook"),
  "twitter.com": social("Twitter"),
  "t.co": social("Twitter"),
  "x.com": social("Twitter"),
  "linkedin.com": social("LinkedIn"),
  "lnkd.in": social("LinkedIn"),
  "com.linkedin.android": social("LinkedIn"),
  "reddit.com": social("Reddit"),
  "redd.it": social("Reddit"),
  "youtube.com": social("YouTube"),
  "youtu.be": social("YouTube"),
  "com.google.android.youtube": social("YouTube"),
  "instagram.com": social("Instagram"),
  "com.instagram.android": social("Instagram"),
  "tiktok.com": social("TikTok"),
  "pinterest.*": social("Pinterest"),
  "pin.it": social("Pinterest"),
  "news.ycombinator.com": social("Hacker News"),
  "bsky.app": social("Bluesky"),
  "bsky.social": social("Bluesky"),
  "threads.net": social("Threads"),
  "threads.com": social("Threads"),
  "mastodon.social": social("Mastodon"),
  "mastodon.online": social("Mastodon"),
  "mastodon.world": social("Mastodon"),
  "mastodon.cloud": social("Mastodon"),
  "mstdn.social": social("Mastodon"),
  "mas.to": social("Mastodon"),
  "fosstodon.org": social("Mastodon"),
  "hachyderm.io": social("Mastodon"),
  "infosec.exchange": social("Mastodon"),
  "techhub.social": social("Mastodon"),
  "mastodon.art": social("Mastodon"),
  "vk.com": social("VKontakte"),
  "ok.ru": social("Odnoklassniki"),
  "tumblr.com": social("Tumblr"),
  "quora.com": social("Quora"),
  "discord.com": social("Discord"),
  "discord.gg": social("Discord"),
  "discordapp.com": social("Discord"),
  "t.me": social("Telegram"),
  "web.telegram.org": social("Telegram"),
  "org.telegram.messenger": social("Telegram"),
  "whatsapp.com": social("WhatsApp"),
  "snapchat.com": social("Snapchat"),
  "weibo.com": social("Weibo"),
  "slack.com": social("Slack"),
  "com.slack": social("Slack"),
  "twitch.tv": social("Twitch"),
  "lobste.rs": social("Lobsters"),
  "producthunt.com": social("Product Hunt"),
  "stackoverflow.com": social("Stack Overflow"),
  "xing.com": social("XING"),
  "line.me": social("LINE"),

  // Webmail
  "mail.google.com": email("Gmail"),
  "com.google.android.gm": email("Gmail"),
  "outlook.live.com": email("Outlook.com"),
  "outlook.office.com": email("Outlook"),
  "outlook.office365.com": email("Outlook"),
  "mail.yahoo.com": email("Yahoo! Mail"),
  "mail.yahoo.co.jp": email("Yahoo! Mail"),
  "mail.proton.me": email("Proton Mail"),
  "mail.protonmail.com": email("Proton Mail"),
  "mail.aol.com": email("AOL Mail"),
  "mail.yandex.ru": email("Yandex Mail"),
  "mail.yandex.com": email("Yandex Mail"),
  "email.seznam.cz": email("Seznam Email"),
  "mail.zoho.com": email("Zoho Mail"),
  "mail.zoho.eu": email("Zoho Mail"),
  "app.fastmail.com": email("Fastmail"),
  "fastmail.com": email("Fastmail"),
  "app.tuta.com": email("Tuta"),
  "mail.tutanota.com": email("Tuta"),
  "mail.gmx.net": email("GMX"),
  "mail.gmx.com": email("GMX"),
  "navigator.gmx.net": email("GMX"),
  "navigator.web.de": email("WEB.DE"),
  "mail.qq.com": email("QQ Mail"),
  "mail.163.com": email("163 Mail"),
  "mail.ru": email("Mail.ru"),
  "e.mail.ru": email("Mail.ru"),
  "mail.naver.com": email("Naver Mail"),
  "mail.daum.net": email("Daum Mail"),
  "webmail.hostinger.com": email("Hostinger Webmail"),
};

/** utm_source spellings that are not a display name or host in KNOWN_HOSTS. */
const SOURCE_ALIASES: Readonly<Record<string, string>> = {
  fb: "Facebook",
  ig: "Instagram",
  insta: "Instagram",
  tw: "Twitter",
  x: "Twitter",
  li: "LinkedIn",
  yt: "YouTube",
  hn: "Hacker News",
  hackernews: "Hacker News",
  ycombinator: "Hacker News",
  ddg: "DuckDuckGo",
  yahoo: "Yahoo!",
  gmail: "Gmail",
  outlook: "Outlook",
  bluesky: "Bluesky",
  mastodon: "Mastodon",
  tiktok: "TikTok",
  threads: "Threads",
  brave: "Brave",
};

const BY_SOURCE_NAME: ReadonlyMap<string, KnownSource> = (() => {
  const map = new Map<string, KnownSource>();
  for (const known of Object.values(KNOWN_HOSTS)) {
    const key = known.source.toLowerCase();
    // The first entry per name wins so "Google" stays search, not the app-package variant.
    if (!map.has(key)) map.set(key, known);
  }
  for (const [alias, name] of Object.entries(SOURCE_ALIASES)) {
    const known = map.get(name.toLowerCase());
    if (known) map.set(alias, known);
  }
  return map;
})();

// A country-code TLD, optionally under a generic second level (co.uk, com.au).
const COUNTRY_TLD = /^(?:[a-z]{2,3}|(?:co|com|net|org|ac|gov|edu|or|ne|go)\.[a-z]{2})$/;

export function lookupHost(host: string): KnownSource | undefined {
  const labels = stripWww(host.toLowerCase()).split(".");
  for (let i = 0; i < labels.length; i++) {
    const suffix = labels.slice(i).join(".");
    const exact = KNOWN_HOSTS[suffix];
    if (exact) return exact;
    const rest = labels.slice(i + 1).join(".");
    if (rest && COUNTRY_TLD.test(rest)) {
      const wildcard = KNOWN_HOSTS[`${labels[i]}.*`];
      if (wildcard) return wildcard;
    }
  }
  return undefined;
}

function stripWww(host: string): string {
  return host.startsWith("www.") ? host.slice(4) : host;
}

function lookupSourceName(name: string): KnownSource | undefined {
  const lower = name.trim().toLowerCase();
  if (!lower) return undefined;
  return BY_SOURCE_NAME.get(lower) ?? (lower.includes(".") ? lookupHost(lower) : undefined);
}

interface ParsedReferrer {
  host: string;
  normalised: string;
}

function parseReferrer(raw: string): ParsedReferrer | null {
  if (typeof raw !== "string") return null;
  const trimmed = raw.trim();
  if (!trimmed) return null;
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    return null;
  }
  // Android apps (Gmail, Google app) send android-app://<package>/ as the referrer.
  if (url.protocol === "android-app:") {
    const pkg = url.hostname.toLowerCase();
    return pkg ? { host: pkg, normalised: pkg } : null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  const host = stripWww(url.hostname.toLowerCase().replace(/\.$/, ""));
  if (!host) return null;
  // Query strings are dropped: they carry search terms, tokens and other personal data.
  const path = url.pathname === "/" ? "" : url.pathname.replace(/\/+$/, "");
  return { host, normalised: host + path };
}

function isSelfReferral(host: string, pageHostname: string, siteDomains: string[]): boolean {
  const page = stripWww((pageHostname || "").toLowerCase());
  if (page && host === page) return true;
  for (const domain of siteDomains) {
    const d = stripWww(domain.trim().toLowerCase());
    if (d && (host === d || host.endsWith("." + d))) return true;
  }
  return false;
}

function mediumFromUtm(utmMedium: string, known: KnownSource | undefined): Medium {
  const m = utmMedium.trim().toLowerCase();
  if (m === "") return known ? known.medium : "campaign";
  if (m === "email" || m === "e-mail" || m === "newsletter") return "email";
  if (m === "social" || m === "social-network" || m === "social-media" || m === "sm") return "social";
  if (["cpc", "ppc", "paid", "display", "banner", "affiliate"].includes(m)) return "campaign";
  if (m === "organic" && known && (known.medium === "search" || known.medium === "social")) return known.medium;
  return "campaign";
}

export function classifyReferrer(input: ReferrerInput): ReferrerClassification {
  const parsed = parseReferrer(input.referrer);
  const self = parsed ? isSelfReferral(parsed.host, input.pageHostname, input.siteDomains) : false;
  const referrer = parsed && !self ? parsed.normalised : "";
  const fromHost = parsed && !self ? lookupHost(parsed.host) : undefined;

  const utmSource = input.campaign?.utmSource?.trim() ?? "";
  const utmMedium = input.campaign?.utmMedium?.trim() ?? "";
  if (utmSource || utmMedium) {
    const known = utmSource ? lookupSourceName(utmSource) : fromHost;
    const source = utmSource ? (known ? known.source : utmSource) : (fromHost?.source ?? (referrer ? parsed!.host : ""));
    return { referrer, source, medium: mediumFromUtm(utmMedium, known) };
  }

  if (!parsed || self) return { referrer: "", source: "", medium: "direct" };
  if (fromHost) return { referrer, source: fromHost.source, medium: fromHost.medium };
  return { referrer, source: parsed.host, medium: "referral" };
}
