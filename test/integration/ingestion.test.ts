// Ingestion acceptance, end to end: a real server on port 0 with its BullMQ workers in process,
// real Postgres and Redis. Events go in through the Connect TrackingService and the tests read
// what the workers wrote to the events and sessions tables: enrichment, bot labels for a list of
// real user agents, visitor ids, sessions (timeouts, midnight, retried batches), deduplication,
// Do Not Track and the custom-event rate limit.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Job } from "bullmq";
import { Queue } from "bullmq";
import type { Event, EventSchema } from "../../gen/beacon/v1/event_pb.js";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import type { SiteSettingsSchema } from "../../gen/beacon/v1/site_pb.js";
import { TrackingService, TrackStatus } from "../../gen/beacon/v1/tracking_service_pb.js";
import { createGeoLookup } from "../../server/core/enrich/geo.js";
import type { RawHit } from "../../server/core/ingest/hit.js";
import { SiteDirectory } from "../../server/core/ingest/sites.js";
import { sqlPool } from "../../server/db/orm.js";
import { createLogger } from "../../server/logger.js";
import { createIngestProcessor } from "../../workers/processors/ingest.js";
import { type IngestBatchJob, QUEUES } from "../../workers/queues.js";
import { startTestBeacon, type TestBeacon } from "../support/beacon.js";
import { rawHit } from "../support/raw-hit.js";

type EventInit = MessageInitShape<typeof EventSchema>;
/** Event fields to set on top of a pageview. */
type EventFields = Partial<Omit<Event, "$typeName" | "$unknown">>;
type SettingsInit = MessageInitShape<typeof SiteSettingsSchema>;

const CHROME_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const SAFARI_IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** Midnight UTC that began today. Event times are fixed relative to it, always in the accepted past. */
const TODAY = Math.floor(Date.now() / DAY) * DAY;
/** `daysAgo` days before today, at hh:mm UTC. */
const at = (daysAgo: number, hours: number, minutes = 0) => TODAY - daysAgo * DAY + hours * HOUR + minutes * MINUTE;

let beacon: TestBeacon;
let tracking: Client<typeof TrackingService>;
let management: Client<typeof ManagementService>;
let ingestQueue: Queue;

function bearer(key: string): Interceptor {
  return (next) => (req) => {
    req.header.set("Authorization", `Bearer ${key}`);
    return next(req);
  };
}

beforeAll(async () => {
  beacon = await startTestBeacon("ingestion", { workers: true });
  tracking = createClient(TrackingService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1" }));
  management = createClient(ManagementService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [bearer(beacon.adminKey)] }));
  ingestQueue = new Queue(QUEUES.ingest, { connection: beacon.connection(), prefix: beacon.prefix });
});

afterAll(async () => {
  await ingestQueue?.close();
  await beacon?.stop();
});

interface TestSite {
  id: string;
  trackingId: string;
  domain: string;
}

let siteCount = 0;
async function createSite(label: string, settings: SettingsInit = {}): Promise<TestSite> {
  const domain = `${label}-${++siteCount}.example.com`;
  const { site } = await management.createSite({ domain, settings });
  if (!site) throw new Error("CreateSite returned no site");
  return { id: site.id, trackingId: site.trackingId, domain };
}

/** The headers a browser at `ip` running `userAgent` sends through a proxy that sets X-Forwarded-For. */
function from(ip: string, userAgent = CHROME_WINDOWS, extra: Record<string, string> = {}) {
  return { headers: { "User-Agent": userAgent, "X-Forwarded-For": ip, ...extra } };
}

function pageview(site: TestSite, path: string, ts?: number, extra: EventFields = {}): EventInit {
  return { name: "pageview", url: `https://${site.domain}${path}`, timestamp: ts === undefined ? undefined : timestampFromMs(ts), ...extra };
}

async function rows<T>(sql: string, params: unknown[] = []): Promise<T[]> {
  const pool = await sqlPool(beacon.orm);
  return (await pool.query(sql, params)).rows as T[];
}

