// Seed 001's data API against a real Beacon (Postgres, Redis, the ingest worker, port 0): hits are
// recorded the way 001's websites send them (POST /api/v1/traffic with url, ip_addr, user_agent
// and the key bare in Authorization), then the six endpoints are asked the way 001's README does,
// and their numbers checked by hand and against RunReport (the same engine). USER and BOT are
// counted apart; bad dates, classifications and keys get 400/401; another organisation's site 404.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { ReportingService } from "../../gen/beacon/v1/reporting_service_pb.js";
import { createGeoLookup } from "../../server/core/enrich/geo.js";
import { sqlPool } from "../../server/db/orm.js";
import { startTestBeacon, type TestBeacon } from "../support/beacon.js";

const CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const SAFARI = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";
// Seed 001's own example agent.
const GOOGLEBOT = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/80.0.3987.92 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

const US_IP = "8.8.8.8";
const US_IP_2 = "8.8.4.4";
const GB_IP = "81.2.69.142";
const DE_IP = "85.214.132.117";
const BOT_IP = "66.249.66.1";

let beacon: TestBeacon;
let shopId: string;
let shopDomain: string;
/** A viewer key limited to the shop: 001's clients name no site. */
let shopViewerKey: string;
let otherOrgSiteId: string;
/** A viewer key of the other organisation, which has exactly one site. */
let otherOrgViewerKey: string;

const bearer = (key: string): Interceptor => (next) => (req) => {
  req.header.set("Authorization", `Bearer ${key}`);
  return next(req);
};

/** 001's traffic call: url, ip_addr and user_agent as query parameters, the key bare. */
async function recordHit(url: string, ip: string, userAgent: string): Promise<void> {
  const res = await fetch(`${beacon.baseUrl}/api/v1/traffic?${new URLSearchParams({ url, ip_addr: ip, user_agent: userAgent })}`, { method: "POST", headers: { Authorization: beacon.adminKey } });
  expect(res.status, await res.clone().text()).toBe(201);
}

interface Got {
  status: number;
  body: Record<string, unknown>;
}

/** 001's data call: `requests.get(url, headers={'Authorization': key}, params={...})`, with fetch. */
async function data(endpoint: string, params: Record<string, string>, authorization: string | null = shopViewerKey, method = "GET"): Promise<Got> {
  const headers: Record<string, string> = authorization === null ? {} : { Authorization: authorization };
  const res = await fetch(`${beacon.baseUrl}/api/v1/data/${endpoint}?${new URLSearchParams(params)}`, { method, headers });
  const text = await res.text();
  return { status: res.status, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** A date as 001's clients write it: no zero padding (`2021-3-5`). */
function unpadded(instant: number): string {
  const d = new Date(instant);
  return `${d.getUTCFullYear()}-${d.getUTCMonth() + 1}-${d.getUTCDate()}`;
}
const padded = (instant: number) => new Date(instant).toISOString().slice(0, 10);

const DAY = 86_400_000;
/** Around now: the hits are stamped when they arrive, and the shop's days are UTC days. */
const RANGE = { start_date: unpadded(Date.now() - DAY), end_date: unpadded(Date.now() + DAY) };

beforeAll(async () => {
  beacon = await startTestBeacon("data-api", { workers: true });
  const management = createClient(ManagementService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [bearer(beacon.adminKey)] }));
  const { site } = await management.createSite({ domain: "data-shop.example", timezone: "UTC", settings: { additionalHostnames: ["blog.data-shop.example"] } });
  shopId = site!.id;
  shopDomain = site!.domain;
  shopViewerKey = await beacon.makeKey("viewer", { siteIds: [shopId] });

  const otherOrg = await beacon.makeOrganisation("Other org");
  const otherAdmin = await beacon.makeKey("admin", { organisationId: otherOrg });
  const otherManagement = createClient(ManagementService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [bearer(otherAdmin)] }));
  const { site: otherSite } = await otherManagement.createSite({ domain: "other-org.example" });
  otherOrgSiteId = otherSite!.id;
  otherOrgViewerKey = await beacon.makeKey("viewer", { organisationId: otherOrg });

  // People: two in the US (different IPs), one each in Germany and Britain; and Googlebot.
  const page = (path: string, host = shopDomain) => `https://${host}${path}`;
  await recordHit(page("/"), US_IP, CHROME);
  await recordHit(page("/pricing"), US_IP, CHROME);
  await recordHit(page("/"), US_IP, CHROME);
  await recordHit(page("/pricing"), GB_IP, CHROME);
  await recordHit(page("/"), DE_IP, FIREFOX);
  await recordHit(page("/about", "blog.data-shop.example"), DE_IP, FIREFOX);
  await recordHit(page("/"), US_IP_2, SAFARI);
  await recordHit(page("/"), BOT_IP, GOOGLEBOT);
  await recordHit(page("/robots.txt"), BOT_IP, GOOGLEBOT);
  // The other organisation's site has traffic too, which the shop's answers never include.
  const otherKey = await beacon.makeKey("analyst", { organisationId: otherOrg });
  const other = await fetch(`${beacon.baseUrl}/api/v1/traffic?${new URLSearchParams({ url: "https://other-org.example/", ip_addr: US_IP, user_agent: CHROME })}`, { method: "POST", headers: { Authorization: otherKey } });
  expect(other.status).toBe(201);

  const pool = await sqlPool(beacon.orm);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { rows } = await pool.query<{ n: string }>("select count(*) as n from events where site_id = any($1::uuid[])", [[shopId, otherOrgSiteId]]);
    if (Number(rows[0].n) >= 10) break;
    if (Date.now() > deadline) throw new Error(`only ${rows[0].n} of 10 hits were stored`);
    await new Promise((wake) => setTimeout(wake, 100));
  }
});

