import { describe, expect, it } from "vitest";
import { createHandlerContext } from "@connectrpc/connect";
import { InvalidArgumentError } from "../../../server/core/errors.js";
import { principalKey } from "../../../server/interceptors/auth.js";
import { createSubscriptionQueryRunner, parseSubscriptionQuery } from "../../../server/services/subscription-queries.js";
import type { ReportingServiceImpl } from "../../../server/services/reporting.js";

const SITE = "6f1c1c7e-4a3b-4f59-9a4e-0d6a1f0b2c3d";

function fieldOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    if (err instanceof InvalidArgumentError) return err.field;
    throw err;
  }
  return "accepted";
}

describe("parseSubscriptionQuery", () => {
  it("tells a RunReport request from a GetTimeSeries one, and fills in the site", () => {
    const report = parseSubscriptionQuery(undefined, JSON.stringify({ metrics: ["visitors"], dateRange: { startDate: "2026-01-01", endDate: "2026-01-07" } }), SITE);
    expect(report.kind).toBe("run_report");
    expect(JSON.parse(report.queryJson)).toMatchObject({ siteId: SITE, metrics: ["visitors"] });
    const series = parseSubscriptionQuery(undefined, JSON.stringify({ metrics: ["visitors"], start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z", granularity: "GRANULARITY_HOUR" }), SITE);
    expect(series.kind).toBe("get_time_series");
    expect(parseSubscriptionQuery("run_report", JSON.stringify({ metrics: ["visitors"] }), SITE).kind).toBe("run_report");
  });

  it("refuses JSON that is neither, fields of neither, and another site", () => {
    expect(fieldOf(() => parseSubscriptionQuery(undefined, "[1]", SITE))).toBe("query_json");
    expect(fieldOf(() => parseSubscriptionQuery(undefined, JSON.stringify({ metric: "x" }), SITE))).toBe("query_json");
    expect(fieldOf(() => parseSubscriptionQuery("run_report", JSON.stringify({ start: "2026-01-01T00:00:00Z" }), SITE))).toBe("query_json");
    expect(fieldOf(() => parseSubscriptionQuery(undefined, JSON.stringify({ siteId: "00000000-0000-4000-8000-000000000000", metrics: ["visitors"] }), SITE))).toBe("query_json.site_id");
    expect(fieldOf(() => parseSubscriptionQuery(undefined, JSON.stringify({ siteId: SITE.toUpperCase(), metrics: ["visitors"] }), SITE))).toBe("accepted");
  });
});

describe("the subscription query runner", () => {
  it("calls the reporting service as the subscription's organisation, limited to its site, and fingerprints results without per-run fields", async () => {
    const seen: unknown[] = [];
    let run = 0;
    const reporting = {
      runReport: async (_req: unknown, ctx: ReturnType<typeof createHandlerContext>) => {
        seen.push(ctx.values.get(principalKey));
        run++;
        return { $typeName: "beacon.v1.RunReportResponse", queryId: `q_${run}`, queryTimeMs: BigInt(run), rows: [], totalRows: 0n, sampled: false, nextPageToken: "", approximate: false, totals: undefined };
      },
      getTimeSeries: async () => {
        throw new Error("not called");
      },
    } as unknown as Pick<ReportingServiceImpl, "runReport" | "getTimeSeries">;
    const runner = createSubscriptionQueryRunner(reporting);
    const query = { organisationId: "org-1", siteId: SITE, kind: "run_report" as const, queryJson: JSON.stringify({ siteId: SITE, metrics: ["visitors"] }) };
    const a = await runner.run(query);
    const b = await runner.run(query);
    expect(a.fingerprint).toBe(b.fingerprint);
    expect(a.result).toMatchObject({ queryId: "q_1" });
    expect(seen[0]).toMatchObject({ organisationId: "org-1", siteIds: [SITE], role: "viewer" });
  });
});
