import { describe, expect, it } from "vitest";
import { classifyAgent, isBotAgent } from "../../../server/core/enrich/bot.js";

const BROWSERS = [
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
];

const BOTS = [
  "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
  "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.28 Safari/537.36",
  "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
  "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Puppeteer",
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Playwright/1.40",
  "curl/8.4.0",
  "Wget/1.21.4",
  "python-requests/2.31.0",
  "Python-urllib/3.11",
  "Python/3.11 aiohttp/3.9.1",
  "python-httpx/0.26.0",
  "Go-http-client/2.0",
  "okhttp/4.12.0",
  "axios/1.6.2",
  "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
  "undici",
  "Java/17.0.9",
  "Apache-HttpClient/4.5.14 (Java/17.0.9)",
  "libwww-perl/6.72",
  "Ruby",
  "PHP/8.2.0",
  "Scrapy/2.11.0 (+https://scrapy.org)",
  "",
  "   ",
  "abc",
  "Foo/1.0",
];

describe("classifyAgent", () => {
  it.each(BROWSERS)("classifies a real browser as USER: %s", (ua) => {
    expect(classifyAgent(ua)).toBe("USER");
  });

  it.each(BOTS)("classifies %j as BOT", (ua) => {
    expect(classifyAgent(ua)).toBe("BOT");
    expect(isBotAgent(ua)).toBe(true);
  });

  it("answers consistently from the cache", () => {
    const ua = BROWSERS[0];
    expect(classifyAgent(ua)).toBe("USER");
    expect(classifyAgent(ua)).toBe("USER");
    expect(classifyAgent("curl/8.4.0")).toBe("BOT");
    expect(classifyAgent("curl/8.4.0")).toBe("BOT");
  });

  it("survives far more distinct agents than the cache holds", () => {
    for (let i = 0; i < 12_000; i++) classifyAgent(`Mozilla/5.0 (X11; Linux x86_64) Firefox/${i}.0`);
    expect(classifyAgent(BROWSERS[1])).toBe("USER");
  });
});
