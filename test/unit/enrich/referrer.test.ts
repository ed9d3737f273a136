import { describe, expect, it } from "vitest";
import { emptyCampaign, type Campaign } from "../../../server/core/enrich/campaign.js";
import { classifyReferrer, lookupHost } from "../../../server/core/enrich/referrer.js";

function classify(referrer: string, campaign: Partial<Campaign> = {}) {
  return classifyReferrer({
    referrer,
    pageHostname: "www.example.com",
    siteDomains: ["example.com"],
    campaign: { ...emptyCampaign(), ...campaign },
  });
}

describe("classifyReferrer without campaign tags", () => {
  it("is direct when there is no referrer", () => {
    expect(classify("")).toEqual({ referrer: "", source: "", medium: "direct" });
    expect(classify("not a url")).toEqual({ referrer: "", source: "", medium: "direct" });
  });

  it("treats the site's own domains and subdomains as direct", () => {
    expect(classify("https://www.example.com/pricing")).toEqual({ referrer: "", source: "", medium: "direct" });
    expect(classify("https://example.com/")).toEqual({ referrer: "", source: "", medium: "direct" });
    expect(classify("https://docs.example.com/intro")).toEqual({ referrer: "", source: "", medium: "direct" });
    expect(classify("https://notexample.com/")).toMatchObject({ medium: "referral", source: "notexample.com" });
  });

  it.each([
    ["https://www.google.com/", "Google"],
    ["https://www.google.co.uk/", "Google"],
    ["https://www.google.de/search?q=x", "Google"],
    ["https://www.bing.com/search?q=x", "Bing"],
    ["https://duckduckgo.com/", "DuckDuckGo"],
    ["https://search.yahoo.com/", "Yahoo!"],
    ["https://yandex.ru/search/", "Yandex"],
    ["https://www.baidu.com/", "Baidu"],
    ["https://www.ecosia.org/", "Ecosia"],
    ["https://search.brave.com/", "Brave"],
    ["https://www.qwant.com/", "Qwant"],
    ["https://search.naver.com/", "Naver"],
    ["https://search.seznam.cz/", "Seznam"],
    ["https://www.startpage.com/", "Startpage"],
    ["https://www.ask.com/", "Ask"],
    ["https://search.aol.com/", "AOL"],
    ["https://www.sogou.com/", "Sogou"],
    ["android-app://com.google.android.googlequicksearchbox/", "Google"],
  ])("classifies %s as search from %s", (ref, source) => {
    expect(classify(ref)).toMatchObject({ source, medium: "search" });
  });

  it.each([
    ["https://www.facebook.com/", "Facebook"],
    ["https://l.facebook.com/l.php?u=x", "Facebook"],
    ["https://t.co/abc", "Twitter"],
    ["https://twitter.com/someone", "Twitter"],
    ["https://x.com/someone", "Twitter"],
    ["https://lnkd.in/xyz", "LinkedIn"],
    ["https://www.linkedin.com/feed/", "LinkedIn"],
    ["https://old.reddit.com/r/node/", "Reddit"],
    ["https://www.youtube.com/watch?v=1", "YouTube"],
    ["https://l.instagram.com/", "Instagram"],
    ["https://www.tiktok.com/", "TikTok"],
    ["https://www.pinterest.co.uk/", "Pinterest"],
    ["https://news.ycombinator.com/item?id=1", "Hacker News"],
    ["https://bsky.app/profile/x", "Bluesky"],
    ["https://mastodon.social/@x", "Mastodon"],
    ["https://fosstodon.org/@x", "Mastodon"],
    ["https://www.threads.net/@x", "Threads"],
  ])("classifies %s as social from %s", (ref, source) => {
    expect(classify(ref)).toMatchObject({ source, medium: "social" });
  });

  it.each([
    ["https://mail.google.com/mail/u/0/", "Gmail"],
    ["https://outlook.live.com/mail/0/", "Outlook.com"],
    ["https://outlook.office.com/mail/", "Outlook"],
    ["https://mail.yahoo.com/d/folders/1", "Yahoo! Mail"],
    ["https://mail.proton.me/u/0/inbox", "Proton Mail"],
    ["android-app://com.google.android.gm/", "Gmail"],
  ])("classifies %s as email from %s", (ref, source) => {
    expect(classify(ref)).toMatchObject({ source, medium: "email" });
  });

  it("classifies unknown hosts as referral with the www-less host as source", () => {
    expect(classify("https://www.someblog.dev/posts/hello/?utm=1#x")).toEqual({
      referrer: "someblog.dev/posts/hello",
      source: "someblog.dev",
      medium: "referral",
    });
  });

  it("normalises the referrer to host+path without www, query or trailing slash", () => {
    expect(classify("https://WWW.Google.com/?q=secret").referrer).toBe("google.com");
    expect(classify("https://news.ycombinator.com/item?id=1").referrer).toBe("news.ycombinator.com/item");
  });

  it("does not treat lookalike hosts as known sources", () => {
    expect(lookupHost("notgoogle.com")).toBeUndefined();
    expect(lookupHost("google.example.org")).toBeUndefined();
    expect(classify("https://mygoogle.com/")).toMatchObject({ source: "mygoogle.com", medium: "referral" });
  });
});

describe("classifyReferrer with campaign tags", () => {
  it("uses utm_source as the source and maps known names to display names", () => {
    expect(classify("", { utmSource: "google", utmMedium: "cpc" })).toEqual({
      referrer: "",
      source: "Google",
      medium: "campaign",
    });
    expect(classify("", { utmSource: "fb", utmMedium: "social" })).toMatchObject({ source: "Facebook", medium: "social" });
    expect(classify("", { utmSource: "LinkedIn", utmMedium: "sm" })).toMatchObject({ source: "LinkedIn", medium: "social" });
    expect(classify("", { utmSource: "my-partner", utmMedium: "affiliate" })).toMatchObject({
      source: "my-partner",
      medium: "campaign",
    });
  });

  it.each([
    ["email", "email"],
    ["e-mail", "email"],
    ["Newsletter", "email"],
    ["social", "social"],
    ["social-network", "social"],
    ["sm", "social"],
    ["cpc", "campaign"],
    ["ppc", "campaign"],
    ["paid", "campaign"],
    ["display", "campaign"],
    ["banner", "campaign"],
    ["affiliate", "campaign"],
    ["whatever", "campaign"],
  ])("maps utm_medium=%s to %s", (utmMedium, medium) => {
    expect(classify("", { utmSource: "acme", utmMedium }).medium).toBe(medium);
  });

  it("maps organic traffic from a search engine to search", () => {
    expect(classify("", { utmSource: "bing", utmMedium: "organic" })).toMatchObject({ source: "Bing", medium: "search" });
    expect(classify("", { utmSource: "acme", utmMedium: "organic" }).medium).toBe("campaign");
  });

  it("keeps the referrer alongside campaign attribution", () => {
    expect(classify("https://www.facebook.com/", { utmSource: "spring-promo", utmMedium: "paid" })).toEqual({
      referrer: "facebook.com",
      source: "spring-promo",
      medium: "campaign",
    });
  });

  it("uses the referrer's source when only utm_medium is set", () => {
    expect(classify("https://t.co/x", { utmMedium: "social" })).toMatchObject({ source: "Twitter", medium: "social" });
  });
});
