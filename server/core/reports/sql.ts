// Report SQL over raw events and sessions. Identifiers come from the catalog; everything from
// the request (values, time zone, property keys, goal values) is a numbered parameter.
import type { DimensionKind, FilterCondition, FilterNode } from "./catalog.js";
import { matchesCondition } from "./catalog.js";
import type { Classification, GoalDefinition, ReportQuery } from "./query.js";

export class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

const TIME_FORMATS = { minute: "YYYY-MM-DD HH24:MI", five_minutes: "YYYY-MM-DD HH24:MI", hour: "YYYY-MM-DD HH24:00", day: "YYYY-MM-DD", week: "YYYY-MM-DD", month: "YYYY-MM" } as const;

/** Which table a dimension is read from: events `e`, the session `s`, or a rollup row `r`. */
export type Context = "event" | "session" | "rollup";

/** A goal as a boolean SQL expression over events `e`. */
export function goalMatch(goal: GoalDefinition, p: Params): string {
  if (goal.type === "event") {
    const name = `e.name = ${p.add(goal.value)}`;
    if (!goal.propertyKey) return `(${name})`;
    return `(${name} and coalesce(e.props ->> ${p.add(goal.propertyKey)}, '') = ${p.add(goal.propertyValue ?? "")})`;
  }
  const path = "e.pathname";
  const value = p.add(goal.value);
  const match = goal.matchType === "regex" ? `${path} ~ ${value}` : goal.matchType === "starts_with" ? `starts_with(${path}, ${value})` : `${path} = ${value}`;
  return `(e.name = 'pageview' and ${match})`;
}

export function anyGoal(goals: GoalDefinition[], p: Params): string {
  return goals.length === 0 ? "false" : `(${goals.map((g) => goalMatch(g, p)).join(" or ")})`;
}

/** Revenue of an event: its own, else the value of the first goal it completes. */
export function revenueExpr(goals: GoalDefinition[], p: Params): string {
  const valued = goals.filter((g) => g.valueNumeric !== null);
  if (valued.length === 0) return "coalesce(e.revenue, 0)";
  return `coalesce(e.revenue, case ${valued.map((g) => `when ${goalMatch(g, p)} then ${p.add(g.valueNumeric)}::numeric`).join(" ")} else 0 end)`;
}

export function dimensionExpr(d: DimensionKind, context: Context, q: ReportQuery, p: Params): string {
  // A rollup row holds the value of its one dimension.
  if (context === "rollup") return "r.value";
  switch (d.kind) {
    case "event":
      return `e.${d.column}`;
    case "session":
      return context === "session" ? `s.${d.column}` : `coalesce(s.${d.column}, '')`;
    case "time": {
      const ts = context === "session" ? "s.started_at" : "e.ts";
      const local = `${ts} at time zone ${p.add(q.site.timezone)}`;
      const truncated = d.name === "week"
        ? `date_trunc('week', ${local})`
        : d.name === "five_minutes"
          ? `date_trunc('hour', ${local}) + floor(extract(minute from ${local}) / 5) * interval '5 minutes'`
          : local;
      return `to_char(${truncated}, '${TIME_FORMATS[d.name]}')`;
    }
    case "prop":
      return `coalesce(e.props ->> ${p.add(d.key)}, '')`;
    case "classification":
      return `case ${context === "session" ? "s" : "e"}.classification when 2 then 'BOT' else 'USER' end`;
    case "goal":
      return "goal.name";
  }
}

function conditionSql(c: FilterCondition, context: Context, q: ReportQuery, p: Params): string {
  if (c.dimension.kind === "goal") {
    // Goal filters are conditions on goal names, which are configuration: resolve them here.
    const negative = c.operator === "not_equals" || c.operator === "not_in" || c.operator === "not_contains";
    const positive = { ...c, operator: negative ? ({ not_equals: "equals", not_in: "in", not_contains: "contains" } as const)[c.operator as "not_equals"] : c.operator };
    const matching = q.goals.filter((g) => matchesCondition(g.name, positive));
    const any = matching.length === 0 ? "false" : `(${matching.map((g) => goalMatch(g, p)).join(" or ")})`;
    return negative ? `not ${any}` : any;
  }
  const expr = dimensionExpr(c.dimension, context, q, p);
  const v = c.values;
  switch (c.operator) {
    case "equals":
      return `${expr} = ${p.add(v[0])}`;
    case "not_equals":
      return `${expr} <> ${p.add(v[0])}`;
    case "contains":
      return `strpos(lower(${expr}), lower(${p.add(v[0])})) > 0`;
    case "not_contains":
      return `strpos(lower(${expr}), lower(${p.add(v[0])})) = 0`;
    case "starts_with":
      return `starts_with(${expr}, ${p.add(v[0])})`;
    case "regex":
      return `${expr} ~ ${p.add(v[0])}`;
    case "in":
      return `${expr} = any(${p.add(v)}::text[])`;
    case "not_in":
      return `not (${expr} = any(${p.add(v)}::text[]))`;
  }
}

export function filterSql(node: FilterNode | undefined, context: Context, q: ReportQuery, p: Params): string {
  if (!node) return "true";
  switch (node.op) {
    case "condition":
      return `(${conditionSql(node.condition, context, q, p)})`;
    case "not":
      return `(not ${filterSql(node.child, context, q, p)})`;
    default:
      return `(${node.children.map((c) => filterSql(c, context, q, p)).join(` ${node.op} `)})`;
  }
}

export function classificationSql(classification: Classification, alias: "e" | "s"): string {
  return classification === "ALL" ? "true" : `${alias}.classification = ${classification === "BOT" ? 2 : 1}`;
}

