// The beacon routes with fakes for the acceptor, sites and keys: how each seed's shape becomes the
// shared event shape, how failures map to statuses, and that every request is logged.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { AcceptResult } from "../../server/core/ingest/accept.js";
import type { IncomingEvent, RequestContext } from "../../server/core/ingest/hit.js";
import type { IngestSite } from "../../server/core/ingest/sites.js";
import { SITE_SETTING_DEFAULTS } from "../../server/core/management/sites.js";
import { RateLimitedError, UnavailableError } from "../../server/core/errors.js";
import type { Principal } from "../../server/core/roles.js";
import { createBeaconRoutes } from "../../server/http/beacons.js";
import { createLogger } from "../../server/logger.js";

const site: IngestSite = {
  id: "11111111-1111-4111-8111-111111111111",
  organisationId: "org-1",
  trackingId: "BK-SHOP",
  domain: "shop.example.com",
  timezone: "UTC",
  currency: "USD",
  domains: ["shop.example.com"],
  settings: { ...SITE_SETTING_DEFAULTS },
};

const keys: Record<string, Principal> = {
  "bk_analyst": { keyId: "k1", organisationId: "org-1", role: "analyst", siteIds: [], actor: "analyst" },
  "bk_outsider": { keyId: "k2", organisationId: "org-2", role: "admin", siteIds: [], actor: "outsider" },
};

let calls: { events: IncomingEvent[]; ctx: RequestContext }[] = [];
let failWith: unknown;
const logLines: Record<string, unknown>[] = [];

const routes = createBeaconRoutes({
  acceptor: {
    async accept(_site, events, ctx): Promise<AcceptResult> {
      if (failWith) throw failWith;
      calls.push({ events, ctx });
      return { accepted: events.map((_, index) => ({ index, eventId: `id-${index}` })), errors: [], ignoredDoNotTrack: false };
    },
  },
  sites: {
    byTrackingId: async (id) => (id.toUpperCase() === site.trackingId ? site : undefined),
    byId: async (id) => (id === site.id ? site : undefined),
    byHostname: async (host) => (host.endsWith(site.domain) ? site : undefined),
  },
  principals: { resolve: async (secret) => keys[secret] },
  logger: createLogger({ level: "debug", stream: { write: (line: string) => logLines.push(JSON.parse(line) as Record<string, unknown>) } }),
  maxBodyBytes: 4096,
  maxBatchEvents: 3,
});

