// A report request, checked and resolved: the plan every execution path (raw events, rollups)
// runs. Built from the service's input by `planReport`, which names the field of any mistake.
import { InvalidArgumentError } from "../errors.js";
import { decodePageToken } from "../page-token.js";
import { dimension, type DimensionKind, type FilterNode, metric, type MetricName, OPERATORS, type FilterOperatorName } from "./catalog.js";
import { addDays, daysBetween, isDate, startOfLocalDay } from "./time.js";

export type Classification = "USER" | "BOT" | "ALL";

export interface GoalDefinition {
  name: string;
  type: "destination" | "event";
  matchType: "equals" | "starts_with" | "regex";
  value: string;
  propertyKey: string | null;
  propertyValue: string | null;
  valueNumeric: number | null;
}

export interface ReportSite {
  id: string;
  timezone: string;
  /** False when the site's rollup policy turns rollups off. */
  rollups?: boolean;
}

/** A half-open range of instants plus the local dates it came from (when it came from dates). */
export interface ReportRange {
  start: number;
  end: number;
  /** First and last local day, when the range is whole local days. */
  startDate?: string;
  endDate?: string;
}

export interface OrderKey {
  kind: "metric" | "dimension";
  name: string;
  desc: boolean;
}

export interface ReportQuery {
  site: ReportSite;
  range: ReportRange;
  metrics: MetricName[];
  dimensions: DimensionKind[];
  filter: FilterNode | undefined;
  classification: Classification;
  goals: GoalDefinition[];
  orderBy: OrderKey[];
  limit: number;
  offset: number;
}

export interface FilterInput {
  dimension: string;
  operator: string;
  values: string[];
}

export type FilterTreeInput =
  | { and: FilterTreeInput[] }
  | { or: FilterTreeInput[] }
  | { not: FilterTreeInput }
  | { filter: FilterInput };

export interface ReportInput {
  startDate: string;
  endDate: string;
  metrics: string[];
  dimensions: string[];
  filters: FilterInput[];
  filter?: FilterTreeInput;
  orderBy: { metric?: string; dimension?: string; direction: "asc" | "desc" | "" }[];
  limit: number;
  pageToken: string;
  classification: Classification | "";
}

export const MAX_RANGE_DAYS = 3660;
export const MAX_LIMIT = 10_000;
export const DEFAULT_LIMIT = 100;

export function checkFilter(input: FilterInput, field: string): FilterNode {
  const dim = dimension(input.dimension, `${field}.dimension`);
  if (!(OPERATORS as readonly string[]).includes(input.operator)) {
    throw new InvalidArgumentError(`${field}.operator`, `unknown operator "${input.operator}"; known: ${OPERATORS.join(", ")}`);
  }
  const operator = input.operator as FilterOperatorName;
  const multi = operator === "in" || operator === "not_in";
  if (multi ? input.values.length === 0 : input.values.length !== 1) {
    throw new InvalidArgumentError(`${field}.values`, multi ? `${operator} needs at least one value` : `${operator} needs exactly one value`);
  }
  if (input.values.length > 1000) throw new InvalidArgumentError(`${field}.values`, "at most 1,000 values");
  for (const value of input.values) if (value.length > 2000) throw new InvalidArgumentError(`${field}.values`, "values must be at most 2,000 characters");
  if (operator === "regex") {
    try {
      new RegExp(input.values[0]);
    } catch {
      throw new InvalidArgumentError(`${field}.values`, "is not a valid regular expression");
    }
  }
  return { op: "condition", condition: { dimension: dim, operator, values: input.values } };
}

function checkTree(input: FilterTreeInput, field: string, depth: number): FilterNode {
  if (depth > 10) throw new InvalidArgumentError(field, "nests more than 10 levels");
  if ("filter" in input) return checkFilter(input.filter, `${field}.filter`);
  if ("not" in input) return { op: "not", child: checkTree(input.not, `${field}.not_expression`, depth + 1) };
  const [op, list] = "and" in input ? (["and", input.and] as const) : (["or", input.or] as const);
  if (list.length === 0) throw new InvalidArgumentError(`${field}.${op}_group`, "needs at least one expression");
  return { op, children: list.map((child, i) => checkTree(child, `${field}.${op}_group.expressions[${i}]`, depth + 1)) };
}

