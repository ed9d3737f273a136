// Derived KPIs: a formula over other metrics, such as `revenue_gross / orders_count`, evaluated
// per bucket. A small recursive-descent parser over numbers, metric names, + - * / and
// parentheses; nothing else is accepted, and nothing is ever passed to eval.
//
// Undefined values: dividing by zero gives no value (null), and null spreads through the rest of
// the formula, so a bucket where a KPI is undefined (no orders, so no average order value) has no
// value for it rather than a misleading 0 or Infinity.
import { InvalidArgumentError } from "../errors.js";

export type Formula =
  | { kind: "number"; value: number }
  | { kind: "metric"; name: string }
  | { kind: "negate"; operand: Formula }
  | { kind: "binary"; op: "+" | "-" | "*" | "/"; left: Formula; right: Formula };

type Token = { kind: "number"; value: number } | { kind: "name"; name: string } | { kind: "op"; op: string };

const MAX_LENGTH = 1000;
const MAX_DEPTH = 50;

function tokenize(text: string, field: string): Token[] {
  const tokens: Token[] = [];
  const pattern = /(\d+(?:\.\d+)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)|([a-z][a-z0-9_.]*)|([-+*/()])/iy;
  let at = 0;
  for (;;) {
    while (at < text.length && /\s/.test(text[at])) at++;
    if (at >= text.length) return tokens;
    pattern.lastIndex = at;
    const match = pattern.exec(text);
    if (!match) throw new InvalidArgumentError(field, `has an unexpected character "${text[at]}" at position ${at + 1}`);
    at = pattern.lastIndex;
    if (match[1] !== undefined) tokens.push({ kind: "number", value: Number(match[1]) });
    else if (match[2] !== undefined) tokens.push({ kind: "name", name: match[2] });
    else tokens.push({ kind: "op", op: match[3] });
  }
}

/** Parses a formula; throws InvalidArgumentError naming `field` when it is not one. */
export function parseFormula(text: string, field = "formula"): Formula {
  if (text.length > MAX_LENGTH) throw new InvalidArgumentError(field, `must be at most ${MAX_LENGTH} characters`);
  const tokens = tokenize(text, field);
  if (tokens.length === 0) throw new InvalidArgumentError(field, "is empty");
  let next = 0;
  const peek = () => tokens[next];
  const isOp = (op: string) => {
    const token = peek();
    return token?.kind === "op" && token.op === op;
  };

  // expression := term (("+" | "-") term)*
  // term       := unary (("*" | "/") unary)*
  // unary      := "-" unary | primary
  // primary    := number | name | "(" expression ")"
  const expression = (depth: number): Formula => {
    let left = term(depth);
    while (isOp("+") || isOp("-")) {
      const op = (tokens[next++] as { op: "+" | "-" }).op;
      left = { kind: "binary", op, left, right: term(depth) };
    }
    return left;
  };
  const term = (depth: number): Formula => {
    let left = unary(depth);
    while (isOp("*") || isOp("/")) {
      const op = (tokens[next++] as { op: "*" | "/" }).op;
      left = { kind: "binary", op, left, right: unary(depth) };
    }
    return left;
  };
  const unary = (depth: number): Formula => {
    if (depth > MAX_DEPTH) throw new InvalidArgumentError(field, "is nested too deeply");
    if (isOp("-")) {
      next++;
      return { kind: "negate", operand: unary(depth + 1) };
    }
    if (isOp("+")) {
      next++;
      return unary(depth + 1);
    }
    return primary(depth);
  };
  const primary = (depth: number): Formula => {
    const token = tokens[next++];
    if (!token) throw new InvalidArgumentError(field, "ends too early: an operand is missing");
    if (token.kind === "number") return { kind: "number", value: token.value };
    if (token.kind === "name") return { kind: "metric", name: token.name };
    if (token.op === "(") {
      const inner = expression(depth + 1);
      if (!isOp(")")) throw new InvalidArgumentError(field, "has an unclosed parenthesis");
      next++;
      return inner;
    }
    throw new InvalidArgumentError(field, `has "${token.op}" where an operand belongs`);
  };

  const formula = expression(0);
  if (next < tokens.length) {
    const token = tokens[next];
    throw new InvalidArgumentError(field, `has an unexpected ${token.kind === "op" ? `"${token.op}"` : token.kind === "name" ? `name "${token.name}"` : `number ${token.value}`}`);
  }
  return formula;
}

/** The metric names a formula reads, each once, in order of first use. */
export function formulaMetrics(formula: Formula): string[] {
  const names = new Set<string>();
  const walk = (node: Formula) => {
    if (node.kind === "metric") names.add(node.name);
    else if (node.kind === "negate") walk(node.operand);
    else if (node.kind === "binary") {
      walk(node.left);
      walk(node.right);
    }
  };
  walk(formula);
  return [...names];
}

/**
 * The formula's value given each metric's value; null when it is undefined (a division by zero
 * anywhere, or a metric given as null). A metric missing from `values` counts as 0.
 */
export function evaluateFormula(formula: Formula, values: ReadonlyMap<string, number | null>): number | null {
  switch (formula.kind) {
    case "number":
      return formula.value;
    case "metric": {
      const value = values.get(formula.name);
      return value === undefined ? 0 : value;
    }
    case "negate": {
      const value = evaluateFormula(formula.operand, values);
      return value === null ? null : -value;
    }
    case "binary": {
      const left = evaluateFormula(formula.left, values);
      const right = evaluateFormula(formula.right, values);
      if (left === null || right === null) return null;
      switch (formula.op) {
        case "+":
          return left + right;
        case "-":
          return left - right;
        case "*":
          return left * right;
        case "/":
          return right === 0 ? null : left / right;
      }
    }
  }
}
