// Metric point intake: the steps every arrival path runs (IngestMetricPoints, ValidateMetricPoints,
// NDJSON bulk), in order: name → definition (or auto-define) → point checks → cardinality →
// pin duplicate times → durable write. A refused point carries a typed reason and its field.
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import type { Principal } from "../roles.js";
import type { CardinalityDiagnostics, SeriesRegistry } from "./cardinality.js";
import type { MetricCatalog } from "./catalog.js";
import { type AcceptedMetricPoint, checkMetricName, checkPoint, type IncomingMetricPoint, type MetricDefinitionView, type PointError, undefinedMetric } from "./points.js";

/** What intake needs of a site. */
export interface IntakeSite {
  id: string;
  organisationId: string;
  autoDefineMetrics: boolean;
}

export interface PrepareOptions {
  /** Receive time, epoch ms: the time of points without one. */
  receivedAt: number;
  /** The point id of the `index`-th point when it has no idempotency key. */
  defaultPointId: (index: number) => string;
  /** Define nothing, register no series, count nothing: ValidateMetricPoints. */
  dryRun: boolean;
}

export interface Prepared {
  accepted: { index: number; point: AcceptedMetricPoint }[];
  /** In point order. */
  errors: PointError[];
}

export interface AcceptResult {
  /** Point ids of the accepted points, by request index. */
  accepted: { index: number; pointId: string }[];
  errors: PointError[];
}

export interface MetricIntakeDeps {
  catalog: MetricCatalog;
  registry: SeriesRegistry;
  diagnostics: CardinalityDiagnostics;
  redis: Redis;
  prefix: string;
  /** Resolves once the points are durable (the metric ingest queue, through a buffer); accept() needs it. */
  write?: (points: AcceptedMetricPoint[]) => Promise<void>;
}

/** How long a point's idempotency key pins its first receive time, so a resend deduplicates. */
const DEDUPE_TTL_SECONDS = 7 * 24 * 3600;

/** A server-assigned point id: 96 random bits, short because it is stored with every point. */
export function newPointId(): string {
  return randomBytes(12).toString("base64url");
}

export class MetricIntake {
  constructor(private readonly deps: MetricIntakeDeps) {}

  /** Checks points against their definitions and the cardinality cap; stores nothing. */
  async prepare(site: IntakeSite, principal: Principal, points: readonly IncomingMetricPoint[], options: PrepareOptions): Promise<Prepared> {
    const errors: PointError[] = [];
    const named: { index: number; point: IncomingMetricPoint }[] = [];
    points.forEach((point, index) => {
      const refusal = checkMetricName(point.metricName);
      if (refusal) errors.push({ index, ...refusal.error });
      else named.push({ index, point });
    });

    const names = new Set(named.map(({ point }) => point.metricName));
    const catalog = await this.deps.catalog.resolve(site.organisationId, site.id, names);
    const definitions = new Map<string, MetricDefinitionView>();
    for (const name of names) {
      let definition = catalog.definitions.get(name);
      if (!definition && site.autoDefineMetrics) {
        definition = options.dryRun ? autoDefinitionPreview(name) : await this.deps.catalog.autoDefine(principal, site.id, name);
      }
      if (definition) definitions.set(name, definition);
    }

    const checked: { index: number; point: AcceptedMetricPoint }[] = [];
    for (const { index, point } of named) {
      const definition = definitions.get(point.metricName);
      const result = definition
        ? checkPoint(point, definition, { siteId: site.id, receivedAt: options.receivedAt, defaultPointId: () => options.defaultPointId(index) })
        : undefinedMetric(point.metricName);
      if ("error" in result) errors.push({ index, ...result.error });
      else checked.push({ index, point: result.point });
    }

    const refused = await this.checkCardinality(site.id, checked.map((c) => c.point), catalog.maxCardinality, options.dryRun);
    const accepted = checked.filter(({ index, point }) => {
      if (!refused.has(`${point.metric}/${point.seriesId}`)) return true;
      errors.push({
        index,
        field: "tags",
        reason: "CARDINALITY_LIMIT",
        message: `metric "${point.metric}" already has the most distinct tag combinations this organisation allows (max_cardinality ${catalog.maxCardinality}); these tags would add another`,
      });
      return false;
    });
    errors.sort((a, b) => a.index - b.index);
    return { accepted, errors };
  }