/** The local-date range as instants, checked. */
export function dateRange(startDate: string, endDate: string, timeZone: string): ReportRange {
  if (!isDate(startDate)) throw new InvalidArgumentError("date_range.start_date", `must be a date as YYYY-MM-DD, got "${startDate.slice(0, 20)}"`);
  if (!isDate(endDate)) throw new InvalidArgumentError("date_range.end_date", `must be a date as YYYY-MM-DD, got "${endDate.slice(0, 20)}"`);
  const days = daysBetween(startDate, endDate);
  if (days < 0) throw new InvalidArgumentError("date_range.end_date", "must not be before start_date");
  if (days >= MAX_RANGE_DAYS) throw new InvalidArgumentError("date_range", `may span at most ${MAX_RANGE_DAYS} days`);
  return { start: startOfLocalDay(startDate, timeZone), end: startOfLocalDay(addDays(endDate, 1), timeZone), startDate, endDate };
}

export function planReport(site: ReportSite, goals: GoalDefinition[], input: ReportInput): ReportQuery {
  const range = dateRange(input.startDate, input.endDate, site.timezone);
  if (input.metrics.length === 0) throw new InvalidArgumentError("metrics", "name at least one metric");
  const metrics = [...new Set(input.metrics.map((m, i) => metric(m, `metrics[${i}]`)))];
  if (input.dimensions.length > 5) throw new InvalidArgumentError("dimensions", "at most 5 dimensions");
  const dimensions = input.dimensions.map((d, i) => dimension(d, `dimensions[${i}]`));
  const names = dimensions.map((d) => d.name);
  if (new Set(names).size !== names.length) throw new InvalidArgumentError("dimensions", "names a dimension twice");
  const parts: FilterNode[] = input.filters.map((f, i) => checkFilter(f, `filters[${i}]`));
  if (input.filter) parts.push(checkTree(input.filter, "filter", 0));
  const filter: FilterNode | undefined = parts.length === 0 ? undefined : parts.length === 1 ? parts[0] : { op: "and", children: parts };
  const orderBy: OrderKey[] = input.orderBy.map((o, i) => {
    if (o.metric) {
      if (!metrics.includes(o.metric as MetricName)) throw new InvalidArgumentError(`order_by[${i}].metric`, `"${o.metric}" is not among the requested metrics`);
      return { kind: "metric", name: o.metric, desc: o.direction !== "asc" };
    }
    if (o.dimension) {
      if (!names.includes(o.dimension)) throw new InvalidArgumentError(`order_by[${i}].dimension`, `"${o.dimension}" is not among the requested dimensions`);
      return { kind: "dimension", name: o.dimension, desc: o.direction === "desc" };
    }
    throw new InvalidArgumentError(`order_by[${i}]`, "names neither a metric nor a dimension");
  });
  if (input.limit < 0 || input.limit > MAX_LIMIT) throw new InvalidArgumentError("limit", `must be from 1 to ${MAX_LIMIT}`);
  const cursor = decodePageToken(input.pageToken);
  const offset = cursor ? Number(cursor.after) : 0;
  if (!Number.isInteger(offset) || offset < 0) throw new InvalidArgumentError("page_token", "is not a token from a previous response");
  const usesClassification = names.includes("classification") || mentions(filter, "classification");
  const classification: Classification = input.classification || (usesClassification ? "ALL" : "USER");
  return { site, range, metrics, dimensions, filter, classification, goals, orderBy, limit: input.limit || DEFAULT_LIMIT, offset };
}

export function mentions(node: FilterNode | undefined, name: string): boolean {
  if (!node) return false;
  if (node.op === "condition") return node.condition.dimension.name === name;
  if (node.op === "not") return mentions(node.child, name);
  return node.children.some((c) => mentions(c, name));
}

/** The conditions of a filter tree, flattened (to check which dimensions it touches). */
export function conditionsOf(node: FilterNode | undefined): FilterNode[] {
  if (!node) return [];
  if (node.op === "condition") return [node];
  if (node.op === "not") return conditionsOf(node.child);
  return node.children.flatMap(conditionsOf);
}
