// Planning a report: every name is looked up, every mistake names its field, and classification
// defaults to USER unless the request groups or filters by it.
import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../../server/core/errors.js";
import { encodePageToken } from "../../../server/core/page-token.js";
import { planReport, type ReportInput } from "../../../server/core/reports/query.js";
import { localMidnight } from "../../support/report-fixture.js";

const SITE = { id: "00000000-0000-4000-8000-000000000001", timezone: "Asia/Kolkata" };
const base: ReportInput = { startDate: "2026-03-01", endDate: "2026-03-31", metrics: ["pageviews"], dimensions: [], filters: [], orderBy: [], limit: 0, pageToken: "", classification: "" };
const plan = (input: Partial<ReportInput>) => planReport(SITE, [], { ...base, ...input });

function fieldOf(input: Partial<ReportInput>): string {
  try {
    plan(input);
  } catch (err) {
    if (err instanceof InvalidArgumentError) return err.field;
    throw err;
  }
  throw new Error("expected the plan to be refused");
}

describe("planReport", () => {
  it("turns local dates into the range [first local midnight, midnight after the last day)", () => {
    const q = plan({});
    expect(q.range).toMatchObject({ start: localMidnight("2026-03-01", SITE.timezone), end: localMidnight("2026-04-01", SITE.timezone) });
    expect(q.limit).toBe(100);
    expect(q.classification).toBe("USER");
  });

  it.each([
    [{ metrics: ["pageviews", "bogus"] }, "metrics[1]"],
    [{ metrics: [] }, "metrics"],
    [{ dimensions: ["page", "planet"] }, "dimensions[1]"],
    [{ dimensions: ["page", "page"] }, "dimensions"],
    [{ dimensions: ["prop:"] }, "dimensions[0]"],
    [{ dimensions: ["a", "b", "c", "d", "e", "f"] }, "dimensions"],
    [{ filters: [{ dimension: "page", operator: "like", values: ["/"] }] }, "filters[0].operator"],
    [{ filters: [{ dimension: "nope", operator: "equals", values: ["/"] }] }, "filters[0].dimension"],
    [{ filters: [{ dimension: "page", operator: "equals", values: [] }] }, "filters[0].values"],
    [{ filters: [{ dimension: "page", operator: "in", values: [] }] }, "filters[0].values"],
    [{ filters: [{ dimension: "page", operator: "regex", values: ["(("] }] }, "filters[0].values"],
    [{ filter: { and: [{ filter: { dimension: "page", operator: "equals", values: ["/"] } }, { or: [] }] } }, "filter.and_group.expressions[1].or_group"],
    [{ filter: { not: { filter: { dimension: "page", operator: "nope", values: ["/"] } } } }, "filter.not_expression.filter.operator"],
    [{ orderBy: [{ metric: "visitors", direction: "asc" }] }, "order_by[0].metric"],
    [{ orderBy: [{ dimension: "page", direction: "asc" }] }, "order_by[0].dimension"],
    [{ orderBy: [{ direction: "asc" }] }, "order_by[0]"],
    [{ limit: 10_001 }, "limit"],
    [{ pageToken: "garbage" }, "page_token"],
    [{ pageToken: encodePageToken({ after: -5, id: "" }) }, "page_token"],
    [{ startDate: "2026-3-1" }, "date_range.start_date"],
    [{ endDate: "2026-02-30" }, "date_range.end_date"],
    [{ startDate: "2026-04-01" }, "date_range.end_date"],
    [{ startDate: "2010-01-01" }, "date_range"],
  ] as [Partial<ReportInput>, string][])("refuses %j naming %s", (input, field) => {
    expect(fieldOf(input)).toBe(field);
  });

  it("counts everyone when classification is grouped or filtered by, unless told", () => {
    expect(plan({ dimensions: ["classification"] }).classification).toBe("ALL");
    expect(plan({ filter: { not: { filter: { dimension: "classification", operator: "equals", values: ["BOT"] } } } }).classification).toBe("ALL");
    expect(plan({ classification: "BOT" }).classification).toBe("BOT");
    expect(plan({ dimensions: ["classification"], classification: "USER" }).classification).toBe("USER");
  });

  it("joins filters and a filter tree with and, and pages from the token's offset", () => {
    const q = plan({ filters: [{ dimension: "page", operator: "equals", values: ["/"] }], filter: { filter: { dimension: "country", operator: "in", values: ["US", "IN"] } }, pageToken: encodePageToken({ after: 200, id: "" }) });
    expect(q.filter?.op).toBe("and");
    expect(q.offset).toBe(200);
  });
});
