// The report engine against a brute force (issue 4's first acceptance bullet). A seeded random
// event set for four sites (UTC, New York with its March DST jump, Kolkata at +5:30, Sydney with
// its April fold) is stored through the events store; then every dimension, every filter
// operator, and/or/not trees, goals, classifications and date ranges are run through
// `planReport` + `ReportEngine.run` and compared with test/support/report-fixture.ts's brute
// force: rows, total_rows and totals exactly (ratios and money within 1e-9).
//
// In this order, in one database: raw events only; rollups on with the rollup job halfway
// through the data (daily, hourly and raw parts in one answer); rollups on with every hour rolled;
// after late events into rolled hours (dirty hours read raw); after the job re-rolled them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "pg";
import { ReportEngine, type ReportResult, rollupDimensionFor } from "../../server/core/reports/engine.js";
import { type FilterTreeInput, type GoalDefinition, MAX_LIMIT, planReport } from "../../server/core/reports/query.js";
import { type StoredEvent, storeEvents } from "../../server/db/events-store.js";
import { sqlPool } from "../../server/db/orm.js";
import { rollSite } from "../../server/db/rollups.js";
import { createMigratedTestOrm, type MigratedTestOrm } from "../support/db.js";
import { bruteForce, differences, type Fixture, type FixtureSite, generateFixture, localMidnight, nextDate } from "../support/report-fixture.js";

const SEED = 4_2026;
const WINDOW = { start: Date.parse("2026-03-05T00:00:00Z"), end: Date.parse("2026-04-08T00:00:00Z") };
/** The default report range, in each site's own days: events at both ends fall outside it. */
const RANGE = { startDate: "2026-03-06", endDate: "2026-04-06" };
/** Where the first roll stops: days before are daily rollups, the day's first hours hourly, the rest raw. */
const PARTLY_ROLLED_AT = Date.parse("2026-03-20T14:37:00Z");
const ALL_ROLLED_AT = WINDOW.end + 3 * 3_600_000;
/** Rolling a month of hours for four sites takes a while on a busy two-core machine. */
const ROLL_TIMEOUT = 600_000;

function goal(name: string, type: GoalDefinition["type"], matchType: GoalDefinition["matchType"], value: string, valueNumeric: number | null, property?: [string, string]): GoalDefinition {
  return { name, type, matchType, value, valueNumeric, propertyKey: property?.[0] ?? null, propertyValue: property?.[1] ?? null };
}

// Every kind of goal. Overlaps are deliberate: a blog page completes "Content" (no value) before
// "Read blog" (1.5); a pro signup completes "Signup" (10) before "Pro's signup" (25).
const GOALS: GoalDefinition[] = [
  goal("Visit pricing", "destination", "equals", "/pricing", null),
  goal("Content", "destination", "regex", "^/(docs|blog)/", null),
  goal("Read blog", "destination", "starts_with", "/blog/", 1.5),
  goal("Signup", "event", "equals", "signup", 10),
  goal("Pro's signup", "event", "equals", "signup", 25, ["plan", "pro"]),
  goal("Purchase", "event", "equals", "purchase", 50),
  goal("Checkout", "destination", "regex", "^/checkout/", 5),
  goal("Variant two", "event", "equals", "click", null, ["variant", "2"]),
];

const SPECS = [
  { timezone: "UTC", goals: GOALS },
  { timezone: "America/New_York", goals: GOALS },
  { timezone: "Asia/Kolkata", goals: GOALS },
  // Goals without values: revenue is then the events' own, which rollups can answer.
  { timezone: "Australia/Sydney", goals: GOALS.map((g) => ({ ...g, valueNumeric: null })) },
];

const ALL_METRICS = ["pageviews", "events", "visitors", "visits", "bounce_rate", "visit_duration", "views_per_visit", "conversions", "conversion_rate", "revenue"];

const hasValuedGoals = (site: FixtureSite) => site.goals.some((g) => g.valueNumeric !== null);
/** What rollups can answer for the site: everything but conversions (and goal-valued revenue). */
const rollupMetrics = (site: FixtureSite) => ["pageviews", "events", "visitors", "visits", "bounce_rate", "visit_duration", "views_per_visit", ...(hasValuedGoals(site) ? [] : ["revenue"])];
/** Event metrics only: rollups answer these for filters that visit metrics cannot take from them. */
const eventMetrics = (site: FixtureSite) => ["pageviews", "events", "visitors", ...(hasValuedGoals(site) ? [] : ["revenue"])];

