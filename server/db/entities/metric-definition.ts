// A named metric the organisation defines: its type, unit and default aggregation, or a formula
// over other metrics (a derived KPI).
import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, updatedAt, uuidPrimaryKey, version } from "./columns.js";
import { Organisation } from "./organisation.js";
import { Site } from "./site.js";

export const METRIC_TYPES = ["counter", "gauge", "histogram", "timing", "event"] as const;
export type MetricType = (typeof METRIC_TYPES)[number];

export const MetricDefinitionSchema = defineEntity({
  name: "MetricDefinition",
  tableName: "metric_definitions",
  properties: {
    organisationId: () => p.manyToOne(Organisation).mapToPk().fieldName("organisation_id"),
    /** Set when the metric applies to one site only. */
    siteId: () => p.manyToOne(Site).mapToPk().fieldName("site_id").nullable().deleteRule("cascade"),
    id: uuidPrimaryKey(),
    name: p.text(),
    description: p.text().default(""),
    type: p.enum(METRIC_TYPES),
    unit: p.text().default(""),
    tags: p.array().onCreate(() => []),
    /** e.g. `sum`, `avg`, `p95`; validated in core against the metric type. */
    aggregationDefault: p.text(),
    retentionDays: p.integer(),
    /** JSON Schema of the metric's properties, checked at ingestion. */
    schema: p.json<Record<string, unknown>>().onCreate(() => ({})),
    /** Expression over other metrics; set only for derived KPIs. */
    formula: p.text().nullable(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    deletedAt: p.datetime().nullable(),
    version: version(),
  },
  indexes: [{ properties: ["organisationId", "id"] }],
  uniques: [
    { name: "metric_definitions_organisation_id_name_unique", properties: ["organisationId", "name"], where: "deleted_at is null" },
  ],
});

export class MetricDefinition extends MetricDefinitionSchema.class {}
MetricDefinitionSchema.setClass(MetricDefinition);
