// Metric points on their way in: what an arrival path hands over (IncomingMetricPoint), the
// checks against the metric's definition, and what is queued and stored (AcceptedMetricPoint).
// A refused point carries a typed reason and the field at fault, as refused events do.
import { canonicalTags, seriesIdOf, type Tags } from "./series.js";
import { schemaViolation } from "./schema.js";
import type { AggregationName } from "../management/metric-definitions.js";
import type { MetricPointRow } from "../../db/metric-points-store.js";

/** A point as Connect (MetricPoint) or an NDJSON line reads it, before any check. */
export interface IncomingMetricPoint {
  metricName: string;
  /** Undefined when the sender gave none (an NDJSON line without `value`). */
  value: number | undefined;
  /** Epoch ms, or undefined for the receive time. */
  timestamp: number | undefined;
  source: string;
  tags: Record<string, unknown>;
  metadata: Record<string, unknown> | undefined;
  idempotencyKey: string;
}

/** A checked point, as queued and stored (the store's row shape). Times are epoch milliseconds. */
export type AcceptedMetricPoint = MetricPointRow;

/** Why one point was refused, in the shape IngestMetricPoints and ValidateMetricPoints report. */
export interface PointError {
  index: number;
  /** The point's field at fault (`value`, `tags.country`); callers prefix the point's path. */
  field: string;
  message: string;
  reason: PointErrorReason;
}

export type PointErrorReason =
  | "METRIC_NAME_REQUIRED"
  | "INVALID_METRIC_NAME"
  | "UNDEFINED_METRIC"
  | "DERIVED_METRIC"
  | "INVALID_VALUE"
  | "INVALID_TIMESTAMP"
  | "TIMESTAMP_TOO_OLD"
  | "TIMESTAMP_IN_FUTURE"
  | "INVALID_TAG"
  | "TAG_NOT_ALLOWED"
  | "TOO_MANY_TAGS"
  | "INVALID_SOURCE"
  | "INVALID_METADATA"
  | "INVALID_IDEMPOTENCY_KEY"
  | "CARDINALITY_LIMIT";

/** What ingestion needs of a metric definition. */
export interface MetricDefinitionView {
  id: string;
  name: string;
  type: "counter" | "gauge" | "histogram" | "timing" | "event";
  /** Allowed tag keys; empty allows any. */
  tags: string[];
  aggregationDefault: AggregationName;
  /** Days raw points are kept, with the organisation's default applied; 0 keeps them for ever. */
  retentionDays: number;
  schema: Record<string, unknown>;
  /** Set for derived KPIs, which are computed and never ingested. */
  formula: string | null;
}

export const METRIC_NAME = /^[a-z][a-z0-9_.]{0,119}$/;
export const TAG_KEY = /^[a-z_][a-z0-9_]{0,63}$/i;

export const POINT_LIMITS = {
  maxTags: 20,
  maxTagValueLength: 200,
  maxSourceLength: 200,
  maxIdempotencyKeyLength: 128,
  maxMetadataBytes: 8 * 1024,
  /** How far in the future a timestamp may be (clock skew). */
  maxFutureMs: 3600_000,
  /** Points before this are refused outright, whatever the retention. */
  earliestMs: Date.UTC(2000, 0, 1),
};

const DAY_MS = 86_400_000;
const CONTROL = /[\u0000-\u001f\u007f]/;

type Refusal = { error: Omit<PointError, "index"> };

const refuse = (field: string, reason: PointErrorReason, message: string): Refusal => ({ error: { field, message, reason } });

/** Checks the metric name's spelling; the definition lookup comes after. */
export function checkMetricName(name: string): Refusal | undefined {
  if (name.trim() === "") return refuse("metric_name", "METRIC_NAME_REQUIRED", "is required");
  if (!METRIC_NAME.test(name)) return refuse("metric_name", "INVALID_METRIC_NAME", `must start with a letter and hold only a-z, 0-9, "_" and "." (at most 120); got "${name.slice(0, 60)}"`);
  return undefined;
}

export function undefinedMetric(name: string): Refusal {
  return refuse("metric_name", "UNDEFINED_METRIC", `no metric named "${name}" is defined for this site; define it first (CreateMetricDefinition) or turn on the site's auto_define_metrics`);
}

