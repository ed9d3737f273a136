// The plain-HTTP beacons against a real Beacon (Postgres, Redis, the ingest worker, port 0): each
// seed's arrival path stores its events with the right enrichment; each kind of bad input gets a
// 4xx naming the problem and stores nothing; Do Not Track stores nothing; resends are stored once;
// 003's 10 custom events per session per minute answers the 11th with 429.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
import { request as httpRequest } from "node:http";
import type { Pool } from "pg";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SiteSettingsSchema } from "../../gen/beacon/v1/site_pb.js";
import { sqlPool } from "../../server/db/orm.js";
import { startTestBeacon, type TestBeacon } from "../support/beacon.js";

const CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const IPHONE_SAFARI = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";
// Seed 001's example agent: a Googlebot crawling as a mobile Chrome.
const GOOGLEBOT = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/80.0.3987.92 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const USER = 1;
const BOT = 2;

interface TestSite {
  id: string;
  trackingId: string;
  domain: string;
}

interface EventRow {
  site_id: string;
  event_id: string;
  name: string;
  hostname: string;
  pathname: string;
  title: string;
  referrer: string;
  referrer_source: string;
  referrer_medium: string;
  utm_source: string;
  utm_medium: string;
  country: string;
  browser: string;
  os: string;
  device_type: string;
  classification: number;
  props: Record<string, unknown>;
  revenue: string | null;
}

let beacon: TestBeacon;
let pool: Pool;
/** Ordinary site for the good paths. */
let shop: TestSite;
/** A second site, for batches of hits naming several tracking ids. */
let blog: TestSite;
/** 003's settings: its default event types and its 10 custom events per session per minute. */
let sarai: TestSite;
/** Only ever receives bad input and sentinels: its event count proves nothing bad was stored. */
let quarantine: TestSite;

let ipCounter = 0;
/**
 * A fresh public IPv4 in 8.8.0.0/16 (Google, geolocated to the US) for each request that should
 * count as a new visitor, so per-visitor rate limits in one test do not leak into the next.
 */
function usIp(): string {
  ipCounter++;
  return `8.8.${Math.floor(ipCounter / 250)}.${(ipCounter % 250) + 1}`;
}

async function createSite(domain: string, settings: MessageInitShape<typeof SiteSettingsSchema> = {}): Promise<TestSite> {
  const authorization: Interceptor = (next) => (req) => {
    req.header.set("Authorization", `Bearer ${beacon.adminKey}`);
    return next(req);
  };
  const client = createClient(ManagementService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [authorization] }));
  const { site } = await client.createSite({ domain, settings });
  if (!site) throw new Error("CreateSite returned no site");
  return { id: site.id, trackingId: site.trackingId, domain: site.domain };
}

interface Sent {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown> | undefined;
}

async function send(method: string, path: string, init: { body?: string | Uint8Array | ReadableStream; type?: string; headers?: Record<string, string> } = {}): Promise<Sent> {
  const headers: Record<string, string> = { "User-Agent": CHROME, "X-Forwarded-For": usIp(), ...init.headers };
  if (init.type) headers["Content-Type"] = init.type;
  const res = await fetch(`${beacon.baseUrl}${path}`, {
    method,
    headers,
    body: init.body,
    ...(init.body instanceof ReadableStream ? { duplex: "half" } : {}),
  } as RequestInit);
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  if ((res.headers.get("content-type") ?? "").startsWith("application/json")) json = JSON.parse(text) as Record<string, unknown>;
  return { status: res.status, headers: res.headers, text, json };
}

