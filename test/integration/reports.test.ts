// ReportingService end to end: a real Beacon with its workers (Postgres, Redis, port 0), a handful
// of events sent through TrackingService.TrackEvents, and every reporting RPC asked through the
// Connect client: RunReport (numbers by hand, paging, ordering, comparison, bad names, values
// that look like SQL, site isolation, organisation isolation), BatchRunReports, Aggregate,
// GetTimeSeries (empty buckets, group_by, freshness, the cache and force_fresh) and GetRealtime.
// Exactness over every dimension and filter is reports-rollups.test.ts's job.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ErrorDetailSchema, FilterOperator, Granularity, SortDirection } from "../../gen/beacon/v1/common_pb.js";
import type { Event, EventSchema } from "../../gen/beacon/v1/event_pb.js";
import { GoalMatchType, GoalType } from "../../gen/beacon/v1/goal_pb.js";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { Comparison, type RunReportRequest, type RunReportRequestSchema, ReportingService } from "../../gen/beacon/v1/reporting_service_pb.js";
import { TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";
import { sqlPool } from "../../server/db/orm.js";
import { startTestBeacon, type TestBeacon } from "../support/beacon.js";

// The plain-object halves of the init shapes (spreading the message half does not type-check).
type EventInit = Exclude<MessageInitShape<typeof EventSchema>, Event>;
type ReportRequest = Exclude<MessageInitShape<typeof RunReportRequestSchema>, RunReportRequest>;

const CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** Three and two UTC days ago: inside what TrackEvents accepts, and whole days before today's live events. */
const DAY0 = Math.floor(Date.now() / DAY) * DAY - 3 * DAY;
const DAY1 = DAY0 + DAY;
const date = (t: number) => new Date(t).toISOString().slice(0, 10);
const BOTH_DAYS = { startDate: date(DAY0), endDate: date(DAY1) };

let beacon: TestBeacon;
let tracking: Client<typeof TrackingService>;
let reporting: Client<typeof ReportingService>;
let shop: { id: string; trackingId: string; domain: string };
let other: { id: string; trackingId: string; domain: string };
let otherOrgSiteId: string;
let viewerKey: string;

const bearer = (key: string): Interceptor => (next) => (req) => {
  req.header.set("Authorization", `Bearer ${key}`);
  return next(req);
};
const transport = (key: string) => createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [bearer(key)] });

function pageview(domain: string, path: string, clientId: string, ts?: number, extra: Partial<EventInit> = {}): EventInit {
  return { name: "pageview", url: `https://${domain}${path}`, clientId, ...(ts === undefined ? {} : { timestamp: timestampFromMs(ts) }), ...extra };
}

async function eventCount(siteId: string): Promise<number> {
  const { rows } = await (await sqlPool(beacon.orm)).query<{ n: string }>("select count(*) as n from events where site_id = $1", [siteId]);
  return Number(rows[0].n);
}

