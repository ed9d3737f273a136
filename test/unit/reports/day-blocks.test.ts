// Multi-day rollup blocks: which blocks hold a day, and covering runs of days with as few
// built blocks as possible, never one that reaches past the days given.
import { describe, expect, it } from "vitest";
import { blockEnd, blockKey, blocksContaining, coverDays, dateOfDayNumber, type DayBlock, dayNumber, MAX_BLOCK_LEVEL } from "../../../server/core/reports/day-blocks.js";

const range = (start: string, n: number) => Array.from({ length: n }, (_, i) => dateOfDayNumber(dayNumber(start) + i));

/** Every day the pieces stand for, in order; fails on overlaps. */
function daysOf(cover: { days: string[]; blocks: DayBlock[] }): string[] {
  const all = [...cover.days, ...cover.blocks.flatMap((b) => range(b.start, 2 ** b.level))];
  expect(new Set(all).size).toBe(all.length);
  return all.sort();
}

describe("day blocks", () => {
  it("finds one aligned block per level holding a day, before 1970 too", () => {
    for (const day of ["2026-03-06", "2024-02-29", "1969-12-31", "1970-01-01"]) {
      const blocks = blocksContaining(day);
      expect(blocks.map((b) => b.level)).toEqual(Array.from({ length: MAX_BLOCK_LEVEL }, (_, i) => i + 1));
      for (const b of blocks) {
        expect(Math.abs(dayNumber(b.start) % 2 ** b.level)).toBe(0);
        expect(b.start <= day && day < blockEnd(b)).toBe(true);
      }
    }
    expect(dayNumber("1970-01-02")).toBe(1);
    expect(dateOfDayNumber(dayNumber("2026-11-23"))).toBe("2026-11-23");
  });

  it("covers 30 days with a few built blocks and the days left over", () => {
    const days = range("2026-03-06", 30);
    const cover = coverDays(days, () => true);
    expect(daysOf(cover)).toEqual(days);
    expect(cover.blocks.length + cover.days.length).toBeLessThanOrEqual(2 * MAX_BLOCK_LEVEL);
    expect(cover.blocks.length).toBeGreaterThan(0);
  });

  it("never uses a block over a missing day, nor one that is not built", () => {
    const days = range("2026-03-01", 40).filter((d) => d !== "2026-03-17");
    const unbuilt = new Set([blockKey(2, "2026-03-05")]);
    const cover = coverDays(days, (b) => !unbuilt.has(blockKey(b.level, b.start)));
    expect(daysOf(cover)).toEqual(days);
    expect(cover.blocks.some((b) => unbuilt.has(blockKey(b.level, b.start)))).toBe(false);
    expect(coverDays(days, () => false)).toEqual({ days, blocks: [] });
  });
});
