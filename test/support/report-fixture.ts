// The report engine's reference: a seeded random event set (several sites and time zones, bots,
// visits crossing hours and local midnight, properties, revenue, late events) and a brute-force
// computation of every report metric over it, written from the definitions in docs/metrics.md.
//
// The brute force shares no logic with server/core/reports: it walks the events in memory, with
// its own time-zone arithmetic, filter matching, goal matching and grouping. Only input types are
// imported, so a test can hand the same request to both and compare.
import type { FilterInput, FilterTreeInput, GoalDefinition } from "../../server/core/reports/query.js";
import type { StoredEvent } from "../../server/db/events-store.js";

const SECOND = 1_000;
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

// ---- seeded randomness --------------------------------------------------------------------------

/** mulberry32: small, fast, and the same sequence on every machine for a seed. */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(list: readonly T[]): T {
    return list[Math.floor(this.next() * list.length)];
  }

  /** A signed 64-bit id, as visitor and session ids are stored (negative ones included). */
  id64(): bigint {
    const high = BigInt(Math.floor(this.next() * 2 ** 32));
    const low = BigInt(Math.floor(this.next() * 2 ** 32));
    return BigInt.asIntN(64, (high << 32n) | low);
  }

  uuid(): string {
    const hex = Array.from({ length: 32 }, () => this.int(0, 15).toString(16)).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
  }
}

// ---- local time, independently of server/core/reports/time.ts ------------------------------------

const clocks = new Map<string, Intl.DateTimeFormat>();

interface Wall {
  year: number;
  month: number;
  day: number;
  hour: number;
}