afterAll(async () => {
  await beacon?.stop();
});

describe("seed 001's request shape", () => {
  it("answers README's example call: bare key, 2020-10-10 to the unpadded 2021-3-15", async () => {
    const got = await data("users", { start_date: "2020-10-10", end_date: "2021-3-15" });
    expect(got).toEqual({ status: 200, body: { start_date: "2020-10-10", end_date: "2021-03-15", classification: "USER", site_id: shopId, users: 0 } });
  });

  it("counts users and views over a range with traffic, with the key bare or as a bearer token", async () => {
    const users = await data("users", RANGE);
    expect(users.status).toBe(200);
    expect(users.body).toEqual({ start_date: padded(Date.now() - DAY), end_date: padded(Date.now() + DAY), classification: "USER", site_id: shopId, users: 4 });
    const views = await data("views", RANGE, `Bearer ${shopViewerKey}`);
    expect(views.body).toMatchObject({ classification: "USER", views: 7 });
  });

  it("breaks users and views down by country, city, url and hostname, most viewed first", async () => {
    const countries = await data("countries", RANGE);
    expect(countries.status).toBe(200);
    expect(countries.body.countries).toEqual([
      { country: "US", users: 2, views: 4 },
      { country: "DE", users: 1, views: 2 },
      { country: "GB", users: 1, views: 1 },
    ]);
    // The bundled database knows countries, not cities: unknown cities are null, per country.
    const cities = await data("cities", RANGE);
    expect(cities.body.cities).toEqual([
      { city: null, country: "US", users: 2, views: 4 },
      { city: null, country: "DE", users: 1, views: 2 },
      { city: null, country: "GB", users: 1, views: 1 },
    ]);
    const urls = await data("urls", RANGE);
    expect(urls.body.urls).toEqual([
      { url: "/", users: 3, views: 4 },
      { url: "/pricing", users: 2, views: 2 },
      { url: "/about", users: 1, views: 1 },
    ]);
    const hostnames = await data("hostnames", RANGE);
    expect(hostnames.body.hostnames).toEqual([
      { hostname: shopDomain, users: 4, views: 6 },
      { hostname: "blog.data-shop.example", users: 1, views: 1 },
    ]);
  });

  it("counts bots apart with classification=BOT", async () => {
    const geo = await createGeoLookup();
    expect((await data("users", { ...RANGE, classification: "BOT" })).body).toMatchObject({ classification: "BOT", users: 1 });
    expect((await data("views", { ...RANGE, classification: "BOT" })).body).toMatchObject({ views: 2 });
    expect((await data("urls", { ...RANGE, classification: "BOT" })).body.urls).toEqual([
      { url: "/", users: 1, views: 1 },
      { url: "/robots.txt", users: 1, views: 1 },
    ]);
    expect((await data("countries", { ...RANGE, classification: "BOT" })).body.countries).toEqual([{ country: geo.lookup(BOT_IP).country || null, users: 1, views: 2 }]);
    // USER is the default and may be named.
    expect((await data("views", { ...RANGE, classification: "USER" })).body).toMatchObject({ views: 7 });
  });

  it("gives the numbers RunReport gives (one engine)", async () => {
    const reporting = createClient(ReportingService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [bearer(shopViewerKey)] }));
    const report = await reporting.runReport({
      siteId: shopId,
      dateRange: { startDate: padded(Date.now() - DAY), endDate: padded(Date.now() + DAY) },
      metrics: ["visitors", "pageviews"],
      dimensions: ["country"],
    });
    const countries = (await data("countries", RANGE)).body.countries as { country: string; users: number; views: number }[];
    expect(Object.fromEntries(report.rows.map((r) => [r.dimensions.country, [r.metrics.visitors, r.metrics.pageviews]]))).toEqual(Object.fromEntries(countries.map((c) => [c.country, [c.users, c.views]])));
  });
});

