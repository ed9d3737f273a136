// isoTime must write exactly what Date#toISOString writes: the events COPY and the sessions
// upsert send its text to Postgres as timestamptz.
import { describe, expect, it } from "vitest";
import { isoTime } from "../../../server/db/events-store.js";

describe("isoTime", () => {
  it("matches toISOString across minutes, seconds and milliseconds, remembered or not", () => {
    const start = Date.UTC(2026, 10, 23, 23, 58, 0, 0);
    // Every millisecond of a few seconds around a minute and a day boundary, then far apart.
    for (let ms = start - 2_000; ms < start + 125_000; ms += 7) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    for (let ms = 0; ms < 253_402_300_799_999; ms += 9_999_999_937) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    for (const ms of [0, 1, 9, 10, 99, 100, 999, 1_000, 59_999, 60_000, 86_399_999, 951_782_400_000, 253_402_300_799_999]) {
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }
  });

  it("falls back to toISOString outside what it formats itself", () => {
    for (const ms of [-1, -86_400_001, 1.5, 253_402_300_800_000, 8.64e15]) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
  });

  it("stays right after forgetting the minutes it remembered", () => {
    const start = Date.UTC(2020, 0, 1);
    for (let i = 0; i < 5_000; i++) isoTime(start + i * 60_000);
    for (let i = 0; i < 5_000; i += 97) expect(isoTime(start + i * 60_000 + 1_234)).toBe(new Date(start + i * 60_000 + 1_234).toISOString());
  });
});