/** Polls `read` until `done` holds; fails naming `what` after a generous deadline (no timing is asserted). */
async function eventually<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, deadlineMs = 60_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}; last value: ${JSON.stringify(value)}`);
    await new Promise((wake) => setTimeout(wake, 50));
  }
}

/** Waits until the ingest queue holds nothing waiting, running or scheduled for retry. */
async function queueIdle(): Promise<void> {
  await eventually(
    "the ingest queue to drain",
    () => ingestQueue.getJobCounts("waiting", "active", "delayed", "prioritized", "waiting-children"),
    (counts) => Object.values(counts).every((n) => n === 0),
  );
}

async function eventCount(siteId: string): Promise<number> {
  const [{ n }] = await rows<{ n: string }>("select count(*) as n from events where site_id = $1", [siteId]);
  return Number(n);
}

/** Waits for at least `n` stored events of the site and for the queue to drain, then returns them in time order. */
async function storedEvents(site: TestSite, n: number): Promise<EventRow[]> {
  await eventually(`${n} stored events of ${site.domain}`, () => eventCount(site.id), (count) => count >= n);
  await queueIdle();
  return rows<EventRow>("select * from events where site_id = $1 order by ts, event_id", [site.id]);
}

/** The site's events, each with the transaction that stored it (xmin): how the stores grouped them. */
async function eventsWithTx(site: TestSite): Promise<(EventRow & { tx: string })[]> {
  return rows<EventRow & { tx: string }>("select *, xmin::text as tx from events where site_id = $1", [site.id]);
}

async function sessionsOf(site: TestSite): Promise<SessionRow[]> {
  return rows<SessionRow>("select * from sessions where site_id = $1 order by started_at, session_id", [site.id]);
}

interface EventRow {
  event_id: string;
  ts: string;
  name: string;
  visitor_id: string;
  session_id: string;
  hostname: string;
  pathname: string;
  title: string;
  referrer: string;
  referrer_source: string;
  referrer_medium: string;
  utm_source: string;
  utm_medium: string;
  utm_campaign: string;
  utm_term: string;
  utm_content: string;
  click_id: string;
  country: string;
  browser: string;
  browser_version: string;
  os: string;
  os_version: string;
  device_type: string;
  screen: string;
  language: string;
  classification: number;
  props: Record<string, unknown>;
  revenue: string | null;
}

interface SessionRow {
  session_id: string;
  visitor_id: string;
  started_at: string;
  ended_at: string;
  entry_page: string;
  exit_page: string;
  pageviews: number;
  events: number;
  is_bounce: boolean;
  duration_seconds: number;
  referrer_source: string;
  country: string;
  browser: string;
  classification: number;
}

/** The ConnectError a call fails with; fails the test if the call succeeds. */
async function failure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail, but it succeeded");
}

describe("enrichment", () => {
  it("turns a pageview into a row with browser, place, source, campaign, sanitised properties and revenue, and never stores the IP", async () => {
    const site = await createSite("shop");
    const campaignUrl = `https://${site.domain}/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring&utm_term=plans&utm_content=hero&gclid=abc123`;
    const properties: JsonObject = {
      plan: "<b>pro</b>",
      seats: 5,
      trial: true,
      nested: { level: { deep: "yes" } },
      tooDeep: { a: { b: { c: "dropped" } } },
      list: [1, 2, 3],
    };
    await tracking.trackEvents(
      {
        trackingId: site.trackingId,
        events: [
          pageview(site, "/", at(1, 10), { eventId: "from-google", referrer: "https://www.google.com/", title: "Home", screen: "1920x1080", language: "en-GB" }),
          {
            eventId: "from-newsletter",
            name: "pageview",
            url: campaignUrl,
            referrer: "https://www.google.com/",
            title: "<i>Pricing</i>",
            timestamp: timestampFromMs(at(1, 10, 5)),
            properties,
            revenue: 19.99,
            currency: "eur",
          },
        ],
      },
      from("8.8.8.8"),
    );
    const [home, pricing] = await storedEvents(site, 2);

    // Referrer alone: a known search engine.
    expect(home).toMatchObject({ event_id: "from-google", hostname: site.domain, pathname: "/", referrer: "google.com", referrer_source: "Google", referrer_medium: "search", utm_source: "", title: "Home", screen: "1920x1080", language: "en-GB" });
    // With utm_* tags, referrer.ts lets the tags win: utm_source names the source (unknown names
    // are kept as sent) and utm_medium=email makes the medium email; the referrer is still kept.
    expect(pricing).toMatchObject({
      event_id: "from-newsletter",
      hostname: site.domain,
      pathname: "/pricing",
      title: "Pricing",
      referrer: "google.com",
      referrer_source: "newsletter",
      referrer_medium: "email",
      utm_source: "newsletter",
      utm_medium: "email",
      utm_campaign: "spring",
      utm_term: "plans",
      utm_content: "hero",
      click_id: "gclid:abc123",
    });
    for (const row of [home, pricing]) {
      expect(row).toMatchObject({ country: "US", browser: "Chrome", browser_version: "120.0", os: "Windows", os_version: "10", device_type: "desktop", classification: 1 });
    }
    // Nested objects flattened with dots (three levels at most), HTML stripped, lists dropped.
    expect(pricing.props).toEqual({ plan: "pro", seats: 5, trial: true, "nested.level.deep": "yes" });
    expect(Number(pricing.revenue)).toBe(19.99);
    expect(home.revenue).toBeNull();
    expect(home.visitor_id).toBe(pricing.visitor_id);
    expect(home.session_id).toBe(pricing.session_id);

    const [session] = await sessionsOf(site);
    expect(session).toMatchObject({ referrer_source: "Google", country: "US", browser: "Chrome", classification: 1 });

    for (const table of ["events", "sessions", "dead_letters"]) {
      const found = await rows<{ n: string }>(`select count(*) as n from ${table} t where t::text like '%8.8.8.8%'`);
      expect(Number(found[0].n), `rows of ${table} holding the raw IP`).toBe(0);
    }
  });

  it("labels every user agent of the fixture as USER or BOT as the fixture does, through the whole pipeline", async () => {
    const fixture = JSON.parse(readFileSync(new URL("../fixtures/user-agents.json", import.meta.url), "utf8")) as { ua: string; bot: boolean }[];
    expect(fixture.length).toBeGreaterThanOrEqual(500);
    const site = await createSite("agents");
    // One request per agent (the user agent is a request header); a few requests in flight at once.
    let next = 0;
    const send = async () => {
      for (let i = next++; i < fixture.length; i = next++) {
        const ip = `100.64.${Math.floor(i / 250)}.${(i % 250) + 1}`;
        const response = await tracking.trackEvents(
          { trackingId: site.trackingId, events: [pageview(site, `/agent/${i}`, undefined, { eventId: `agent-${i}` })] },
          from(ip, fixture[i].ua),
        );
        expect(response.received).toBe(1);
      }
    };
    await Promise.all(Array.from({ length: 8 }, send));

    const stored = await storedEvents(site, fixture.length);
    expect(stored).toHaveLength(fixture.length);
    const byId = new Map(stored.map((row) => [row.event_id, row.classification]));
    const wrong = fixture
      .map((entry, i) => ({ ua: entry.ua, expected: entry.bot ? 2 : 1, stored: byId.get(`agent-${i}`) }))
      .filter((entry) => entry.stored !== entry.expected);
    expect(wrong).toEqual([]);
    const bots = fixture.filter((entry) => entry.bot).length;
    const [{ n }] = await rows<{ n: string }>("select count(*) as n from sessions where site_id = $1 and classification = 2", [site.id]);
    expect(Number(n)).toBe(bots);
  });
});

