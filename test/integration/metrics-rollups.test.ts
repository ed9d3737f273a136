// Metric rollups and retention against real Postgres and Redis, in a database of their own (so
// partition drops see only this file's metrics): the scheduled jobs exist, re-rolling is
// idempotent, and retention drops whole partitions when every metric allows it and deletes older
// rows of shorter-lived metrics otherwise, with their rollups and idle series.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Job } from "bullmq";
import { Queue } from "bullmq";
import { MetricDefinition } from "../../server/db/entities/index.js";
import { seriesIdOf } from "../../server/core/metrics/series.js";
import { type MetricPointRow, storeMetricPoints } from "../../server/db/metric-points-store.js";
import { sqlPool } from "../../server/db/orm.js";
import { partitionName } from "../../server/db/partitions.js";
import { Site } from "../../server/db/entities/index.js";
import { createMetricMaintenanceProcessor } from "../../workers/processors/metric-maintenance.js";
import { type MetricMaintenanceJob, QUEUES } from "../../workers/queues.js";
import { startTestBeacon, type TestBeacon } from "../support/beacon.js";

const HOUR = 3_600_000;
const DAY = 86_400_000;
const NOW = Math.floor(Date.now() / HOUR) * HOUR + 30 * 60_000;

let beacon: TestBeacon;
let siteId: string;

const job = (data: MetricMaintenanceJob) => ({ data, attemptsMade: 0, opts: {} }) as unknown as Job<MetricMaintenanceJob>;

function point(metric: string, ts: number, value: number, tags: Record<string, string> = { region: "eu" }): MetricPointRow {
  return { siteId, metric, seriesId: seriesIdOf(tags), tags, ts, pointId: `${metric}-${ts}-${value}`, value, source: "", metadata: null, receivedAt: NOW };
}

async function rows(sql: string, params: unknown[] = []) {
  const pool = await sqlPool(beacon.orm);
  return (await pool.query(sql, params)).rows;
}

async function define(name: string, retentionDays: number) {
  const em = beacon.orm.em.fork();
  em.create(MetricDefinition, { organisationId: beacon.organisationId, siteId: null, name, type: "gauge", aggregationDefault: "last", retentionDays, formula: null });
  await em.flush();
}

beforeAll(async () => {
  beacon = await startTestBeacon("metrics-rollups", { workers: true });
  const em = beacon.orm.em.fork();
  const site = em.create(Site, { organisationId: beacon.organisationId, trackingId: "BK-ROLLUPS1", domain: "rollups.example.com", name: "rollups", timezone: "UTC", currency: "USD", industry: "", settings: {} });
  await em.flush();
  siteId = site.id;
}, 120_000);

afterAll(async () => {
  await beacon?.stop();
});

describe("metric rollups", () => {
  it("schedules the rollup and retention jobs", async () => {
    const queue = new Queue(QUEUES.metricMaintenance, { connection: beacon.connection(), prefix: beacon.prefix });
    try {
      const schedulers = await queue.getJobSchedulers();
      expect(schedulers.map((s) => s.key).sort()).toEqual(["metric-retention", "metric-rollup"]);
    } finally {
      await queue.close();
    }
  });

  it("rolls every complete marked hour from raw points, and rolling again changes nothing", async () => {
    await define("cpu", 0);
    const pool = await sqlPool(beacon.orm);
    const base = NOW - 5 * HOUR - 30 * 60_000;
    const points = [
      point("cpu", base + 1000, 3), point("cpu", base + 2000, 7), point("cpu", base + HOUR + 5, 1),
      point("cpu", base + HOUR + 9, 4, { region: "us" }), point("cpu", NOW - 60_000, 100),
    ];
    expect(await storeMetricPoints(pool, points)).toBe(5);
    expect(await storeMetricPoints(pool, points)).toBe(0);
    const processor = createMetricMaintenanceProcessor(beacon.orm, () => NOW);
    // The current hour is not complete: it stays pending (queries read it raw). (The workers'
    // scheduled run may roll some hours first; the outcome is the same.)
    expect((await processor(job({ kind: "metric-rollup", maxHours: 100 }))).rolledHours).toBeLessThanOrEqual(2);
    const rolled = await rows("select (extract(epoch from hour) * 1000)::float8 as hour, count::int, sum, min, max, last_value from metric_rollups where site_id = $1 and metric = 'cpu' order by hour, series_id", [siteId]);
    expect(rolled).toEqual(
      expect.arrayContaining([
        { hour: base, count: 2, sum: 10, min: 3, max: 7, last_value: 7 },
        { hour: base + HOUR, count: 1, sum: 1, min: 1, max: 1, last_value: 1 },
        { hour: base + HOUR, count: 1, sum: 4, min: 4, max: 4, last_value: 4 },
      ]),
    );
    expect(rolled).toHaveLength(3);
    expect((await rows("select count(*)::int as n from metric_rollup_pending where site_id = $1", [siteId]))[0].n).toBe(1);
    // Marking the hours again (as a retried batch might) and re-rolling leaves the same rollups.
    await pool.query("insert into metric_rollup_pending (site_id, metric, hour, marked_at) select site_id, metric, hour, now() from metric_rollups on conflict do nothing");
    await processor(job({ kind: "metric-rollup", maxHours: 100 }));
    expect((await rows("select count(*)::int as n from metric_rollup_pending where site_id = $1", [siteId]))[0].n).toBe(1);
    expect(await rows("select (extract(epoch from hour) * 1000)::float8 as hour, count::int, sum, min, max, last_value from metric_rollups where site_id = $1 and metric = 'cpu' order by hour, series_id", [siteId])).toEqual(rolled);
  });
});