/** Polls until `done` holds; the workers store events a moment after TrackEvents answers. */
async function eventually<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}; last value: ${JSON.stringify(value, (_, v) => (typeof v === "bigint" ? String(v) : v))}`);
    await new Promise((wake) => setTimeout(wake, 100));
  }
}

async function failure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail, but it succeeded");
}

function fieldOf(err: ConnectError): string {
  return err.findDetails(ErrorDetailSchema)[0]?.field ?? "";
}

const report = (req: Partial<ReportRequest>) => reporting.runReport({ siteId: shop.id, dateRange: BOTH_DAYS, ...req });
const byPage = (rows: { dimensions: Record<string, string>; metrics: Record<string, number> }[]) => Object.fromEntries(rows.map((r) => [r.dimensions.page, r.metrics]));

beforeAll(async () => {
  beacon = await startTestBeacon("reports", { workers: true });
  tracking = createClient(TrackingService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1" }));
  reporting = createClient(ReportingService, transport(beacon.adminKey));
  const management = createClient(ManagementService, transport(beacon.adminKey));
  const created = await Promise.all(["reports-shop.example", "reports-other.example"].map((domain) => management.createSite({ domain, timezone: "UTC" })));
  [shop, other] = created.map(({ site }) => ({ id: site!.id, trackingId: site!.trackingId, domain: site!.domain }));
  await management.createGoal({ siteId: shop.id, name: "Pricing", type: GoalType.DESTINATION, matchType: GoalMatchType.EQUALS, value: "/pricing", valueNumeric: 5 });
  await management.createGoal({ siteId: shop.id, name: "Signup", type: GoalType.EVENT, value: "signup" });
  viewerKey = await beacon.makeKey("viewer");
  const otherOrg = await beacon.makeOrganisation("Other org");
  const { site: otherOrgSite } = await createClient(ManagementService, transport(await beacon.makeKey("admin", { organisationId: otherOrg }))).createSite({ domain: "reports-elsewhere.example" });
  otherOrgSiteId = otherOrgSite!.id;

  const from = (ip: string, userAgent = CHROME) => ({ headers: { "User-Agent": userAgent, "X-Forwarded-For": ip } });
  const d = shop.domain;
  // DAY0: alice views / and /pricing and signs up; erin views /; bob views /blog/post.
  // DAY1: carol views /pricing and /; dave views /o'brien; Googlebot views /.
  await tracking.trackEvents({
    trackingId: shop.trackingId,
    events: [
      pageview(d, "/", "alice", DAY0 + 10 * HOUR),
      pageview(d, "/pricing", "alice", DAY0 + 10 * HOUR + MINUTE),
      { name: "signup", url: `https://${d}/pricing`, clientId: "alice", timestamp: timestampFromMs(DAY0 + 10 * HOUR + 2 * MINUTE), properties: { plan: "pro" } },
      pageview(d, "/", "erin", DAY0 + 10 * HOUR + 20 * MINUTE),
      pageview(d, "/blog/post", "bob", DAY0 + 11 * HOUR),
      pageview(d, "/pricing", "carol", DAY1 + 9 * HOUR),
      pageview(d, "/", "carol", DAY1 + 9 * HOUR + 5 * MINUTE),
      pageview(d, "/o'brien", "dave", DAY1 + 12 * HOUR),
    ],
  }, from("8.8.8.8"));
  await tracking.trackEvents({ trackingId: shop.trackingId, events: [pageview(d, "/", "crawler", DAY1 + 13 * HOUR)] }, from("66.249.66.1", GOOGLEBOT));
  // The other site of the same organisation: three pageviews of /pricing that shop's reports never count.
  await tracking.trackEvents({
    trackingId: other.trackingId,
    events: [0, 1, 2].map((i) => pageview(other.domain, "/pricing", "zed", DAY0 + 10 * HOUR + i * MINUTE)),
  }, from("8.8.8.8"));
  await eventually("the shop's events", () => eventCount(shop.id), (n) => n >= 9);
  await eventually("the other site's events", () => eventCount(other.id), (n) => n >= 3);
});

afterAll(async () => {
  await beacon?.stop();
});