function checkTags(tags: Record<string, unknown>, allowed: readonly string[]): { tags: Tags } | Refusal {
  const out: Tags = {};
  const entries = Object.entries(tags);
  if (entries.length > POINT_LIMITS.maxTags) return refuse("tags", "TOO_MANY_TAGS", `must hold at most ${POINT_LIMITS.maxTags} tags, got ${entries.length}`);
  for (const [key, raw] of entries) {
    if (!TAG_KEY.test(key)) return refuse("tags", "INVALID_TAG", `key "${key.slice(0, 60)}" must be letters, digits and "_" (at most 64)`);
    if (allowed.length > 0 && !allowed.includes(key)) return refuse(`tags.${key}`, "TAG_NOT_ALLOWED", `is not a tag of this metric (allowed: ${allowed.join(", ")})`);
    if (raw === null || raw === undefined) continue;
    if (typeof raw !== "string" && typeof raw !== "number" && typeof raw !== "boolean") return refuse(`tags.${key}`, "INVALID_TAG", "must be a string");
    const value = String(raw);
    if (value.length > POINT_LIMITS.maxTagValueLength) return refuse(`tags.${key}`, "INVALID_TAG", `must be at most ${POINT_LIMITS.maxTagValueLength} characters`);
    if (CONTROL.test(value)) return refuse(`tags.${key}`, "INVALID_TAG", "must not contain control characters");
    // An empty value is the same as no tag: both group as "" and both are one series.
    if (value !== "") out[key] = value;
  }
  return { tags: canonicalTags(out) };
}

export interface CheckContext {
  siteId: string;
  receivedAt: number;
  /** The point id to use when the point has no idempotency key of its own. */
  defaultPointId: () => string;
}

/**
 * Checks one point of a defined metric and builds what is stored, or says why it is refused.
 * The metric name must already have passed checkMetricName and found `definition`.
 */
export function checkPoint(point: IncomingMetricPoint, definition: MetricDefinitionView, ctx: CheckContext): { point: AcceptedMetricPoint } | Refusal {
  if (definition.formula) return refuse("metric_name", "DERIVED_METRIC", `"${definition.name}" is a derived KPI (${definition.formula}); it is computed from its metrics and cannot be ingested`);
  if (point.value === undefined || typeof point.value !== "number" || !Number.isFinite(point.value)) {
    return refuse("value", "INVALID_VALUE", "must be a finite number");
  }
  if ((definition.type === "counter" || definition.type === "timing") && point.value < 0) {
    return refuse("value", "INVALID_VALUE", `must not be negative for a ${definition.type} metric`);
  }
  let ts = ctx.receivedAt;
  if (point.timestamp !== undefined) {
    if (!Number.isFinite(point.timestamp)) return refuse("timestamp", "INVALID_TIMESTAMP", "is not a valid time");
    ts = Math.floor(point.timestamp);
    if (ts > ctx.receivedAt + POINT_LIMITS.maxFutureMs) return refuse("timestamp", "TIMESTAMP_IN_FUTURE", "is more than an hour in the future");
    if (ts < POINT_LIMITS.earliestMs) return refuse("timestamp", "TIMESTAMP_TOO_OLD", "is before 2000-01-01");
    if (definition.retentionDays > 0 && ts < ctx.receivedAt - definition.retentionDays * DAY_MS) {
      return refuse("timestamp", "TIMESTAMP_TOO_OLD", `is older than the metric's retention of ${definition.retentionDays} days`);
    }
  }
  const tags = checkTags(point.tags, definition.tags);
  if ("error" in tags) return tags;
  const source = point.source.trim();
  if (source.length > POINT_LIMITS.maxSourceLength) return refuse("source", "INVALID_SOURCE", `must be at most ${POINT_LIMITS.maxSourceLength} characters`);
  if (CONTROL.test(source)) return refuse("source", "INVALID_SOURCE", "must not contain control characters");
  let metadata: Record<string, unknown> | null = null;
  if (point.metadata !== undefined && Object.keys(point.metadata).length > 0) {
    if (Buffer.byteLength(JSON.stringify(point.metadata)) > POINT_LIMITS.maxMetadataBytes) {
      return refuse("metadata", "INVALID_METADATA", `must be at most ${POINT_LIMITS.maxMetadataBytes} bytes as JSON`);
    }
    metadata = point.metadata;
  }
  if (Object.keys(definition.schema).length > 0) {
    const problem = schemaViolation(definition.schema, metadata ?? {});
    if (problem) return refuse(problem.path, "INVALID_METADATA", `${problem.problem} (the metric's schema)`);
  }
  const key = point.idempotencyKey.trim();
  if (key.length > POINT_LIMITS.maxIdempotencyKeyLength) return refuse("idempotency_key", "INVALID_IDEMPOTENCY_KEY", `must be at most ${POINT_LIMITS.maxIdempotencyKeyLength} characters`);
  if (CONTROL.test(key)) return refuse("idempotency_key", "INVALID_IDEMPOTENCY_KEY", "must not contain control characters");
  return {
    point: {
      siteId: ctx.siteId,
      metric: definition.name,
      seriesId: seriesIdOf(tags.tags),
      tags: tags.tags,
      ts,
      pointId: key || ctx.defaultPointId(),
      value: point.value,
      source,
      metadata,
      receivedAt: ctx.receivedAt,
    },
  };
}
