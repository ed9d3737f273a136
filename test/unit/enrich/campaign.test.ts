import { describe, expect, it } from "vitest";
import { emptyCampaign, extractCampaign, pageParts } from "../../../server/core/enrich/campaign.js";

describe("extractCampaign", () => {
  it("reads all utm parameters, trimmed", () => {
    expect(
      extractCampaign(
        "https://example.com/p?utm_source=%20newsletter%20&utm_medium=email&utm_campaign=spring&utm_term=shoes&utm_content=hero",
      ),
    ).toEqual({
      utmSource: "newsletter",
      utmMedium: "email",
      utmCampaign: "spring",
      utmTerm: "shoes",
      utmContent: "hero",
      clickIdKind: "",
      clickId: "",
    });
  });

  it("falls back from utm_source to source to ref", () => {
    expect(extractCampaign("https://example.com/?utm_source=a&source=b&ref=c").utmSource).toBe("a");
    expect(extractCampaign("https://example.com/?source=b&ref=c").utmSource).toBe("b");
    expect(extractCampaign("https://example.com/?ref=producthunt").utmSource).toBe("producthunt");
    expect(extractCampaign("https://example.com/?utm_source=&ref=c").utmSource).toBe("c");
  });

  it("caps parameter values at 200 characters", () => {
    const long = "x".repeat(500);
    expect(extractCampaign(`https://example.com/?utm_campaign=${long}`).utmCampaign).toHaveLength(200);
  });

  it.each(["gclid", "gbraid", "wbraid", "dclid", "fbclid", "msclkid", "ttclid", "twclid", "li_fat_id", "yclid"])(
    "records the %s click id",
    (param) => {
      const c = extractCampaign(`https://example.com/landing?${param}=abc123`);
      expect(c.clickIdKind).toBe(param);
      expect(c.clickId).toBe("abc123");
    },
  );

  it("returns all-empty fields for invalid or parameterless URLs", () => {
    expect(extractCampaign("not a url")).toEqual(emptyCampaign());
    expect(extractCampaign("")).toEqual(emptyCampaign());
    expect(extractCampaign("https://example.com/")).toEqual(emptyCampaign());
  });
});

describe("pageParts", () => {
  it("lower-cases the hostname, keeps www, and drops query and fragment", () => {
    expect(pageParts("https://WWW.Example.COM/Blog/Post?x=1#top")).toEqual({
      hostname: "www.example.com",
      pathname: "/Blog/Post",
    });
  });

  it("uses / for an empty path and '' for invalid URLs", () => {
    expect(pageParts("https://example.com")).toEqual({ hostname: "example.com", pathname: "/" });
    expect(pageParts("nope")).toEqual({ hostname: "", pathname: "" });
  });
});
