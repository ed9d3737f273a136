// Multi-day rollup blocks. A 30-day report that reads one daily rollup row per value per day
// merges 30 visitor sketches per value, and a dense sketch is 32 KiB: top pages or countries
// over a month moved megabytes per call. Blocks hold the same rows pre-merged over aligned runs
// of 2^level local days (level 1 = 2 days … MAX_BLOCK_LEVEL = 32 days), counted from 1970-01-01,
// so any run of days is covered by at most two blocks per level and a few single days.
//
// A block is built once every day in it is rolled (the rollup job rebuilds it, in the same
// transaction, whenever one of its days is re-rolled) and marked built; readers use only marked
// blocks, and only where every day in them is answered by rollups, so a missing block costs
// speed, never correctness.

export const MAX_BLOCK_LEVEL = 5;
const DAY_MS = 86_400_000;

export interface DayBlock {
  /** 1 … MAX_BLOCK_LEVEL: the block spans 2^level days. */
  level: number;
  /** Its first local date (YYYY-MM-DD), whose day number is a multiple of 2^level. */
  start: string;
}

/** Days since 1970-01-01 of a local date. */
export function dayNumber(date: string): number {
  return Date.UTC(Number(date.slice(0, 4)), Number(date.slice(5, 7)) - 1, Number(date.slice(8, 10))) / DAY_MS;
}

export function dateOfDayNumber(n: number): string {
  return new Date(n * DAY_MS).toISOString().slice(0, 10);
}

/** The date after a block's last day. */
export function blockEnd(block: DayBlock): string {
  return dateOfDayNumber(dayNumber(block.start) + 2 ** block.level);
}

/** The blocks holding `date`, one per level, smallest first. */
export function blocksContaining(date: string): DayBlock[] {
  const n = dayNumber(date);
  const blocks: DayBlock[] = [];
  for (let level = 1; level <= MAX_BLOCK_LEVEL; level++) {
    const size = 2 ** level;
    blocks.push({ level, start: dateOfDayNumber(n - (((n % size) + size) % size)) });
  }
  return blocks;
}

export const blockKey = (level: number, start: string): string => `${level}:${start}`;

/**
 * Covers `days` (local dates, each answered by daily rollups) with as few pieces as it can: the
 * largest built block that starts at a day and lies wholly within a run of consecutive days,
 * else the day alone.
 */
export function coverDays(days: string[], isBuilt: (block: DayBlock) => boolean): { days: string[]; blocks: DayBlock[] } {
  const numbers = [...new Set(days.map(dayNumber))].sort((a, b) => a - b);
  const out: { days: string[]; blocks: DayBlock[] } = { days: [], blocks: [] };
  let i = 0;
  while (i < numbers.length) {
    // The run of consecutive days from numbers[i].
    let j = i;
    while (j + 1 < numbers.length && numbers[j + 1] === numbers[j] + 1) j++;
    const runEnd = numbers[j] + 1;
    let at = numbers[i];
    while (at < runEnd) {
      let taken = false;
      for (let level = MAX_BLOCK_LEVEL; level >= 1; level--) {
        const size = 2 ** level;
        if (at % size !== 0 || at + size > runEnd) continue;
        const block = { level, start: dateOfDayNumber(at) };
        if (!isBuilt(block)) continue;
        out.blocks.push(block);
        at += size;
        taken = true;
        break;
      }
      if (!taken) {
        out.days.push(dateOfDayNumber(at));
        at++;
      }
    }
    i = j + 1;
  }
  return out;
}