  /**
   * Checks and accepts points; resolves once the accepted ones are durable. Points without an
   * idempotency key get `requestKey/index` when the request had one (Idempotency-Key), so a
   * retried request stores nothing twice.
   */
  async accept(site: IntakeSite, principal: Principal, points: readonly IncomingMetricPoint[], receivedAt: number, requestKey: string): Promise<AcceptResult> {
    const write = this.deps.write;
    if (!write) throw new Error("this MetricIntake has no queue to write to");
    const key = requestKey.trim();
    const prepared = await this.prepare(site, principal, points, {
      receivedAt,
      defaultPointId: (index) => (key ? `${key}/${index}` : newPointId()),
      dryRun: false,
    });
    if (prepared.accepted.length > 0) {
      await this.pinDuplicateTimes(prepared.accepted.filter(({ index }) => points[index].timestamp === undefined && (key !== "" || points[index].idempotencyKey.trim() !== "")).map((a) => a.point));
      await write(prepared.accepted.map((a) => a.point));
    }
    return { accepted: prepared.accepted.map(({ index, point }) => ({ index, pointId: point.pointId })), errors: prepared.errors };
  }

  /** `metric/seriesId` of every series refused for cardinality. */
  private async checkCardinality(siteId: string, points: AcceptedMetricPoint[], cap: number, dryRun: boolean): Promise<Set<string>> {
    const byMetric = new Map<string, Map<string, AcceptedMetricPoint>>();
    for (const point of points) {
      let series = byMetric.get(point.metric);
      if (!series) byMetric.set(point.metric, (series = new Map()));
      if (!series.has(point.seriesId)) series.set(point.seriesId, point);
    }
    const refused = new Set<string>();
    for (const [metric, series] of byMetric) {
      const candidates = [...series.values()].map((p) => ({ seriesId: p.seriesId, tags: p.tags }));
      const ids = dryRun ? await this.deps.registry.wouldRefuse(siteId, metric, candidates, cap) : await this.deps.registry.admit(siteId, metric, candidates, cap);
      for (const id of ids) refused.add(`${metric}/${id}`);
      if (!dryRun && ids.size > 0) {
        const count = points.filter((p) => p.metric === metric && ids.has(p.seriesId)).length;
        // Diagnostics are informational: failing to count must not fail the request.
        await this.deps.diagnostics.record(siteId, metric, count).catch(() => {});
      }
    }
    return refused;
  }

  /**
   * A resent point with an idempotency key but no timestamp would get a new receive time and so
   * escape the (site, metric, ts, point id) key; its first time is pinned in Redis instead.
   */
  private async pinDuplicateTimes(points: AcceptedMetricPoint[]): Promise<void> {
    if (points.length === 0) return;
    const pipeline = this.deps.redis.pipeline();
    for (const p of points) pipeline.set(`${this.deps.prefix}:metric-dedupe:${p.siteId}:${p.metric}:${p.pointId}`, String(p.ts), "EX", DEDUPE_TTL_SECONDS, "NX", "GET");
    const replies = (await pipeline.exec()) ?? [];
    replies.forEach(([err, previous], i) => {
      if (!err && typeof previous === "string") points[i].ts = Number(previous);
    });
  }
}

/** How a name auto_define_metrics would define looks to a dry run. */
function autoDefinitionPreview(name: string): MetricDefinitionView {
  return { id: "", name, type: "gauge", tags: [], aggregationDefault: "last", retentionDays: 0, schema: {}, formula: null };
}