interface ReportCase {
  name: string;
  dimensions: string[];
  filter?: FilterTreeInput;
  classification?: "USER" | "BOT" | "ALL";
  /** Local dates (default RANGE), or instants not on any day or hour boundary. */
  dates?: { startDate: string; endDate: string };
  instants?: { start: string; end: string };
  /** Instead of the phase's metric sets. */
  metrics?: string[];
  /** Rollups must answer part of it once everything is rolled (checked on the UTC site). */
  rollup?: boolean;
}

const f = (dimension: string, operator: string, ...values: string[]): FilterTreeInput => ({ filter: { dimension, operator, values } });
const and = (...list: FilterTreeInput[]): FilterTreeInput => ({ and: list });
const or = (...list: FilterTreeInput[]): FilterTreeInput => ({ or: list });
const not = (inner: FilterTreeInput): FilterTreeInput => ({ not: inner });

const ROLLUP_DIMENSIONS = new Set(["page", "entry_page", "exit_page", "hostname", "source", "medium", "referrer", "utm_source", "utm_medium", "utm_campaign", "country", "region", "city", "browser", "os", "device_type", "event_name", "hour", "day", "week", "month"]);
const EVERY_DIMENSION = [
  "page", "entry_page", "exit_page", "hostname", "referrer", "source", "medium", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
  "country", "region", "city", "browser", "browser_version", "os", "os_version", "device_type", "screen", "language", "event_name", "goal", "classification",
  "prop:plan", "prop:variant", "prop:internal", "hour", "day", "week", "month",
];

