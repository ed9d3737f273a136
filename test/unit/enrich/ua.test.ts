import { describe, expect, it } from "vitest";
import { parseUserAgent, UA_CACHE_SIZE, uaCacheSize } from "../../../server/core/enrich/ua.js";

const CHROME_WIN =
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";

describe("parseUserAgent", () => {
  it("parses desktop Chrome on Windows with a major.minor browser version", () => {
    expect(parseUserAgent(CHROME_WIN)).toEqual({
      browser: "Chrome",
      browserVersion: "120.0",
      os: "Windows",
      osVersion: "10",
      deviceType: "desktop",
    });
  });

  it("treats macOS, Linux, Ubuntu and Chrome OS without a device type as desktop", () => {
    const mac = parseUserAgent(
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    );
    expect(mac).toMatchObject({ browser: "Safari", browserVersion: "17.2", os: "Mac OS", osVersion: "10.15.7", deviceType: "desktop" });
    expect(
      parseUserAgent("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
    ).toMatchObject({ browser: "Firefox", browserVersion: "121.0", os: "Ubuntu", deviceType: "desktop" });
    expect(
      parseUserAgent("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"),
    ).toMatchObject({ os: "Linux", deviceType: "desktop" });
    expect(
      parseUserAgent(
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
      ),
    ).toMatchObject({ os: "Chromium OS", osVersion: "14541.0.0", deviceType: "desktop" });
  });

  it("keeps the full OS version and detects phones and tablets", () => {
    expect(
      parseUserAgent(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
      ),
    ).toEqual({ browser: "Mobile Safari", browserVersion: "17.2", os: "iOS", osVersion: "17.2.1", deviceType: "mobile" });
    expect(
      parseUserAgent(
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
      ).deviceType,
    ).toBe("tablet");
    expect(
      parseUserAgent(
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
      ),
    ).toMatchObject({ os: "Android", osVersion: "14", deviceType: "mobile" });
  });

  it("maps ua-parser's smarttv, console and wearable types", () => {
    expect(
      parseUserAgent(
        "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
      ).deviceType,
    ).toBe("tv");
    expect(parseUserAgent("Mozilla/5.0 (PlayStation 5 3.11) AppleWebKit/605.1.15 (KHTML, like Gecko)").deviceType).toBe(
      "console",
    );
    expect(
      parseUserAgent(
        "Mozilla/5.0 (Linux; Android 11; SM-R870) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/90.0 Mobile Safari/537.36",
      ).deviceType,
    ).toBe("wearable");
  });

  it("returns empty strings and unknown for unrecognisable agents", () => {
    const empty = { browser: "", browserVersion: "", os: "", osVersion: "", deviceType: "unknown" };
    expect(parseUserAgent("garbage")).toEqual(empty);
    expect(parseUserAgent("")).toEqual(empty);
  });

  it("returns copies from the cache so callers cannot corrupt it", () => {
    const first = parseUserAgent(CHROME_WIN);
    first.browser = "Mutated";
    expect(parseUserAgent(CHROME_WIN).browser).toBe("Chrome");
  });

  it("bounds the cache", () => {
    for (let i = 0; i < UA_CACHE_SIZE + 50; i++) parseUserAgent(`Mozilla/5.0 test-agent-${i}`);
    expect(uaCacheSize()).toBe(UA_CACHE_SIZE);
    // Still correct after eviction.
    expect(parseUserAgent(CHROME_WIN).browser).toBe("Chrome");
  });
});
