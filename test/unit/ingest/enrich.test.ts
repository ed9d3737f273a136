// enrichHit with a fake place lookup and a real visitor hasher: which id a visitor gets, which
// session keys the sessions step may try, and that nothing of the IP leaves this step.
import { describe, expect, it } from "vitest";
import type { GeoLookup } from "../../../server/core/enrich/geo.js";
import { createVisitorHasher } from "../../../server/core/enrich/visitor.js";
import { CLASSIFICATION, enrichHit } from "../../../server/core/ingest/enrich.js";
import type { RawHit } from "../../../server/core/ingest/hit.js";

const SITE = "00000000-0000-4000-8000-000000000001";
const CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const AT = Date.UTC(2026, 10, 20, 0, 10);

const looked: string[] = [];
const geo: GeoLookup = {
  lookup(ip) {
    looked.push(ip);
    return { country: "DE", region: "DE-BE", city: "Berlin" };
  },
};
const hasher = createVisitorHasher("unit-test-secret");

function hit(overrides: Partial<RawHit> = {}): RawHit {
  return {
    siteId: SITE,
    eventId: "e1",
    ts: AT,
    name: "pageview",
    url: "https://www.example.com/docs/start?utm_source=bluesky&utm_medium=social&fbclid=xyz",
    referrer: "https://bsky.app/profile/someone",
    title: "Start",
    ip: "198.51.100.23",
    userAgent: CHROME,
    clientId: "",
    userId: "",
    screen: "1280x720",
    language: "de-DE",
    props: { plan: "team" },
    revenue: 12.5,
    currency: "EUR",
    receivedAt: AT + 20,
    ...overrides,
  };
}

describe("enrichHit", () => {
  it("fills place, browser, source and campaign, and keeps nothing of the IP", () => {
    const row = enrichHit(hit(), ["example.com"], { geo, hasher });
    expect(looked).toContain("198.51.100.23");
    expect(row).toMatchObject({
      hostname: "www.example.com",
      pathname: "/docs/start",
      referrer: "bsky.app/profile/someone",
      referrerSource: "Bluesky",
      referrerMedium: "social",
      utmSource: "bluesky",
      utmMedium: "social",
      clickId: "fbclid:xyz",
      country: "DE",
      region: "DE-BE",
      city: "Berlin",
      browser: "Chrome",
      os: "Windows",
      deviceType: "desktop",
      classification: CLASSIFICATION.USER,
      props: { plan: "team" },
      revenue: 12.5,
    });
    expect(JSON.stringify(row, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))).not.toContain("198.51.100.23");
  });

  it("hashes IP and user agent under today's salt and offers yesterday's, for a visit that began before midnight UTC", () => {
    const row = enrichHit(hit(), ["example.com"], { geo, hasher });
    expect(row.visitorId).toBe(hasher.visitorId(SITE, "198.51.100.23", CHROME, "2026-11-20"));
    expect(row.visitorIdYesterday).toBe(hasher.visitorId(SITE, "198.51.100.23", CHROME, "2026-11-19"));
  });

  it("uses the client's id, or the user id before it, and then has no yesterday to offer", () => {
    const client = enrichHit(hit({ clientId: "c-1" }), ["example.com"], { geo, hasher });
    expect(client.visitorId).toBe(hasher.clientVisitorId(SITE, "c-1"));
    expect(client.visitorIdYesterday).toBeNull();
    const user = enrichHit(hit({ clientId: "c-1", userId: "u-1" }), ["example.com"], { geo, hasher });
    expect(user.visitorId).toBe(hasher.clientVisitorId(SITE, "u-1"));
    expect(user.visitorIdYesterday).toBeNull();
  });

  it("labels scripts and empty agents BOT", () => {
    expect(enrichHit(hit({ userAgent: "curl/8.5.0" }), [], { geo, hasher }).classification).toBe(CLASSIFICATION.BOT);
    expect(enrichHit(hit({ userAgent: "" }), [], { geo, hasher }).classification).toBe(CLASSIFICATION.BOT);
  });

  it("treats the site's own domain as no referrer", () => {
    const row = enrichHit(hit({ url: "https://example.com/b", referrer: "https://www.example.com/a" }), ["example.com"], { geo, hasher });
    expect(row).toMatchObject({ referrer: "", referrerSource: "", referrerMedium: "direct" });
  });
});
