import { BoundedCache } from "../bounded-cache.js";

export type PropertyValue = string | number | boolean;

export interface FieldError {
  field: string;
  message: string;
  reason: string;
}

export interface PropertyLimits {
  maxProperties: number;
  maxKeyLength: number;
  maxValueLength: number;
}

export const MAX_PROPERTY_DEPTH = 3;

// C0, DEL and C1 controls: invisible in dashboards and able to break CSV/log output.
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/g;
const HAS_CONTROL_CHAR = /[\u0000-\u001f\u007f-\u009f]/;
const HTML_TAGS = /<\/?[a-zA-Z!][^<>]*>/g;

function cleanKey(key: string, maxKeyLength: number): string {
  return key.replace(CONTROL_CHARS, "").trim().slice(0, maxKeyLength);
}

export function sanitizeString(value: string, maxLength: number): string {
  return value.replace(CONTROL_CHARS, "").replace(HTML_TAGS, "").trim().slice(0, maxLength);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function scalar(value: unknown, limits: PropertyLimits): PropertyValue | undefined {
  switch (typeof value) {
    case "string":
      return sanitizeString(value, limits.maxValueLength);
    case "number":
      return Number.isFinite(value) ? value : undefined;
    case "boolean":
      return value;
    default:
      return undefined;
  }
}

function flatten(
  obj: Record<string, unknown>,
  prefix: string,
  depth: number,
  limits: PropertyLimits,
  out: Record<string, PropertyValue>,
): void {
  for (const [rawKey, value] of Object.entries(obj)) {
    const part = rawKey.replace(CONTROL_CHARS, "").trim();
    if (part === "") continue;
    const path = prefix ? `${prefix}.${part}` : part;
    if (isPlainObject(value)) {
      // Deeper levels are dropped rather than stringified: they are rarely useful as dimensions.
      if (depth < MAX_PROPERTY_DEPTH) flatten(value, path, depth + 1, limits, out);
      continue;
    }
    const v = scalar(value, limits);
    if (v === undefined) continue;
    const key = cleanKey(path, limits.maxKeyLength);
    if (key === "") continue;
    out[key] = v;
  }
}

function hasOwnKeys(object: object): boolean {
  for (const key in object) if (Object.hasOwn(object, key)) return true;
  return false;
}

export function sanitizeProperties(
  data: unknown,
  limits: PropertyLimits,
): { properties: Record<string, PropertyValue>; error?: FieldError } {
  if (data === undefined || data === null) return { properties: {} };
  if (typeof data === "string") {
    return { properties: { value: sanitizeString(data, limits.maxValueLength) } };
  }
  if (typeof data === "number" || typeof data === "boolean") {
    const v = scalar(data, limits);
    return { properties: v === undefined ? {} : { value: v } };
  }
  if (!isPlainObject(data)) return { properties: {} };
  // Most events (every pageview) carry none: no flattening to do.
  if (!hasOwnKeys(data)) return { properties: {} };
  const properties: Record<string, PropertyValue> = Object.create(null);
  flatten(data, "", 1, limits, properties);
  const result = { ...properties };
  const count = Object.keys(result).length;
  if (count > limits.maxProperties) {
    return {
      properties: result,
      error: {
        field: "properties",
        message: `has ${count} properties; at most ${limits.maxProperties} are allowed`,
        reason: "TOO_MANY_PROPERTIES",
      },
    };
  }
  return { properties: result };
}

/**
 * Recent answers of sanitizeUrl, per max length and input: a site's page URLs repeat. Keyed by
 * the input itself (one cache per max length): a key built from both was a new string to
 * flatten and hash per event, 3.6% of the server's CPU on /batch.
 */
const urlCaches = new Map<number, BoundedCache<string>>();
/** Longer URLs are rare and would make the cache large: they are sanitised each time. */
export const CACHED_URL_LENGTH = 512;

export function sanitizeUrl(raw: unknown, maxLength = 2048): string {
  if (typeof raw !== "string") return "";
  if (raw.length > CACHED_URL_LENGTH) return sanitizeUrlUncached(raw, maxLength);
  let cache = urlCaches.get(maxLength);
  if (!cache) urlCaches.set(maxLength, (cache = new BoundedCache<string>(10_000)));
  return cache.get(raw, () => sanitizeUrlUncached(raw, maxLength));
}

function sanitizeUrlUncached(raw: string, maxLength: number): string {
  const trimmed = raw.trim();
  if (trimmed === "" || trimmed.length > maxLength * 4) return "";
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    return "";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "";
  if (!url.hostname) return "";
  // Truncating would produce a different, possibly misleading URL; storing nothing is safer.
  return url.href.length > maxLength ? "" : url.href;
}

export function checkEventName(
  name: unknown,
  maxLength: number,
): { name: string } | { error: FieldError } {
  if (typeof name !== "string") {
    return { error: { field: "name", message: "must be a string", reason: "INVALID_EVENT_NAME" } };
  }
  const trimmed = name.trim();
  if (trimmed === "") {
    return { error: { field: "name", message: "must not be empty", reason: "EMPTY_EVENT_NAME" } };
  }
  if (HAS_CONTROL_CHAR.test(trimmed)) {
    return {
      error: { field: "name", message: "must not contain control characters", reason: "INVALID_EVENT_NAME" },
    };
  }
  const length = [...trimmed].length;
  if (length > maxLength) {
    return {
      error: {
        field: "name",
        message: `is ${length} characters; at most ${maxLength} are allowed`,
        reason: "EVENT_NAME_TOO_LONG",
      },
    };
  }
  return { name: trimmed };
}