let server: Server;
let baseUrl: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (!routes(req, res)) {
      res.statusCode = 418;
      res.end("not a beacon");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  calls = [];
  failWith = undefined;
  logLines.length = 0;
});

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${baseUrl}${path}`, { method: "POST", headers: { "Content-Type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}

describe("reading each seed's shape", () => {
  it("reads 000's /collect JSON, numbers included, into a page view", async () => {
    const res = await post("/collect", { v: 1, tid: "BK-SHOP", cid: 555, t: "pageview", dh: "shop.example.com", dp: "/home", dt: "Homepage", dr: "https://google.com" });
    expect(res.json).toEqual({ status: "ok", received: 1 });
    expect(calls[0].events[0]).toMatchObject({ name: "pageview", url: "https://shop.example.com/home", title: "Homepage", referrer: "https://google.com", clientId: "555" });
  });

  it("merges /collect's query string with its body, the body's value winning, and puts campaign parameters on the page URL", async () => {
    const res = await post("/collect?v=1&tid=BK-SHOP&dh=shop.example.com&dp=/from-query&dt=Query&cs=newsletter", { dp: "/from-body", cm: "email", cn: "spring" });
    expect(res.json).toEqual({ status: "ok", received: 1 });
    const url = new URL(calls[0].events[0].url);
    expect([url.pathname, calls[0].events[0].title]).toEqual(["/from-body", "Query"]);
    expect(Object.fromEntries(url.searchParams)).toEqual({ utm_source: "newsletter", utm_medium: "email", utm_campaign: "spring" });
  });

  it("builds /batch URLs from page on the site's domain, and reads type event as its action", async () => {
    await post("/batch", { tracking_id: "BK-SHOP", events: [{ type: "pageview", page: "/home" }, { type: "event", category: "button", action: "click", label: "signup", value: 2 }] });
    const [view, click] = calls[0].events;
    expect(view).toMatchObject({ name: "pageview", url: "https://shop.example.com/home" });
    expect(click).toMatchObject({ name: "click", properties: { category: "button", label: "signup", value: 2 } });
  });

  it("groups /batch lines by site, agent and IP; honours uip only for a key of the site's organisation", async () => {
    const lines = ["v=1&tid=BK-SHOP&dp=/a&uip=9.9.9.9", "v=1&tid=BK-SHOP&dp=/b&uip=9.9.9.9", "v=1&tid=BK-SHOP&dp=/c&ua=curl"].join("\n");
    const send = (authorization?: string) =>
      fetch(`${baseUrl}/batch`, { method: "POST", headers: { "Content-Type": "text/plain", "X-Forwarded-For": "1.2.3.4", ...(authorization ? { Authorization: authorization } : {}) }, body: lines });
    await send("bk_analyst");
    expect(calls.map((c) => [c.events.length, c.ctx.ip, c.ctx.userAgent === "curl"])).toEqual([[2, "9.9.9.9", false], [1, "1.2.3.4", true]]);
    calls = [];
    await send("bk_outsider");
    expect(calls[0].ctx.ip).toBe("1.2.3.4");
  });

  it("reads 003's body, keeping event_data for the acceptor to sanitise", async () => {
    const res = await post("/api/event", { event_type: "search", event_data: { query: "tutorial" }, page_url: "https://www.shop.example.com/", referrer: "https://google.com" });
    expect(res.status).toBe(204);
    expect(calls[0].events[0]).toMatchObject({ name: "search", url: "https://www.shop.example.com/", properties: { query: "tutorial" } });
  });

  it("reads 001's query parameters, with the visitor's IP and agent in place of the caller's", async () => {
    const query = new URLSearchParams({ url: "https://shop.example.com/", ip_addr: "8.8.8.8", user_agent: "Googlebot" });
    const res = await fetch(`${baseUrl}/api/v1/traffic?${query}`, { method: "POST", headers: { Authorization: "bk_analyst", DNT: "1" } });
    expect(res.status).toBe(201);
    expect(calls[0].ctx).toMatchObject({ ip: "8.8.8.8", userAgent: "Googlebot", doNotTrack: false });
  });
});

describe("failures", () => {
  it("maps a rate limit to 429 with Retry-After, and 003's to its own body", async () => {
    failWith = new RateLimitedError(7);
    const collect = await post("/collect", { tid: "BK-SHOP", dp: "/" });
    expect(collect.status).toBe(429);
    expect(collect.headers.get("retry-after")).toBe("7");
    expect(collect.json).toMatchObject({ error: "rate_limited" });
    const event = await post("/api/event", { event_type: "search", page_url: "https://shop.example.com/" });
    expect(event.json).toEqual({ message: "Rate limit exceeded." });
  });

  it("answers 503 when the queue cannot take the events, without echoing the cause", async () => {
    failWith = new Error("connect ECONNREFUSED 10.0.0.7:6379");
    const res = await post("/collect", { tid: "BK-SHOP", dp: "/" });
    expect(res.status).toBe(503);
    expect(JSON.stringify(res.json)).not.toContain("10.0.0.7");
    expect(logLines.some((l) => l.level === "error" && String(l.err).includes("ECONNREFUSED"))).toBe(true);
    failWith = new UnavailableError("redis is down");
    expect((await post("/collect", { tid: "BK-SHOP", dp: "/" })).status).toBe(503);
  });

  it("refuses a declared oversized body before reading it, and a batch over the limit", async () => {
    const big = await post("/collect", { tid: "BK-SHOP", dp: "/", dt: "x".repeat(5000) });
    expect(big.status).toBe(413);
    expect(big.headers.get("connection")).toBe("close");
    const many = await post("/batch", { tracking_id: "BK-SHOP", events: [{}, {}, {}, {}] });
    expect(many.status).toBe(400);
    expect(many.json?.message).toBe("events: must hold at most 3 events, got 4");
    expect(calls).toHaveLength(0);
  });
});

describe("routing and logging", () => {
  it("leaves other paths to the caller, and logs every request it answers", async () => {
    const other = await fetch(`${baseUrl}/healthz`);
    expect(other.status).toBe(418);
    await post("/collect", { tid: "BK-SHOP", dp: "/" });
    await post("/collect", "{not json");
    await fetch(`${baseUrl}/batch`);
    const http = logLines.filter((l) => l.msg === "http");
    expect(http.map((l) => [l.method, l.path, l.status])).toEqual([
      ["POST", "/collect", 200],
      ["POST", "/collect", 400],
      ["GET", "/batch", 405],
    ]);
  });
});
