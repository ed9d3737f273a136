// BoundedCache: values computed once while remembered, recently used keys kept, memory bounded.
import { describe, expect, it } from "vitest";
import { BoundedCache } from "../../server/core/bounded-cache.js";

describe("BoundedCache", () => {
  it("computes a key once while it is remembered, and keeps recently used keys", () => {
    const cache = new BoundedCache<number>(3);
    let computed = 0;
    const get = (key: string) => cache.get(key, () => ++computed);
    expect(get("a")).toBe(1);
    expect(get("a")).toBe(1);
    expect(computed).toBe(1);
    // Keep touching "keep" while many other keys pass: it is never computed again.
    const keep = get("keep");
    for (let i = 0; i < 100; i++) {
      get(`other-${i}`);
      expect(get("keep")).toBe(keep);
    }
  });

  it("never holds more than twice its size", () => {
    const cache = new BoundedCache<number>(1000);
    for (let i = 0; i < 10_000; i++) {
      cache.get(`k${i}`, () => i);
      expect(cache.length).toBeLessThanOrEqual(2000);
    }
    expect(cache.length).toBeGreaterThanOrEqual(1000);
  });
});
