// Time-series buckets: every bucket of the range, in the site's zone, across DST changes and a
// +5:30 offset; each bucket's label is the one reports group by.
import { describe, expect, it } from "vitest";
import { bucketsBetween } from "../../../server/core/reports/timeseries.js";
import { localLabel, localMidnight } from "../../support/report-fixture.js";

describe("bucketsBetween", () => {
  it("has 23 hours on New York's spring-forward day", () => {
    const zone = "America/New_York";
    const buckets = bucketsBetween(localMidnight("2026-03-08", zone), localMidnight("2026-03-09", zone), "hour", zone);
    expect(buckets).toHaveLength(23);
    expect(buckets.map((b) => b.label)).not.toContain("2026-03-08 02:00");
  });

  it("gives each label once on Sydney's fold day, the repeated hour as one bucket", () => {
    const zone = "Australia/Sydney";
    const buckets = bucketsBetween(localMidnight("2026-04-05", zone), localMidnight("2026-04-06", zone), "hour", zone);
    const labels = buckets.map((b) => b.label);
    expect(new Set(labels).size).toBe(labels.length);
    expect(labels).toHaveLength(24);
    expect(labels).toContain("2026-04-05 02:00");
  });

  it("starts Kolkata's hours at half past UTC hours, labelled in local time", () => {
    const zone = "Asia/Kolkata";
    const start = Date.parse("2026-03-10T00:00:00Z");
    const buckets = bucketsBetween(start, start + 3 * 3_600_000, "hour", zone);
    expect(buckets[0]).toEqual({ label: "2026-03-10 05:00", time: Date.parse("2026-03-09T23:30:00Z") });
    for (const b of buckets) expect(localLabel(b.time, "hour", zone)).toBe(b.label);
  });

  it("covers partial days, weeks and months at both ends", () => {
    const zone = "UTC";
    const days = bucketsBetween(Date.parse("2026-03-30T12:00:00Z"), Date.parse("2026-04-02T01:00:00Z"), "day", zone);
    expect(days.map((b) => b.label)).toEqual(["2026-03-30", "2026-03-31", "2026-04-01", "2026-04-02"]);
    const weeks = bucketsBetween(Date.parse("2026-03-04T00:00:00Z"), Date.parse("2026-03-17T00:00:00Z"), "week", zone);
    expect(weeks.map((b) => b.label)).toEqual(["2026-03-02", "2026-03-09", "2026-03-16"]);
    const months = bucketsBetween(Date.parse("2026-01-31T00:00:00Z"), Date.parse("2026-03-01T00:00:01Z"), "month", zone);
    expect(months.map((b) => b.label)).toEqual(["2026-01", "2026-02", "2026-03"]);
  });

  it("cuts minutes and five minutes on UTC minute boundaries", () => {
    const start = Date.parse("2026-03-10T10:02:30Z");
    expect(bucketsBetween(start, start + 10 * 60_000, "five_minutes", "Asia/Kolkata").map((b) => b.label)).toEqual(["2026-03-10 15:30", "2026-03-10 15:35", "2026-03-10 15:40"]);
  });
});