const CASES: ReportCase[] = [
  { name: "totals", dimensions: [], rollup: true },
  ...EVERY_DIMENSION.map((d): ReportCase => ({ name: `by ${d}`, dimensions: [d], rollup: ROLLUP_DIMENSIONS.has(d) })),
  { name: "by day and page", dimensions: ["day", "page"], rollup: true },
  { name: "by hour and country", dimensions: ["hour", "country"], rollup: true },
  { name: "by month and source", dimensions: ["month", "source"], rollup: true },
  { name: "by week and entry page", dimensions: ["week", "entry_page"], rollup: true },
  { name: "by exit page and hour", dimensions: ["exit_page", "hour"], rollup: true },
  { name: "by page and country", dimensions: ["page", "country"] },
  { name: "by goal and day", dimensions: ["goal", "day"] },
  { name: "by classification and device", dimensions: ["classification", "device_type"] },
  { name: "by plan and event name", dimensions: ["prop:plan", "event_name"] },
  // Each operator, on event and visit dimensions.
  { name: "page equals", dimensions: [], filter: f("page", "equals", "/pricing"), rollup: true },
  { name: "page not_equals, by page", dimensions: ["page"], filter: f("page", "not_equals", "/"), rollup: true },
  { name: "browser contains (any case)", dimensions: [], filter: f("browser", "contains", "CHR"), rollup: true },
  { name: "page not_contains, by page", dimensions: ["page"], filter: f("page", "not_contains", "BLOG"), rollup: true },
  { name: "page starts_with", dimensions: [], filter: f("page", "starts_with", "/blog/"), rollup: true },
  { name: "page regex, by page", dimensions: ["page"], filter: f("page", "regex", "^/(docs|blog)/[a-z-]+$"), rollup: true },
  { name: "country in, by country and day", dimensions: ["country", "day"], filter: f("country", "in", "US", "IN"), rollup: true },
  { name: "device not_in", dimensions: [], filter: f("device_type", "not_in", "mobile", "tablet"), rollup: true },
  { name: "source equals", dimensions: [], filter: f("source", "equals", "Google"), rollup: true },
  { name: "entry page starts_with, by entry page", dimensions: ["entry_page"], filter: f("entry_page", "starts_with", "/blog"), rollup: true },
  { name: "exit page in, by exit page and week", dimensions: ["exit_page", "week"], filter: f("exit_page", "in", "/", "/pricing"), rollup: true },
  { name: "utm_campaign contains", dimensions: [], filter: f("utm_campaign", "contains", "sale"), rollup: true },
  { name: "medium not_equals, by medium", dimensions: ["medium"], filter: f("medium", "not_equals", "direct"), rollup: true },
  { name: "referrer regex", dimensions: [], filter: f("referrer", "regex", "^https://(www\\.)?google\\."), rollup: true },
  { name: "hostname starts_with, by hostname", dimensions: ["hostname"], filter: f("hostname", "starts_with", "www."), rollup: true },
  { name: "utm_term not_in, by utm_content", dimensions: ["utm_content"], filter: f("utm_term", "not_in", "plans") },
  { name: "browser_version equals, by os_version", dimensions: ["os_version"], filter: f("browser_version", "equals", "120.0") },
  { name: "language not_in, by screen", dimensions: ["screen"], filter: f("language", "not_in", "en-US") },
  { name: "region in, by city", dimensions: ["city"], filter: f("region", "in", "US-NY", "IN-MH") },
  { name: "event name equals, by plan", dimensions: ["prop:plan"], filter: f("event_name", "equals", "signup") },
  { name: "property equals, by page", dimensions: ["page"], filter: f("prop:plan", "equals", "pro") },
  { name: "property absent", dimensions: [], filter: f("prop:plan", "equals", "") },
  { name: "numeric property", dimensions: ["event_name"], filter: f("prop:variant", "equals", "2") },
  { name: "boolean property", dimensions: [], filter: f("prop:internal", "equals", "true") },
  // SQL metacharacters are values like any other.
  { name: "apostrophe in a value", dimensions: [], filter: f("page", "equals", "/it's-a-path"), rollup: true },
  { name: "injection attempt as a value", dimensions: ["page"], filter: f("page", "in", "'; drop table events; --", "/about"), rollup: true },
  // Classification: by filter or dimension (ALL), or asked for.
  { name: "classification filter, by page", dimensions: ["page"], filter: f("classification", "equals", "BOT") },
  { name: "bots, by browser", dimensions: ["browser"], classification: "BOT", rollup: true },
  { name: "everyone, by device", dimensions: ["device_type"], classification: "ALL", rollup: true },
  // Goals as filters, every operator.
  { name: "goal equals", dimensions: [], filter: f("goal", "equals", "Signup") },
  { name: "goal not_equals, by goal", dimensions: ["goal"], filter: f("goal", "not_equals", "Content") },
  { name: "goal contains, by page", dimensions: ["page"], filter: f("goal", "contains", "SIGN") },
  { name: "goal not_contains", dimensions: [], filter: f("goal", "not_contains", "blog") },
  { name: "goal starts_with", dimensions: ["event_name"], filter: f("goal", "starts_with", "Visit") },
  { name: "goal regex", dimensions: [], filter: f("goal", "regex", "^Read") },
  { name: "goal in, by day", dimensions: ["day"], filter: f("goal", "in", "Purchase", "Pro's signup") },
  { name: "goal not_in", dimensions: ["source"], filter: f("goal", "not_in", "Content") },
  // A time filter: the event's local day for events, the visit's start day for visits.
  { name: "day equals, by hour", dimensions: ["hour"], filter: f("day", "equals", "2026-03-08") },
  // Trees.
  { name: "and", dimensions: [], filter: and(f("page", "starts_with", "/blog"), f("country", "equals", "US")) },
  { name: "or over visit dimensions, by source", dimensions: ["source"], filter: or(f("source", "equals", "Google"), f("utm_medium", "equals", "email")) },
  { name: "not in", dimensions: [], filter: not(f("page", "in", "/", "/about")), rollup: true },
  { name: "and(or, not), by city", dimensions: ["city"], filter: and(or(f("country", "equals", "DE"), f("country", "equals", "AU")), not(f("device_type", "equals", "desktop"))) },
  { name: "or(and, goal), by day", dimensions: ["day"], filter: or(and(f("page", "equals", "/pricing"), f("event_name", "equals", "pageview")), f("goal", "equals", "Purchase")) },
  { name: "not(or) over entry and exit, by month", dimensions: ["month"], filter: not(or(f("entry_page", "equals", "/"), f("exit_page", "equals", "/"))) },
  // Ranges: a DST day each way, a week, and instants off every boundary.
  { name: "New York's spring-forward day, by hour", dimensions: ["hour"], dates: { startDate: "2026-03-08", endDate: "2026-03-08" }, rollup: true },
  { name: "Sydney's fold day, by hour", dimensions: ["hour"], dates: { startDate: "2026-04-05", endDate: "2026-04-05" }, rollup: true },
  { name: "one week, by day", dimensions: ["day"], dates: { startDate: "2026-03-23", endDate: "2026-03-29" }, rollup: true },
  { name: "instants, totals", dimensions: [], instants: { start: "2026-03-10T05:17:23.456Z", end: "2026-03-15T22:45:00Z" }, rollup: true },
  { name: "instants, by day", dimensions: ["day"], instants: { start: "2026-03-10T05:17:23.456Z", end: "2026-03-15T22:45:00Z" }, rollup: true },
  { name: "instants, by hour and page", dimensions: ["hour", "page"], instants: { start: "2026-03-28T23:59:59Z", end: "2026-04-02T00:30:00Z" }, rollup: true },
  // Metric sets of one kind.
  { name: "visit metrics by goal", dimensions: ["goal"], metrics: ["visits", "bounce_rate"] },
  // Short windows: goals completed in them by visits that started earlier give no visit rows.
  ...["2026-03-12T10:30:00Z", "2026-03-20T22:10:00Z", "2026-03-31T05:45:00Z"].map((start): ReportCase => ({
    name: `visit metrics by goal, three hours from ${start}`,
    dimensions: ["goal"],
    metrics: ["visits", "views_per_visit"],
    instants: { start, end: new Date(Date.parse(start) + 3 * 3_600_000).toISOString() },
  })),
  // A rollup row can hold only visits (a visit that started in the bucket saw the value later) or
  // only events: with one kind of metric, such rows must not make groups.
  { name: "visit metrics by page", dimensions: ["page"], metrics: ["visits", "visit_duration", "views_per_visit"], rollup: true },
  { name: "visit metrics by hour and page", dimensions: ["hour", "page"], metrics: ["visits", "bounce_rate"], rollup: true },
  { name: "event metrics by hour and page", dimensions: ["hour", "page"], metrics: ["pageviews", "events", "visitors"], rollup: true },
  { name: "event metrics by day and event name", dimensions: ["day", "event_name"], metrics: ["events", "visitors"], rollup: true },
  { name: "event metrics by page, instants", dimensions: ["page"], metrics: ["pageviews", "visitors"], instants: { start: "2026-03-28T23:59:59Z", end: "2026-04-02T00:30:00Z" }, rollup: true },
  { name: "conversions by entry page", dimensions: ["entry_page"], metrics: ["conversions", "conversion_rate", "revenue"] },
];