describe("visitor ids", () => {
  it("are a hash of IP and user agent for the day, or the client's own id, with the user id first", async () => {
    const site = await createSite("visitors");
    const send = (ip: string, ua: string, event: EventInit) => tracking.trackEvent({ trackingId: site.trackingId, event }, from(ip, ua));
    await send("203.0.113.1", CHROME_WINDOWS, pageview(site, "/", at(1, 9), { eventId: "ip-ua-morning" }));
    await send("203.0.113.1", CHROME_WINDOWS, pageview(site, "/", at(1, 15), { eventId: "ip-ua-afternoon" }));
    await send("203.0.113.1", FIREFOX_LINUX, pageview(site, "/", at(1, 9, 5), { eventId: "other-ua" }));
    await send("203.0.113.2", CHROME_WINDOWS, pageview(site, "/", at(1, 11), { eventId: "client-ip2", clientId: "client-1" }));
    await send("198.51.100.7", SAFARI_IPHONE, pageview(site, "/", at(1, 11, 10), { eventId: "client-ip3", clientId: "client-1" }));
    await send("203.0.113.4", CHROME_WINDOWS, pageview(site, "/", at(1, 12), { eventId: "user-client-a", clientId: "client-a", userId: "user-1" }));
    await send("198.51.100.9", FIREFOX_LINUX, pageview(site, "/", at(1, 12, 20), { eventId: "user-client-b", clientId: "client-b", userId: "user-1" }));
    await send("203.0.113.4", CHROME_WINDOWS, pageview(site, "/", at(1, 12, 30), { eventId: "client-a-only", clientId: "client-a" }));

    const visitor = new Map((await storedEvents(site, 8)).map((row) => [row.event_id, row.visitor_id]));
    expect(visitor.size).toBe(8);
    expect(visitor.get("ip-ua-afternoon")).toBe(visitor.get("ip-ua-morning"));
    expect(visitor.get("other-ua")).not.toBe(visitor.get("ip-ua-morning"));
    expect(visitor.get("client-ip3")).toBe(visitor.get("client-ip2"));
    expect(visitor.get("client-ip2")).not.toBe(visitor.get("ip-ua-morning"));
    // The user id wins over the client id: two client ids, one user, one visitor…
    expect(visitor.get("user-client-b")).toBe(visitor.get("user-client-a"));
    // …who is not the visitor of the client id alone.
    expect(visitor.get("client-a-only")).not.toBe(visitor.get("user-client-a"));
  });
});

