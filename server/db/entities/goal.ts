// A conversion goal: a page visit or a custom event that counts as a conversion.
import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, updatedAt, uuidPrimaryKey, version } from "./columns.js";
import { Organisation } from "./organisation.js";
import { Site } from "./site.js";

export const GOAL_TYPES = ["destination", "event"] as const;
export type GoalType = (typeof GOAL_TYPES)[number];

export const GOAL_MATCH_TYPES = ["equals", "starts_with", "regex"] as const;
export type GoalMatchType = (typeof GOAL_MATCH_TYPES)[number];

export const GoalSchema = defineEntity({
  name: "Goal",
  tableName: "goals",
  properties: {
    // Declared first so the table's columns (and Citus keys later) lead with the site.
    siteId: () => p.manyToOne(Site).mapToPk().fieldName("site_id").deleteRule("cascade"),
    id: uuidPrimaryKey(),
    organisationId: () => p.manyToOne(Organisation).mapToPk().fieldName("organisation_id"),
    name: p.text(),
    /** `destination` matches page paths, `event` matches custom event names. */
    type: p.enum(GOAL_TYPES),
    matchType: p.enum(GOAL_MATCH_TYPES),
    /** A page path (destination goals) or an event name (event goals). */
    value: p.text(),
    /** Optional event property the event must also carry to count. */
    propertyKey: p.text().nullable(),
    propertyValue: p.text().nullable(),
    /** A fixed value per conversion, for goals without revenue on the event. */
    // A plain JS number: MikroORM would otherwise type doubles as `number | string`.
    valueNumeric: p.double().$type<number>().runtimeType("number").nullable(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    version: version(),
  },
  indexes: [{ properties: ["siteId", "id"] }],
});

export class Goal extends GoalSchema.class {}
GoalSchema.setClass(Goal);
