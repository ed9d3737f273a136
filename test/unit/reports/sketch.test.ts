// VisitorSketch: exact while small, HyperLogLog beyond 4,096 ids with the 2% bound issue 4 asks
// for (the response then says approximate), and merges that equal the sketch of the union.
import { describe, expect, it } from "vitest";
import { EXACT_LIMIT, VisitorSketch } from "../../../server/core/reports/sketch.js";
import { Random } from "../../support/report-fixture.js";

function ids(seed: number, n: number): bigint[] {
  const random = new Random(seed);
  return Array.from({ length: n }, () => random.id64());
}

describe("VisitorSketch", () => {
  it("counts exactly up to the exact limit, negative ids and duplicates included", () => {
    const list = ids(1, EXACT_LIMIT);
    const sketch = VisitorSketch.fromIds([...list, ...list.slice(0, 100)]);
    expect(sketch.isExact).toBe(true);
    expect(sketch.count()).toBe(EXACT_LIMIT);
    expect(list.some((id) => id < 0n)).toBe(true);
  });

  it("round-trips through encode and mergeEncoded, exact and dense", () => {
    for (const n of [0, 10, EXACT_LIMIT + 1]) {
      const sketch = VisitorSketch.fromIds(ids(2, n));
      const copy = new VisitorSketch();
      copy.mergeEncoded(sketch.encode());
      expect(copy.isExact).toBe(sketch.isExact);
      expect(copy.count()).toBe(sketch.count());
    }
  });

  it.each([5_000, 20_000, 100_000, 400_000])("stays within 2 percent of %i distinct ids once dense", (n) => {
    const sketch = VisitorSketch.fromIds(ids(n, n));
    expect(sketch.isExact).toBe(false);
    expect(Math.abs(sketch.count() - n) / n).toBeLessThan(0.02);
  });

  // The classic estimator switches from linear counting to the raw estimate at 2.5 × 2^15 ids and
  // was biased there by +2.3% on average, so rows of that size broke the 2% bound.
  it("has no bias where the classic estimator changes method (around 82,000 ids)", () => {
    const errors = [70_000, 78_000, 82_000, 86_000, 95_000, 110_000].flatMap((n) =>
      [1, 2, 3].map((trial) => (VisitorSketch.fromIds(ids(n * 10 + trial, n)).count() - n) / n),
    );
    const mean = errors.reduce((a, b) => a + b, 0) / errors.length;
    expect(Math.abs(mean)).toBeLessThan(0.004);
    for (const error of errors) expect(Math.abs(error)).toBeLessThan(0.02);
  });

  it("merges to the count of the union, exact into dense and dense into exact", () => {
    const a = ids(3, 3_000);
    const b = ids(4, 3_000);
    const shared = a.slice(0, 1_000);
    const left = VisitorSketch.fromIds(a);
    const right = VisitorSketch.fromIds([...b, ...shared]);
    left.merge(right);
    const union = 6_000; // a ∪ b: the shared ids are a's
    expect(left.isExact).toBe(false);
    expect(Math.abs(left.count() - union) / union).toBeLessThan(0.02);
    const small = VisitorSketch.fromIds(ids(5, 10));
    small.merge(left);
    expect(Math.abs(small.count() - (union + 10)) / union).toBeLessThan(0.02);
    const exact = VisitorSketch.fromIds(a.slice(0, 50));
    exact.merge(VisitorSketch.fromIds(a.slice(25, 80)));
    expect(exact.isExact).toBe(true);
    expect(exact.count()).toBe(80);
  });
});