function needsSessions(q: ReportQuery, dims: DimensionKind[]): boolean {
  const touches = (node: FilterNode | undefined): boolean =>
    !!node && (node.op === "condition" ? node.condition.dimension.kind === "session" : node.op === "not" ? touches(node.child) : node.children.some(touches));
  return dims.some((d) => d.kind === "session") || touches(q.filter);
}

/** Goal rows: one per (event, goal it completes), named. */
function goalLateral(q: ReportQuery, p: Params): string {
  const cases = q.goals.map((g) => `case when ${goalMatch(g, p)} then ${p.add(g.name)}::text end`);
  return `cross join lateral unnest(array[${cases.length > 0 ? cases.join(", ") : "null::text"}]::text[]) as goal(name)`;
}

export interface EventSqlOptions {
  dims: DimensionKind[];
  start: number;
  end: number;
  /** `ids`: visitor ids per group (to merge with rollup sketches); `count`: exact counts. */
  distinct: "count" | "ids";
}

/**
 * Event metrics per group: pageviews, events, distinct visitors, revenue and converted visitors,
 * over events in [start, end) matching the filter.
 */
export function eventMetricsSql(q: ReportQuery, o: EventSqlOptions): { text: string; values: unknown[] } {
  const p = new Params();
  const site = p.add(q.site.id);
  const start = p.add(new Date(o.start).toISOString());
  const end = p.add(new Date(o.end).toISOString());
  const goalDim = o.dims.some((d) => d.kind === "goal");
  const dims = o.dims.map((d, i) => `${dimensionExpr(d, "event", q, p)} as d${i}`);
  // In goal rows the row's goal value stands in for an event without revenue. With no valued
  // goal there is nothing to stand in (and `case goal.name else 0 end` would not parse).
  const valued = q.goals.filter((g) => g.valueNumeric !== null);
  const revenue = goalDim && valued.length > 0
    ? `coalesce(e.revenue, case goal.name ${valued.map((g) => `when ${p.add(g.name)} then ${p.add(g.valueNumeric)}::numeric`).join(" ")} else 0 end)`
    : revenueExpr(q.goals, p);
  const converted = goalDim ? "true" : anyGoal(q.goals, p);
  const distinct = o.distinct === "count"
    ? `count(distinct e.visitor_id) as visitors, count(distinct e.visitor_id) filter (where ${converted}) as conversions`
    : `array_agg(distinct e.visitor_id) as visitor_ids, array_agg(distinct e.visitor_id) filter (where ${converted}) as conversion_ids`;
  const joins = [
    needsSessions(q, o.dims)
      ? `left join sessions s on s.site_id = e.site_id and s.session_id = e.session_id and s.started_at >= ${start}::timestamptz - interval '1 day' and s.started_at < ${end}::timestamptz`
      : "",
    goalDim ? goalLateral(q, p) : "",
  ].join("\n");
  const text = `select ${[...dims, "count(*) filter (where e.name = 'pageview') as pageviews", "count(*) as events", distinct, `coalesce(sum(${revenue}), 0) as revenue`].join(", ")}
from events e
${joins}
where e.site_id = ${site} and e.ts >= ${start} and e.ts < ${end} and ${classificationSql(q.classification, "e")} and ${filterSql(q.filter, "event", q, p)}${goalDim ? " and goal.name is not null" : ""}
${o.dims.length > 0 ? `group by ${o.dims.map((_, i) => `d${i}`).join(", ")}` : ""}`;
  return { text, values: p.values };
}

/** How far from its start a visit's events are looked for (a visit lasting longer is cut there). */
export const SESSION_LOOKAHEAD = "1 day";

/**
 * Session metrics per group over visits that started in [start, end) and have at least one event
 * matching the filter (and, for an event dimension, carrying the group's value).
 */
export function sessionMetricsSql(q: ReportQuery, o: Omit<EventSqlOptions, "distinct">): { text: string; values: unknown[] } {
  const p = new Params();
  const site = p.add(q.site.id);
  const start = p.add(new Date(o.start).toISOString());
  const end = p.add(new Date(o.end).toISOString());
  const goalDim = o.dims.some((d) => d.kind === "goal");
  const dims = o.dims.map((d, i) => `${dimensionExpr(d, "session", q, p)} as d${i}`);
  const keys = o.dims.map((_, i) => `d${i}`);
  const text = `with sv as (
  select distinct ${[...dims, "s.session_id"].join(", ")}
  from sessions s
  join events e on e.site_id = s.site_id and e.session_id = s.session_id
    and e.ts >= ${start}::timestamptz - interval '${SESSION_LOOKAHEAD}' and e.ts < ${end}::timestamptz + interval '${SESSION_LOOKAHEAD}'
    and e.ts >= s.started_at - interval '${SESSION_LOOKAHEAD}' and e.ts < s.started_at + interval '${SESSION_LOOKAHEAD}'
  ${goalDim ? goalLateral(q, p) : ""}
  where s.site_id = ${site} and s.started_at >= ${start} and s.started_at < ${end} and ${classificationSql(q.classification, "s")} and ${filterSql(q.filter, "session", q, p)}${goalDim ? " and goal.name is not null" : ""}
)
select ${[...keys.map((k) => `sv.${k}`), "count(*) as visits", "count(*) filter (where s.is_bounce) as bounces", "coalesce(sum(s.duration_seconds), 0) as duration", "coalesce(sum(s.pageviews), 0) as session_pageviews"].join(", ")}
from sv join sessions s on s.site_id = ${site} and s.session_id = sv.session_id and s.started_at >= ${start} and s.started_at < ${end}
${keys.length > 0 ? `group by ${keys.map((k) => `sv.${k}`).join(", ")}` : ""}`;
  return { text, values: p.values };
}
