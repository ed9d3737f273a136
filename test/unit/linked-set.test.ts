import { describe, expect, it } from "vitest";
import { LinkedSet } from "../../server/http/linked-set.js";

describe("LinkedSet", () => {
  it("adds once, deletes from anywhere, and iterates what is left, newest first", () => {
    const [a, b, c, d] = [{ n: "a" }, { n: "b" }, { n: "c" }, { n: "d" }];
    const set = new LinkedSet<{ n: string }>();
    set.add(a).add(b).add(c).add(b);
    expect([...set].map((x) => x.n)).toEqual(["c", "b", "a"]);

    expect(set.delete(b)).toBe(true); // the middle
    expect(set.delete(b)).toBe(false);
    expect([...set].map((x) => x.n)).toEqual(["c", "a"]);

    expect(set.delete(c)).toBe(true); // the newest
    expect(set.delete(a)).toBe(true); // the oldest
    expect([...set]).toEqual([]);
    expect(set.delete(d)).toBe(false);

    set.add(b).add(d);
    expect([...set].map((x) => x.n)).toEqual(["d", "b"]);
  });

  it("keeps one object's membership of two sets apart", () => {
    const item = { n: "x" };
    const first = new LinkedSet<typeof item>();
    const second = new LinkedSet<typeof item>();
    first.add(item);
    second.add(item);
    first.delete(item);
    expect([...first]).toEqual([]);
    expect([...second]).toEqual([item]);
  });

  it("lets members leave and join while it is iterated", () => {
    const items = Array.from({ length: 5 }, (_, n) => ({ n }));
    const set = new LinkedSet<{ n: number }>();
    for (const item of items) set.add(item);
    const seen: number[] = [];
    for (const item of set) {
      seen.push(item.n);
      set.delete(item);
      if (item.n === 2) set.delete(items[1]);
      if (item.n === 4) set.add({ n: 9 });
    }
    expect(seen).toEqual([4, 3, 2, 1, 0]);
    expect([...set].map((x) => x.n)).toEqual([9]);
  });
});
