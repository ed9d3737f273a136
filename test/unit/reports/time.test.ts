// Calendar arithmetic in a site's time zone, cross-checked against the report fixture's own
// implementation (bisection over Intl), over a year of days in zones with DST, half- and
// quarter-hour offsets, and a half-hour DST shift.
import { describe, expect, it } from "vitest";
import { addYears, bucketLabel, isDate, startOfLocalDay, weekOf } from "../../../server/core/reports/time.js";
import { localLabel, localMidnight, nextDate, Random } from "../../support/report-fixture.js";

const ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns", "Pacific/Chatham", "Europe/London"];

describe("startOfLocalDay", () => {
  it.each(ZONES)("is the first instant of each local day of 2026 in %s", (zone) => {
    for (let date = "2026-01-01"; date < "2027-01-01"; date = nextDate(date)) {
      expect(startOfLocalDay(date, zone), `${zone} ${date}`).toBe(localMidnight(date, zone));
    }
  });
});

describe("bucketLabel", () => {
  it.each(ZONES)("labels hours, days, ISO weeks and months in %s", (zone) => {
    const random = new Random(zone.length);
    for (let i = 0; i < 2_000; i++) {
      const instant = Date.parse("2026-01-01T00:00:00Z") + Math.floor(random.next() * 366 * 86_400_000);
      for (const bucket of ["hour", "day", "week", "month"] as const) expect(bucketLabel(instant, bucket, zone), `${zone} ${new Date(instant).toISOString()} ${bucket}`).toBe(localLabel(instant, bucket, zone));
    }
  });
});

describe("dates", () => {
  it("finds ISO weeks' Mondays across years", () => {
    expect(weekOf("2026-01-01")).toBe("2025-12-29");
    expect(weekOf("2026-03-08")).toBe("2026-03-02");
    expect(weekOf("2026-03-09")).toBe("2026-03-09");
  });

  it("moves 29 February to 28 February a year away", () => {
    expect(addYears("2024-02-29", -1)).toBe("2023-02-28");
    expect(addYears("2025-03-01", -1)).toBe("2024-03-01");
  });

  it("accepts only real, padded dates", () => {
    expect(isDate("2026-02-28")).toBe(true);
    expect(isDate("2026-02-29")).toBe(false);
    expect(isDate("2026-2-28")).toBe(false);
    expect(isDate("2026-02-28T00:00:00Z")).toBe(false);
  });
});
