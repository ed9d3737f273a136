// Conditions on a series' tags and the group-by columns read from them, shared by every metric
// query. Tag keys and values travel as parameters (`tags ->> $n`); the operator picks one of the
// fixed fragments below. A tag a series lacks reads as "", as an absent dimension does in reports.
import type { FilterOperatorName, TagFilter } from "../query-plan.js";
import type { SqlParams } from "./params.js";

const tag = (alias: string, key: string) => `coalesce(${alias}.tags ->> ${key}, '')`;

const CONDITIONS: Record<FilterOperatorName, (column: string, value: string, values: string) => string> = {
  equals: (c, v) => `${c} = ${v}`,
  not_equals: (c, v) => `${c} <> ${v}`,
  contains: (c, v) => `strpos(lower(${c}), lower(${v})) > 0`,
  not_contains: (c, v) => `strpos(lower(${c}), lower(${v})) = 0`,
  starts_with: (c, v) => `starts_with(${c}, ${v})`,
  regex: (c, v) => `${c} ~ ${v}`,
  in: (c, _v, vs) => `${c} = any(${vs}::text[])`,
  not_in: (c, _v, vs) => `${c} <> all(${vs}::text[])`,
};

/** `and`-joined conditions on `alias.tags`, or `true` when there are none. */
export function tagConditions(alias: string, filters: readonly TagFilter[], params: SqlParams): string {
  if (filters.length === 0) return "true";
  return filters
    .map((f) => {
      const column = tag(alias, params.add(f.dimension));
      const multi = f.operator === "in" || f.operator === "not_in";
      return CONDITIONS[f.operator](column, multi ? "" : params.add(f.values[0]), multi ? params.add(f.values) : "");
    })
    .join(" and ");
}

/** One select-list column per group-by key: `coalesce(s.tags ->> $n, '') as g0`, … */
export function groupColumns(alias: string, groupBy: readonly string[], params: SqlParams): string[] {
  return groupBy.map((key, i) => `${tag(alias, params.add(key))} as g${i}`);
}
