// The derived-KPI formula language: numbers, metric names, + - * / and parentheses, nothing else.
import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../../server/core/errors.js";
import { evaluateFormula, formulaMetrics, parseFormula } from "../../../server/core/metrics/formula.js";

const evaluate = (text: string, values: Record<string, number | null> = {}) => evaluateFormula(parseFormula(text), new Map(Object.entries(values)));

describe("formula", () => {
  it("follows precedence and associativity", () => {
    expect(evaluate("1 + 2 * 3")).toBe(7);
    expect(evaluate("(1 + 2) * 3")).toBe(9);
    expect(evaluate("8 / 4 / 2")).toBe(1);
    expect(evaluate("10 - 4 - 3")).toBe(3);
    expect(evaluate("-2 * -3")).toBe(6);
    expect(evaluate("2.5e2 + .5")).toBe(250.5);
  });

  it("reads metric values by name, a missing one as 0", () => {
    expect(evaluate("revenue_gross / orders_count", { revenue_gross: 300, orders_count: 4 })).toBe(75);
    expect(evaluate("a.b + c", { "a.b": 1 })).toBe(1);
    expect(formulaMetrics(parseFormula("(conversions / visitors) * 100 + conversions"))).toEqual(["conversions", "visitors"]);
  });

  it("has no value where it divides by zero, and that spreads", () => {
    expect(evaluate("revenue / orders", { revenue: 5, orders: 0 })).toBeNull();
    expect(evaluate("1 + revenue / orders", { revenue: 5 })).toBeNull();
    expect(evaluate("x * 2", { x: null })).toBeNull();
    expect(evaluate("0 / 5")).toBe(0);
  });

  it.each([
    ["", "is empty"],
    ["a +", "ends too early"],
    ["(a + b", "unclosed parenthesis"],
    ["a + b)", 'unexpected ")"'],
    ["a b", 'unexpected name "b"'],
    ["a ^ b", 'unexpected character "^"'],
    ["process.exit()", '"("'],
    ["* a", '"*" where an operand belongs'],
  ])("refuses %j", (text, problem) => {
    let error: unknown;
    try {
      parseFormula(text, "formula");
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as InvalidArgumentError).field).toBe("formula");
    expect((error as Error).message).toContain(problem);
  });
});