describe("RunReport", () => {
  it("counts by page over two days, with totals, conversions and revenue", async () => {
    const res = await report({ metrics: ["pageviews", "events", "visitors", "visits", "bounce_rate", "conversions", "conversion_rate", "revenue"], dimensions: ["page"] });
    expect(res.totalRows).toBe(4n);
    expect(res.sampled).toBe(false);
    expect(res.approximate).toBe(false);
    expect(res.queryTimeMs).toBeGreaterThanOrEqual(0n);
    expect(res.queryId).not.toBe("");
    expect(res.totals?.metrics).toEqual({ pageviews: 7, events: 8, visitors: 5, visits: 5, bounce_rate: 0.6, conversions: 2, conversion_rate: 0.4, revenue: 10 });
    expect(byPage(res.rows)).toEqual({
      // Conversions count goals completed by the group's events: none is completed on "/".
      "/": { pageviews: 3, events: 3, visitors: 3, visits: 3, bounce_rate: 1 / 3, conversions: 0, conversion_rate: 0, revenue: 0 },
      "/pricing": { pageviews: 2, events: 3, visitors: 2, visits: 2, bounce_rate: 0, conversions: 2, conversion_rate: 1, revenue: 10 },
      "/blog/post": { pageviews: 1, events: 1, visitors: 1, visits: 1, bounce_rate: 1, conversions: 0, conversion_rate: 0, revenue: 0 },
      "/o'brien": { pageviews: 1, events: 1, visitors: 1, visits: 1, bounce_rate: 1, conversions: 0, conversion_rate: 0, revenue: 0 },
    });
    // By the first metric, largest first; ties by value.
    expect(res.rows.map((r) => r.dimensions.page)).toEqual(["/", "/pricing", "/blog/post", "/o'brien"]);
  });

  it("reports goals as rows and bots when asked", async () => {
    const goals = await report({ metrics: ["conversions", "conversion_rate"], dimensions: ["goal"] });
    expect(Object.fromEntries(goals.rows.map((r) => [r.dimensions.goal, r.metrics]))).toEqual({ Pricing: { conversions: 2, conversion_rate: 0.4 }, Signup: { conversions: 1, conversion_rate: 0.2 } });
    const bots = await report({ metrics: ["pageviews"], dimensions: ["classification"] });
    expect(Object.fromEntries(bots.rows.map((r) => [r.dimensions.classification, r.metrics.pageviews]))).toEqual({ USER: 7, BOT: 1 });
  });

  it("pages with page_token: every row once, in the unpaged order", async () => {
    const whole = await report({ metrics: ["pageviews"], dimensions: ["page"] });
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await report({ metrics: ["pageviews"], dimensions: ["page"], limit: 1, pageToken });
      expect(page.totalRows).toBe(4n);
      expect(page.rows).toHaveLength(1);
      seen.push(page.rows[0].dimensions.page);
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "" && pages < 10);
    expect(pages).toBe(4);
    expect(new Set(seen).size).toBe(4);
    expect(seen).toEqual(whole.rows.map((r) => r.dimensions.page));
    const bad = await failure(report({ metrics: ["pageviews"], pageToken: "not-a-token" }));
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(fieldOf(bad)).toBe("page_token");
  });

  it("orders by a dimension or a metric, either way", async () => {
    const byName = await report({ metrics: ["pageviews"], dimensions: ["page"], orderBy: [{ key: { case: "dimension", value: "page" }, direction: SortDirection.ASC }] });
    expect(byName.rows.map((r) => r.dimensions.page)).toEqual(["/", "/blog/post", "/o'brien", "/pricing"]);
    const fewest = await report({ metrics: ["pageviews", "events"], dimensions: ["page"], orderBy: [{ key: { case: "metric", value: "events" }, direction: SortDirection.ASC }] });
    expect(fewest.rows.map((r) => r.metrics.events)).toEqual([1, 1, 3, 3]);
    const notAsked = await failure(report({ metrics: ["pageviews"], orderBy: [{ key: { case: "metric", value: "visitors" } }] }));
    expect(fieldOf(notAsked)).toBe("order_by[0].metric");
  });

  it("compares with the previous period, row by row and in total", async () => {
    const res = await report({ dateRange: { startDate: date(DAY1), endDate: date(DAY1) }, metrics: ["pageviews", "visitors"], dimensions: ["page"], comparison: Comparison.PREVIOUS_PERIOD });
    expect(res.totals?.metrics).toEqual({ pageviews: 3, visitors: 2 });
    expect(res.totals?.comparison).toEqual({ pageviews: 4, visitors: 3 });
    expect(Object.fromEntries(res.rows.map((r) => [r.dimensions.page, r.comparison]))).toEqual({
      "/": { pageviews: 2, visitors: 2 },
      "/pricing": { pageviews: 1, visitors: 1 },
      "/o'brien": { pageviews: 0, visitors: 0 },
    });
    // Time buckets line up by position: DAY1's row compares with DAY0's.
    const daily = await report({ dateRange: { startDate: date(DAY1), endDate: date(DAY1) }, metrics: ["pageviews"], dimensions: ["day"], comparison: Comparison.PREVIOUS_PERIOD });
    expect(daily.rows.map((r) => [r.dimensions.day, r.metrics.pageviews, r.comparison.pageviews])).toEqual([[date(DAY1), 3, 4]]);
  });

  it.each([
    [{ metrics: ["pageviews", "bogus_metric"] }, "metrics[1]", "bogus_metric"],
    [{ metrics: ["pageviews"], dimensions: ["planet"] }, "dimensions[0]", "planet"],
    [{ metrics: ["pageviews"], filters: [{ dimension: "page", operator: FilterOperator.UNSPECIFIED, values: ["/"] }] }, "filters[0].operator", "unknown operator"],
    [{ metrics: ["pageviews"], filters: [{ dimension: "galaxy", operator: FilterOperator.EQUALS, values: ["x"] }] }, "filters[0].dimension", "galaxy"],
    [{ metrics: ["pageviews"], filter: { expression: { case: "notExpression", value: { expression: { case: "filter", value: { dimension: "page", operator: 42 as FilterOperator, values: ["/"] } } } } } }, "filter.not_expression.filter.operator", "unknown operator"],
    [{ metrics: ["pageviews"], filters: [{ dimension: "page", operator: FilterOperator.REGEX, values: ["("] }] }, "filters[0].values", "regular expression"],
  ] as [Partial<ReportRequest>, string, string][])("refuses %j as InvalidArgument naming %s", async (req, field, named) => {
    const err = await failure(report(req));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(fieldOf(err)).toBe(field);
    expect(err.rawMessage).toContain(named);
  });

  it("treats SQL metacharacters in a filter value as a value", async () => {
    const before = await eventCount(shop.id);
    const res = await report({ metrics: ["pageviews"], filters: [{ dimension: "page", operator: FilterOperator.EQUALS, values: ["'; drop table events; --"] }] });
    expect(res.totals?.metrics).toEqual({ pageviews: 0 });
    expect(await eventCount(shop.id)).toBe(before);
    const quoted = await report({ metrics: ["pageviews"], filters: [{ dimension: "page", operator: FilterOperator.IN, values: ["/o'brien", "'); delete from sessions; --"] }] });
    expect(quoted.totals?.metrics).toEqual({ pageviews: 1 });
  });

  it("never counts another site's events", async () => {
    const res = await report({ metrics: ["pageviews", "visitors"], dimensions: ["page"], filters: [{ dimension: "page", operator: FilterOperator.EQUALS, values: ["/pricing"] }] });
    expect(res.totals?.metrics).toEqual({ pageviews: 2, visitors: 2 });
    const theOther = await reporting.runReport({ siteId: other.id, dateRange: BOTH_DAYS, metrics: ["pageviews"] });
    expect(theOther.totals?.metrics).toEqual({ pageviews: 3 });
  });

  it("lets a viewer read its organisation's site, and not another organisation's (NotFound)", async () => {
    const viewer = createClient(ReportingService, transport(viewerKey));
    const own = await viewer.runReport({ siteId: shop.id, dateRange: BOTH_DAYS, metrics: ["pageviews"] });
    expect(own.totals?.metrics).toEqual({ pageviews: 7 });
    const err = await failure(viewer.runReport({ siteId: otherOrgSiteId, dateRange: BOTH_DAYS, metrics: ["pageviews"] }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).not.toContain("reports-elsewhere");
    expect((await failure(viewer.getRealtime({ siteId: otherOrgSiteId }))).code).toBe(Code.NotFound);
    expect((await failure(viewer.aggregate({ siteId: otherOrgSiteId, metric: "pageviews", dateRange: BOTH_DAYS }))).code).toBe(Code.NotFound);
  });
});

