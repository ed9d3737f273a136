// Metric queries, planned: the request's fields checked (each problem an InvalidArgument naming
// its field) and turned into what the SQL needs: a half-open window [from, to) in epoch ms, a
// bucketing, tag filters and group-by keys, and whether hourly rollups may answer.
import { InvalidArgumentError } from "../errors.js";
import { AGGREGATIONS, type AggregationName } from "../management/metric-definitions.js";
import { TAG_KEY } from "./points.js";

export const GRANULARITIES = ["minute", "five_minutes", "hour", "day", "week", "month"] as const;
export type GranularityName = (typeof GRANULARITIES)[number];

export const FILTER_OPERATORS = ["equals", "not_equals", "contains", "not_contains", "starts_with", "regex", "in", "not_in"] as const;
export type FilterOperatorName = (typeof FILTER_OPERATORS)[number];

/** A filter as the request gave it (operator undefined when unset). */
export interface TagFilterInput {
  dimension: string;
  operator: FilterOperatorName | undefined;
  values: string[];
}

/** A checked condition on a tag. */
export interface TagFilter {
  dimension: string;
  operator: FilterOperatorName;
  values: string[];
}

export type Bucketing =
  /** Fixed-width UTC buckets. */
  | { kind: "fixed"; unit: "minute" | "five_minutes" | "hour"; widthMs: number }
  /** Days, ISO weeks or months in the site's time zone. */
  | { kind: "calendar"; unit: "day" | "week" | "month"; timeZone: string }
  /** One bucket for the whole window (Aggregate). */
  | { kind: "whole" };

/** One metric's values per group and bucket: the input of sql/metric-values.ts. */
export interface ValuesQuery {
  siteId: string;
  metric: string;
  aggregation: AggregationName;
  /** Window [from, to), epoch ms. */
  from: number;
  to: number;
  bucketing: Bucketing;
  groupBy: string[];
  filters: TagFilter[];
  /** Whether whole hours may be read from rollups (bucket edges fall on UTC hours). */
  useRollups: boolean;
}

export const MAX_BUCKETS = 10_000;
export const MAX_GROUP_BY = 5;
export const MAX_FILTERS = 20;
export const MAX_QUERY_METRICS = 20;

const HOUR_MS = 3600_000;
const DAY_MS = 86_400_000;
const FIXED_WIDTH = { minute: 60_000, five_minutes: 300_000, hour: HOUR_MS } as const;
const CALENDAR_DAYS = { day: 1, week: 7, month: 28 } as const;

export function checkAggregation(aggregation: string | undefined): AggregationName | undefined {
  if (aggregation === undefined) return undefined;
  if (!(AGGREGATIONS as readonly string[]).includes(aggregation)) throw new InvalidArgumentError("aggregation", `must be one of ${AGGREGATIONS.join(", ")}`);
  return aggregation as AggregationName;
}

export function checkMetricNames(names: readonly string[], field = "metrics"): string[] {
  if (names.length === 0) throw new InvalidArgumentError(field, "must name at least one metric");
  if (names.length > MAX_QUERY_METRICS) throw new InvalidArgumentError(field, `must name at most ${MAX_QUERY_METRICS} metrics`);
  names.forEach((name, i) => {
    if (name.trim() === "") throw new InvalidArgumentError(`${field}[${i}]`, "is empty");
  });
  return [...new Set(names.map((name) => name.trim()))];
}

export function checkGroupBy(groupBy: readonly string[]): string[] {
  if (groupBy.length > MAX_GROUP_BY) throw new InvalidArgumentError("group_by", `must hold at most ${MAX_GROUP_BY} tag keys`);
  groupBy.forEach((key, i) => {
    if (!TAG_KEY.test(key)) throw new InvalidArgumentError(`group_by[${i}]`, `must be a tag key (letters, digits and "_"), got "${key.slice(0, 60)}"`);
    if (groupBy.indexOf(key) !== i) throw new InvalidArgumentError(`group_by[${i}]`, `repeats "${key}"`);
  });
  return [...groupBy];
}

