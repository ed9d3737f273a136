import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { bundledCountryDbPath, createGeoLookup, publicIp, type GeoLookup } from "../../../server/core/enrich/geo.js";

describe("geo lookup (bundled country database)", () => {
  let geo: GeoLookup;
  beforeAll(async () => {
    geo = await createGeoLookup({});
  });

  it("resolves public IPv4 addresses to their country", () => {
    expect(geo.lookup("8.8.8.8")).toEqual({ country: "US", region: "", city: "" });
    expect(geo.lookup("1.1.1.1").country).toBe("AU");
    expect(geo.lookup("81.2.69.142").country).toBe("GB");
    expect(geo.lookup("193.0.6.139").country).toBe("NL");
    expect(geo.lookup("133.242.0.3").country).toBe("JP");
  });

  it("resolves public IPv6 addresses, including IPv4-mapped ones", () => {
    expect(geo.lookup("2001:4860:4860::8888").country).toBe("US");
    expect(geo.lookup("2a03:2880:f12f:83:face:b00c:0:25de").country).toBe("IE");
    expect(geo.lookup("::ffff:8.8.8.8").country).toBe("US");
  });

  it("returns empty fields for private, loopback, link-local and invalid addresses", () => {
    const none = { country: "", region: "", city: "" };
    for (const ip of [
      "10.0.0.1",
      "127.0.0.1",
      "192.168.1.20",
      "172.16.5.4",
      "169.254.10.1",
      "100.64.0.1",
      "0.0.0.0",
      "::1",
      "::",
      "fe80::1",
      "fe80::1%eth0",
      "fd00::1",
      "::ffff:10.0.0.1",
      "garbage",
      "",
      "999.1.1.1",
    ]) {
      expect(geo.lookup(ip), ip).toEqual(none);
    }
  });

  it("accepts surrounding whitespace and bracketed IPv6", () => {
    expect(publicIp(" 8.8.8.8 ")).toBe("8.8.8.8");
    expect(publicIp("[2001:4860:4860::8888]")).toBe("2001:4860:4860::8888");
  });

  it("returns a fresh object each time so callers cannot corrupt later results", () => {
    const a = geo.lookup("10.0.0.1");
    a.country = "XX";
    expect(geo.lookup("10.0.0.1").country).toBe("");
  });
});

describe("geo lookup with a city database", () => {
  it("fails clearly when the city database path does not exist", async () => {
    const missing = path.join(tmpdir(), "beacon-no-such-dir", "GeoLite2-City.mmdb");
    const err = await createGeoLookup({ cityDbPath: missing }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(missing);
    expect((err as Error).message).toContain("GEOIP_CITY_DB");
  });

  it("fails clearly when the file is not a MaxMind database", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "beacon-geo-"));
    const bogus = path.join(dir, "city.mmdb");
    writeFileSync(bogus, "not a database");
    await expect(createGeoLookup({ cityDbPath: bogus })).rejects.toThrow(/GEOIP_CITY_DB.*city\.mmdb/);
  });

  it("rejects a database that is not a City database", async () => {
    await expect(createGeoLookup({ cityDbPath: bundledCountryDbPath() })).rejects.toThrow(/not a City database/);
  });
});