function postJson(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Sent> {
  return send("POST", path, { body: JSON.stringify(body), type: "application/json", headers });
}

async function rows(where: string, params: unknown[]): Promise<EventRow[]> {
  const result = await pool.query<EventRow>(`select * from events where ${where} order by ts, event_id`, params);
  return result.rows;
}

/** Polls until `where` matches `count` events (the worker writes a few ms after the answer). */
async function waitForRows(where: string, params: unknown[], count = 1): Promise<EventRow[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found = await rows(where, params);
    if (found.length >= count || Date.now() > deadline) {
      expect(found.length, `events matching ${where} ${JSON.stringify(params)}`).toBe(count);
      return found;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function siteEventCount(site: TestSite): Promise<number> {
  const result = await pool.query<{ n: string }>("select count(*) as n from events where site_id = $1", [site.id]);
  return Number(result.rows[0].n);
}

/**
 * Sends a good event to `site` and waits until it is stored. Every earlier request of the test
 * was answered before this one was sent, and the worker stores in queue order within a job, so
 * once the sentinel is in, anything an earlier request had queued would be too.
 */
async function storeSentinel(site: TestSite): Promise<void> {
  const id = `sentinel-${randomUUID()}`;
  const res = await postJson("/batch", { tracking_id: site.trackingId, events: [{ type: "pageview", page: "/sentinel", event_id: id }] });
  expect(res.status).toBe(200);
  await waitForRows("site_id = $1 and event_id = $2", [site.id, id]);
}

/** Runs `bad`, then proves with a sentinel that it stored nothing on `site`. */
async function expectNothingStored(site: TestSite, bad: () => Promise<void>): Promise<void> {
  const before = await siteEventCount(site);
  await bad();
  await storeSentinel(site);
  // Let any straggling job (there should be none) land before counting.
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(await siteEventCount(site)).toBe(before + 1);
}

beforeAll(async () => {
  beacon = await startTestBeacon("beacons", { workers: true });
  pool = await sqlPool(beacon.orm);
  shop = await createSite("shop-beacons.example.com");
  blog = await createSite("blog-beacons.example.com");
  sarai = await createSite("saraichinwag.example.com", {
    allowedEventTypes: ["random_click", "image_mode", "smi_click", "search", "page_view"],
    customEventsPerSessionPerMinute: 10,
    additionalHostnames: ["sarai-mirror.example.net"],
  });
  quarantine = await createSite("quarantine-beacons.example.com", { allowedEventTypes: ["search"] });
});

afterAll(async () => {
  await beacon?.stop();
});

describe("POST /collect (000, Universal Analytics)", () => {
  it("stores 000's JSON hit, values as strings or numbers, with place, agent and referrer", async () => {
    const path = `/home-${randomUUID().slice(0, 8)}`;
    const res = await postJson(
      "/collect",
      { v: 1, tid: shop.trackingId, cid: 555, t: "pageview", dh: shop.domain, dp: path, dt: "Homepage", dr: "https://www.google.com/search?q=beacons" },
      { "X-Forwarded-For": "8.8.8.8" },
    );
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: "ok", received: 1 });
    const [row] = await waitForRows("site_id = $1 and pathname = $2", [shop.id, path]);
    expect(row).toMatchObject({
      name: "pageview",
      hostname: shop.domain,
      title: "Homepage",
      country: "US",
      browser: "Chrome",
      os: "Windows",
      device_type: "desktop",
      classification: USER,
      referrer_source: "Google",
      referrer_medium: "search",
    });
  });

  it("reads a form-encoded body, taking campaign tags from the page URL", async () => {
    const path = `/landing-${randomUUID().slice(0, 8)}`;
    const params = new URLSearchParams({ v: "1", tid: shop.trackingId, cid: "c-form", t: "pageview", dl: `https://${shop.domain}${path}?utm_source=newsletter&utm_medium=email` });
    const res = await send("POST", "/collect", { body: params.toString(), type: "application/x-www-form-urlencoded", headers: { "User-Agent": IPHONE_SAFARI } });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: "ok", received: 1 });
    const [row] = await waitForRows("site_id = $1 and pathname = $2", [shop.id, path]);
    expect(row).toMatchObject({ utm_source: "newsletter", utm_medium: "email", browser: "Mobile Safari", os: "iOS", device_type: "mobile" });
  });

  it("reads JSON sent as text/plain (navigator.sendBeacon), and event hits with their category and label", async () => {
    const action = `play-${randomUUID().slice(0, 8)}`;
    const body = JSON.stringify({ v: "1", tid: shop.trackingId, cid: "c-beacon", t: "event", ec: "video", ea: action, el: "intro", ev: 3, dl: `https://${shop.domain}/watch` });
    const res = await send("POST", "/collect", { body, type: "text/plain;charset=UTF-8" });
    expect(res.status).toBe(200);
    const [row] = await waitForRows("site_id = $1 and name = $2", [shop.id, action]);
    expect(row.props).toEqual({ category: "video", label: "intro", value: 3 });
  });

  it("answers GET /collect?v=1&tid=… with a 1×1 transparent GIF, and stores the hit", async () => {
    const path = `/pixel-${randomUUID().slice(0, 8)}`;
    const query = new URLSearchParams({ v: "1", tid: shop.trackingId, cid: "c-gif", t: "pageview", dh: shop.domain, dp: path });
    const res = await fetch(`${beacon.baseUrl}/collect?${query}`, { headers: { "User-Agent": CHROME, "X-Forwarded-For": usIp() } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/gif");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const gif = Buffer.from(await res.arrayBuffer());
    expect(gif.subarray(0, 6).toString("latin1")).toBe("GIF89a");
    expect(gif.readUInt16LE(6)).toBe(1);
    expect(gif.readUInt16LE(8)).toBe(1);
    await waitForRows("site_id = $1 and pathname = $2", [shop.id, path]);
  });

  it("answers DNT with success (received 0) and stores nothing", async () => {
    const path = `/dnt-${randomUUID().slice(0, 8)}`;
    await expectNothingStored(shop, async () => {
      const res = await postJson("/collect", { v: "1", tid: shop.trackingId, t: "pageview", dh: shop.domain, dp: path }, { DNT: "1" });
      expect(res.status).toBe(200);
      expect(res.json).toEqual({ status: "ok", received: 0 });
      const gpc = await postJson("/collect", { v: "1", tid: shop.trackingId, t: "pageview", dh: shop.domain, dp: path }, { "Sec-GPC": "1" });
      expect(gpc.json).toEqual({ status: "ok", received: 0 });
    });
    expect(await rows("site_id = $1 and pathname = $2", [shop.id, path])).toHaveLength(0);
  });

  it("stores a hit sent twice once, by event_id and by Idempotency-Key", async () => {
    const eventId = `collect-${randomUUID()}`;
    const hit = { v: "1", tid: shop.trackingId, t: "pageview", dh: shop.domain, dp: "/twice", event_id: eventId };
    expect((await postJson("/collect", hit)).status).toBe(200);
    expect((await postJson("/collect", hit)).status).toBe(200);
    const key = `collect-key-${randomUUID()}`;
    const keyed = { v: "1", tid: shop.trackingId, t: "pageview", dh: shop.domain, dp: "/twice-keyed" };
    expect((await postJson("/collect", keyed, { "Idempotency-Key": key })).status).toBe(200);
    expect((await postJson("/collect", keyed, { "Idempotency-Key": key })).status).toBe(200);
    await storeSentinel(shop);
    expect(await rows("site_id = $1 and event_id = $2", [shop.id, eventId])).toHaveLength(1);
    expect(await rows("site_id = $1 and event_id = $2", [shop.id, key])).toHaveLength(1);
  });
});

describe("POST /batch (000)", () => {
  it("stores 000's JSON batch: a pageview on the site's domain and a button click", async () => {
    const page = `/home-${randomUUID().slice(0, 8)}`;
    const label = `signup-${randomUUID().slice(0, 8)}`;
    const now = Date.now();
    const res = await postJson(
      "/batch",
      {
        tracking_id: shop.trackingId,
        events: [
          { type: "pageview", page, timestamp: now - 5_000 },
          { type: "event", category: "button", action: "click", label, timestamp: now },
        ],
      },
      { "X-Forwarded-For": "8.8.4.4" },
    );
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: "ok", received: 2, failed: 0, errors: [] });
    const [view] = await waitForRows("site_id = $1 and pathname = $2 and name = 'pageview'", [shop.id, page]);
    expect(view).toMatchObject({ hostname: shop.domain, country: "US", browser: "Chrome" });
    const [click] = await waitForRows("site_id = $1 and name = 'click' and props->>'label' = $2", [shop.id, label]);
    expect(click.props).toEqual({ category: "button", label });
  });

  it("takes the optional fields, sanitises properties, and names each refused event", async () => {
    const id = `batch-${randomUUID()}`;
    const res = await postJson("/batch", {
      tracking_id: shop.trackingId,
      events: [
        {
          type: "purchase",
          event_id: id,
          url: `https://${shop.domain}/checkout?utm_source=partner`,
          referrer: "https://news.ycombinator.com/item?id=1",
          title: "Checkout",
          client_id: "client-7",
          properties: { plan: "  <b>pro</b> ", seats: 3, nested: { tier: "gold" }, list: [1, 2] },
          revenue: 49.5,
          currency: "eur",
        },
        { type: "pageview", page: "/x", properties: "not an object" },
        { type: "pageview", page: "/old", timestamp: Date.now() - 30 * 86_400_000 },
        "not an event",
      ],
    });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: "ok", received: 1, failed: 3 });
    expect(res.json?.errors).toEqual([
      { index: 1, field: "properties", message: expect.stringContaining("must be an object"), reason: "INVALID_FIELD" },
      { index: 2, field: "timestamp", message: expect.stringContaining("days in the past"), reason: "TIMESTAMP_TOO_OLD" },
      { index: 3, field: "event", message: expect.stringContaining("must be a JSON object"), reason: "INVALID_FIELD" },
    ]);
    const [row] = await waitForRows("site_id = $1 and event_id = $2", [shop.id, id]);
    expect(row).toMatchObject({ name: "purchase", pathname: "/checkout", title: "Checkout", utm_source: "partner", revenue: "49.5" });
    expect(row.props).toEqual({ plan: "pro", seats: 3, "nested.tier": "gold" });
  });

  it("stores newline-separated measurement-protocol hits for several sites, classifying a crawler as BOT", async () => {
    const tag = randomUUID().slice(0, 8);
    const lines = [
      `v=1&tid=${shop.trackingId}&cid=1&t=pageview&dh=${shop.domain}&dp=/lines-${tag}`,
      `v=1&tid=${blog.trackingId}&cid=2&t=pageview&dh=${blog.domain}&dp=/lines-${tag}&ua=${encodeURIComponent(GOOGLEBOT)}`,
      `v=1&tid=BK-NOSUCHSITE&cid=3&t=pageview&dp=/lines-${tag}`,
      `v=1&tid=${shop.trackingId}&t=nonsense`,
    ].join("\n");
    const res = await send("POST", "/batch", { body: lines, type: "text/plain" });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: "ok", received: 2, failed: 2 });
    expect(res.json?.errors).toEqual([
      { index: 2, field: "tid", message: expect.stringContaining("BK-NOSUCHSITE"), reason: "SITE_NOT_FOUND" },
      { index: 3, field: "t", message: expect.stringContaining("must be one of"), reason: "INVALID_FIELD" },
    ]);
    const [human] = await waitForRows("site_id = $1 and pathname = $2", [shop.id, `/lines-${tag}`]);
    expect(human).toMatchObject({ classification: USER, browser: "Chrome" });
    const [bot] = await waitForRows("site_id = $1 and pathname = $2", [blog.id, `/lines-${tag}`]);
    expect(bot.classification).toBe(BOT);
  });

  it("reads application/x-ndjson the same way", async () => {
    const tag = randomUUID().slice(0, 8);
    const body = [`v=1&tid=${blog.trackingId}&t=pageview&dh=${blog.domain}&dp=/nd-${tag}`, JSON.stringify({ v: 1, tid: blog.trackingId, t: "pageview", dh: blog.domain, dp: `/nd-${tag}` })].join("\n");
    const res = await send("POST", "/batch", { body, type: "application/x-ndjson" });
    expect(res.json).toMatchObject({ status: "ok", received: 2, failed: 0 });
    await waitForRows("site_id = $1 and pathname = $2", [blog.id, `/nd-${tag}`], 2);
  });

  it("stores a batch sent twice once when its events carry ids", async () => {
    const ids = [`dup-${randomUUID()}`, `dup-${randomUUID()}`];
    const body = { tracking_id: shop.trackingId, events: [{ type: "pageview", page: "/dup", event_id: ids[0] }, { type: "event", action: "dup", id: ids[1] }] };
    expect((await postJson("/batch", body)).json).toMatchObject({ received: 2 });
    expect((await postJson("/batch", body)).json).toMatchObject({ received: 2 });
    await storeSentinel(shop);
    expect(await rows("site_id = $1 and event_id = any($2)", [shop.id, ids])).toHaveLength(2);
  });

  it("answers DNT with received 0 and stores nothing", async () => {
    await expectNothingStored(shop, async () => {
      const res = await postJson("/batch", { tracking_id: shop.trackingId, events: [{ type: "pageview", page: "/dnt-batch" }] }, { DNT: "1" });
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ status: "ok", received: 0, failed: 0 });
    });
  });
});

