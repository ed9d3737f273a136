// Metrics and KPIs end to end (issue 5): a real server on port 0 with its BullMQ workers, real
// Postgres and Redis. Points go in through IngestMetricPoints and NDJSON bulk ingestion, and come
// back through GetTimeSeries, Aggregate, QueryInstant and SearchSeries: 002 §14's example,
// percentiles against a brute-force computation, derived KPIs, the cardinality cap, rollups,
// idempotency, freshness and caching, and InvalidArgument naming the field for bad input.
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Aggregation, ErrorDetailSchema, FilterOperator, Granularity } from "../../gen/beacon/v1/common_pb.js";
import type { MetricPointSchema } from "../../gen/beacon/v1/event_pb.js";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { MetricType } from "../../gen/beacon/v1/metric_definition_pb.js";
import type { GetTimeSeriesResponse } from "../../gen/beacon/v1/reporting_service_pb.js";
import { ReportingService } from "../../gen/beacon/v1/reporting_service_pb.js";
import { BulkIngestState, TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";
import { CardinalityDiagnostics } from "../../server/core/metrics/cardinality.js";
import { rollUpPendingHours } from "../../server/db/metric-points-store.js";
import { sqlPool } from "../../server/db/orm.js";
import { startTestBeacon, type TestBeacon } from "../support/beacon.js";

type PointInit = MessageInitShape<typeof MetricPointSchema>;

const HOUR = 3_600_000;
const DAY = 86_400_000;
const TODAY = Math.floor(Date.now() / DAY) * DAY;
const iso = (text: string) => Date.parse(text);

let beacon: TestBeacon;
let dataDir: string;
let admin: Client<typeof ManagementService>;
let tracking: Client<typeof TrackingService>;
let reporting: Client<typeof ReportingService>;
let siteId: string;

function withKey(key: string): Interceptor {
  return (next) => (req) => {
    req.header.set("Authorization", `Bearer ${key}`);
    return next(req);
  };
}

function clients(key: string, headers: Record<string, string> = {}) {
  const transport = createConnectTransport({
    baseUrl: beacon.baseUrl,
    httpVersion: "1.1",
    interceptors: [
      withKey(key),
      (next) => (req) => {
        for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
        return next(req);
      },
    ],
  });
  return { management: createClient(ManagementService, transport), tracking: createClient(TrackingService, transport), reporting: createClient(ReportingService, transport) };
}

async function failure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** Fails unless `call` fails with InvalidArgument naming `field`. */
async function expectInvalid(call: Promise<unknown>, field: string): Promise<void> {
  const err = await failure(call);
  expect(Code[err.code], err.rawMessage).toBe("InvalidArgument");
  expect(err.findDetails(ErrorDetailSchema)[0]?.field, err.rawMessage).toBe(field);
}

async function count(sql: string, params: unknown[]): Promise<number> {
  const pool = await sqlPool(beacon.orm);
  const { rows } = await pool.query(sql, params);
  return Number(rows[0].n);
}

/** Waits until the workers have stored `expected` points of `metric` for the site. */
async function storedPoints(metric: string, expected: number, site = siteId): Promise<void> {
  const deadline = Date.now() + 30_000;
  let n = -1;
  while (Date.now() < deadline) {
    n = await count("select count(*) as n from metric_points where site_id = $1 and metric = $2", [site, metric]);
    if (n >= expected) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(n).toBe(expected);
}

async function ingest(points: PointInit[], client = tracking, site = siteId) {
  const ids: string[] = [];
  for (let i = 0; i < points.length; i += 1000) {
    const response = await client.ingestMetricPoints({ siteId: site, points: points.slice(i, i + 1000) });
    expect(response.errors, JSON.stringify(response.errors)).toEqual([]);
    ids.push(...response.ids);
  }
  return ids;
}

async function rollUpEverything(): Promise<number> {
  const pool = await sqlPool(beacon.orm);
  let total = 0;
  for (let rolled = -1; rolled !== 0; total += rolled) rolled = await rollUpPendingHours(pool, new Date(), 500);
  return total;
}

/** Groups as plain objects: key → [bucket ISO time, values][]. */
function plain(response: GetTimeSeriesResponse) {
  return Object.fromEntries(
    response.groups.map((g) => [JSON.stringify(g.key), g.buckets.map((b) => [timestampDate(b.time!).toISOString(), { ...b.values }] as const)]),
  );
}

/** A deterministic pseudo-random sequence (mulberry32), so failures reproduce. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Postgres' percentile_cont: linear interpolation between the closest ranks. */
function percentileCont(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = p * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "beacon-metrics-"));
  mkdirSync(join(dataDir, "imports"));
  beacon = await startTestBeacon("metrics", { workers: true, env: { BEACON_DATA_DIR: dataDir } });
  admin = clients(beacon.adminKey).management;
  const analyst = clients(await beacon.makeKey("analyst"));
  tracking = analyst.tracking;
  reporting = analyst.reporting;
  siteId = (await admin.createSite({ domain: "shop.example.com", timezone: "UTC" })).site!.id;
  for (const name of ["orders_count", "revenue_gross"]) {
    await admin.createMetricDefinition({ name, type: MetricType.COUNTER, tags: ["country", "channel"], unit: name === "orders_count" ? "count" : "USD_minor" });
  }
  await admin.createMetricDefinition({ name: "aov", formula: "revenue_gross / orders_count" });
  await admin.createMetricDefinition({ name: "aov_k", formula: "aov / 1000" });
  await admin.createMetricDefinition({ name: "latency_ms", type: MetricType.TIMING, tags: ["endpoint"] });
  await admin.createMetricDefinition({ name: "queue_depth", type: MetricType.GAUGE });
}, 120_000);

