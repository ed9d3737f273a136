import { access, constants } from "node:fs/promises";
import { isIP } from "node:net";
import { createRequire } from "node:module";
import path from "node:path";
import maxmind from "maxmind";
import { BoundedCache } from "../bounded-cache.js";

export interface GeoLocation {
  country: string;
  region: string;
  city: string;
}

export interface GeoLookup {
  lookup(ip: string): GeoLocation;
}

interface CountryRecord {
  country_code?: string;
}

interface CityRecord {
  country?: { iso_code?: string };
  registered_country?: { iso_code?: string };
  subdivisions?: Array<{ iso_code?: string; names?: Record<string, string> }>;
  city?: { names?: Record<string, string> };
}

// maxmind's typings only admit MaxMind's own record shapes; the ip-location-db file is { country_code }.
interface RecordReader<T> {
  get(ip: string): T | null;
  metadata: { databaseType: string };
}

async function openReader<T>(file: string): Promise<RecordReader<T>> {
  return (await maxmind.open(file, { watchForUpdates: false })) as unknown as RecordReader<T>;
}

const COUNTRY_DB_FILE = "geo-whois-asn-country.mmdb";

export function bundledCountryDbPath(): string {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve("@ip-location-db/geo-whois-asn-country-mmdb/package.json");
  return path.join(path.dirname(pkg), COUNTRY_DB_FILE);
}

const EMPTY: GeoLocation = Object.freeze({ country: "", region: "", city: "" }) as GeoLocation;

function empty(): GeoLocation {
  return { ...EMPTY };
}

function ipv4Octets(ip: string): number[] {
  return ip.split(".").map((p) => Number(p));
}

function isPrivateV4(ip: string): boolean {
  const [a, b] = ipv4Octets(ip);
  return (
    a === 0 ||
    a === 10 ||
    a === 127 ||
    (a === 100 && b >= 64 && b <= 127) || // carrier-grade NAT
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 198 && (b === 18 || b === 19)) ||
    a >= 224
  );
}

function isPrivateV6(ip: string): boolean {
  const lower = ip.toLowerCase();
  if (lower === "::" || lower === "::1") return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped) return isPrivateV4(mapped[1]);
  const first = parseInt(lower.split(":")[0] || "0", 16);
  return (
    (first & 0xfe00) === 0xfc00 || // unique local fc00::/7
    (first & 0xffc0) === 0xfe80 || // link-local fe80::/10
    (first & 0xff00) === 0xff00 // multicast
  );
}

/** Normalises an IP for lookup, or returns '' when it cannot have a public location. */
export function publicIp(raw: string): string {
  if (typeof raw !== "string") return "";
  let ip = raw.trim();
  // Zone ids (fe80::1%eth0) and bracketed forms come from some proxies.
  if (ip.startsWith("[") && ip.endsWith("]")) ip = ip.slice(1, -1);
  const zone = ip.indexOf("%");
  if (zone !== -1) ip = ip.slice(0, zone);
  const version = isIP(ip);
  if (version === 4) return isPrivateV4(ip) ? "" : ip;
  if (version === 6) {
    // Dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d; the IPv4 form is what the DB indexes best.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    if (mapped) return isPrivateV4(mapped[1]) ? "" : mapped[1];
    return isPrivateV6(ip) ? "" : ip;
  }
  return "";
}

async function openCityDb(cityDbPath: string): Promise<RecordReader<CityRecord>> {
  try {
    await access(cityDbPath, constants.R_OK);
    const reader = await openReader<CityRecord>(cityDbPath);
    // A Country or ASN file would open fine but silently yield no regions or cities.
    if (!/city/i.test(reader.metadata.databaseType)) {
      throw new Error(`database type is "${reader.metadata.databaseType}", not a City database`);
    }
    return reader;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `GEOIP_CITY_DB points to "${cityDbPath}", which could not be opened as a MaxMind City database: ${reason}`,
    );
  }
}

/** Addresses whose places are remembered. */
const PLACE_CACHE_SIZE = 50_000;

export async function createGeoLookup(opts: { cityDbPath?: string } = {}): Promise<GeoLookup> {
  const countryDb = await openReader<CountryRecord>(bundledCountryDbPath());
  const cityDb = opts.cityDbPath ? await openCityDb(opts.cityDbPath) : null;

  // A visitor's events come from one address, close together: its place is looked up once.
  // Each caller gets its own copy, so none can change what the next one is told.
  const places = new BoundedCache<GeoLocation>(PLACE_CACHE_SIZE);
  return {
    lookup(raw: string): GeoLocation {
      const { country, region, city } = places.get(raw, () => find(raw));
      return { country, region, city };
    },
  };

  function find(raw: string): GeoLocation {
    const ip = publicIp(raw);
    if (!ip) return empty();
    const result = empty();
    try {
      if (cityDb) {
        const rec = cityDb.get(ip);
        if (rec) {
          result.country = (rec.country?.iso_code ?? rec.registered_country?.iso_code ?? "").toUpperCase();
          result.region = rec.subdivisions?.[0]?.names?.en ?? "";
          result.city = rec.city?.names?.en ?? "";
        }
      }
      if (!result.country) {
        result.country = (countryDb.get(ip)?.country_code ?? "").toUpperCase();
      }
    } catch {
      // A malformed address that slipped past isIP must not fail ingestion.
      return empty();
    }
    return result;
  }
}