function wall(instant: number, timeZone: string): Wall {
  let clock = clocks.get(timeZone);
  if (!clock) {
    clock = new Intl.DateTimeFormat("en-US", { timeZone, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric", hour: "numeric" });
    clocks.set(timeZone, clock);
  }
  const parts = Object.fromEntries(clock.formatToParts(new Date(instant)).map((p) => [p.type, p.value]));
  return { year: Number(parts.year), month: Number(parts.month), day: Number(parts.day), hour: Number(parts.hour) % 24 };
}

const two = (n: number) => String(n).padStart(2, "0");

function wallDate(w: Wall): string {
  return `${w.year}-${two(w.month)}-${two(w.day)}`;
}

/** The label of the site-local hour, day, ISO week (its Monday) or month holding `instant`. */
export function localLabel(instant: number, bucket: "hour" | "day" | "week" | "month", timeZone: string): string {
  const w = wall(instant, timeZone);
  switch (bucket) {
    case "hour":
      return `${wallDate(w)} ${two(w.hour)}:00`;
    case "day":
      return wallDate(w);
    case "week": {
      const noon = Date.UTC(w.year, w.month - 1, w.day, 12);
      const sinceMonday = (new Date(noon).getUTCDay() + 6) % 7;
      return new Date(noon - sinceMonday * DAY).toISOString().slice(0, 10);
    }
    case "month":
      return `${w.year}-${two(w.month)}`;
  }
}

const midnights = new Map<string, number>();

/** The first instant of local date `date` (YYYY-MM-DD) in `timeZone`, found by bisection. */
export function localMidnight(date: string, timeZone: string): number {
  const cacheKey = `${timeZone} ${date}`;
  const cached = midnights.get(cacheKey);
  if (cached !== undefined) return cached;
  const utcMidnight = Date.parse(`${date}T00:00:00Z`);
  // Every zone's offset is within ±15 h: the local day starts in this window.
  let low = utcMidnight - 15 * HOUR;
  let high = utcMidnight + 15 * HOUR;
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (wallDate(wall(mid, timeZone)) >= date) high = mid;
    else low = mid;
  }
  midnights.set(cacheKey, high);
  return high;
}

export function nextDate(date: string, days = 1): string {
  return new Date(Date.parse(`${date}T00:00:00Z`) + days * DAY).toISOString().slice(0, 10);
}

// ---- the generated data ------------------------------------------------------------------------

export interface FixtureSite {
  id: string;
  timezone: string;
  domain: string;
  /** In creation order: the order "the first goal an event completes" refers to. */
  goals: GoalDefinition[];
}

export interface FixtureSiteSpec {
  timezone: string;
  goals: GoalDefinition[];
}

export interface Fixture {
  sites: FixtureSite[];
  /** Everything stored before the first roll, in time order. */
  events: StoredEvent[];
  /** Stored after the rollups ran: into hours already rolled, some continuing earlier visits. */
  late: StoredEvent[];
}

export interface FixtureOptions {
  /** Events fall in [start, end). */
  window: { start: number; end: number };
  sessionsPerSite: number;
  visitorsPerSite: number;
}

const PATHS = ["/", "/pricing", "/blog/hello-world", "/blog/Second-Post", "/docs/start", "/docs/api", "/checkout/done", "/about", "/it's-a-path", "/signup/thanks"];
const PLACES = [
  { country: "US", region: "US-NY", city: "New York" },
  { country: "US", region: "US-CA", city: "San Francisco" },
  { country: "IN", region: "IN-MH", city: "Mumbai" },
  { country: "DE", region: "DE-BE", city: "Berlin" },
  { country: "AU", region: "AU-NSW", city: "Sydney" },
  { country: "", region: "", city: "" },
];
const AGENTS = [
  { browser: "Chrome", versions: ["120.0", "121.0"], os: "Windows", osVersions: ["10", "11"], device: "desktop", screen: "1920x1080" },
  { browser: "Firefox", versions: ["121.0"], os: "Linux", osVersions: [""], device: "desktop", screen: "2560x1440" },
  { browser: "Safari", versions: ["17.1", "17.2"], os: "iOS", osVersions: ["17.1", "17.2"], device: "mobile", screen: "390x844" },
  { browser: "Chrome", versions: ["120.0"], os: "Android", osVersions: ["14"], device: "tablet", screen: "800x1280" },
  { browser: "Edge", versions: ["120.0"], os: "macOS", osVersions: ["14.2"], device: "desktop", screen: "1440x900" },
];
const BOT_AGENT = { browser: "Googlebot", versions: ["2.1"], os: "", osVersions: [""], device: "bot", screen: "" };
const LANGUAGES = ["en-US", "de-DE", "hi-IN", "en-AU"];
/** A visit's arrival: referrer, source and medium as enrichment derives them, and campaign tags. */
const ARRIVALS = [
  { referrer: "https://www.google.com/", source: "Google", medium: "search", utm: ["", "", "", "", ""] },
  { referrer: "https://t.co/abc", source: "Twitter", medium: "social", utm: ["", "", "", "", ""] },
  { referrer: "", source: "", medium: "direct", utm: ["", "", "", "", ""] },
  { referrer: "", source: "newsletter", medium: "email", utm: ["newsletter", "email", "Spring-Sale", "plans", "hero"] },
  { referrer: "https://news.ycombinator.com/item?id=1", source: "news.ycombinator.com", medium: "referral", utm: ["", "", "", "", ""] },
  { referrer: "https://www.bing.com/", source: "Bing", medium: "search", utm: ["bing", "cpc", "brand", "beacon analytics", ""] },
];

interface Visitor {
  id: bigint;
  place: (typeof PLACES)[number];
  agent: typeof BOT_AGENT;
  browserVersion: string;
  osVersion: string;
  language: string;
  classification: number;
}

/** A custom event's name and properties; revenue for purchases (sometimes left to the goal's value). */
function customEvent(random: Random): Pick<StoredEvent, "name" | "props" | "revenue"> {
  switch (random.int(0, 4)) {
    case 0:
      return { name: "signup", props: { plan: random.pick(["free", "pro"]) }, revenue: null };
    case 1:
      return { name: "purchase", props: { plan: random.pick(["free", "pro"]) }, revenue: random.chance(0.7) ? random.int(199, 9999) / 100 : null };
    case 2:
      return { name: "click", props: { variant: random.int(1, 2), internal: random.chance(0.5) }, revenue: null };
    case 3:
      return { name: "download", props: { file: "guide.pdf" }, revenue: null };
    default:
      return { name: "Outbound Link", props: {}, revenue: null };
  }
}

function pageviewProps(random: Random): Record<string, unknown> {
  return random.chance(0.3) ? { plan: random.pick(["free", "pro", "enterprise"]) } : {};
}

/**
 * Generates the sites' events. Visits are runs of events of one visitor under one session id;
 * their first event carries the arrival (source, campaign), later ones are internal navigation.
 */
export function generateFixture(seed: number, specs: FixtureSiteSpec[], options: FixtureOptions): Fixture {
  const random = new Random(seed);
  const sites: FixtureSite[] = specs.map((spec, i) => ({ id: random.uuid(), timezone: spec.timezone, domain: `site${i + 1}.example`, goals: spec.goals }));
  const events: StoredEvent[] = [];
  const late: StoredEvent[] = [];
  let eventCounter = 0;
  const { start: windowStart, end: windowEnd } = options.window;

  for (const site of sites) {
    const visitors: Visitor[] = Array.from({ length: options.visitorsPerSite }, () => {
      const bot = random.chance(0.08);
      const agent = bot ? BOT_AGENT : random.pick(AGENTS);
      return {
        id: random.id64(),
        place: random.pick(PLACES),
        agent,
        browserVersion: random.pick(agent.versions),
        osVersion: random.pick(agent.osVersions),
        language: bot ? "" : random.pick(LANGUAGES),
        classification: bot ? 2 : 1,
      };
    });

    const makeEvent = (visitor: Visitor, sessionId: bigint, sessionStartedAt: number, ts: number, first: boolean, arrival: (typeof ARRIVALS)[number], prefix: string): StoredEvent => {
      const pageview = first ? random.chance(0.85) : random.chance(0.65);
      const body = pageview ? { name: "pageview", props: pageviewProps(random), revenue: null } : customEvent(random);
      const hostname = random.chance(0.85) ? site.domain : `www.${site.domain}`;
      const campaignInside = !first && random.chance(0.1);
      return {
        siteId: site.id,
        ts,
        eventId: `${prefix}${++eventCounter}`,
        name: body.name,
        visitorId: visitor.id,
        sessionId,
        sessionStartedAt,
        hostname,
        pathname: random.pick(PATHS),
        title: "",
        referrer: first ? arrival.referrer : `https://${hostname}${random.pick(PATHS)}`,
        referrerSource: first ? arrival.source : "",
        referrerMedium: first ? arrival.medium : "internal",
        utmSource: first ? arrival.utm[0] : "",
        utmMedium: first ? arrival.utm[1] : "",
        utmCampaign: first ? arrival.utm[2] : campaignInside ? "internal-promo" : "",
        utmTerm: first ? arrival.utm[3] : "",
        utmContent: first ? arrival.utm[4] : "",
        clickId: "",
        country: visitor.place.country,
        region: visitor.place.region,
        city: visitor.place.city,
        browser: visitor.agent.browser,
        browserVersion: visitor.browserVersion,
        os: visitor.agent.os,
        osVersion: visitor.osVersion,
        deviceType: visitor.agent.device,
        screen: visitor.agent.screen,
        language: visitor.language,
        classification: visitor.classification as 1 | 2,
        props: body.props,
        revenue: body.revenue,
        receivedAt: ts,
      };
    };

    /** A start time: mostly uniform, some just before local midnight or a UTC hour so visits cross them. */
    const sessionStart = (from: number, to: number): number => {
      const roll = random.next();
      const uniform = from + Math.floor(random.next() * (to - from));
      if (roll < 0.15) {
        const date = localLabel(uniform, "day", site.timezone);
        return localMidnight(nextDate(date), site.timezone) - random.int(1, 40 * 60) * SECOND - random.int(0, 999);
      }
      if (roll < 0.3) return Math.floor(uniform / HOUR) * HOUR + HOUR - random.int(1, 15 * 60) * SECOND - random.int(0, 999);
      return uniform;
    };

    const gap = (): number => {
      const roll = random.next();
      const seconds = roll < 0.8 ? random.int(5, 300) : roll < 0.95 ? random.int(300, 1500) : random.int(1500, 1740);
      return seconds * SECOND + random.int(0, 999);
    };

    type Visit = { visitor: Visitor; sessionId: bigint; start: number; events: StoredEvent[] };
    const visits: Visit[] = [];
    const newVisit = (from: number, to: number, count: number, prefix: string, into: StoredEvent[]): Visit => {
      const visitor = random.pick(visitors);
      const sessionId = random.id64();
      const start = sessionStart(from, to);
      const arrival = random.pick(ARRIVALS);
      const visit: Visit = { visitor, sessionId, start, events: [] };
      let ts = start;
      for (let i = 0; i < count; i++) {
        if (i > 0) ts += gap();
        const event = makeEvent(visitor, sessionId, start, ts, i === 0, arrival, prefix);
        visit.events.push(event);
        into.push(event);
      }
      return visit;
    };

    for (let n = 0; n < options.sessionsPerSite; n++) {
      const count = random.chance(0.3) ? 1 : random.int(2, 10);
      visits.push(newVisit(windowStart, windowEnd - 6 * HOUR, count, "e", events));
    }

    // Late events, stored after the rollups: pages appended to people's visits (a new exit page,
    // a longer visit, a bounce no more), ideally visits spanning several hours; and new visits in
    // old hours, one of them a bot's.
    const people = visits.filter((v) => v.visitor.classification === 1);
    const spanning = people.filter((v) => Math.floor(v.events[v.events.length - 1].ts / HOUR) > Math.floor(v.start / HOUR) && v.events.some((e) => e.name === "pageview"));
    const bounced = people.filter((v) => v.events.length === 1 && v.events[0].name === "pageview");
    const extend = (visit: Visit, pageview: boolean) => {
      const last = visit.events[visit.events.length - 1];
      const ts = last.ts + random.int(60, 1200) * SECOND + random.int(0, 999);
      const arrival = ARRIVALS[0];
      let event = makeEvent(visit.visitor, visit.sessionId, visit.start, ts, false, arrival, "late");
      if (pageview && event.name !== "pageview") event = { ...event, name: "pageview", props: {}, revenue: null };
      if (!pageview && event.name === "pageview") event = { ...event, name: "click", props: { variant: 2 }, revenue: null };
      visit.events.push(event);
      late.push(event);
    };
    for (const visit of spanning.slice(0, 8)) extend(visit, true);
    for (const visit of people.slice(0, 6)) extend(visit, random.chance(0.5));
    for (const visit of bounced.slice(0, 4)) extend(visit, false);
    for (let n = 0; n < 4; n++) newVisit(windowStart, windowEnd - 6 * HOUR, random.int(1, 3), "late", late);
    const bot = visitors.find((v) => v.classification === 2);
    if (bot) {
      const sessionId = random.id64();
      const start = sessionStart(windowStart, windowEnd - 6 * HOUR);
      late.push(makeEvent(bot, sessionId, start, start, true, ARRIVALS[2], "late"));
    }
  }
  events.sort((a, b) => a.ts - b.ts);
  late.sort((a, b) => a.ts - b.ts);
  return { sites, events, late };
}

// ---- the brute force ---------------------------------------------------------------------------

export const EVENT_METRIC_NAMES = ["pageviews", "events", "visitors", "conversions", "conversion_rate", "revenue"];
export const VISIT_METRIC_NAMES = ["visits", "bounce_rate", "visit_duration", "views_per_visit"];

export interface BruteQuery {
  start: number;
  end: number;
  metrics: string[];
  dimensions: string[];
  filter?: FilterTreeInput;
  classification?: "USER" | "BOT" | "ALL";
}

export interface BruteRow {
  dimensions: Record<string, string>;
  metrics: Record<string, number>;
}

export interface BruteResult {
  /** By the JSON array of the row's dimension values, in the query's order. */
  rows: Map<string, BruteRow>;
  totals: Record<string, number>;
}

interface Visit {
  id: string;
  start: number;
  events: StoredEvent[];
  classification: number;
  first: StoredEvent;
  entryPage: string;
  exitPage: string;
  pageviews: number;
  bounce: boolean;
  durationSeconds: number;
}

/** What a dimension or condition is evaluated against: an event (of a visit), at a time, of a class. */
interface Subject {
  event: StoredEvent;
  visit: Visit;
  /** The event's time for event metrics, the visit's start for visit metrics. */
  time: number;
  classification: number;
}

const EVENT_FIELDS: Record<string, (e: StoredEvent) => string> = {
  page: (e) => e.pathname,
  hostname: (e) => e.hostname,
  referrer: (e) => e.referrer,
  country: (e) => e.country,
  region: (e) => e.region,
  city: (e) => e.city,
  browser: (e) => e.browser,
  browser_version: (e) => e.browserVersion,
  os: (e) => e.os,
  os_version: (e) => e.osVersion,
  device_type: (e) => e.deviceType,
  screen: (e) => e.screen,
  language: (e) => e.language,
  event_name: (e) => e.name,
};

const VISIT_FIELDS: Record<string, (v: Visit) => string> = {
  entry_page: (v) => v.entryPage,
  exit_page: (v) => v.exitPage,
  source: (v) => v.first.referrerSource,
  medium: (v) => v.first.referrerMedium,
  utm_source: (v) => v.first.utmSource,
  utm_medium: (v) => v.first.utmMedium,
  utm_campaign: (v) => v.first.utmCampaign,
  utm_term: (v) => v.first.utmTerm,
  utm_content: (v) => v.first.utmContent,
};

/** A property as text: strings as they are, numbers and booleans as JSON writes them, absent as ''. */
function propertyText(value: unknown): string {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function completes(goal: GoalDefinition, e: StoredEvent): boolean {
  if (goal.type === "event") {
    if (e.name !== goal.value) return false;
    return !goal.propertyKey || propertyText(e.props[goal.propertyKey]) === (goal.propertyValue ?? "");
  }
  if (e.name !== "pageview") return false;
  if (goal.matchType === "equals") return e.pathname === goal.value;
  if (goal.matchType === "starts_with") return e.pathname.startsWith(goal.value);
  return new RegExp(goal.value).test(e.pathname);
}

const NEGATED: Record<string, string> = { not_equals: "equals", not_contains: "contains", not_in: "in" };

function valueMatches(value: string, operator: string, values: string[]): boolean {
  switch (operator) {
    case "equals":
      return value === values[0];
    case "not_equals":
      return value !== values[0];
    case "contains":
      return value.toLowerCase().includes(values[0].toLowerCase());
    case "not_contains":
      return !value.toLowerCase().includes(values[0].toLowerCase());
    case "starts_with":
      return value.startsWith(values[0]);
    case "regex":
      return new RegExp(values[0]).test(value);
    case "in":
      return values.includes(value);
    case "not_in":
      return !values.includes(value);
    default:
      throw new Error(`brute force: unknown operator ${operator}`);
  }
}

/**
 * Computes a report from the events by the definitions: event metrics over events in the range,
 * visit metrics over visits that started in it with a matching event.
 */
export function bruteForce(site: FixtureSite, allEvents: StoredEvent[], q: BruteQuery): BruteResult {
  const events = allEvents.filter((e) => e.siteId === site.id).sort((a, b) => a.ts - b.ts);
  const visits = new Map<string, Visit>();
  for (const e of events) {
    const id = e.sessionId.toString();
    let visit = visits.get(id);
    if (!visit) {
      visit = { id, start: e.ts, events: [], classification: e.classification, first: e, entryPage: "", exitPage: "", pageviews: 0, bounce: true, durationSeconds: 0 };
      visits.set(id, visit);
    }
    visit.events.push(e);
  }
  for (const visit of visits.values()) {
    const pages = visit.events.filter((e) => e.name === "pageview");
    visit.pageviews = pages.length;
    visit.entryPage = pages[0]?.pathname ?? "";
    visit.exitPage = pages[pages.length - 1]?.pathname ?? "";
    visit.bounce = pages.length <= 1 && visit.events.length <= 1;
    visit.durationSeconds = Math.round((visit.events[visit.events.length - 1].ts - visit.start) / SECOND);
  }
  const visitOf = (e: StoredEvent) => visits.get(e.sessionId.toString())!;
  const goalsOf = (e: StoredEvent) => site.goals.filter((g) => completes(g, e)).map((g) => g.name);

  const mentionsClassification = (node: FilterTreeInput | undefined): boolean => {
    if (!node) return false;
    if ("filter" in node) return node.filter.dimension === "classification";
    if ("not" in node) return mentionsClassification(node.not);
    return ("and" in node ? node.and : node.or).some(mentionsClassification);
  };
  const classification = q.classification ?? (q.dimensions.includes("classification") || mentionsClassification(q.filter) ? "ALL" : "USER");
  const classOk = (c: number) => classification === "ALL" || (classification === "USER" ? c === 1 : c === 2);

  /** The values a dimension takes for a subject: one, or for `goal` the goals completed (maybe none). */
  const valuesOf = (dimension: string, s: Subject): string[] => {
    if (dimension === "hour" || dimension === "day" || dimension === "week" || dimension === "month") return [localLabel(s.time, dimension, site.timezone)];
    if (dimension === "classification") return [s.classification === 2 ? "BOT" : "USER"];
    if (dimension === "goal") return goalsOf(s.event);
    if (dimension.startsWith("prop:")) return [propertyText(s.event.props[dimension.slice(5)])];
    if (dimension in VISIT_FIELDS) return [VISIT_FIELDS[dimension](s.visit)];
    if (dimension in EVENT_FIELDS) return [EVENT_FIELDS[dimension](s.event)];
    throw new Error(`brute force: unknown dimension ${dimension}`);
  };

  const conditionHolds = (f: FilterInput, s: Subject): boolean => {
    const values = valuesOf(f.dimension, s);
    if (f.dimension !== "goal") return valueMatches(values[0], f.operator, f.values);
    // A goal condition asks about the set of goals the event completes.
    const negated = NEGATED[f.operator];
    return negated ? !values.some((v) => valueMatches(v, negated, f.values)) : values.some((v) => valueMatches(v, f.operator, f.values));
  };

  const holds = (node: FilterTreeInput | undefined, s: Subject): boolean => {
    if (!node) return true;
    if ("filter" in node) return conditionHolds(node.filter, s);
    if ("not" in node) return !holds(node.not, s);
    if ("and" in node) return node.and.every((n) => holds(n, s));
    return node.or.some((n) => holds(n, s));
  };

  /** Every combination of the dimensions' values: the groups a subject belongs to. */
  const keysOf = (dimensions: string[], s: Subject): string[][] => {
    let keys: string[][] = [[]];
    for (const d of dimensions) keys = keys.flatMap((k) => valuesOf(d, s).map((v) => [...k, v]));
    return keys;
  };

  const eventSubject = (e: StoredEvent): Subject => ({ event: e, visit: visitOf(e), time: e.ts, classification: e.classification });
  const visitSubject = (v: Visit, e: StoredEvent): Subject => ({ event: e, visit: v, time: v.start, classification: v.classification });

  const inRange = events.filter((e) => e.ts >= q.start && e.ts < q.end && classOk(e.classification) && holds(q.filter, eventSubject(e)));
  const visitsInRange = [...visits.values()].filter((v) => v.start >= q.start && v.start < q.end && classOk(v.classification));
  /** A visit's events that can make it match: within a day of its start. */
  const looked = (v: Visit) => v.events.filter((e) => Math.abs(e.ts - v.start) < DAY);

  interface Aggregate {
    key: string[];
    pageviews: number;
    events: number;
    visitors: Set<bigint>;
    converted: Set<bigint>;
    revenue: number;
    visits: number;
    bounces: number;
    duration: number;
    visitPageviews: number;
  }
  const aggregate = (dimensions: string[]) => {
    const groups = new Map<string, Aggregate>();
    const group = (key: string[]) => {
      const id = JSON.stringify(key);
      let g = groups.get(id);
      if (!g) groups.set(id, (g = { key, pageviews: 0, events: 0, visitors: new Set(), converted: new Set(), revenue: 0, visits: 0, bounces: 0, duration: 0, visitPageviews: 0 }));
      return g;
    };
    const goalIndex = dimensions.indexOf("goal");
    const wantEvents = q.metrics.some((m) => EVENT_METRIC_NAMES.includes(m));
    const wantVisits = q.metrics.some((m) => VISIT_METRIC_NAMES.includes(m));
    if (wantEvents) {
      for (const e of inRange) {
        const completed = goalsOf(e);
        for (const key of keysOf(dimensions, eventSubject(e))) {
          const g = group(key);
          g.events++;
          if (e.name === "pageview") g.pageviews++;
          g.visitors.add(e.visitorId);
          // In a goal row every event completed the row's goal; elsewhere any goal converts.
          if (goalIndex >= 0 || completed.length > 0) g.converted.add(e.visitorId);
          let revenue = e.revenue;
          if (revenue === null) {
            // The row's goal in goal rows; else the first goal (in creation order) the event
            // completes that has a value (a goal without a value has none to give).
            const goal = goalIndex >= 0 ? site.goals.find((x) => x.name === key[goalIndex]) : site.goals.find((x) => x.valueNumeric !== null && completed.includes(x.name));
            revenue = goal?.valueNumeric ?? 0;
          }
          g.revenue += revenue;
        }
      }
    }
    if (wantVisits) {
      for (const v of visitsInRange) {
        const keys = new Map<string, string[]>();
        for (const e of looked(v)) {
          const s = visitSubject(v, e);
          if (!holds(q.filter, s)) continue;
          for (const key of keysOf(dimensions, s)) keys.set(JSON.stringify(key), key);
        }
        for (const key of keys.values()) {
          const g = group(key);
          g.visits++;
          if (v.bounce) g.bounces++;
          g.duration += v.durationSeconds;
          g.visitPageviews += v.pageviews;
        }
      }
    }
    return groups;
  };

  const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
  const metricsOf = (g: Aggregate, baseVisitors: number | undefined): Record<string, number> => {
    const values: Record<string, number> = {
      pageviews: g.pageviews,
      events: g.events,
      visitors: g.visitors.size,
      conversions: g.converted.size,
      conversion_rate: ratio(g.converted.size, baseVisitors ?? g.visitors.size),
      revenue: g.revenue,
      visits: g.visits,
      bounce_rate: ratio(g.bounces, g.visits),
      visit_duration: ratio(g.duration, g.visits),
      views_per_visit: ratio(g.visitPageviews, g.visits),
    };
    return Object.fromEntries(q.metrics.map((m) => [m, values[m]]));
  };

  const totalGroups = aggregate([]);
  const total: Aggregate = totalGroups.get("[]") ?? { key: [], pageviews: 0, events: 0, visitors: new Set(), converted: new Set(), revenue: 0, visits: 0, bounces: 0, duration: 0, visitPageviews: 0 };
  const base = q.dimensions.includes("goal") ? total.visitors.size : undefined;
  const rows = new Map<string, BruteRow>();
  for (const [id, g] of aggregate(q.dimensions)) {
    rows.set(id, { dimensions: Object.fromEntries(q.dimensions.map((d, i) => [d, g.key[i]])), metrics: metricsOf(g, base) });
  }
  return { rows, totals: metricsOf(total, undefined) };
}

// ---- comparing ---------------------------------------------------------------------------------

const COUNT_METRICS = new Set(["pageviews", "events", "visitors", "conversions", "visits"]);

/** True when two metric values agree: counts exactly, ratios and money within 1e-9 (relative above 1). */
export function sameMetric(name: string, actual: number, expected: number): boolean {
  if (COUNT_METRICS.has(name)) return actual === expected;
  return Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected));
}

