// When rollups may answer: one rollup dimension (with at most one time bucket), filters only on
// that dimension, and no goal matching; visit metrics filtered by an event dimension they are not
// grouped by only for a single equals (visits are not additive across such values).
import { describe, expect, it } from "vitest";
import { rollupDimensionFor } from "../../../server/core/reports/engine.js";
import { type FilterTreeInput, type GoalDefinition, planReport } from "../../../server/core/reports/query.js";

const SITE = { id: "00000000-0000-4000-8000-000000000001", timezone: "UTC" };
const VALUED: GoalDefinition = { name: "Buy", type: "event", matchType: "equals", value: "buy", propertyKey: null, propertyValue: null, valueNumeric: 3 };

function choice(metrics: string[], dimensions: string[], filter?: FilterTreeInput, goals: GoalDefinition[] = []): string | undefined {
  const q = planReport(SITE, goals, { startDate: "2026-03-01", endDate: "2026-03-02", metrics, dimensions, filters: [], filter, orderBy: [], limit: 0, pageToken: "", classification: "" });
  return rollupDimensionFor(q, q.dimensions, metrics.some((m) => ["visits", "bounce_rate", "visit_duration", "views_per_visit"].includes(m)));
}
const f = (dimension: string, operator: string, ...values: string[]): FilterTreeInput => ({ filter: { dimension, operator, values } });

describe("rollupDimensionFor", () => {
  it.each([
    [["pageviews"], [], undefined, ""],
    [["pageviews", "visits"], ["page"], undefined, "page"],
    [["visitors"], ["day", "country"], undefined, "country"],
    [["visitors"], ["hour"], undefined, ""],
    [["visits"], ["entry_page"], f("entry_page", "starts_with", "/b"), "entry_page"],
    [["visits"], [], f("source", "not_in", "Google"), "source"],
    [["visits"], [], f("page", "equals", "/"), "page"],
    [["pageviews"], [], f("page", "starts_with", "/b"), "page"],
  ] as [string[], string[], FilterTreeInput | undefined, string][])("%j by %j filtered by %j: rollup dimension %j", (metrics, dimensions, filter, expected) => {
    expect(choice(metrics, dimensions, filter)).toBe(expected);
  });

  it.each([
    [["visits"], [], f("page", "starts_with", "/b")],
    [["visits"], [], { not: f("page", "equals", "/") }],
    [["pageviews"], ["page", "country"], undefined],
    [["pageviews"], ["day", "week"], undefined],
    [["pageviews"], ["browser_version"], undefined],
    [["pageviews"], ["goal"], undefined],
    [["pageviews"], ["prop:plan"], undefined],
    [["conversions"], [], undefined],
    [["pageviews"], ["page"], f("country", "equals", "US")],
    [["pageviews"], [], { and: [f("page", "equals", "/"), f("country", "equals", "US")] }],
    [["pageviews"], [], f("classification", "equals", "BOT")],
  ] as [string[], string[], FilterTreeInput | undefined][])("%j by %j filtered by %j: raw events only", (metrics, dimensions, filter) => {
    expect(choice(metrics, dimensions, filter)).toBeUndefined();
  });

  it("leaves revenue to raw events when a goal has a value (goal matching is per event)", () => {
    expect(choice(["revenue"], [], undefined, [VALUED])).toBeUndefined();
    expect(choice(["revenue"], [], undefined, [{ ...VALUED, valueNumeric: null }])).toBe("");
  });
});