let database: MigratedTestOrm;
let pool: Pool;
let fixture: Fixture;
/** The events the brute force sees: what has been stored so far. */
let stored: StoredEvent[];
let rawEngine: ReportEngine;
let rollupEngine: ReportEngine;

async function store(events: StoredEvent[]): Promise<void> {
  for (let i = 0; i < events.length; i += 500) await storeEvents(pool, events.slice(i, i + 500));
}

async function rollAll(now: number): Promise<void> {
  for (const site of fixture.sites) await rollSite(pool, site.id, site.timezone, now);
}

/** Runs one case on one site with one metric set; fails with the differences; returns the sources used. */
async function check(engine: ReportEngine, site: FixtureSite, c: ReportCase, metrics: string[], label: string): Promise<ReportResult["sources"]> {
  const dates = c.dates ?? RANGE;
  let query = planReport({ id: site.id, timezone: site.timezone }, site.goals, {
    startDate: dates.startDate,
    endDate: dates.endDate,
    metrics,
    dimensions: c.dimensions,
    filters: [],
    filter: c.filter,
    orderBy: [],
    limit: MAX_LIMIT,
    pageToken: "",
    classification: c.classification ?? "",
  });
  let start = localMidnight(dates.startDate, site.timezone);
  let end = localMidnight(nextDate(dates.endDate), site.timezone);
  if (c.instants) {
    [start, end] = [Date.parse(c.instants.start), Date.parse(c.instants.end)];
    query = { ...query, range: { start, end } };
  }
  const result = await engine.run(query);
  const expected = bruteForce(site, stored, { start, end, metrics, dimensions: c.dimensions, filter: c.filter, classification: c.classification });
  const where = `${label} · ${site.timezone} · ${c.name} · [${metrics.join(", ")}]`;
  expect(differences(result, expected, c.dimensions), where).toEqual([]);
  expect(result.approximate, where).toBe(false);
  // Rows come by the first metric, largest first.
  for (let i = 1; i < result.rows.length; i++) expect(result.rows[i - 1].metrics[metrics[0]], where).toBeGreaterThanOrEqual(result.rows[i].metrics[metrics[0]]);
  return result.sources;
}

