import UAParser from "ua-parser-js";

export type DeviceType =
  | "desktop"
  | "mobile"
  | "tablet"
  | "tv"
  | "console"
  | "wearable"
  | "embedded"
  | "unknown";

export interface ParsedUserAgent {
  browser: string;
  browserVersion: string;
  os: string;
  osVersion: string;
  deviceType: DeviceType;
}

export const UA_CACHE_SIZE = 10_000;

// ua-parser-js leaves device.type undefined for desktops, so the OS decides.
const DESKTOP_OS = new Set(
  [
    "windows",
    "mac os",
    "macos",
    "linux",
    "chrome os",
    "chromium os",
    "ubuntu",
    "debian",
    "fedora",
    "arch",
    "mint",
    "gentoo",
    "mandriva",
    "redhat",
    "red hat",
    "suse",
    "opensuse",
    "centos",
    "slackware",
    "kubuntu",
    "xubuntu",
    "lubuntu",
    "freebsd",
    "openbsd",
    "netbsd",
    "dragonfly",
    "solaris",
    "sunos",
    "unix",
    "haiku",
    "deepin",
    "elementary os",
    "manjaro",
    "zenwalk",
    "pclinuxos",
    "mageia",
    "gnu",
  ].map((s) => s.toLowerCase()),
);

const DEVICE_TYPES: Record<string, DeviceType> = {
  mobile: "mobile",
  tablet: "tablet",
  smarttv: "tv",
  console: "console",
  wearable: "wearable",
  embedded: "embedded",
};

const cache = new Map<string, ParsedUserAgent>();

function majorMinor(version: string | undefined): string {
  if (!version) return "";
  const parts = version.split(".");
  return parts.length >= 2 ? `${parts[0]}.${parts[1]}` : parts[0];
}

function deviceTypeOf(type: string | undefined, os: string): DeviceType {
  if (type) return DEVICE_TYPES[type] ?? "unknown";
  return DESKTOP_OS.has(os.toLowerCase()) ? "desktop" : "unknown";
}

function parse(ua: string): ParsedUserAgent {
  const result = new UAParser(ua).getResult();
  const os = result.os.name ?? "";
  return {
    browser: result.browser.name ?? "",
    browserVersion: majorMinor(result.browser.version),
    os,
    osVersion: result.os.version ?? "",
    deviceType: deviceTypeOf(result.device.type, os),
  };
}

export function parseUserAgent(ua: string): ParsedUserAgent {
  const key = typeof ua === "string" ? ua : "";
  const hit = cache.get(key);
  if (hit) {
    // Re-insert so Map iteration order tracks recency and the oldest entry is evicted first.
    cache.delete(key);
    cache.set(key, hit);
    return { ...hit };
  }
  const parsed = parse(key);
  cache.set(key, parsed);
  if (cache.size > UA_CACHE_SIZE) {
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
  return { ...parsed };
}

/** For tests: how many user agents are currently cached. */
export function uaCacheSize(): number {
  return cache.size;
}