export interface ComparedRow {
  dimensions: Record<string, string>;
  metrics: Record<string, number>;
}

/** Differences between an engine answer and the brute force, described for a failure message (empty: equal). */
export function differences(actual: { rows: ComparedRow[]; totalRows: number; totals: Record<string, number> }, expected: BruteResult, dimensions: string[], limit = 12): string[] {
  const out: string[] = [];
  const keyOf = (row: ComparedRow) => JSON.stringify(dimensions.map((d) => row.dimensions[d]));
  if (actual.totalRows !== expected.rows.size) out.push(`total_rows ${actual.totalRows}, expected ${expected.rows.size}`);
  for (const [name, value] of Object.entries(expected.totals)) {
    if (!sameMetric(name, actual.totals[name], value)) out.push(`totals.${name} ${actual.totals[name]}, expected ${value}`);
  }
  const seen = new Set<string>();
  for (const row of actual.rows) {
    const key = keyOf(row);
    if (seen.has(key)) out.push(`row ${key} appears twice`);
    seen.add(key);
    const want = expected.rows.get(key);
    if (!want) {
      out.push(`unexpected row ${key} ${JSON.stringify(row.metrics)}`);
      continue;
    }
    for (const [name, value] of Object.entries(want.metrics)) {
      if (!sameMetric(name, row.metrics[name], value)) out.push(`row ${key}: ${name} ${row.metrics[name]}, expected ${value}`);
    }
  }
  for (const [key, row] of expected.rows) if (!seen.has(key)) out.push(`missing row ${key} ${JSON.stringify(row.metrics)}`);
  return out.length > limit ? [...out.slice(0, limit), `… and ${out.length - limit} more`] : out;
}