/**
 * The metrics a case runs with when rollups are on: visit and event metrics when rollups can
 * answer those, else event metrics alone (a filter on an event dimension it does not group by
 * keeps visit metrics on raw events, but not event metrics). The raw phase covers the rest.
 */
function metricsWithRollups(site: FixtureSite, c: ReportCase): string[] {
  if (c.metrics) return c.metrics;
  const withVisits = rollupMetrics(site);
  const q = planReport({ id: site.id, timezone: site.timezone }, site.goals, {
    ...(c.dates ?? RANGE), metrics: withVisits, dimensions: c.dimensions, filters: [], filter: c.filter, orderBy: [], limit: MAX_LIMIT, pageToken: "", classification: c.classification ?? "",
  });
  return rollupDimensionFor(q, q.dimensions, true) !== undefined ? withVisits : eventMetrics(site);
}

/** Runs a case on every site: with all metrics on raw events, or with what rollups can answer. */
async function checkEverySite(c: ReportCase, mode: "raw" | "rollups", label: string): Promise<ReportResult["sources"][]> {
  return Promise.all(fixture.sites.map((site) => mode === "raw"
    ? check(rawEngine, site, c, c.metrics ?? ALL_METRICS, label)
    : check(rollupEngine, site, c, metricsWithRollups(site, c), label)));
}

const rollupParts = (s: ReportResult["sources"]) => s.rollupDays + s.rollupHours;
const TIME_DIMENSIONS = new Set(["hour", "day", "week", "month"]);

beforeAll(async () => {
  database = await createMigratedTestOrm("reports-rollups");
  pool = await sqlPool(database.orm);
  rawEngine = new ReportEngine(async () => pool, { rollups: false });
  rollupEngine = new ReportEngine(async () => pool, { rollups: true });
  fixture = generateFixture(SEED, SPECS, { window: WINDOW, sessionsPerSite: 550, visitorsPerSite: 260 });
  await store(fixture.events);
  stored = [...fixture.events];
});

afterAll(async () => {
  await database?.drop();
});

describe("the fixture", () => {
  it("has what the cases need: bots, visits across local midnight and hours, late events into old hours", () => {
    expect(fixture.events.length).toBeGreaterThan(6_000);
    expect(fixture.events.some((e) => e.classification === 2)).toBe(true);
    expect(fixture.events.some((e) => e.revenue !== null)).toBe(true);
    for (const site of fixture.sites) {
      const events = fixture.events.filter((e) => e.siteId === site.id);
      const bySession = new Map<bigint, StoredEvent[]>();
      for (const e of events) bySession.set(e.sessionId, [...(bySession.get(e.sessionId) ?? []), e]);
      const crossings = [...bySession.values()].filter((list) => {
        const day = (t: number) => new Intl.DateTimeFormat("en-CA", { timeZone: site.timezone }).format(new Date(t));
        return day(list[0].ts) !== day(list[list.length - 1].ts);
      });
      expect(crossings.length, site.timezone).toBeGreaterThan(5);
      expect(fixture.late.filter((e) => e.siteId === site.id).length, site.timezone).toBeGreaterThan(10);
    }
  });
});

describe("raw events only", () => {
  it.each(CASES)("$name", async (c) => {
    const sources = await checkEverySite(c, "raw", "raw");
    expect(sources.every((s) => rollupParts(s) === 0)).toBe(true);
  });
});

describe("rollups on, the job halfway through the data", () => {
  beforeAll(async () => {
    await rollAll(PARTLY_ROLLED_AT);
  }, ROLL_TIMEOUT);

  it.each(CASES)("$name", async (c) => {
    await checkEverySite(c, "rollups", "partly rolled");
  });
});

