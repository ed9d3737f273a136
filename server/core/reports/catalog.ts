// What a report may ask for. Every dimension and metric a request names is looked up here; the
// SQL a name stands for is fixed in this file, and request values only ever travel as parameters.
import { InvalidArgumentError } from "../errors.js";
import type { TimeBucket } from "./time.js";

export const METRICS = [
  "pageviews",
  "events",
  "visitors",
  "visits",
  "bounce_rate",
  "visit_duration",
  "views_per_visit",
  "conversions",
  "conversion_rate",
  "revenue",
] as const;
export type MetricName = (typeof METRICS)[number];

/** Metrics computed over visits (sessions), attributed to the time the visit started. */
export const SESSION_METRICS: ReadonlySet<MetricName> = new Set(["visits", "bounce_rate", "visit_duration", "views_per_visit"]);

/** Event-level dimensions: the events column each reads. */
export const EVENT_DIMENSIONS: Record<string, string> = {
  page: "pathname",
  hostname: "hostname",
  referrer: "referrer",
  country: "country",
  region: "region",
  city: "city",
  browser: "browser",
  browser_version: "browser_version",
  os: "os",
  os_version: "os_version",
  device_type: "device_type",
  screen: "screen",
  language: "language",
  event_name: "name",
};

/**
 * Dimensions that describe the visit, read from the sessions table: where it entered and left,
 * and where it came from (the first event's source and campaign, as Plausible and GA4 do; an
 * event-level source would be "direct" for every page after the first).
 */
export const SESSION_DIMENSIONS: Record<string, string> = {
  entry_page: "entry_page",
  exit_page: "exit_page",
  source: "referrer_source",
  medium: "referrer_medium",
  utm_source: "utm_source",
  utm_medium: "utm_medium",
  utm_campaign: "utm_campaign",
  utm_term: "utm_term",
  utm_content: "utm_content",
};

export const TIME_DIMENSIONS: readonly TimeBucket[] = ["hour", "day", "week", "month"];

/** Finer buckets, for time series only (not a report dimension). */
export type FineBucket = "minute" | "five_minutes";

/** Dimensions the rollups keep (beside the whole-site total, dimension ''). */
export const ROLLUP_DIMENSIONS = [
  "page",
  "entry_page",
  "exit_page",
  "hostname",
  "source",
  "medium",
  "referrer",
  "utm_source",
  "utm_medium",
  "utm_campaign",
  "country",
  "region",
  "city",
  "browser",
  "os",
  "device_type",
  "event_name",
] as const;

export type DimensionKind =
  | { kind: "event"; name: string; column: string }
  | { kind: "session"; name: string; column: string }
  | { kind: "time"; name: TimeBucket | FineBucket }
  | { kind: "prop"; name: string; key: string }
  | { kind: "classification"; name: "classification" }
  | { kind: "goal"; name: "goal" };

export function dimension(name: string, field: string): DimensionKind {
  if (name in EVENT_DIMENSIONS) return { kind: "event", name, column: EVENT_DIMENSIONS[name] };
  if (name in SESSION_DIMENSIONS) return { kind: "session", name, column: SESSION_DIMENSIONS[name] };
  if ((TIME_DIMENSIONS as readonly string[]).includes(name)) return { kind: "time", name: name as TimeBucket };
  if (name === "classification") return { kind: "classification", name };
  if (name === "goal") return { kind: "goal", name };
  if (name.startsWith("prop:")) {
    const key = name.slice(5);
    if (key === "" || key.length > 120) throw new InvalidArgumentError(field, `"${name}" needs a property key of 1 to 120 characters`);
    return { kind: "prop", name, key };
  }
  throw new InvalidArgumentError(field, `unknown dimension "${name.slice(0, 60)}"; known: ${[...Object.keys(EVENT_DIMENSIONS), ...Object.keys(SESSION_DIMENSIONS), ...TIME_DIMENSIONS, "classification", "goal", "prop:<key>"].join(", ")}`);
}

export function metric(name: string, field: string): MetricName {
  if ((METRICS as readonly string[]).includes(name)) return name as MetricName;
  throw new InvalidArgumentError(field, `unknown metric "${name.slice(0, 60)}"; known: ${METRICS.join(", ")}`);
}

export const OPERATORS = ["equals", "not_equals", "contains", "not_contains", "starts_with", "regex", "in", "not_in"] as const;
export type FilterOperatorName = (typeof OPERATORS)[number];

export interface FilterCondition {
  dimension: DimensionKind;
  operator: FilterOperatorName;
  values: string[];
}

export type FilterNode =
  | { op: "and" | "or"; children: FilterNode[] }
  | { op: "not"; child: FilterNode }
  | { op: "condition"; condition: FilterCondition };

/** Tests one value against a condition, exactly as the SQL does (for rollup rows and tests). */
export function matchesCondition(value: string, condition: FilterCondition): boolean {
  const v = condition.values;
  switch (condition.operator) {
    case "equals":
      return value === v[0];
    case "not_equals":
      return value !== v[0];
    case "contains":
      return value.toLowerCase().includes(v[0].toLowerCase());
    case "not_contains":
      return !value.toLowerCase().includes(v[0].toLowerCase());
    case "starts_with":
      return value.startsWith(v[0]);
    case "regex":
      return new RegExp(v[0]).test(value);
    case "in":
      return v.includes(value);
    case "not_in":
      return !v.includes(value);
  }
}
