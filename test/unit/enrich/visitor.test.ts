import { describe, expect, it } from "vitest";
import { createVisitorHasher, utcDay } from "../../../server/core/enrich/visitor.js";

const MAX_63 = (1n << 63n) - 1n;
const UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0";

describe("visitor hasher", () => {
  const hasher = createVisitorHasher("test-secret");

  it("is deterministic across hasher instances with the same secret", () => {
    const a = hasher.visitorId("site-1", "203.0.113.7", UA, "2024-03-01");
    const b = createVisitorHasher("test-secret").visitorId("site-1", "203.0.113.7", UA, "2024-03-01");
    expect(a).toBe(b);
    expect(a).toBeGreaterThan(0n);
    expect(a).toBeLessThanOrEqual(MAX_63);
  });

  it("changes with the day, site, IP, user agent and secret", () => {
    const base = hasher.visitorId("site-1", "203.0.113.7", UA, "2024-03-01");
    expect(hasher.visitorId("site-1", "203.0.113.7", UA, "2024-03-02")).not.toBe(base);
    expect(hasher.visitorId("site-2", "203.0.113.7", UA, "2024-03-01")).not.toBe(base);
    expect(hasher.visitorId("site-1", "203.0.113.8", UA, "2024-03-01")).not.toBe(base);
    expect(hasher.visitorId("site-1", "203.0.113.7", UA + " x", "2024-03-01")).not.toBe(base);
    expect(createVisitorHasher("other").visitorId("site-1", "203.0.113.7", UA, "2024-03-01")).not.toBe(base);
  });

  it("separates fields so concatenations do not collide", () => {
    expect(hasher.visitorId("site-1", "1.2.3.4", "5", "2024-03-01")).not.toBe(
      hasher.visitorId("site-1", "1.2.3.", "45", "2024-03-01"),
    );
  });

  it("always yields positive 63-bit ids", () => {
    for (let i = 0; i < 500; i++) {
      const id = hasher.visitorId("s", `10.0.${i >> 8}.${i & 255}`, UA, "2024-03-01");
      expect(id >= 0n && id <= MAX_63).toBe(true);
    }
  });

  it("gives today's and yesterday's ids around UTC midnight", () => {
    const at = new Date("2024-03-02T00:05:00Z");
    expect(hasher.visitorIdsAround("site-1", "203.0.113.7", UA, at)).toEqual({
      today: hasher.visitorId("site-1", "203.0.113.7", UA, "2024-03-02"),
      yesterday: hasher.visitorId("site-1", "203.0.113.7", UA, "2024-03-01"),
    });
  });

  it("gives each of a run of visitors its own ids, however they alternate", () => {
    const at = new Date("2024-03-02T12:00:00Z");
    const visitors: [string, string, string][] = [
      ["site-1", "203.0.113.7", UA], ["site-1", "203.0.113.7", UA], ["site-1", "203.0.113.8", UA], ["site-1", "203.0.113.7", UA],
      ["site-1", "203.0.113.7", UA + " x"], ["site-2", "203.0.113.7", UA + " x"], ["site-2", "203.0.113.7", UA + " x"],
    ];
    for (const [site, ip, ua] of visitors) {
      expect(hasher.visitorIdsAround(site, ip, ua, at)).toEqual({ today: hasher.visitorId(site, ip, ua, "2024-03-02"), yesterday: hasher.visitorId(site, ip, ua, "2024-03-01") });
    }
  });

  it("derives client visitor ids without a daily salt", () => {
    const a = hasher.clientVisitorId("site-1", "client-abc");
    expect(a).toBe(createVisitorHasher("test-secret").clientVisitorId("site-1", "client-abc"));
    expect(hasher.clientVisitorId("site-2", "client-abc")).not.toBe(a);
    expect(a >= 0n && a <= MAX_63).toBe(true);
  });

  it("formats UTC days", () => {
    expect(utcDay(new Date("2024-03-01T23:59:59.999Z"))).toBe("2024-03-01");
    expect(hasher.utcDay(new Date("2024-03-02T00:00:00Z"))).toBe("2024-03-02");
  });

  it("remembers ids without changing them, past its cache size and across midnight", () => {
    const remembering = createVisitorHasher("test-secret");
    const fresh = createVisitorHasher("test-secret");
    const ips = Array.from({ length: 120_000 }, (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    const march2 = new Date("2024-03-02T10:00:00Z");
    const first = ips.map((ip) => remembering.visitorIdsAround("site-1", ip, UA, march2));
    // Again, now partly remembered and partly forgotten: the same ids, and those of the HMACs.
    expect(ips.map((ip) => remembering.visitorIdsAround("site-1", ip, UA, march2))).toEqual(first);
    for (const i of [0, 9_999, 60_000, 119_999]) {
      expect(first[i]).toEqual({ today: fresh.visitorId("site-1", ips[i], UA, "2024-03-02"), yesterday: fresh.visitorId("site-1", ips[i], UA, "2024-03-01") });
    }
    // A remembered visitor on the next day (and back): that day's pair, not the remembered one.
    const last = ips[119_999];
    expect(remembering.visitorIdsAround("site-1", last, UA, new Date("2024-03-03T00:00:01Z"))).toEqual({
      today: fresh.visitorId("site-1", last, UA, "2024-03-03"),
      yesterday: first[119_999].today,
    });
    expect(remembering.visitorIdsAround("site-1", last, UA, new Date("2024-03-02T23:59:59Z"))).toEqual(first[119_999]);
    expect(remembering.clientVisitorId("site-1", "c")).toBe(fresh.clientVisitorId("site-1", "c"));
  });

  it("gives rate-limit keys that group exactly as visitor ids do", () => {
    const key = (identity: string, ip: string, ua: string, day: string, site = "site-1", h = hasher) => h.visitorKey(site, identity, ip, ua, day);
    const base = key("", "203.0.113.7", UA, "2024-03-01");
    expect(createVisitorHasher("test-secret").visitorKey("site-1", "", "203.0.113.7", UA, "2024-03-01")).toBe(base);
    expect(base).toMatch(/^[A-Za-z0-9_-]{22}$/);
    // Anything that makes another visitor id makes another key.
    for (const other of [
      key("", "203.0.113.7", UA, "2024-03-02"),
      key("", "203.0.113.7", UA, "2024-03-01", "site-2"),
      key("", "203.0.113.8", UA, "2024-03-01"),
      key("", "203.0.113.7", UA + " x", "2024-03-01"),
      key("", "1.2.3.", "45" + UA, "2024-03-01"),
      key("", "203.0.113.7", UA, "2024-03-01", "site-1", createVisitorHasher("other")),
    ]) expect(other).not.toBe(base);
    expect(key("", "1.2.3.4", "5", "2024-03-01")).not.toBe(key("", "1.2.3.", "45", "2024-03-01"));
    // A client id is the visitor whatever the IP, agent or day, and is never confused with an IP visitor.
    const client = key("client-abc", "203.0.113.7", UA, "2024-03-01");
    expect(key("client-abc", "198.51.100.1", "curl/8", "2024-03-02")).toBe(client);
    expect(key("client-abd", "203.0.113.7", UA, "2024-03-01")).not.toBe(client);
    expect(key("client-abc", "203.0.113.7", UA, "2024-03-01", "site-2")).not.toBe(client);
    expect(client).not.toBe(base);
    // The key does not show what it was made of.
    expect(base).not.toContain("203");
  });

  it("gives each rate-limit key its own inputs when consecutive calls differ in one of them", () => {
    const fresh = () => createVisitorHasher("test-secret");
    // Each call differs from the one before in exactly one input.
    const calls: [string, string, string, string, string][] = [
      ["site-1", "", "203.0.113.7", UA, "2024-03-01"],
      ["site-1", "", "203.0.113.7", UA, "2024-03-01"],
      ["site-2", "", "203.0.113.7", UA, "2024-03-01"],
      ["site-2", "", "203.0.113.8", UA, "2024-03-01"],
      ["site-2", "", "203.0.113.8", UA + " x", "2024-03-01"],
      ["site-2", "", "203.0.113.8", UA + " x", "2024-03-02"],
      ["site-2", "client-abc", "203.0.113.8", UA + " x", "2024-03-02"],
      ["site-2", "client-abd", "203.0.113.8", UA + " x", "2024-03-02"],
    ];
    for (const [site, identity, ip, ua, day] of calls) {
      expect(hasher.visitorKey(site, identity, ip, ua, day)).toBe(fresh().visitorKey(site, identity, ip, ua, day));
    }
  });

  it("rejects an empty secret", () => {
    expect(() => createVisitorHasher("")).toThrow();
  });
});