describe("rollups on, every hour rolled", () => {
  beforeAll(async () => {
    await rollAll(ALL_ROLLED_AT);
  }, ROLL_TIMEOUT);

  it.each(CASES)("$name", async (c) => {
    const sources = await checkEverySite(c, "rollups", "rolled");
    // The first site is UTC's: its sources say whether rollups answered.
    if (c.rollup) expect(rollupParts(sources[0]), `${c.name} should read rollups`).toBeGreaterThan(0);
    // Without a time dimension, a month of whole days is read mostly from multi-day blocks.
    if (c.rollup && !c.dates && !c.instants && !c.dimensions.some((d) => TIME_DIMENSIONS.has(d))) {
      expect(sources[0].rollupBlocks, `${c.name} should read multi-day blocks`).toBeGreaterThan(0);
    }
  });
});

describe("late events into rolled hours", () => {
  beforeAll(async () => {
    await store(fixture.late);
    stored = [...fixture.events, ...fixture.late];
    const { rows } = await pool.query<{ n: string }>("select count(*) as n from rollup_dirty");
    expect(Number(rows[0].n)).toBeGreaterThan(0);
  });

  it.each(CASES)("$name", async (c) => {
    await checkEverySite(c, "rollups", "dirty");
  });

  it.each(CASES.filter((c) => !c.metrics))("raw: $name", async (c) => {
    await checkEverySite(c, "raw", "raw after late events");
  });
});

describe("after the job re-rolled the dirty hours", () => {
  beforeAll(async () => {
    await rollAll(ALL_ROLLED_AT);
    const { rows } = await pool.query<{ n: string }>("select count(*) as n from rollup_dirty");
    expect(Number(rows[0].n)).toBe(0);
  }, ROLL_TIMEOUT);

  it.each(CASES)("$name", async (c) => {
    const sources = await checkEverySite(c, "rollups", "re-rolled");
    if (c.rollup) expect(rollupParts(sources[0]), `${c.name} should read rollups`).toBeGreaterThan(0);
  });
});

describe("a late pageview in the middle of a visit", () => {
  // Batches can be stored out of order (ingest workers run concurrently): here a click at 10:20 is
  // stored before the pageview at 10:10 that preceded it. The visit's exit page is then /late
  // (its last pageview), but the session upsert in server/db/events-store.ts moves exit_page
  // only when the batch's last event is the visit's latest event, so it stays /first.
  // A pageview stored after a later event of its visit (concurrent workers, retries) is still the exit page.
  it("keeps the latest pageview as the exit page when batches are stored out of order", async () => {
    const site: FixtureSite = { id: "0e0e0e0e-0000-4000-a000-000000000001", timezone: "UTC", domain: "late.example", goals: [] };
    const start = Date.parse("2026-03-18T10:00:00Z");
    const template = fixture.events.find((e) => e.classification === 1)!;
    const event = (minute: number, name: string, pathname: string): StoredEvent => ({
      ...template, siteId: site.id, eventId: `mid${minute}`, ts: start + minute * 60_000, name, pathname, sessionId: 77n, visitorId: 78n, sessionStartedAt: start, props: {}, revenue: null,
    });
    const onTime = [event(0, "pageview", "/first"), event(20, "click", "/first")];
    const late = [event(10, "pageview", "/late")];
    await store(onTime);
    await store(late);
    const events = [...onTime, ...late];
    const c: ReportCase = { name: "by exit page", dimensions: ["exit_page"], dates: { startDate: "2026-03-18", endDate: "2026-03-18" } };
    const query = planReport({ id: site.id, timezone: site.timezone }, [], { startDate: "2026-03-18", endDate: "2026-03-18", metrics: ["visits", "pageviews"], dimensions: c.dimensions, filters: [], orderBy: [], limit: 100, pageToken: "", classification: "" });
    const result = await rawEngine.run(query);
    const expected = bruteForce(site, events, { start: query.range.start, end: query.range.end, metrics: ["visits", "pageviews"], dimensions: c.dimensions });
    expect(differences(result, expected, c.dimensions)).toEqual([]);
  });
});
