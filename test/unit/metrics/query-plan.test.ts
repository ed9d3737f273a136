// Planning helpers of metric queries: bucket starts, whole hours for rollups, time zones whose
// buckets fall on UTC hours, and the result cache.
import { describe, expect, it } from "vitest";
import { checkBucketCount, checkFilters, fixedBucketStarts, hasWholeHourOffsets, rollupsFit } from "../../../server/core/metrics/query-plan.js";
import { ResultCache } from "../../../server/core/metrics/result-cache.js";
import { wholeHours } from "../../../server/core/metrics/sql/metric-values.js";

const H = 3600_000;

describe("query planning", () => {
  it("lists every bucket overlapping the window", () => {
    expect(fixedBucketStarts(H, 30 * 60_000, 2 * H + 1)).toEqual([0, H, 2 * H]);
    expect(fixedBucketStarts(5 * 60_000, 0, 10 * 60_000)).toEqual([0, 5 * 60_000]);
  });

  it("finds the whole UTC hours of a window", () => {
    expect(wholeHours(30 * 60_000, 3 * H + 1)).toEqual({ from: H, to: 3 * H });
    expect(wholeHours(0, 3 * H)).toEqual({ from: 0, to: 3 * H });
    expect(wholeHours(10, H - 1)).toBeUndefined();
  });

  it("uses rollups only where buckets start on UTC hours", () => {
    expect(hasWholeHourOffsets("Europe/London")).toBe(true);
    expect(hasWholeHourOffsets("America/New_York")).toBe(true);
    expect(hasWholeHourOffsets("Asia/Kolkata")).toBe(false);
    expect(hasWholeHourOffsets("Australia/Lord_Howe")).toBe(false);
    expect(rollupsFit({ kind: "fixed", unit: "five_minutes", widthMs: 300_000 })).toBe(false);
    expect(rollupsFit({ kind: "calendar", unit: "day", timeZone: "Asia/Kathmandu" })).toBe(false);
    expect(rollupsFit({ kind: "calendar", unit: "month", timeZone: "UTC" })).toBe(true);
  });

  it("refuses too many buckets, naming granularity", () => {
    expect(() => checkBucketCount({ kind: "fixed", unit: "minute", widthMs: 60_000 }, 0, 30 * 24 * H)).toThrow(/granularity/);
    expect(() => checkBucketCount({ kind: "calendar", unit: "day", timeZone: "UTC" }, 0, 365 * 24 * H)).not.toThrow();
  });

  it("checks filters field by field", () => {
    expect(() => checkFilters([{ dimension: "country", operator: undefined, values: ["GB"] }])).toThrow("filters[0].operator");
    expect(() => checkFilters([{ dimension: "country", operator: "equals", values: ["GB", "IE"] }])).toThrow("filters[0].values");
    expect(() => checkFilters([{ dimension: "no way", operator: "in", values: ["GB"] }])).toThrow("filters[0].dimension");
    expect(() => checkFilters([{ dimension: "c", operator: "regex", values: ["("] }])).toThrow("filters[0].values");
    expect(checkFilters([{ dimension: "country", operator: "in", values: ["GB", "IE"] }])).toEqual([{ dimension: "country", operator: "in", values: ["GB", "IE"] }]);
  });
});

describe("ResultCache", () => {
  it("answers within the staleness asked for and evicts the least recently used", () => {
    const cache = new ResultCache<string>(2, 60_000);
    cache.set("a", "A", 1000);
    expect(cache.get("a", 5000, 3000)?.result).toBe("A");
    expect(cache.get("a", 1000, 3000)).toBeUndefined();
    cache.set("b", "B", 3000);
    cache.get("a", 60_000, 3000);
    cache.set("c", "C", 3000);
    expect(cache.get("b", 60_000, 3000)).toBeUndefined();
    expect(cache.get("a", 60_000, 3000)?.result).toBe("A");
    expect(cache.get("a", 120_000, 70_000)).toBeUndefined();
  });
});