describe("POST /api/event (003)", () => {
  it("stores 003's event with 204, no body, and a session cookie; event_data sanitised", async () => {
    const query = `watercolor tutorial ${randomUUID().slice(0, 8)}`;
    const res = await postJson(
      "/api/event",
      {
        event_type: "search",
        event_data: { query: `  <script>x</script>${query}\u0007 `, filters: { medium: "ink", deep: { deeper: { deepest: "dropped" } } }, ignored: [1, 2], fn: null },
        page_url: `https://${sarai.domain}/`,
        referrer: "https://google.com",
      },
      { "X-Forwarded-For": "8.8.8.8", Origin: `https://${sarai.domain}` },
    );
    expect(res.status).toBe(204);
    expect(res.text).toBe("");
    const cookie = res.headers.get("set-cookie") ?? "";
    const [pair, ...attributes] = cookie.split(";").map((s) => s.trim());
    expect(pair.split("=")[0]).toBe("beacon_session");
    expect(pair.split("=")[1]).toMatch(UUID4);
    expect(attributes).toEqual(expect.arrayContaining(["Path=/", "HttpOnly", "SameSite=Lax"]));
    expect(attributes).not.toContain("Secure");
    const [row] = await waitForRows("site_id = $1 and name = 'search' and props->>'query' = $2", [sarai.id, `x${query}`]);
    expect(row.props).toEqual({ query: `x${query}`, "filters.medium": "ink" });
    expect(row).toMatchObject({ hostname: sarai.domain, pathname: "/", referrer_source: "Google", referrer_medium: "search", country: "US", browser: "Chrome" });
  });

  it("keeps a session cookie the browser already has, and marks a new one Secure behind https", async () => {
    const session = randomUUID();
    const kept = await postJson("/api/event", { event_type: "random_click", page_url: `https://${sarai.domain}/` }, { Cookie: `other=1; beacon_session=${session}` });
    expect(kept.status).toBe(204);
    expect(kept.headers.get("set-cookie")).toBeNull();
    const secure = await postJson("/api/event", { event_type: "random_click", page_url: `https://${sarai.domain}/` }, { "X-Forwarded-Proto": "https" });
    expect(secure.headers.get("set-cookie")).toContain("; Secure");
  });

  it("stores an invalid page_url or referrer as empty, finding the site from the Origin", async () => {
    const id = `bad-url-${randomUUID()}`;
    const res = await postJson("/api/event", { event_type: "smi_click", event_id: id, page_url: "not a url", referrer: "javascript:alert(1)" }, { Origin: `https://www.${sarai.domain}` });
    expect(res.status).toBe(204);
    const [row] = await waitForRows("site_id = $1 and event_id = $2", [sarai.id, id]);
    expect(row).toMatchObject({ hostname: "", pathname: "", referrer: "", referrer_medium: "direct" });
  });

  it("finds the site by one of its additional host names", async () => {
    const id = `mirror-${randomUUID()}`;
    const res = await postJson("/api/event", { event_type: "search", event_id: id, page_url: "https://sarai-mirror.example.net/post" });
    expect(res.status).toBe(204);
    const [row] = await waitForRows("site_id = $1 and event_id = $2", [sarai.id, id]);
    expect(row).toMatchObject({ hostname: "sarai-mirror.example.net", pathname: "/post" });
  });

  it("counts 003's page_view as a page view, and stores a string event_data as its value", async () => {
    const id = `pv-${randomUUID()}`;
    const res = await postJson("/api/event", { event_type: "page_view", event_id: id, event_data: "hello", page_url: `https://${sarai.domain}/gallery` });
    expect(res.status).toBe(204);
    const [row] = await waitForRows("site_id = $1 and event_id = $2", [sarai.id, id]);
    expect(row).toMatchObject({ name: "pageview", pathname: "/gallery" });
    expect(row.props).toEqual({ value: "hello" });
  });

  it("refuses an event type the site does not allow with 003's answer, storing nothing", async () => {
    await expectNothingStored(sarai, async () => {
      const res = await postJson("/api/event", { event_type: "download", page_url: `https://${sarai.domain}/` });
      expect(res.status).toBe(400);
      expect(res.json).toEqual({ message: "Invalid event type." });
    });
  });

  it("answers DNT with 204 and stores nothing", async () => {
    await expectNothingStored(sarai, async () => {
      const res = await postJson("/api/event", { event_type: "search", event_data: { query: "dnt" }, page_url: `https://${sarai.domain}/` }, { DNT: "1" });
      expect(res.status).toBe(204);
      expect(res.text).toBe("");
    });
  });

  it("stores an event sent twice with the same Idempotency-Key once", async () => {
    const key = `api-event-${randomUUID()}`;
    const ip = usIp();
    for (let i = 0; i < 2; i++) {
      const res = await postJson("/api/event", { event_type: "image_mode", page_url: `https://${sarai.domain}/` }, { "Idempotency-Key": key, "X-Forwarded-For": ip });
      expect(res.status).toBe(204);
    }
    await storeSentinel(sarai);
    expect(await rows("site_id = $1 and event_id = $2", [sarai.id, key])).toHaveLength(1);
  });

  it("answers the 11th custom event in a minute from one visitor with 429 and Retry-After", async () => {
    const ip = usIp();
    const headers = { "X-Forwarded-For": ip, "User-Agent": IPHONE_SAFARI };
    for (let i = 0; i < 10; i++) {
      const res = await postJson("/api/event", { event_type: "random_click", event_data: { n: i }, page_url: `https://${sarai.domain}/` }, headers);
      expect(res.status, `event ${i + 1}`).toBe(204);
    }
    const limited = await postJson("/api/event", { event_type: "random_click", event_data: { n: 10 }, page_url: `https://${sarai.domain}/` }, headers);
    expect(limited.status).toBe(429);
    expect(limited.json).toEqual({ message: "Rate limit exceeded." });
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // Page views are not custom events, and another visitor has a limit of its own.
    expect((await postJson("/api/event", { event_type: "page_view", page_url: `https://${sarai.domain}/` }, headers)).status).toBe(204);
    expect((await postJson("/api/event", { event_type: "random_click", page_url: `https://${sarai.domain}/` })).status).toBe(204);
  });
});