describe("sessions", () => {
  it("join events up to 30 minutes apart and split them after that", async () => {
    const site = await createSite("sessions");
    const start = at(2, 12);
    await tracking.trackEvents({ trackingId: site.trackingId, events: [pageview(site, "/a", start, { eventId: "near-1" }), pageview(site, "/b", start + 29 * MINUTE, { eventId: "near-2" })] }, from("203.0.113.10"));
    await tracking.trackEvents({ trackingId: site.trackingId, events: [pageview(site, "/a", start, { eventId: "far-1" }), pageview(site, "/b", start + 31 * MINUTE, { eventId: "far-2" })] }, from("203.0.113.11"));
    const session = new Map((await storedEvents(site, 4)).map((row) => [row.event_id, row.session_id]));
    expect(session.get("near-2")).toBe(session.get("near-1"));
    expect(session.get("far-2")).not.toBe(session.get("far-1"));
    expect(await sessionsOf(site)).toHaveLength(3);
  });

  it("continue across midnight UTC, when the visitor hash's daily salt changes", async () => {
    const site = await createSite("midnight");
    const midnight = TODAY - 2 * DAY;
    await tracking.trackEvents(
      { trackingId: site.trackingId, events: [pageview(site, "/before", midnight - 10 * MINUTE, { eventId: "before" }), pageview(site, "/after", midnight + 10 * MINUTE, { eventId: "after" })] },
      from("203.0.113.20", SAFARI_IPHONE),
    );
    const [before, after] = await storedEvents(site, 2);
    expect(before.event_id).toBe("before");
    expect(after.session_id).toBe(before.session_id);
    // The visit keeps the visitor id it started under (yesterday's salt).
    expect(after.visitor_id).toBe(before.visitor_id);
    const sessions = await sessionsOf(site);
    expect(sessions).toHaveLength(1);
    expect(sessions[0]).toMatchObject({ pageviews: 2, events: 2, entry_page: "/before", exit_page: "/after", duration_seconds: 1200, is_bounce: false });
  });

  it("record entry and exit page, pageviews, events, duration and bounce, across batches", async () => {
    const site = await createSite("visits");
    const start = at(2, 14);
    // The visit arrives in two requests (two jobs), so the second batch updates the session row.
    await tracking.trackEvents(
      { trackingId: site.trackingId, events: [pageview(site, "/a", start, { eventId: "a" }), pageview(site, "/b", start + MINUTE, { eventId: "b" })] },
      from("203.0.113.30"),
    );
    await storedEvents(site, 2);
    await tracking.trackEvents(
      { trackingId: site.trackingId, events: [{ eventId: "signup", name: "signup", url: `https://${site.domain}/b`, timestamp: timestampFromMs(start + 90_000) }, pageview(site, "/c", start + 3 * MINUTE, { eventId: "c" })] },
      from("203.0.113.30"),
    );
    await tracking.trackEvent({ trackingId: site.trackingId, event: pageview(site, "/landing", start + 5 * MINUTE, { eventId: "bounce" }) }, from("203.0.113.31"));
    const events = await storedEvents(site, 5);
    const sessions = await sessionsOf(site);
    expect(sessions).toHaveLength(2);
    const visit = sessions.find((s) => s.session_id === events.find((e) => e.event_id === "a")!.session_id)!;
    const bounce = sessions.find((s) => s.session_id === events.find((e) => e.event_id === "bounce")!.session_id)!;
    expect(visit).toMatchObject({ entry_page: "/a", exit_page: "/c", pageviews: 3, events: 4, duration_seconds: 180, is_bounce: false });
    expect(bounce).toMatchObject({ entry_page: "/landing", exit_page: "/landing", pageviews: 1, events: 1, duration_seconds: 0, is_bounce: true });
  });

  it("follow the site's session timeout setting", async () => {
    const short = await createSite("timeout-5", { sessionTimeoutMinutes: 5 });
    const standard = await createSite("timeout-default");
    const start = at(3, 8);
    for (const site of [short, standard]) {
      await tracking.trackEvents(
        { trackingId: site.trackingId, events: [pageview(site, "/1", start), pageview(site, "/2", start + 4 * MINUTE), pageview(site, "/3", start + 10 * MINUTE)] },
        from("203.0.113.40"),
      );
    }
    await storedEvents(short, 3);
    await storedEvents(standard, 3);
    const shortSessions = await sessionsOf(short);
    expect(shortSessions.map((s) => [s.entry_page, s.exit_page, s.pageviews])).toEqual([["/1", "/2", 2], ["/3", "/3", 1]]);
    const standardSessions = await sessionsOf(standard);
    expect(standardSessions.map((s) => [s.entry_page, s.exit_page, s.pageviews])).toEqual([["/1", "/3", 3]]);
  });

  describe("when a batch is processed again (a retried job)", () => {
    let processBatch: ReturnType<typeof createIngestProcessor>;
    /** What realtime state and live streams were told: the event ids of each job, and how many times they were told. */
    const told: string[][] = [];
    let tellings = 0;

    const processor = async (parallelStores?: number, storeLingerMs?: number) =>
      createIngestProcessor({
        orm: beacon.orm,
        redis: beacon.connection(),
        prefix: beacon.prefix,
        geo: await createGeoLookup({}),
        hasher: beacon.hasher,
        sites: new SiteDirectory(beacon.orm),
        logger: createLogger({ level: "silent" }),
        parallelStores,
        storeLingerMs,
        onStored: async (batches) => {
          tellings++;
          for (const events of batches) told.push(events.map((e) => e.eventId));
        },
      });

    beforeAll(async () => {
      processBatch = await processor();
    });

    function hit(site: TestSite, eventId: string, path: string, ts: number, name = "pageview"): RawHit {
      return rawHit({ siteId: site.id, eventId, ts, name, url: `https://${site.domain}${path}`, ip: "192.0.2.50", userAgent: FIREFOX_LINUX });
    }

    let jobs = 0;
    const runOn = (process: typeof processBatch, hits: RawHit[]) => process({ id: `test-${++jobs}`, data: { hits }, attemptsMade: 0, opts: { attempts: 45 } } as unknown as Job<IngestBatchJob>);
    const run = (hits: RawHit[]) => runOn(processBatch, hits);

    it("stores its events once and does not count them into their session twice", async () => {
      const site = await createSite("retry");
      const start = at(1, 6);
      const hits = [hit(site, "r1", "/a", start), hit(site, "r2", "/b", start + MINUTE), hit(site, "r3", "signup", start + 2 * MINUTE, "signup"), hit(site, "r4", "/c", start + 3 * MINUTE)];
      expect(await run(hits)).toEqual({ stored: 4, duplicates: 0, deadLettered: 0 });
      expect(await run(structuredClone(hits))).toEqual({ stored: 0, duplicates: 4, deadLettered: 0 });
      const events = await rows<EventRow>("select * from events where site_id = $1", [site.id]);
      expect(events).toHaveLength(4);
      expect(new Set(events.map((e) => e.session_id)).size).toBe(1);
      const sessions = await sessionsOf(site);
      expect(sessions).toHaveLength(1);
      expect(sessions[0]).toMatchObject({ entry_page: "/a", exit_page: "/c", pageviews: 3, events: 4, duration_seconds: 180, is_bounce: false });
    });

    it("leaves a later session of the visitor in place, so the visitor's next event still joins it", async () => {
      const site = await createSite("late-retry");
      const start = at(1, 7);
      const first = [hit(site, "early", "/a", start)];
      await run(first);
      await run([hit(site, "later", "/b", start + 40 * MINUTE)]);
      // The first batch again, after the visitor's second visit began (a retry that came late).
      expect(await run(structuredClone(first))).toMatchObject({ stored: 0 });
      await run([hit(site, "next", "/c", start + 45 * MINUTE)]);
      const session = new Map((await rows<EventRow>("select * from events where site_id = $1", [site.id])).map((e) => [e.event_id, e.session_id]));
      expect(session.get("later")).not.toBe(session.get("early"));
      expect(session.get("next")).toBe(session.get("later"));
      const sessions = await sessionsOf(site);
      expect(sessions.map((s) => [s.entry_page, s.exit_page, s.pageviews])).toEqual([["/a", "/a", 1], ["/b", "/c", 2]]);
    });

    it("stores jobs that are ready together in one transaction, with their sessions as if stored apart", async () => {
      const site = await createSite("group-commit");
      const start = at(1, 9);
      // Six jobs at once; the visitor's session runs through all of them.
      const jobs = Array.from({ length: 6 }, (_, j) => [hit(site, `g${j}a`, `/p${j}`, start + j * 2 * MINUTE), hit(site, `g${j}b`, `/q${j}`, start + (j * 2 + 1) * MINUTE)]);
      told.length = 0;
      tellings = 0;
      const results = await Promise.all(jobs.map((hits) => run(hits)));
      // Realtime state and live streams are told each job's events apart, however the jobs were
      // stored, and once per store (one round trip for the group, not one per job).
      expect(told.map((ids) => ids.join()).sort()).toEqual(jobs.map((hits) => hits.map((h) => h.eventId).join()).sort());
      expect(results).toEqual(jobs.map(() => ({ stored: 2, duplicates: 0, deadLettered: 0 })));
      const events = await eventsWithTx(site);
      expect(events).toHaveLength(12);
      // The first three jobs are stored at once, side by side; the three ready meanwhile share one commit.
      expect(new Set(events.map((e) => e.tx)).size).toBeLessThanOrEqual(4);
      expect(tellings).toBe(new Set(events.map((e) => e.tx)).size);
      expect(new Set(events.map((e) => e.session_id)).size).toBe(1);
      const sessions = await sessionsOf(site);
      expect(sessions).toHaveLength(1);
      expect(sessions[0]).toMatchObject({ entry_page: "/p0", exit_page: "/q5", pageviews: 12, events: 12, duration_seconds: 11 * 60 });
    });

    it("runs no more stores side by side than it is told to (INGEST_PARALLEL_STORES)", async () => {
      // Without waiting for more jobs to join a store (that is the next test's).
      const oneStore = await processor(1, 0);
      const site = await createSite("one-store");
      const start = at(1, 11);
      const jobs = Array.from({ length: 6 }, (_, j) => [hit(site, `s${j}`, `/s${j}`, start + j * MINUTE)]);
      const results = await Promise.all(jobs.map((hits) => runOn(oneStore, hits)));
      expect(results).toEqual(jobs.map(() => ({ stored: 1, duplicates: 0, deadLettered: 0 })));
      const events = await eventsWithTx(site);
      expect(events).toHaveLength(6);
      // The first job is stored alone; the five ready while it was being stored wait and share the next commit.
      expect(new Set(events.map((e) => e.tx)).size).toBe(2);
      expect((await sessionsOf(site))[0]).toMatchObject({ entry_page: "/s0", exit_page: "/s5", pageviews: 6 });
    });

    it("waits a moment for more ready jobs before storing a small group (INGEST_STORE_LINGER_MS)", async () => {
      const site = await createSite("linger");
      const start = at(1, 12);
      const first = [hit(site, "l0", "/l0", start)];
      const later = [1, 2].map((j) => [hit(site, `l${j}`, `/l${j}`, start + j * MINUTE)]);
      // Three free stores: without the wait the first job is stored alone, before the others come.
      const lingering = await processor(3, 1_000);
      const firstDone = runOn(lingering, first);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const results = await Promise.all([firstDone, ...later.map((hits) => runOn(lingering, hits))]);
      expect(results).toEqual([first, ...later].map(() => ({ stored: 1, duplicates: 0, deadLettered: 0 })));
      const events = await eventsWithTx(site);
      expect(events).toHaveLength(3);
      expect(new Set(events.map((e) => e.tx)).size).toBe(1);
      expect((await sessionsOf(site))[0]).toMatchObject({ entry_page: "/l0", exit_page: "/l2", pageviews: 3 });
    });

    it("stores at once, without waiting, when enough events are ready", async () => {
      const site = await createSite("linger-full");
      const start = at(1, 13);
      // 2,000 events: a group worth its transaction. Were it to wait the ten minutes, the test would time out.
      const hits = Array.from({ length: 2_000 }, (_, i) => hit(site, `f${i}`, `/f${i % 10}`, start + i));
      const lingering = await processor(3, 10 * 60_000);
      expect(await runOn(lingering, hits)).toEqual({ stored: 2_000, duplicates: 0, deadLettered: 0 });
    });

    it("lets one bad job in a group fail alone: the others are stored, its bad event goes to the dead letters", async () => {
      const site = await createSite("group-bad");
      const start = at(1, 10);
      const good = [0, 1, 2].map((j) => [hit(site, `ok${j}`, `/ok${j}`, start + j * MINUTE)]);
      const bad = [hit(site, "bad-fine", "/fine", start + 5 * MINUTE), { ...hit(site, "bad-nul", "/nul", start + 6 * MINUTE), title: "a\u0000b" }];
      const results = await Promise.all([...good, bad].map((hits) => run(hits)));
      expect(results).toEqual([...good.map(() => ({ stored: 1, duplicates: 0, deadLettered: 0 })), { stored: 1, duplicates: 0, deadLettered: 1 }]);
      const stored = await rows<EventRow>("select * from events where site_id = $1 order by event_id", [site.id]);
      expect(stored.map((e) => e.event_id)).toEqual(["bad-fine", "ok0", "ok1", "ok2"]);
      const dead = await rows<{ reason: string }>("select reason from dead_letters where site_id = $1", [site.id]);
      expect(dead).toHaveLength(1);
      expect(dead[0].reason).toMatch(/^store_failed:/);
    });
  });
});

