import { isbot } from "isbot";

export type AgentKind = "USER" | "BOT";

export const BOT_CACHE_SIZE = 10_000;

// isbot targets crawlers; these catch automation and HTTP clients it deliberately lets through.
const EXTRA_BOT_PATTERNS: RegExp[] = [
  /headlesschrome/i,
  /phantomjs/i,
  /puppeteer/i,
  /playwright/i,
  /chrome-lighthouse/i,
  /lighthouse/i,
  /selenium/i,
  /webdriver/i,
  /slimerjs/i,
  /htmlunit/i,
  /electron\/[\d.]+.*(?:scrap|crawl|spider|bot)/i,
  /^curl\b|\bcurl\//i,
  /^wget\b|\bwget\//i,
  /python-requests/i,
  /python-urllib/i,
  /python-httpx|\bhttpx\b/i,
  /aiohttp/i,
  /go-http-client/i,
  /okhttp/i,
  /\baxios\b/i,
  /node-fetch/i,
  /\bundici\b/i,
  /^node\b|\bnode\.js\b/i,
  /^java\/|\bjava\/[\d.]/i,
  /apache-httpclient/i,
  /libwww-perl/i,
  /^ruby\b|\bruby\/[\d.]/i,
  /^php\b|\bphp\/[\d.]/i,
  /guzzlehttp/i,
  /scrapy/i,
  /^got\b|\bgot\s*\(/i,
  /\bhttpie\//i,
  /postmanruntime/i,
  /insomnia\//i,
  /^dart:io\b|\bdart\/[\d.]/i,
  /\breqwest\b/i,
  /\bhyper\//i,
  /\bmechanize\b/i,
];

const MIN_UNSTRUCTURED_LENGTH = 10;

const cache = new Map<string, AgentKind>();

function classify(ua: string): AgentKind {
  const trimmed = ua.trim();
  if (trimmed === "") return "BOT";
  // Real browsers always announce a Mozilla/ (or Opera/) token; short bare strings are scripts.
  if (trimmed.length < MIN_UNSTRUCTURED_LENGTH && !/^(?:mozilla|opera)\//i.test(trimmed)) return "BOT";
  if (isbot(trimmed)) return "BOT";
  for (const pattern of EXTRA_BOT_PATTERNS) {
    if (pattern.test(trimmed)) return "BOT";
  }
  return "USER";
}

export function classifyAgent(ua: string): AgentKind {
  const key = typeof ua === "string" ? ua : "";
  const hit = cache.get(key);
  if (hit) return hit;
  const kind = classify(key);
  // Crawlers rotate UAs, so cap the cache; dropping the oldest insertion is enough here.
  if (cache.size >= BOT_CACHE_SIZE) {
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
  cache.set(key, kind);
  return kind;
}

export function isBotAgent(ua: string): boolean {
  return classifyAgent(ua) === "BOT";
}