describe("POST /api/v1/traffic (001)", () => {
  it("records 001's call (bare key, query parameters) and labels Googlebot BOT, placed by ip_addr", async () => {
    const key = await beacon.makeKey("analyst");
    const path = `/traffic-${randomUUID().slice(0, 8)}`;
    const query = new URLSearchParams({ url: `https://${shop.domain}${path}`, ip_addr: "8.8.8.8", user_agent: GOOGLEBOT });
    const res = await send("POST", `/api/v1/traffic?${query}`, { headers: { Authorization: key, "X-Forwarded-For": "127.0.0.1" } });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ status: "ok", event_id: expect.any(String) });
    const [row] = await waitForRows("site_id = $1 and event_id = $2", [shop.id, res.json?.event_id]);
    expect(row).toMatchObject({ pathname: path, classification: BOT, country: "US" });
  });

  it("takes a JSON body with a Bearer key, and a path for a key limited to one site", async () => {
    const key = await beacon.makeKey("admin", { siteIds: [blog.id] });
    const res = await postJson("/api/v1/traffic", { url: "/", ip_addr: "2001:4860:4860::8888", user_agent: CHROME }, { Authorization: `Bearer ${key}` });
    expect(res.status).toBe(201);
    const [row] = await waitForRows("site_id = $1 and event_id = $2", [blog.id, res.json?.event_id]);
    expect(row).toMatchObject({ hostname: blog.domain, pathname: "/", classification: USER, browser: "Chrome", country: "US" });
  });

  it("takes a form body, and stores the same event_id once", async () => {
    const key = await beacon.makeKey("analyst");
    const id = `traffic-${randomUUID()}`;
    const form = new URLSearchParams({ url: `https://${shop.domain}/form`, ip_addr: "8.8.8.8", user_agent: CHROME, event_id: id }).toString();
    for (let i = 0; i < 2; i++) {
      const res = await send("POST", "/api/v1/traffic", { body: form, type: "application/x-www-form-urlencoded", headers: { Authorization: key } });
      expect(res.status).toBe(201);
      expect(res.json?.event_id).toBe(id);
    }
    await storeSentinel(shop);
    expect(await rows("site_id = $1 and event_id = $2", [shop.id, id])).toHaveLength(1);
  });

  it("refuses a missing or unknown key (401), a viewer key (403), a bad ip_addr (400) and an unknown site (404)", async () => {
    const analyst = await beacon.makeKey("analyst");
    const viewer = await beacon.makeKey("viewer");
    const good = { url: `https://${shop.domain}/`, ip_addr: "8.8.8.8", user_agent: CHROME };
    await expectNothingStored(shop, async () => {
      const none = await postJson("/api/v1/traffic", good);
      expect(none.status).toBe(401);
      expect(none.json?.message).toMatch(/API key/);
      expect((await postJson("/api/v1/traffic", good, { Authorization: "bk_never-issued" })).status).toBe(401);
      const denied = await postJson("/api/v1/traffic", good, { Authorization: viewer });
      expect(denied.status).toBe(403);
      expect(denied.json?.message).toMatch(/analyst/);
      const badIp = await postJson("/api/v1/traffic", { ...good, ip_addr: "999.1.1.1" }, { Authorization: analyst });
      expect(badIp.status).toBe(400);
      expect(badIp.json).toMatchObject({ field: "ip_addr", message: expect.stringContaining("ip_addr") });
      const noSite = await postJson("/api/v1/traffic", { ...good, url: "https://unknown-host.example.org/" }, { Authorization: analyst });
      expect(noSite.status).toBe(404);
      expect(noSite.json?.message).toMatch(/^url: .*unknown-host\.example\.org/);
      // A site of another organisation is not found either.
      const otherOrg = await beacon.makeOrganisation("other");
      const outsider = await beacon.makeKey("admin", { organisationId: otherOrg });
      expect((await postJson("/api/v1/traffic", good, { Authorization: outsider })).status).toBe(404);
    });
  });
});