describe("deduplication", () => {
  it("stores an event sent twice in separate requests once", async () => {
    const site = await createSite("dedupe-requests");
    for (let i = 0; i < 2; i++) {
      const response = await tracking.trackEvent({ trackingId: site.trackingId, event: pageview(site, "/", undefined, { eventId: "sent-twice" }) }, from("203.0.113.50"));
      expect(response.eventId).toBe("sent-twice");
    }
    await tracking.trackEvent({ trackingId: site.trackingId, event: pageview(site, "/after", undefined, { eventId: "marker" }) }, from("203.0.113.50"));
    const events = await storedEvents(site, 2);
    expect(events.map((e) => e.event_id).sort()).toEqual(["marker", "sent-twice"]);
    const sessions = await sessionsOf(site);
    expect(sessions.reduce((sum, s) => sum + s.events, 0)).toBe(2);
  });

  it("stores an event repeated inside one batch once, and counts it once in its session", async () => {
    const site = await createSite("dedupe-batch");
    const ts = at(1, 16);
    const twice = pageview(site, "/twice", ts, { eventId: "in-batch" });
    const response = await tracking.trackEvents({ trackingId: site.trackingId, events: [twice, twice, pageview(site, "/other", ts + MINUTE, { eventId: "other" })] }, from("203.0.113.51"));
    expect(response.received).toBe(3);
    const events = await storedEvents(site, 2);
    expect(events.map((e) => e.event_id)).toEqual(["in-batch", "other"]);
    const sessions = await sessionsOf(site);
    expect(sessions).toHaveLength(1);
    expect(sessions[0]).toMatchObject({ pageviews: 2, events: 2 });
  });

  it("uses the Idempotency-Key header of TrackEvent as the event id", async () => {
    const site = await createSite("dedupe-key");
    const headers = { "Idempotency-Key": "checkout-7f3a" };
    for (let i = 0; i < 2; i++) {
      const response = await tracking.trackEvent({ trackingId: site.trackingId, event: pageview(site, "/checkout") }, from("203.0.113.52", CHROME_WINDOWS, headers));
      expect(response.eventId).toBe("checkout-7f3a");
    }
    await tracking.trackEvent({ trackingId: site.trackingId, event: pageview(site, "/thanks", undefined, { eventId: "marker" }) }, from("203.0.113.52"));
    const events = await storedEvents(site, 2);
    expect(events.map((e) => e.event_id).sort()).toEqual(["checkout-7f3a", "marker"]);
  });
});