describe("which site", () => {
  it("takes site_id, else the key's only site, else the organisation's only site", async () => {
    expect((await data("views", { ...RANGE, site_id: shopId }, beacon.adminKey)).body).toMatchObject({ site_id: shopId, views: 7 });
    expect((await data("views", RANGE, otherOrgViewerKey)).body).toMatchObject({ site_id: otherOrgSiteId, views: 1 });
  });

  it("asks for site_id when the key reaches several sites", async () => {
    const management = createClient(ManagementService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [bearer(beacon.adminKey)] }));
    await management.createSite({ domain: "second-shop.example" });
    const got = await data("users", RANGE, beacon.adminKey);
    expect(got.status).toBe(400);
    expect(got.body).toMatchObject({ error: "invalid_field", field: "site_id" });
  });

  it("answers 404 for another organisation's site, and 400 for a site_id that is no id", async () => {
    const got = await data("users", { ...RANGE, site_id: otherOrgSiteId });
    expect(got.status).toBe(404);
    expect(got.body).toMatchObject({ error: "not_found", field: "site_id" });
    expect(JSON.stringify(got.body)).not.toContain("other-org.example");
    const notAnId = await data("users", { ...RANGE, site_id: "'; drop table sites; --" });
    expect(notAnId.status).toBe(400);
    expect(notAnId.body).toMatchObject({ field: "site_id" });
  });
});

describe("refusals", () => {
  it("answers 401 without a key or with a wrong one", async () => {
    const missing = await data("users", RANGE, null);
    expect(missing.status).toBe(401);
    expect(missing.body).toMatchObject({ error: "unauthenticated" });
    expect((await data("users", RANGE, "bk_not-a-real-key")).status).toBe(401);
    expect((await data("users", RANGE, "Bearer bk_not-a-real-key")).status).toBe(401);
  });

  it.each([
    [{ start_date: "yesterday", end_date: "2021-03-15" }, "start_date"],
    [{ start_date: "2021-02-30", end_date: "2021-03-15" }, "start_date"],
    [{ start_date: "2021-3-1" }, "end_date"],
    [{ end_date: "2021-3-1" }, "start_date"],
    [{ start_date: "2021-03-15", end_date: "2021-03-14" }, "end_date"],
    [{ start_date: "2021-3-1", end_date: "2021-3-15", classification: "HUMAN" }, "classification"],
  ])("answers 400 naming the parameter for %j", async (params, field) => {
    for (const endpoint of ["users", "countries"]) {
      const got = await data(endpoint, params as Record<string, string>);
      expect(got.status).toBe(400);
      expect(got.body).toMatchObject({ error: "invalid_field", field });
    }
  });

  it("answers 405 to anything but GET", async () => {
    const got = await data("users", RANGE, shopViewerKey, "POST");
    expect(got.status).toBe(405);
  });
});