describe("bad input: a 4xx naming the problem, and nothing stored", () => {
  it("refuses malformed JSON on every path", async () => {
    const analyst = await beacon.makeKey("analyst");
    await expectNothingStored(quarantine, async () => {
      for (const path of ["/collect", "/batch", "/api/event", "/api/v1/traffic"]) {
        const res = await send("POST", path, { body: `{"tid": "${quarantine.trackingId}", "t": "pageview",`, type: "application/json", headers: { Authorization: analyst } });
        expect(res.status, path).toBe(400);
        expect(res.json, path).toMatchObject({ error: "invalid_json", message: expect.stringContaining("not valid JSON") });
      }
    });
  });

  it("refuses wrong types, naming the field", async () => {
    const analyst = await beacon.makeKey("analyst");
    const cases: [string, unknown, string][] = [
      ["/batch", { tracking_id: quarantine.trackingId, events: { type: "pageview" } }, "events"],
      ["/batch", { tracking_id: 42, events: [{ type: "pageview" }] }, "tracking_id"],
      ["/collect", { v: "1", tid: quarantine.trackingId, t: "pageview", dp: { path: "/" } }, "dp"],
      ["/collect", [{ v: "1", tid: quarantine.trackingId }], "body"],
      ["/api/event", { event_type: 7, page_url: `https://${quarantine.domain}/` }, "event_type"],
      ["/api/event", { event_type: "search", event_data: 12, page_url: `https://${quarantine.domain}/` }, "event_data"],
      ["/api/event", { event_type: "search", page_url: ["x"] }, "page_url"],
      ["/api/v1/traffic", { url: `https://${quarantine.domain}/`, ip_addr: 8, user_agent: CHROME }, "ip_addr"],
    ];
    await expectNothingStored(quarantine, async () => {
      for (const [path, body, field] of cases) {
        const res = await postJson(path, body, { Authorization: analyst });
        expect(res.status, `${path} ${field}`).toBe(400);
        expect(res.json, `${path} ${field}`).toMatchObject({ field, message: expect.stringContaining(field) });
      }
      // A batch whose only event has the wrong type is refused as a whole.
      const res = await postJson("/batch", { tracking_id: quarantine.trackingId, events: [{ type: "pageview", page: 5 }] });
      expect(res.status).toBe(400);
      expect(res.json).toMatchObject({ received: 0, failed: 1, message: "events[0].page: must be a string, got a number" });
    });
  });

  it("refuses an unknown site, naming tid, tracking_id or page_url", async () => {
    await expectNothingStored(quarantine, async () => {
      const collect = await postJson("/collect", { v: "1", tid: "BK-UNKNOWN1", t: "pageview", dp: "/" });
      expect(collect.status).toBe(404);
      expect(collect.json).toMatchObject({ field: "tid", message: expect.stringMatching(/^tid: .*BK-UNKNOWN1/) });
      const missing = await postJson("/collect", { v: "1", t: "pageview", dp: "/" });
      expect(missing.status).toBe(400);
      expect(missing.json).toMatchObject({ field: "tid" });
      const batch = await postJson("/batch", { tracking_id: "BK-UNKNOWN2", events: [{ type: "pageview", page: "/" }] });
      expect(batch.status).toBe(404);
      expect(batch.json).toMatchObject({ field: "tracking_id", message: expect.stringContaining("tracking_id") });
      const event = await postJson("/api/event", { event_type: "search", page_url: "https://not-tracked.example.org/" });
      expect(event.status).toBe(404);
      expect(event.json).toMatchObject({ field: "page_url", message: expect.stringContaining("not-tracked.example.org") });
      const nowhere = await postJson("/api/event", { event_type: "search", page_url: "not a url" });
      expect(nowhere.status).toBe(400);
      expect(nowhere.json).toMatchObject({ field: "page_url" });
    });
  });

  it("refuses an event type the site does not allow on every public path", async () => {
    await expectNothingStored(quarantine, async () => {
      const event = await postJson("/api/event", { event_type: "download", page_url: `https://${quarantine.domain}/` });
      expect(event.json).toEqual({ message: "Invalid event type." });
      const collect = await postJson("/collect", { v: "1", tid: quarantine.trackingId, t: "event", ea: "download", dl: `https://${quarantine.domain}/` });
      expect(collect.status).toBe(400);
      expect(collect.json).toMatchObject({ field: "ea", message: expect.stringContaining("not allowed") });
      const batch = await postJson("/batch", { tracking_id: quarantine.trackingId, events: [{ type: "event", action: "download" }] });
      expect(batch.status).toBe(400);
      expect(batch.json).toMatchObject({ failed: 1, errors: [{ index: 0, field: "name", reason: "EVENT_TYPE_NOT_ALLOWED" }] });
    });
  });

  it("refuses 31 properties (the limit is 30), naming the field", async () => {
    const props = Object.fromEntries(Array.from({ length: 31 }, (_, i) => [`p${i}`, i]));
    await expectNothingStored(quarantine, async () => {
      const event = await postJson("/api/event", { event_type: "search", event_data: props, page_url: `https://${quarantine.domain}/` });
      expect(event.status).toBe(400);
      expect(event.json).toMatchObject({ field: "event_data", message: "event_data: has 31 properties; at most 30 are allowed" });
      const batch = await postJson("/batch", { tracking_id: quarantine.trackingId, events: [{ type: "event", action: "search", properties: props }] });
      expect(batch.status).toBe(400);
      expect(batch.json).toMatchObject({ failed: 1, errors: [{ index: 0, field: "properties", reason: "TOO_MANY_PROPERTIES" }] });
    });
  });

  it("refuses an empty batch and one over the 1,000-event limit", async () => {
    await expectNothingStored(quarantine, async () => {
      const empty = await postJson("/batch", { tracking_id: quarantine.trackingId, events: [] });
      expect(empty.status).toBe(400);
      expect(empty.json).toMatchObject({ field: "events", message: expect.stringContaining("at least one") });
      const emptyBody = await send("POST", "/batch", { body: "", type: "text/plain" });
      expect(emptyBody.status).toBe(400);
      const events = Array.from({ length: 1001 }, () => ({ type: "pageview", page: "/" }));
      const tooMany = await postJson("/batch", { tracking_id: quarantine.trackingId, events });
      expect(tooMany.status).toBe(400);
      expect(tooMany.json?.message).toBe("events: must hold at most 1000 events, got 1001");
      const lines = Array.from({ length: 1001 }, () => `v=1&tid=${quarantine.trackingId}&t=pageview&dp=/`).join("\n");
      expect((await send("POST", "/batch", { body: lines, type: "text/plain" })).status).toBe(400);
    });
  });

  it("refuses a body over 1 MB with 413, declared or streamed, without reading it all", async () => {
    const filler = "x".repeat(1024 * 1024 + 1);
    await expectNothingStored(quarantine, async () => {
      const declared = await postJson("/api/event", { event_type: "search", event_data: { filler }, page_url: `https://${quarantine.domain}/` });
      expect(declared.status).toBe(413);
      expect(declared.json).toMatchObject({ error: "payload_too_large", message: expect.stringContaining("1048576 bytes") });
      const encoder = new TextEncoder();
      const chunk = encoder.encode("y".repeat(64 * 1024));
      let sent = 0;
      // A chunked body with no Content-Length, which would go on for 64 MB if it were read.
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent === 0) controller.enqueue(encoder.encode(`{"tracking_id":"${quarantine.trackingId}","events":[{"type":"pageview","page":"/`));
          else if (sent < 1024) controller.enqueue(chunk);
          else controller.close();
          sent++;
        },
      });
      const streamed = await send("POST", "/batch", { body: stream, type: "application/json" }).catch((error: unknown) => error as Error);
      // The server may close the connection while the client is still sending; either way it stopped early.
      if (streamed instanceof Error) expect(sent).toBeLessThan(1024);
      else expect(streamed.status).toBe(413);
      expect(sent).toBeLessThan(1024);
    });
  });

  it("answers a wrong method with 405 and Allow, and a bare OPTIONS with Allow", async () => {
    const get = await send("GET", "/batch");
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST, OPTIONS");
    expect(get.json).toMatchObject({ error: "method_not_allowed" });
    const put = await send("PUT", "/collect", { body: "x", type: "text/plain" });
    expect(put.status).toBe(405);
    expect(put.headers.get("allow")).toBe("GET, POST, OPTIONS");
    const options = await send("OPTIONS", "/api/event");
    expect(options.status).toBe(204);
    expect(options.headers.get("allow")).toBe("POST, OPTIONS");
  });

  it("lets a browser on another origin send beacons (CORS preflight and answer)", async () => {
    const preflight = await fetch(`${beacon.baseUrl}/api/event`, {
      method: "OPTIONS",
      headers: { Origin: "https://elsewhere.example.net", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://elsewhere.example.net");
    const res = await postJson("/api/event", { event_type: "search", page_url: `https://${sarai.domain}/` }, { Origin: "https://elsewhere.example.net" });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("https://elsewhere.example.net");
  });

  it("refuses an unsupported content type with 415", async () => {
    const res = await send("POST", "/batch", { body: "<xml/>", type: "application/xml" });
    expect(res.status).toBe(415);
    expect(res.json?.message).toContain("application/xml");
  });

  it("answers over a raw HTTP/1.1 connection, as old trackers send it", async () => {
    const body = JSON.stringify({ v: "1", tid: shop.trackingId, t: "pageview", dh: shop.domain, dp: "/raw" });
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${beacon.baseUrl}/collect`, { method: "POST", headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      req.end(body);
    });
    expect(status).toBe(200);
  });
});