describe("Do Not Track", () => {
  it("answers IGNORED_DO_NOT_TRACK for DNT: 1 and Sec-GPC: 1 and stores nothing", async () => {
    const site = await createSite("dnt");
    const privacyHeaders: Record<string, string>[] = [{ DNT: "1" }, { "Sec-GPC": "1" }];
    for (const header of privacyHeaders) {
      const one = await tracking.trackEvent({ trackingId: site.trackingId, event: pageview(site, "/private", undefined, { eventId: `dnt-${Object.keys(header)[0]}` }) }, from("203.0.113.60", CHROME_WINDOWS, header));
      expect(TrackStatus[one.status]).toBe(TrackStatus[TrackStatus.IGNORED_DO_NOT_TRACK]);
      const many = await tracking.trackEvents({ trackingId: site.trackingId, events: [pageview(site, "/a"), pageview(site, "/b")] }, from("203.0.113.60", CHROME_WINDOWS, header));
      expect(TrackStatus[many.status]).toBe(TrackStatus[TrackStatus.IGNORED_DO_NOT_TRACK]);
      expect(many.received).toBe(0);
    }
    const accepted = await tracking.trackEvent({ trackingId: site.trackingId, event: pageview(site, "/public", undefined, { eventId: "tracked" }) }, from("203.0.113.60", CHROME_WINDOWS, { DNT: "0" }));
    expect(TrackStatus[accepted.status]).toBe(TrackStatus[TrackStatus.ACCEPTED]);
    const events = await storedEvents(site, 1);
    expect(events.map((e) => e.event_id)).toEqual(["tracked"]);
  });

  it("stores the events anyway when the site turns respectDoNotTrack off", async () => {
    const site = await createSite("dnt-off", { respectDoNotTrack: false });
    const response = await tracking.trackEvent({ trackingId: site.trackingId, event: pageview(site, "/", undefined, { eventId: "dnt-stored" }) }, from("203.0.113.61", CHROME_WINDOWS, { DNT: "1", "Sec-GPC": "1" }));
    expect(TrackStatus[response.status]).toBe(TrackStatus[TrackStatus.ACCEPTED]);
    const events = await storedEvents(site, 1);
    expect(events.map((e) => e.event_id)).toEqual(["dnt-stored"]);
  });
});

