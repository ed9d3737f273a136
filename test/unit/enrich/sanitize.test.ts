import { describe, expect, it } from "vitest";
import { checkEventName, sanitizeProperties, sanitizeUrl } from "../../../server/core/enrich/sanitize.js";

const LIMITS = { maxProperties: 30, maxKeyLength: 40, maxValueLength: 100 };

describe("sanitizeProperties", () => {
  it("keeps scalar values of a plain object", () => {
    expect(sanitizeProperties({ plan: "pro", seats: 3, trial: false }, LIMITS)).toEqual({
      properties: { plan: "pro", seats: 3, trial: false },
    });
  });

  it("flattens nested objects to dotted keys up to depth 3", () => {
    const { properties } = sanitizeProperties({ a: { b: 1, c: { d: "x", e: { f: "too deep" } } } }, LIMITS);
    expect(properties).toEqual({ "a.b": 1, "a.c.d": "x" });
  });

  it("drops arrays, null, undefined, functions and non-finite numbers", () => {
    const { properties } = sanitizeProperties(
      { list: [1, 2], n: null, u: undefined, f: () => 1, inf: Infinity, nan: NaN, ok: 1 },
      LIMITS,
    );
    expect(properties).toEqual({ ok: 1 });
  });

  it("strips control characters and HTML tags, trims and caps values", () => {
    const { properties } = sanitizeProperties(
      {
        "  na\u0000me  ": "  <b>hello</b>\u0007 world ",
        html: '<script>alert(1)</script><a href="x">link</a>',
        long: "y".repeat(500),
      },
      LIMITS,
    );
    expect(properties.name).toBe("hello world");
    expect(properties.html).toBe("alert(1)link");
    expect(properties.long).toBe("y".repeat(100));
  });

  it("caps keys and drops keys that end up empty", () => {
    const { properties } = sanitizeProperties({ ["k".repeat(80)]: 1, "   ": 2, "\u0001\u0002": 3 }, LIMITS);
    expect(properties).toEqual({ ["k".repeat(40)]: 1 });
  });

  it("wraps a string, number or boolean in { value }", () => {
    expect(sanitizeProperties("  <i>clicked</i> ", LIMITS)).toEqual({ properties: { value: "clicked" } });
    expect(sanitizeProperties(42, LIMITS)).toEqual({ properties: { value: 42 } });
    expect(sanitizeProperties(true, LIMITS)).toEqual({ properties: { value: true } });
  });

  it("returns {} for null, undefined and non-plain objects", () => {
    expect(sanitizeProperties(undefined, LIMITS)).toEqual({ properties: {} });
    expect(sanitizeProperties(null, LIMITS)).toEqual({ properties: {} });
    expect(sanitizeProperties([1, 2, 3], LIMITS)).toEqual({ properties: {} });
  });

  it("reports too many properties after flattening", () => {
    const data = { a: 1, b: 2, nested: { c: 3, d: 4 } };
    const result = sanitizeProperties(data, { ...LIMITS, maxProperties: 3 });
    expect(result.error).toEqual({
      field: "properties",
      message: "has 4 properties; at most 3 are allowed",
      reason: "TOO_MANY_PROPERTIES",
    });
  });

  it("does not let __proto__ keys pollute prototypes", () => {
    const data = JSON.parse('{"__proto__": {"polluted": "yes"}, "ok": 1}');
    const { properties } = sanitizeProperties(data, LIMITS);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(properties.ok).toBe(1);
  });
});

describe("sanitizeUrl", () => {
  it("normalises valid http(s) URLs", () => {
    expect(sanitizeUrl("https://Example.COM/a b?x=1")).toBe("https://example.com/a%20b?x=1");
    expect(sanitizeUrl("  http://example.com  ")).toBe("http://example.com/");
  });

  it("returns '' for invalid, relative and non-http URLs", () => {
    for (const raw of ["", "not a url", "/relative", "javascript:alert(1)", "ftp://example.com/", "data:text/html,x", 42, null]) {
      expect(sanitizeUrl(raw), String(raw)).toBe("");
    }
  });

  it("returns '' for URLs longer than the cap", () => {
    const url = "https://example.com/" + "a".repeat(100);
    expect(sanitizeUrl(url, 50)).toBe("");
    expect(sanitizeUrl(url, 500)).toBe(url);
  });
});

describe("checkEventName", () => {
  it("accepts and trims a normal name", () => {
    expect(checkEventName("  Signup  ", 120)).toEqual({ name: "Signup" });
  });

  it("rejects non-strings, empty names, control characters and overlong names", () => {
    for (const bad of [undefined, 12, "", "   ", "sign\nup", "x".repeat(121)]) {
      const result = checkEventName(bad, 120);
      expect("error" in result, String(bad)).toBe(true);
      if ("error" in result) expect(result.error.field).toBe("name");
    }
  });

  it("counts characters, not UTF-16 code units", () => {
    expect(checkEventName("🎉".repeat(10), 10)).toEqual({ name: "🎉".repeat(10) });
  });
});