afterAll(async () => {
  await beacon?.stop();
});

describe("002 §14: KPI time series", () => {
  const countries = ["GB", "IE", "US"];
  const channels = ["web", "mobile", "store"];
  /** Expected sums per country and day over the web and mobile channels. */
  const expected: Record<string, { orders: number; revenue: number }[]> = { GB: [], IE: [], US: [] };
  /** Every orders_count point of the web and mobile channels inside the window. */
  const ordersIn: { country: string; day: number; ts: number; value: number }[] = [];

  beforeAll(async () => {
    const points: PointInit[] = [];
    for (let day = 0; day < 7; day++) {
      countries.forEach((country, c) => {
        expected[country][day] = { orders: 0, revenue: 0 };
        channels.forEach((channel, h) => {
          for (const hour of [0, 9, 23]) {
            const orders = 10 + day * 3 + c * 7 + h + hour;
            const revenue = orders * 2500 + day * 11;
            // Channels a minute apart, so "last" has one answer.
            const ts = iso("2025-08-01T00:00:00Z") + day * DAY + hour * HOUR + 30 * 60_000 + h * 60_000;
            const timestamp = timestampFromMs(ts);
            const tags = { country, channel };
            points.push({ metricName: "orders_count", value: orders, timestamp, tags }, { metricName: "revenue_gross", value: revenue, timestamp, tags });
            if (channel !== "store") {
              ordersIn.push({ country, day, ts, value: orders });
              expected[country][day].orders += orders;
              expected[country][day].revenue += revenue;
            }
          }
        });
      });
    }
    // Just outside the window on either side, and inside the last second but after its start.
    const edge = (text: string) => ({ metricName: "orders_count", value: 1000, timestamp: timestampFromMs(iso(text)), tags: { country: "GB", channel: "web" } });
    points.push(edge("2025-07-31T23:59:59.999Z"), edge("2025-08-08T00:00:00Z"), edge("2025-08-07T23:59:59.500Z"));
    await ingest(points);
    await storedPoints("orders_count", 7 * 3 * 3 * 3 + 3);
    await storedPoints("revenue_gross", 7 * 3 * 3 * 3);
  });

  const request = (over: Record<string, unknown> = {}) => ({
    siteId,
    metrics: ["orders_count", "revenue_gross"],
    start: timestampFromMs(iso("2025-08-01T00:00:00Z")),
    end: timestampFromMs(iso("2025-08-07T23:59:59Z")),
    granularity: Granularity.DAY,
    groupBy: ["country"],
    filters: [{ dimension: "channel", operator: FilterOperator.IN, values: ["web", "mobile"] }],
    aggregation: Aggregation.SUM,
    maxStalenessSeconds: 30,
    ...over,
  });

  const expectedGroups = (only = countries) =>
    Object.fromEntries(
      only.map((country) => [
        JSON.stringify({ country }),
        expected[country].map((sums, day) => [new Date(iso("2025-08-01T00:00:00Z") + day * DAY).toISOString(), { orders_count: sums.orders, revenue_gross: sums.revenue }]),
      ]),
    );

  it("returns exactly the expected sums per country and day, with freshness", async () => {
    const response = await reporting.getTimeSeries(request({ forceFresh: true }));
    expect(plain(response)).toEqual(expectedGroups());
    expect(response.queryId).toMatch(/^q_/);
    expect(Math.abs(timestampDate(response.calculatedAt!).getTime() - Date.now())).toBeLessThan(60_000);
    expect(response.dataFreshnessSeconds).toBeGreaterThanOrEqual(0n);
  });

  it("answers the same from hourly rollups once the hours are rolled", async () => {
    // (The workers' scheduled rollup may take some of the hours first; either way all get rolled.)
    await rollUpEverything();
    expect(await count("select count(*) as n from metric_rollups where site_id = $1 and metric = 'orders_count'", [siteId])).toBeGreaterThan(0);
    expect(await count("select count(*) as n from metric_rollup_pending where site_id = $1 and metric = 'orders_count'", [siteId])).toBe(0);
    const response = await reporting.getTimeSeries(request({ forceFresh: true }));
    expect(plain(response)).toEqual(expectedGroups());
    // The whole hours really come from the rollups: a change there shows in the answer.
    const pool = await sqlPool(beacon.orm);
    const tamper = (delta: number) =>
      pool.query("update metric_rollups set sum = sum + $2 where site_id = $1 and metric = 'orders_count' and hour = '2025-08-02T09:00:00Z' and series_id = (select series_id from metric_series where site_id = $1 and metric = 'orders_count' and tags = '{\"channel\": \"web\", \"country\": \"GB\"}')", [siteId, delta]);
    await tamper(1_000_000);
    const tampered = await reporting.getTimeSeries(request({ forceFresh: true }));
    expect(tampered.groups[0].buckets[1].values.orders_count).toBe(expected.GB[1].orders + 1_000_000);
    await tamper(-1_000_000);
    // A late point marks its hour pending again; the answer includes it before any re-roll.
    await ingest([{ metricName: "orders_count", value: 5, timestamp: timestampFromMs(iso("2025-08-03T09:10:00Z")), tags: { country: "IE", channel: "mobile" } }]);
    await storedPoints("orders_count", 7 * 3 * 3 * 3 + 4);
    const late = await reporting.getTimeSeries(request({ forceFresh: true }));
    const groups = expectedGroups();
    (groups[JSON.stringify({ country: "IE" })][2][1] as { orders_count: number }).orders_count += 5;
    expect(plain(late)).toEqual(groups);
    expect(await count("select count(*) as n from metric_rollup_pending where site_id = $1 and metric = 'orders_count'", [siteId])).toBeLessThanOrEqual(1);
    await rollUpEverything();
    expect(await count("select count(*) as n from metric_rollup_pending where site_id = $1 and metric = 'orders_count'", [siteId])).toBe(0);
    expect(plain(await reporting.getTimeSeries(request({ forceFresh: true })))).toEqual(groups);
    expected.IE[2].orders += 5;
    ordersIn.push({ country: "IE", day: 2, ts: iso("2025-08-03T09:10:00Z"), value: 5 });
  });

  it.each([
    [Aggregation.AVG, (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length],
    [Aggregation.MIN, (v: number[]) => Math.min(...v)],
    [Aggregation.MAX, (v: number[]) => Math.max(...v)],
    [Aggregation.COUNT, (v: number[]) => v.length],
    [Aggregation.LAST, (_: number[], latest: number) => latest],
  ])("answers %s from rollups exactly as from the raw points", async (aggregation, reduce) => {
    const response = await reporting.getTimeSeries(request({ metrics: ["orders_count"], aggregation, forceFresh: true }));
    for (const group of response.groups) {
      group.buckets.forEach((bucket, day) => {
        const points = ordersIn.filter((p) => p.country === group.key.country && p.day === day);
        const latest = points.reduce((a, b) => (b.ts > a.ts ? b : a)).value;
        expect(bucket.values.orders_count).toBeCloseTo(reduce(points.map((p) => p.value), latest), 9);
      });
    }
  });

  it("counts calendar days in the site's time zone, across a daylight-saving change", async () => {
    const newYork = (await admin.createSite({ domain: "ny.example.com", timezone: "America/New_York" })).site!.id;
    const kolkata = (await admin.createSite({ domain: "in.example.com", timezone: "Asia/Kolkata" })).site!.id;
    const at = (text: string, value: number) => ({ metricName: "orders_count", value, timestamp: timestampFromMs(iso(text)), tags: { country: "US", channel: "web" } });
    // New York: EDT (UTC-4) until 2025-11-02 06:00Z, EST (UTC-5) after.
    const times = [at("2025-11-01T03:30:00Z", 1), at("2025-11-01T04:30:00Z", 2), at("2025-11-02T04:30:00Z", 4), at("2025-11-03T04:30:00Z", 8), at("2025-11-03T05:30:00Z", 16)];
    await ingest(times, tracking, newYork);
    await ingest(times, tracking, kolkata);
    await storedPoints("orders_count", 5, newYork);
    await storedPoints("orders_count", 5, kolkata);
    const days = async (site: string, start: string, end: string) => {
      const response = await reporting.getTimeSeries({ siteId: site, metrics: ["orders_count"], start: timestampFromMs(iso(start)), end: timestampFromMs(iso(end)), granularity: Granularity.DAY, forceFresh: true });
      return response.groups[0].buckets.map((b) => [timestampDate(b.time!).toISOString(), b.values.orders_count]);
    };
    const ny = [["2025-11-01T04:00:00.000Z", 2], ["2025-11-02T04:00:00.000Z", 12], ["2025-11-03T05:00:00.000Z", 16]];
    expect(await days(newYork, "2025-11-01T04:00:00Z", "2025-11-04T04:59:59.999Z")).toEqual(ny);
    await rollUpEverything();
    expect(await days(newYork, "2025-11-01T04:00:00Z", "2025-11-04T04:59:59.999Z")).toEqual(ny);
    // Kolkata is UTC+5:30 (no rollups can fill its days): 03:30Z is 09:00 local on 1 November.
    expect(await days(kolkata, "2025-10-31T18:30:00Z", "2025-11-03T18:29:59.999Z")).toEqual([
      ["2025-10-31T18:30:00.000Z", 3],
      ["2025-11-01T18:30:00.000Z", 4],
      ["2025-11-02T18:30:00.000Z", 24],
    ]);
  });

  it("filters by tag values as 002's {\"country\": [\"GB\", \"IE\"]}", async () => {
    const response = await reporting.getTimeSeries(
      request({ filters: [{ dimension: "country", operator: FilterOperator.IN, values: ["GB", "IE"] }, { dimension: "channel", operator: FilterOperator.NOT_EQUALS, values: ["store"] }], forceFresh: true }),
    );
    expect(plain(response)).toEqual(expectedGroups(["GB", "IE"]));
  });

  it("aggregates one number over a window, by the request's or the metric's aggregation", async () => {
    const gbRevenue = expected.GB.reduce((sum, d) => sum + d.revenue, 0);
    const gb = [{ dimension: "country", operator: FilterOperator.EQUALS, values: ["GB"] }, { dimension: "channel", operator: FilterOperator.IN, values: ["web", "mobile"] }];
    const byDates = await reporting.aggregate({ siteId, metric: "revenue_gross", dateRange: { startDate: "2025-08-01", endDate: "2025-08-07" }, filters: gb });
    expect(byDates.value).toBe(gbRevenue);
    const byTimes = await reporting.aggregate({ siteId, metric: "revenue_gross", timeRange: { start: timestampFromMs(iso("2025-08-01T00:00:00Z")), end: timestampFromMs(iso("2025-08-08T00:00:00Z")) }, filters: gb, aggregation: Aggregation.COUNT });
    expect(byTimes.value).toBe(7 * 2 * 3);
    const max = await reporting.aggregate({ siteId, metric: "orders_count", timeRange: { start: timestampFromMs(iso("2025-07-01T00:00:00Z")), end: timestampFromMs(iso("2025-09-01T00:00:00Z")) }, aggregation: Aggregation.MAX });
    expect(max.value).toBe(1000);
  });

  it("evaluates derived KPIs per bucket, and leaves out buckets where they divide by zero", async () => {
    const response = await reporting.getTimeSeries(
      request({ metrics: ["aov", "orders_count", "aov_k"], start: timestampFromMs(iso("2025-08-06T00:00:00Z")), end: timestampFromMs(iso("2025-08-09T23:59:59.999Z")), groupBy: [], filters: [{ dimension: "country", operator: FilterOperator.EQUALS, values: ["US"] }], forceFresh: true }),
    );
    expect(response.groups).toHaveLength(1);
    const buckets = response.groups[0].buckets.map((b) => ({ ...b.values }));
    expect(buckets).toHaveLength(4);
    for (const day of [5, 6]) {
      // All channels, as this query filters by country only.
      const orders = [0, 1, 2].reduce((sum, h) => sum + [0, 9, 23].reduce((s, hour) => s + 10 + day * 3 + 2 * 7 + h + hour, 0), 0);
      const revenue = orders * 2500 + 9 * day * 11;
      expect(buckets[day - 5].orders_count).toBe(orders);
      expect(buckets[day - 5].aov).toBeCloseTo(revenue / orders, 9);
      expect(buckets[day - 5].aov_k).toBeCloseTo(revenue / orders / 1000, 9);
    }
    expect(buckets[2]).toEqual({ orders_count: 0 });
    expect(buckets[3]).toEqual({ orders_count: 0 });
    const aggregate = await reporting.aggregate({ siteId, metric: "aov", dateRange: { startDate: "2025-08-09", endDate: "2025-08-10" } });
    expect(Number.isNaN(aggregate.value)).toBe(true);
  });

  it("serves a cached answer within max_staleness_seconds, and a fresh one with force_fresh", async () => {
    const query = request({ metrics: ["orders_count"], groupBy: [], filters: [], start: timestampFromMs(iso("2025-08-10T00:00:00Z")), end: timestampFromMs(iso("2025-08-10T23:59:59Z")) });
    const first = await reporting.getTimeSeries({ ...query, maxStalenessSeconds: 3600 });
    expect(first.groups[0].buckets[0].values.orders_count).toBe(0);
    await ingest([{ metricName: "orders_count", value: 7, timestamp: timestampFromMs(iso("2025-08-10T12:00:00Z")), tags: { country: "GB", channel: "web" } }]);
    await storedPoints("orders_count", 7 * 3 * 3 * 3 + 5);
    const cached = await reporting.getTimeSeries({ ...query, maxStalenessSeconds: 3600 });
    expect(cached.queryId).toBe(first.queryId);
    expect(cached.groups[0].buckets[0].values.orders_count).toBe(0);
    const fresh = await reporting.getTimeSeries({ ...query, maxStalenessSeconds: 3600, forceFresh: true });
    expect(fresh.groups[0].buckets[0].values.orders_count).toBe(7);
    expect(fresh.dataFreshnessSeconds).toBeLessThan(60n);
  });
});

describe("percentiles", () => {
  const values: Record<string, number[][]> = { "/checkout": [[], [], []], "/search": [[], [], []] };
  const start = TODAY - DAY + 10 * HOUR;

  beforeAll(async () => {
    const next = random(42);
    const points: PointInit[] = [];
    for (const endpoint of Object.keys(values)) {
      for (let hour = 0; hour < 3; hour++) {
        const n = 37 + hour * 50 + (endpoint === "/search" ? 13 : 0);
        for (let i = 0; i < n; i++) {
          const value = Math.round(next() * next() * 2000 * 1000) / 1000;
          values[endpoint][hour].push(value);
          points.push({ metricName: "latency_ms", value, timestamp: timestampFromMs(start + hour * HOUR + Math.floor(next() * HOUR)), tags: { endpoint } });
        }
      }
    }
    await ingest(points);
    await storedPoints("latency_ms", points.length);
    await rollUpEverything();
  });

  it.each([
    [Aggregation.P50, 0.5],
    [Aggregation.P95, 0.95],
    [Aggregation.P99, 0.99],
  ])("computes %s exactly from raw points, per bucket and group", async (aggregation, p) => {
    const response = await reporting.getTimeSeries({
      siteId,
      metrics: ["latency_ms"],
      start: timestampFromMs(start),
      end: timestampFromMs(start + 3 * HOUR - 1),
      granularity: Granularity.HOUR,
      groupBy: ["endpoint"],
      aggregation,
    });
    expect(response.groups.map((g) => g.key.endpoint)).toEqual(["/checkout", "/search"]);
    for (const group of response.groups) {
      expect(group.buckets).toHaveLength(3);
      group.buckets.forEach((bucket, hour) => {
        expect(bucket.values.latency_ms).toBeCloseTo(percentileCont(values[group.key.endpoint][hour], p), 9);
      });
    }
  });

  it("uses the definition's default aggregation (p95 for timings) when the request names none", async () => {
    const all = Object.values(values).flat(2);
    const response = await reporting.aggregate({ siteId, metric: "latency_ms", timeRange: { start: timestampFromMs(start), end: timestampFromMs(start + 3 * HOUR) } });
    expect(response.value).toBeCloseTo(percentileCont(all, 0.95), 9);
  });
});

describe("ingestion", () => {
  it("reports each refused point with its field and reason, and stores the rest", async () => {
    const now = timestampFromMs(Date.now() - 60_000);
    const response = await tracking.ingestMetricPoints({
      siteId,
      points: [
        { metricName: "queue_depth", value: 4, timestamp: now },
        { metricName: "no_such_metric", value: 1 },
        { metricName: "queue_depth", value: Number.NaN },
        { metricName: "aov", value: 1 },
        { metricName: "orders_count", value: 1, tags: { colour: "red" } },
        { metricName: "Bad Name", value: 1 },
        { metricName: "queue_depth", value: 1, timestamp: timestampFromMs(Date.now() + 3 * HOUR) },
      ],
    });
    expect(response.ids).toHaveLength(1);
    expect(response.errors.map((e) => [e.index, e.field, e.reason])).toEqual([
      [1, "points[1].metric_name", "UNDEFINED_METRIC"],
      [2, "points[2].value", "INVALID_VALUE"],
      [3, "points[3].metric_name", "DERIVED_METRIC"],
      [4, "points[4].tags.colour", "TAG_NOT_ALLOWED"],
      [5, "points[5].metric_name", "INVALID_METRIC_NAME"],
      [6, "points[6].timestamp", "TIMESTAMP_IN_FUTURE"],
    ]);
    const validation = await tracking.validateMetricPoints({ siteId, points: [{ metricName: "queue_depth", value: 1 }, { metricName: "nope", value: 1 }] });
    expect(validation.valid).toBe(1);
    expect(validation.errors.map((e) => e.field)).toEqual(["points[1].metric_name"]);
  });

  it("stores a point sent twice with the same idempotency key once, also without a timestamp", async () => {
    const point = { metricName: "queue_depth", value: 9, idempotencyKey: "depth-sample-1", tags: { queue: "emails" } };
    const [first] = await ingest([point]);
    const [second] = await ingest([point]);
    expect(first).toBe("depth-sample-1");
    expect(second).toBe(first);
    // A whole request retried with the same Idempotency-Key: its points get the key's ids.
    const retrying = clients(await beacon.makeKey("analyst"), { "Idempotency-Key": "batch-7" }).tracking;
    const batch = [{ metricName: "queue_depth", value: 1, tags: { queue: "sms" } }, { metricName: "queue_depth", value: 2, tags: { queue: "sms" } }];
    expect(await ingest(batch, retrying)).toEqual(["batch-7/0", "batch-7/1"]);
    await ingest(batch, retrying);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && (await count("select count(*) as n from metric_points where site_id = $1 and metric = 'queue_depth'", [siteId])) < 4) await new Promise((r) => setTimeout(r, 50));
    // Give a duplicate every chance to arrive before counting.
    await new Promise((r) => setTimeout(r, 500));
    expect(await count("select count(*) as n from metric_points where site_id = $1 and point_id in ('depth-sample-1', 'batch-7/0', 'batch-7/1')", [siteId])).toBe(3);
  });

  it("answers QueryInstant with each series' latest value, and finds series by tags page by page", async () => {
    const t = Date.now() - 10 * 60_000;
    await ingest([
      { metricName: "queue_depth", value: 10, timestamp: timestampFromMs(t), tags: { queue: "push" } },
      { metricName: "queue_depth", value: 30, timestamp: timestampFromMs(t + 2000), tags: { queue: "push" } },
      { metricName: "queue_depth", value: 20, timestamp: timestampFromMs(t + 1000), tags: { queue: "push" } },
    ]);
    const deadline = Date.now() + 30_000;
    let latest: number | undefined;
    while (Date.now() < deadline) {
      const instant = await reporting.queryInstant({ siteId, metrics: ["queue_depth"], filters: [{ dimension: "queue", operator: FilterOperator.EQUALS, values: ["push"] }] });
      latest = instant.values[0]?.value;
      if (latest === 30 && instant.values[0].time && timestampDate(instant.values[0].time).getTime() === t + 2000) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(latest).toBe(30);

    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await reporting.searchSeries({ siteId, metric: "orders_count", filters: [{ dimension: "channel", operator: FilterOperator.EQUALS, values: ["web"] }], pageSize: 2, pageToken });
      expect(page.series.length).toBeLessThanOrEqual(2);
      seen.push(...page.series.map((s) => `${s.metric}:${s.tags.country}/${s.tags.channel}`));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(seen.sort()).toEqual(["orders_count:GB/web", "orders_count:IE/web", "orders_count:US/web"]);
    const all = await reporting.searchSeries({ siteId, filters: [{ dimension: "queue", operator: FilterOperator.STARTS_WITH, values: ["e"] }] });
    expect(all.series.map((s) => s.tags.queue)).toEqual(["emails"]);
  });

  it("defines unknown metrics as gauges when the site allows it", async () => {
    const { site } = await admin.createSite({ domain: "auto.example.com", settings: { autoDefineMetrics: true } });
    const response = await tracking.ingestMetricPoints({ siteId: site!.id, points: [{ metricName: "signups.daily", value: 3 }] });
    expect(response.errors).toEqual([]);
    const { metricDefinition } = await admin.getMetricDefinition({ id: "signups.daily" });
    expect(metricDefinition?.type).toBe(MetricType.GAUGE);
    await storedPoints("signups.daily", 1, site!.id);
  });
});

describe("cardinality cap", () => {
  it("refuses points of new tag combinations beyond max_cardinality, and counts them", async () => {
    const organisationId = await beacon.makeOrganisation("capped");
    const own = clients(await beacon.makeKey("admin", { organisationId }));
    const { settings } = await own.management.getSettings({});
    await own.management.updateSettings({ etag: settings!.etag, maxCardinality: 3 });
    const site = (await own.management.createSite({ domain: "capped.example.com" })).site!.id;
    await own.management.createMetricDefinition({ name: "requests", type: MetricType.COUNTER });
    const point = (region: string) => ({ metricName: "requests", value: 1, tags: { region } });

    const dryRun = await own.tracking.validateMetricPoints({ siteId: site, points: ["a", "b", "c", "d"].map(point) });
    expect(dryRun.errors.map((e) => [e.field, e.reason])).toEqual([["points[3].tags", "CARDINALITY_LIMIT"]]);

    const first = await own.tracking.ingestMetricPoints({ siteId: site, points: ["a", "b", "a", "c", "d", "e", "d"].map(point) });
    expect(first.ids).toHaveLength(4);
    expect(first.errors.map((e) => [e.index, e.field, e.reason])).toEqual([
      [4, "points[4].tags", "CARDINALITY_LIMIT"],
      [5, "points[5].tags", "CARDINALITY_LIMIT"],
      [6, "points[6].tags", "CARDINALITY_LIMIT"],
    ]);
    expect(first.errors[0].message).toContain("max_cardinality 3");
    // Known series keep being accepted; new ones are still refused.
    const second = await own.tracking.ingestMetricPoints({ siteId: site, points: ["c", "f"].map(point) });
    expect(second.ids).toHaveLength(1);
    expect(second.errors.map((e) => e.reason)).toEqual(["CARDINALITY_LIMIT"]);
    expect(await new CardinalityDiagnostics(beacon.redis, beacon.prefix).read(site)).toEqual({ requests: 4 });
    expect(await count("select count(*) as n from metric_series where site_id = $1", [site])).toBe(3);
  });
});

describe("NDJSON bulk ingestion", () => {
  async function finished(jobId: string) {
    const deadline = Date.now() + 170_000;
    for (;;) {
      const job = await tracking.getBulkIngest({ jobId });
      if (job.state === BulkIngestState.DONE || job.state === BulkIngestState.FAILED || Date.now() > deadline) return job;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it("stores 100,000 points once, reaching DONE, with bad lines reported by line number", { timeout: 180_000 }, async () => {
    await admin.createMetricDefinition({ name: "bulk_orders", type: MetricType.COUNTER, tags: ["shop"] });
    const lines: string[] = [];
    const base = TODAY - 3 * DAY;
    let expectedSum = 0;
    for (let i = 0; i < 100_000; i++) {
      const value = (i % 17) + 1;
      expectedSum += value;
      lines.push(JSON.stringify({ metric_name: "bulk_orders", value, timestamp: new Date(base + i * 2000).toISOString(), tags: { shop: `s${i % 25}` }, idempotency_key: `line-${i}` }));
    }
    lines.splice(6, 0, "{not json");
    lines.splice(4999, 0, JSON.stringify({ metric_name: "bulk_orders", value: "lots" }));
    lines.push(JSON.stringify({ metric_name: "not_defined", value: 1 }));
    const path = join(dataDir, "imports", "orders.ndjson");
    writeFileSync(path, `${lines.join("\n")}\n`);

    const { jobId } = await tracking.startBulkIngest({ siteId, source: { case: "filePath", value: "orders.ndjson" }, requestId: "bulk-orders-1" });
    const again = await tracking.startBulkIngest({ siteId, source: { case: "filePath", value: path }, requestId: "bulk-orders-1" });
    expect(again.jobId).toBe(jobId);
    const job = await finished(jobId);
    expect(BulkIngestState[job.state], job.error).toBe("DONE");
    expect(job.linesRead).toBe(100_003n);
    expect(job.pointsStored).toBe(100_000n);
    expect(job.lineErrors.map((e) => Number(e.line))).toEqual([7, 5000, 100_003]);
    expect(job.lineErrors[0].message).toBe("is not valid JSON");
    expect(job.lineErrors[1].message).toContain("value");
    expect(job.lineErrors[2].message).toContain("UNDEFINED_METRIC");
    const pool = await sqlPool(beacon.orm);
    const { rows } = await pool.query("select count(*)::int as n, count(distinct point_id)::int as ids, sum(value)::float8 as total from metric_points where site_id = $1 and metric = 'bulk_orders'", [siteId]);
    expect(rows[0]).toEqual({ n: 100_000, ids: 100_000, total: expectedSum });

    // The same file again: every point is already stored, so none is stored twice.
    const second = await finished((await tracking.startBulkIngest({ siteId, source: { case: "filePath", value: "orders.ndjson" } })).jobId);
    expect(BulkIngestState[second.state]).toBe("DONE");
    expect(second.pointsStored).toBe(0n);
    expect(await count("select count(*) as n from metric_points where site_id = $1 and metric = 'bulk_orders'", [siteId])).toBe(100_000);
  });

  it("reads inline NDJSON and http URLs, and fails a URL that answers 404", async () => {
    const body = `${JSON.stringify({ metricName: "queue_depth", value: 1, tags: { queue: "bulk" } })}\n\n${JSON.stringify({ metric_name: "queue_depth", value: 2, tags: { queue: "bulk" } })}\n`;
    const inline = await finished((await tracking.startBulkIngest({ siteId, source: { case: "ndjson", value: Buffer.from(body) } })).jobId);
    expect([BulkIngestState[inline.state], inline.linesRead, inline.pointsStored]).toEqual(["DONE", 3n, 2n]);

    const server: Server = createServer((req, res) => {
      if (req.url === "/points.ndjson") res.end(body);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const fromUrl = await finished((await tracking.startBulkIngest({ siteId, source: { case: "url", value: `${base}/points.ndjson` } })).jobId);
      expect([BulkIngestState[fromUrl.state], fromUrl.pointsStored]).toEqual(["DONE", 2n]);
      const missing = await finished((await tracking.startBulkIngest({ siteId, source: { case: "url", value: `${base}/missing` } })).jobId);
      expect(BulkIngestState[missing.state]).toBe("FAILED");
      expect(missing.error).toContain("404");
    } finally {
      server.close();
    }
  });
});

describe("bad input", () => {
  const start = timestampFromMs(iso("2025-08-01T00:00:00Z"));
  const end = timestampFromMs(iso("2025-08-02T00:00:00Z"));

  it("IngestMetricPoints and ValidateMetricPoints name the field", async () => {
    await expectInvalid(tracking.ingestMetricPoints({ siteId: "", points: [{ metricName: "queue_depth", value: 1 }] }), "site_id");
    await expectInvalid(tracking.ingestMetricPoints({ siteId: "not-a-uuid", points: [{ metricName: "queue_depth", value: 1 }] }), "site_id");
    await expectInvalid(tracking.ingestMetricPoints({ siteId, points: [] }), "points");
    await expectInvalid(tracking.ingestMetricPoints({ siteId, points: Array.from({ length: 1001 }, () => ({ metricName: "queue_depth", value: 1 })) }), "points");
    await expectInvalid(tracking.validateMetricPoints({ siteId: "x", points: [{ metricName: "queue_depth", value: 1 }] }), "site_id");
    await expectInvalid(tracking.validateMetricPoints({ siteId, points: [] }), "points");
  });

  it("StartBulkIngest and GetBulkIngest name the field", async () => {
    await expectInvalid(tracking.startBulkIngest({ siteId }), "source");
    await expectInvalid(tracking.startBulkIngest({ siteId: "", source: { case: "url", value: "http://x" } }), "site_id");
    await expectInvalid(tracking.startBulkIngest({ siteId, source: { case: "filePath", value: "/etc/passwd" } }), "file_path");
    await expectInvalid(tracking.startBulkIngest({ siteId, source: { case: "filePath", value: "../../etc/hosts" } }), "file_path");
    await expectInvalid(tracking.startBulkIngest({ siteId, source: { case: "url", value: "ftp://example.com/x.ndjson" } }), "url");
    await expectInvalid(tracking.startBulkIngest({ siteId, source: { case: "ndjson", value: new Uint8Array() } }), "ndjson");
    await expectInvalid(tracking.startBulkIngest({ siteId, source: { case: "url", value: "http://example.com/a" }, requestId: "r".repeat(201) }), "request_id");
    await tracking.startBulkIngest({ siteId, source: { case: "ndjson", value: Buffer.from("{}\n") }, requestId: "reused" });
    await expectInvalid(tracking.startBulkIngest({ siteId, source: { case: "ndjson", value: Buffer.from("{ }\n") }, requestId: "reused" }), "request_id");
    await expectInvalid(tracking.getBulkIngest({ jobId: "" }), "job_id");
    await expectInvalid(tracking.getBulkIngest({ jobId: "nope" }), "job_id");
    const missing = await failure(tracking.getBulkIngest({ jobId: `bulk-${"0".repeat(32)}` }));
    expect(Code[missing.code]).toBe("NotFound");
  });

  it("GetTimeSeries names the field", async () => {
    const base = { siteId, metrics: ["orders_count"], start, end };
    await expectInvalid(reporting.getTimeSeries({ ...base, metrics: [] }), "metrics");
    await expectInvalid(reporting.getTimeSeries({ ...base, siteId: "x" }), "site_id");
    await expectInvalid(reporting.getTimeSeries({ ...base, start: undefined }), "start");
    await expectInvalid(reporting.getTimeSeries({ ...base, end: undefined }), "end");
    await expectInvalid(reporting.getTimeSeries({ ...base, end: timestampFromMs(iso("2025-07-01T00:00:00Z")) }), "end");
    await expectInvalid(reporting.getTimeSeries({ ...base, groupBy: ["no way"] }), "group_by[0]");
    await expectInvalid(reporting.getTimeSeries({ ...base, groupBy: ["colour"] }), "group_by[0]");
    await expectInvalid(reporting.getTimeSeries({ ...base, filters: [{ dimension: "country", values: ["GB"] }] }), "filters[0].operator");
    await expectInvalid(reporting.getTimeSeries({ ...base, filters: [{ dimension: "country", operator: FilterOperator.EQUALS, values: [] }] }), "filters[0].values");
    await expectInvalid(reporting.getTimeSeries({ ...base, granularity: Granularity.MINUTE, end: timestampFromMs(iso("2025-09-01T00:00:00Z")) }), "granularity");
    await expectInvalid(reporting.getTimeSeries({ ...base, maxStalenessSeconds: -1 }), "max_staleness_seconds");
    const unknown = await failure(reporting.getTimeSeries({ ...base, metrics: ["orders_count", "nope"] }));
    expect(Code[unknown.code]).toBe("NotFound");
    expect(unknown.findDetails(ErrorDetailSchema)[0]?.field).toBe("metrics[1]");
  });

  it("Aggregate, QueryInstant and SearchSeries name the field", async () => {
    await expectInvalid(reporting.aggregate({ siteId, metric: "" }), "metric");
    await expectInvalid(reporting.aggregate({ siteId, metric: "orders_count" }), "time_range");
    await expectInvalid(reporting.aggregate({ siteId, metric: "orders_count", timeRange: { start, end: start } }), "time_range.end");
    await expectInvalid(reporting.aggregate({ siteId, metric: "orders_count", dateRange: { startDate: "August", endDate: "2025-08-02" } }), "date_range.start_date");
    await expectInvalid(reporting.queryInstant({ siteId, metrics: [] }), "metrics");
    await expectInvalid(reporting.queryInstant({ siteId, metrics: ["aov"] }), "metrics[0]");
    await expectInvalid(reporting.queryInstant({ siteId: "", metrics: ["queue_depth"] }), "site_id");
    await expectInvalid(reporting.searchSeries({ siteId, pageSize: 5000 }), "page_size");
    await expectInvalid(reporting.searchSeries({ siteId, pageToken: "garbage" }), "page_token");
    await expectInvalid(reporting.searchSeries({ siteId, filters: [{ dimension: "queue", operator: FilterOperator.REGEX, values: ["("] }] }), "filters[0].values");
  });
});