export function checkFilters(filters: readonly TagFilterInput[]): TagFilter[] {
  if (filters.length > MAX_FILTERS) throw new InvalidArgumentError("filters", `must hold at most ${MAX_FILTERS} filters`);
  return filters.map((f, i) => {
    const field = `filters[${i}]`;
    if (!TAG_KEY.test(f.dimension)) throw new InvalidArgumentError(`${field}.dimension`, `must be a tag key (letters, digits and "_"), got "${f.dimension.slice(0, 60)}"`);
    if (!f.operator) throw new InvalidArgumentError(`${field}.operator`, "is required");
    const multi = f.operator === "in" || f.operator === "not_in";
    if (multi ? f.values.length === 0 : f.values.length !== 1) {
      throw new InvalidArgumentError(`${field}.values`, multi ? "must hold at least one value" : "must hold exactly one value");
    }
    if (f.values.length > 1000) throw new InvalidArgumentError(`${field}.values`, "must hold at most 1,000 values");
    if (f.operator === "regex") {
      try {
        new RegExp(f.values[0]);
      } catch {
        throw new InvalidArgumentError(`${field}.values`, "is not a valid regular expression");
      }
    }
    return { dimension: f.dimension, operator: f.operator, values: [...f.values] };
  });
}

/** The default bucket width: hours for up to two days, days beyond (GetTimeSeries' contract). */
export function defaultGranularity(from: number, to: number): GranularityName {
  return to - from <= 2 * DAY_MS ? "hour" : "day";
}

// Time zones whose offset from UTC is (and was, since 1970) a whole number of hours at every
// instant: their calendar buckets start on UTC hours, so hourly rollups can fill them.
const wholeHourZones = new Map<string, boolean>();

export function hasWholeHourOffsets(timeZone: string): boolean {
  let known = wholeHourZones.get(timeZone);
  if (known === undefined) {
    const format = new Intl.DateTimeFormat("en-US", { timeZone, timeZoneName: "longOffset" });
    known = true;
    for (let t = Date.UTC(1970, 0, 1); t < Date.UTC(2040, 0, 1); t += 15 * DAY_MS) {
      const offset = format.formatToParts(t).find((part) => part.type === "timeZoneName")?.value ?? "GMT";
      if (/:(?!00)\d\d/.test(offset)) {
        known = false;
        break;
      }
    }
    wholeHourZones.set(timeZone, known);
  }
  return known;
}

export function bucketingOf(granularity: GranularityName, timeZone: string): Bucketing {
  if (granularity === "minute" || granularity === "five_minutes" || granularity === "hour") {
    return { kind: "fixed", unit: granularity, widthMs: FIXED_WIDTH[granularity] };
  }
  return { kind: "calendar", unit: granularity, timeZone };
}

/** Whether every bucket edge falls on a UTC hour, so whole hours can come from rollups. */
export function rollupsFit(bucketing: Bucketing): boolean {
  if (bucketing.kind === "whole") return true;
  if (bucketing.kind === "fixed") return bucketing.unit === "hour";
  return hasWholeHourOffsets(bucketing.timeZone);
}

/** Refuses a window that would make more than MAX_BUCKETS buckets (estimated for calendar units). */
export function checkBucketCount(bucketing: Bucketing, from: number, to: number): void {
  if (bucketing.kind === "whole") return;
  const width = bucketing.kind === "fixed" ? bucketing.widthMs : CALENDAR_DAYS[bucketing.unit] * DAY_MS;
  const buckets = Math.ceil((to - from) / width) + 1;
  if (buckets > MAX_BUCKETS) {
    throw new InvalidArgumentError("granularity", `would make about ${buckets} buckets, more than ${MAX_BUCKETS}; choose a coarser granularity or a shorter range`);
  }
}

/** Every fixed-width bucket start overlapping [from, to). */
export function fixedBucketStarts(widthMs: number, from: number, to: number): number[] {
  const starts: number[] = [];
  for (let t = Math.floor(from / widthMs) * widthMs; t < to; t += widthMs) starts.push(t);
  return starts;
}