describe("metric retention", () => {
  it("deletes older rows of shorter-lived metrics while a metric is kept for ever", async () => {
    await define("short_lived", 3);
    const pool = await sqlPool(beacon.orm);
    await storeMetricPoints(pool, [point("short_lived", NOW - 5 * DAY, 1), point("short_lived", NOW - DAY, 2), point("short_lived", NOW - 5 * DAY, 9, { region: "gone" })]);
    await createMetricMaintenanceProcessor(beacon.orm, () => NOW)(job({ kind: "metric-rollup", maxHours: 100 }));
    const outcome = await createMetricMaintenanceProcessor(beacon.orm, () => NOW)(job({ kind: "metric-retention" }));
    // "cpu" is kept for ever, so no partition may go.
    expect(outcome.droppedPartitions).toEqual([]);
    expect(outcome.deletedPoints).toBe(2);
    expect(await rows("select value from metric_points where site_id = $1 and metric = 'short_lived'", [siteId])).toEqual([{ value: 2 }]);
    expect((await rows("select count(*)::int as n from metric_rollups where site_id = $1 and metric = 'short_lived' and hour < $2", [siteId, new Date(NOW - 3 * DAY).toISOString()]))[0].n).toBe(0);
    // The series with no point left is gone, freeing room under max_cardinality.
    expect((await rows("select tags from metric_series where site_id = $1 and metric = 'short_lived'", [siteId])).map((r) => r.tags)).toEqual([{ region: "eu" }]);
  });

  it("drops whole partitions once every metric has a finite retention", async () => {
    const em = beacon.orm.em.fork();
    await em.nativeUpdate(MetricDefinition, { name: "cpu" }, { retentionDays: 10 });
    const pool = await sqlPool(beacon.orm);
    await storeMetricPoints(pool, [point("cpu", NOW - 12 * DAY, 5), point("short_lived", NOW - 12 * DAY + 1, 5)]);
    const oldDay = partitionName("metric_points", new Date(NOW - 12 * DAY));
    expect(await rows("select to_regclass($1)::text as name", [oldDay])).toEqual([{ name: oldDay }]);
    const outcome = await createMetricMaintenanceProcessor(beacon.orm, () => NOW)(job({ kind: "metric-retention" }));
    const dropped = outcome.droppedPartitions ?? [];
    expect(dropped).toContain(oldDay);
    expect(dropped.every((name) => name < partitionName("metric_points", new Date(NOW - 10 * DAY)))).toBe(true);
    expect(await rows("select to_regclass($1)::text as name", [oldDay])).toEqual([{ name: null }]);
    // The longer-lived metric keeps its newer points.
    expect((await rows("select count(*)::int as n from metric_points where site_id = $1 and metric = 'cpu'", [siteId]))[0].n).toBe(5);
    // A point for a dropped day later finds its partition recreated.
    expect(await storeMetricPoints(pool, [point("cpu", NOW - 12 * DAY + 7, 1)])).toBe(1);
  });
});