describe("BatchRunReports", () => {
  it("runs several reports in one call, each as RunReport would", async () => {
    const requests: ReportRequest[] = [
      { siteId: shop.id, dateRange: BOTH_DAYS, metrics: ["pageviews"], dimensions: ["page"] },
      { siteId: shop.id, dateRange: BOTH_DAYS, metrics: ["visitors", "visits"] },
      { siteId: other.id, dateRange: BOTH_DAYS, metrics: ["pageviews"] },
    ];
    const { reports } = await reporting.batchRunReports({ requests });
    expect(reports).toHaveLength(3);
    const single = await reporting.runReport(requests[0]);
    expect(reports[0].rows.map((r) => [r.dimensions, r.metrics])).toEqual(single.rows.map((r) => [r.dimensions, r.metrics]));
    expect(reports[1].totals?.metrics).toEqual({ visitors: 5, visits: 5 });
    expect(reports[2].totals?.metrics).toEqual({ pageviews: 3 });
  });

  it("names the request at fault", async () => {
    const err = await failure(reporting.batchRunReports({ requests: [{ siteId: shop.id, dateRange: BOTH_DAYS, metrics: ["pageviews"] }, { siteId: shop.id, dateRange: BOTH_DAYS, metrics: ["nope"] }] }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(fieldOf(err)).toBe("requests[1].metrics[0]");
  });
});

describe("Aggregate", () => {
  it("gives one number over dates or instants", async () => {
    expect((await reporting.aggregate({ siteId: shop.id, metric: "visitors", dateRange: BOTH_DAYS })).value).toBe(5);
    const window = await reporting.aggregate({ siteId: shop.id, metric: "pageviews", timeRange: { start: timestampFromMs(DAY0 + 10 * HOUR), end: timestampFromMs(DAY0 + 10 * HOUR + 30 * MINUTE) } });
    expect(window.value).toBe(3);
    expect(window.calculatedAt).toBeDefined();
    const bots = await reporting.aggregate({ siteId: shop.id, metric: "pageviews", dateRange: BOTH_DAYS, filters: [{ dimension: "classification", operator: FilterOperator.EQUALS, values: ["BOT"] }] });
    expect(bots.value).toBe(1);
  });

  it("refuses an aggregation for a web metric and a backwards time range", async () => {
    expect(fieldOf(await failure(reporting.aggregate({ siteId: shop.id, metric: "pageviews", dateRange: BOTH_DAYS, aggregation: 2 })))).toBe("aggregation");
    expect(fieldOf(await failure(reporting.aggregate({ siteId: shop.id, metric: "pageviews", timeRange: { start: timestampFromMs(DAY1), end: timestampFromMs(DAY0) } })))).toBe("time_range.end");
  });
});

describe("GetTimeSeries", () => {
  const threeDays = () => ({ start: timestampFromMs(DAY0), end: timestampFromMs(DAY0 + 3 * DAY - 1) });

  it("returns every bucket, empty ones as zeros, with calculated_at and data_freshness_seconds", async () => {
    const before = Date.now();
    const res = await reporting.getTimeSeries({ siteId: shop.id, metrics: ["pageviews", "visitors"], ...threeDays(), granularity: Granularity.DAY });
    expect(res.groups).toHaveLength(1);
    expect(res.groups[0].buckets.map((b) => [timestampDate(b.time!).getTime(), b.values])).toEqual([
      [DAY0, { pageviews: 4, visitors: 3 }],
      [DAY1, { pageviews: 3, visitors: 2 }],
      [DAY1 + DAY, { pageviews: 0, visitors: 0 }],
    ]);
    expect(timestampDate(res.calculatedAt!).getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(res.dataFreshnessSeconds).toBeGreaterThanOrEqual(0n);
  });

  it("splits by group_by, every group with every bucket", async () => {
    const res = await reporting.getTimeSeries({ siteId: shop.id, metrics: ["pageviews"], ...threeDays(), granularity: Granularity.DAY, groupBy: ["page"] });
    const series = Object.fromEntries(res.groups.map((g) => [g.key.page, g.buckets.map((b) => b.values.pageviews)]));
    expect(series).toEqual({ "/": [2, 1, 0], "/pricing": [1, 1, 0], "/blog/post": [1, 0, 0], "/o'brien": [0, 1, 0] });
  });

  it("serves a cached answer within max_staleness_seconds, and recomputes with force_fresh", async () => {
    const request = { siteId: other.id, metrics: ["pageviews"], ...threeDays(), granularity: Granularity.HOUR, maxStalenessSeconds: 3600 };
    const total = (res: { groups: { buckets: { values: Record<string, number> }[] }[] }) => res.groups[0].buckets.reduce((sum, b) => sum + b.values.pageviews, 0);
    const first = await reporting.getTimeSeries(request);
    expect(total(first)).toBe(3);
    expect(first.groups[0].buckets).toHaveLength(72);
    await tracking.trackEvents({ trackingId: other.trackingId, events: [pageview(other.domain, "/new", "yvonne", DAY1 + 8 * HOUR)] }, { headers: { "User-Agent": CHROME, "X-Forwarded-For": "8.8.4.4" } });
    await eventually("the other site's fourth event", () => eventCount(other.id), (n) => n >= 4);
    const cached = await reporting.getTimeSeries(request);
    expect(cached.queryId).toBe(first.queryId);
    expect(total(cached)).toBe(3);
    const fresh = await reporting.getTimeSeries({ ...request, forceFresh: true });
    expect(fresh.queryId).not.toBe(first.queryId);
    expect(total(fresh)).toBe(4);
    // Without max_staleness_seconds every call computes.
    const { maxStalenessSeconds: _, ...uncached } = request;
    expect(total(await reporting.getTimeSeries(uncached))).toBe(4);
  });

  it("refuses too many buckets and a backwards range", async () => {
    const tooFine = await failure(reporting.getTimeSeries({ siteId: shop.id, metrics: ["pageviews"], start: timestampFromMs(DAY0 - 30 * DAY), end: timestampFromMs(DAY0), granularity: Granularity.MINUTE }));
    expect(fieldOf(tooFine)).toBe("granularity");
    const backwards = await failure(reporting.getTimeSeries({ siteId: shop.id, metrics: ["pageviews"], start: timestampFromMs(DAY1), end: timestampFromMs(DAY0) }));
    expect(fieldOf(backwards)).toBe("end");
  });
});

describe("GetRealtime", () => {
  it("shows active visitors, their pages, countries and sources, and pageviews per minute", async () => {
    await tracking.trackEvents({
      trackingId: shop.trackingId,
      events: [pageview(shop.domain, "/live", "live-1", undefined, { referrer: "https://www.google.com/" }), pageview(shop.domain, "/live", "live-2"), pageview(shop.domain, "/live/other", "live-3")],
    }, { headers: { "User-Agent": CHROME, "X-Forwarded-For": "8.8.8.8" } });
    const res = await eventually("three active visitors", () => reporting.getRealtime({ siteId: shop.id }), (r) => (r.report?.activeUsers ?? 0n) >= 3n);
    const realtime = res.report!;
    expect(realtime.siteId).toBe(shop.id);
    expect(realtime.activeUsers).toBe(3n);
    expect(realtime.topPages.map((c) => [c.value, c.activeUsers])).toEqual([["/live", 2n], ["/live/other", 1n]]);
    expect(realtime.topCountries.map((c) => [c.value, c.activeUsers])).toEqual([["US", 3n]]);
    expect(Object.fromEntries(realtime.topSources.map((c) => [c.value, c.activeUsers]))).toEqual({ Google: 1n, Direct: 2n });
    expect(realtime.pageviewsByMinute).toHaveLength(30);
    expect(realtime.pageviewsByMinute.reduce((sum, m) => sum + m.pageviews, 0n)).toBe(3n);
  });
});