describe("custom-event rate limit", () => {
  it("refuses the 11th custom event of a visitor in a minute with ResourceExhausted, not counting pageviews", async () => {
    const site = await createSite("rate", { customEventsPerSessionPerMinute: 10 });
    const visitor = from("203.0.113.70");
    const custom = (i: number): EventInit => ({ eventId: `click-${i}`, name: "click", url: `https://${site.domain}/` });
    for (let i = 0; i < 3; i++) await tracking.trackEvent({ trackingId: site.trackingId, event: pageview(site, `/p${i}`, undefined, { eventId: `pv-${i}` }) }, visitor);
    for (let i = 1; i <= 10; i++) await tracking.trackEvent({ trackingId: site.trackingId, event: custom(i) }, visitor);
    const refused = await failure(tracking.trackEvent({ trackingId: site.trackingId, event: custom(11) }, visitor));
    expect(Code[refused.code]).toBe(Code[Code.ResourceExhausted]);
    expect(refused.rawMessage).toMatch(/custom events/);
    // Pageviews still pass, and so do another visitor's custom events.
    await tracking.trackEvent({ trackingId: site.trackingId, event: pageview(site, "/more", undefined, { eventId: "pv-after" }) }, visitor);
    await tracking.trackEvent({ trackingId: site.trackingId, event: { ...custom(1), eventId: "other-visitor-click" } }, from("203.0.113.71"));

    const events = await storedEvents(site, 15);
    expect(events).toHaveLength(15);
    expect(events.filter((e) => e.name === "click")).toHaveLength(11);
    expect(events.some((e) => e.event_id === "click-11")).toBe(false);
  });
});
