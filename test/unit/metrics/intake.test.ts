// MetricIntake's pipeline with fakes for its catalog, series registry, diagnostics and Redis:
// the order of checks, auto-definition, the cardinality verdicts, request-key ids and the write.
import { describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import type { CardinalityDiagnostics, SeriesRegistry } from "../../../server/core/metrics/cardinality.js";
import type { MetricCatalog, SiteCatalog } from "../../../server/core/metrics/catalog.js";
import { MetricIntake } from "../../../server/core/metrics/intake.js";
import type { AcceptedMetricPoint, IncomingMetricPoint, MetricDefinitionView } from "../../../server/core/metrics/points.js";
import type { Principal } from "../../../server/core/roles.js";

const principal: Principal = { keyId: "k", organisationId: "o", role: "analyst", siteIds: [], actor: "test" };
const gauge = (name: string, over: Partial<MetricDefinitionView> = {}): MetricDefinitionView => ({ id: name, name, type: "gauge", tags: [], aggregationDefault: "last", retentionDays: 0, schema: {}, formula: null, ...over });
const point = (metricName: string, tags: Record<string, string> = {}, over: Partial<IncomingMetricPoint> = {}): IncomingMetricPoint => ({ metricName, value: 1, timestamp: undefined, source: "", tags, metadata: undefined, idempotencyKey: "", ...over });

function intakeWith(options: { definitions: MetricDefinitionView[]; cap?: number; full?: Set<string> }) {
  const definitions = new Map(options.definitions.map((d) => [d.name, d]));
  const defined: string[] = [];
  const recorded: [string, number][] = [];
  const written: AcceptedMetricPoint[][] = [];
  const catalog = {
    resolve: async (): Promise<SiteCatalog> => ({ definitions, maxCardinality: options.cap ?? 10, loadedAt: 0 }),
    autoDefine: async (_p: Principal, _site: string, name: string) => {
      defined.push(name);
      const d = gauge(name);
      definitions.set(name, d);
      return d;
    },
  } as unknown as MetricCatalog;
  const refuse = async (_site: string, _metric: string, candidates: { seriesId: string; tags: Record<string, string> }[]) =>
    new Set(candidates.filter((c) => options.full?.has(JSON.stringify(c.tags))).map((c) => c.seriesId));
  const registry = { admit: refuse, wouldRefuse: refuse } as unknown as SeriesRegistry;
  const diagnostics = { record: async (_s: string, metric: string, n: number) => void recorded.push([metric, n]) } as unknown as CardinalityDiagnostics;
  const redis = { pipeline: () => ({ set() {}, exec: async () => [] }) } as unknown as Redis;
  const intake = new MetricIntake({ catalog, registry, diagnostics, redis, prefix: "t", write: async (points) => void written.push(points) });
  return { intake, defined, recorded, written };
}

const site = (autoDefineMetrics = false) => ({ id: "s", organisationId: "o", autoDefineMetrics });

describe("MetricIntake", () => {
  it("accepts what passes, refuses the rest in point order, and writes once", async () => {
    const { intake, written } = intakeWith({ definitions: [gauge("depth")] });
    const result = await intake.accept(site(), principal, [point("depth"), point(""), point("nope"), point("depth", {}, { value: Number.POSITIVE_INFINITY })], 1000, "");
    expect(result.accepted.map((a) => a.index)).toEqual([0]);
    expect(result.errors.map((e) => [e.index, e.reason])).toEqual([
      [1, "METRIC_NAME_REQUIRED"],
      [2, "UNDEFINED_METRIC"],
      [3, "INVALID_VALUE"],
    ]);
    expect(written).toHaveLength(1);
    expect(written[0][0]).toMatchObject({ metric: "depth", ts: 1000, receivedAt: 1000 });
  });

  it("names key-less points after the request's Idempotency-Key", async () => {
    const { intake } = intakeWith({ definitions: [gauge("depth")] });
    const result = await intake.accept(site(), principal, [point("depth"), point("depth", {}, { idempotencyKey: "own" })], 1000, "req-9");
    expect(result.accepted.map((a) => a.pointId)).toEqual(["req-9/0", "own"]);
  });

  it("auto-defines unknown names only when the site allows it, and never in a dry run", async () => {
    const allowed = intakeWith({ definitions: [] });
    expect((await allowed.intake.accept(site(true), principal, [point("new.metric")], 1000, "")).errors).toEqual([]);
    expect(allowed.defined).toEqual(["new.metric"]);
    const dry = intakeWith({ definitions: [] });
    const prepared = await dry.intake.prepare(site(true), principal, [point("other.metric")], { receivedAt: 1000, defaultPointId: () => "", dryRun: true });
    expect(prepared.errors).toEqual([]);
    expect(dry.defined).toEqual([]);
  });

  it("refuses points of series beyond the cap and counts them, except in a dry run", async () => {
    const full = new Set([JSON.stringify({ region: "c" })]);
    const { intake, recorded, written } = intakeWith({ definitions: [gauge("requests")], cap: 2, full });
    const points = [point("requests", { region: "a" }), point("requests", { region: "c" }), point("requests", { region: "c" })];
    const result = await intake.accept(site(), principal, points, 1000, "");
    expect(result.errors.map((e) => [e.index, e.field, e.reason])).toEqual([
      [1, "tags", "CARDINALITY_LIMIT"],
      [2, "tags", "CARDINALITY_LIMIT"],
    ]);
    expect(result.errors[0].message).toContain("max_cardinality 2");
    expect(recorded).toEqual([["requests", 2]]);
    expect(written[0]).toHaveLength(1);
    await intake.prepare(site(), principal, points, { receivedAt: 1000, defaultPointId: () => "", dryRun: true });
    expect(recorded).toHaveLength(1);
  });
});
