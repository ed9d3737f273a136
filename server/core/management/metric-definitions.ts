// Metric and KPI definitions (002 §2). Ingestion checks points against them; queries read their
// default aggregation; derived KPIs carry a formula over other metrics.
import type { EntityManager } from "@mikro-orm/postgresql";
import { UniqueConstraintViolationException } from "@mikro-orm/core";
import { MetricDefinition, type MetricType } from "../../db/entities/index.js";
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from "../errors.js";
import type { Principal } from "../roles.js";
import { checkEtag, flushChecked } from "./access.js";
import { recordAudit, snapshot } from "./audit.js";
import { listPage, type Page } from "./paging.js";
import { optionalText, requireRange, requireText } from "./validate.js";

export const AGGREGATIONS = ["sum", "avg", "min", "max", "count", "p50", "p95", "p99", "last"] as const;
export type AggregationName = (typeof AGGREGATIONS)[number];

const DEFAULT_AGGREGATION: Record<MetricType, AggregationName> = {
  counter: "sum",
  gauge: "last",
  histogram: "p95",
  timing: "p95",
  event: "count",
};

const METRIC_NAME = /^[a-z][a-z0-9_.]{0,119}$/;
const TAG_KEY = /^[a-z_][a-z0-9_]{0,63}$/i;

export interface CreateMetricDefinitionInput {
  name: string;
  description: string;
  type: MetricType | undefined;
  unit: string;
  tags: string[];
  aggregationDefault: AggregationName | undefined;
  retentionDays: number;
  schema: Record<string, unknown> | undefined;
  formula: string;
}

export interface UpdateMetricDefinitionInput {
  etag: string;
  description?: string;
  unit?: string;
  tags?: string[];
  aggregationDefault?: AggregationName;
  retentionDays?: number;
  schema?: Record<string, unknown>;
  formula?: string;
}

function checkName(name: string): string {
  const trimmed = requireText("name", name, 120);
  if (!METRIC_NAME.test(trimmed)) throw new InvalidArgumentError("name", `must start with a letter and hold only a-z, 0-9, "_" and "."; got "${trimmed}"`);
  return trimmed;
}

function checkTags(tags: string[]): string[] {
  return [...new Set(tags.map((tag, i) => {
    if (!TAG_KEY.test(tag)) throw new InvalidArgumentError(`tags[${i}]`, `must be a tag key of letters, digits and "_", got "${tag}"`);
    return tag;
  }))];
}

/** The metric names a formula refers to; the formula may use + - * / ( ) and numbers. */
export function formulaOperands(formula: string): string[] {
  if (!/^[a-z0-9_.+\-*/() \t]+$/i.test(formula)) throw new InvalidArgumentError("formula", "may hold only metric names, numbers, + - * / and parentheses");
  let depth = 0;
  for (const ch of formula) {
    if (ch === "(") depth++;
    if (ch === ")" && --depth < 0) break;
  }
  if (depth !== 0) throw new InvalidArgumentError("formula", "has unbalanced parentheses");
  return [...new Set(formula.match(/[a-z][a-z0-9_.]*/gi) ?? [])];
}

export async function createMetricDefinition(em: EntityManager, principal: Principal, input: CreateMetricDefinitionInput): Promise<MetricDefinition> {
  const name = checkName(input.name);
  const formula = optionalText("formula", input.formula, 1000);
  if (formula !== "") {
    const operands = formulaOperands(formula);
    if (operands.length === 0) throw new InvalidArgumentError("formula", "must refer to at least one metric");
    if (operands.includes(name)) throw new InvalidArgumentError("formula", "must not refer to the metric itself");
  }
  const type = input.type ?? (formula !== "" ? "gauge" : undefined);
  if (!type) throw new InvalidArgumentError("type", "is required: counter, gauge, histogram, timing or event");
  const existing = await em.findOne(MetricDefinition, { organisationId: principal.organisationId, name, deletedAt: null });
  if (existing) throw new AlreadyExistsError("name", `a metric named "${name}" already exists`);
  const definition = em.create(MetricDefinition, {
    organisationId: principal.organisationId,
    siteId: null,
    name,
    description: optionalText("description", input.description, 2000),
    type,
    unit: optionalText("unit", input.unit, 40),
    tags: checkTags(input.tags),
    aggregationDefault: input.aggregationDefault ?? DEFAULT_AGGREGATION[type],
    retentionDays: requireRange("retention_days", input.retentionDays, 0, 36_500),
    schema: input.schema ?? {},
    formula: formula || null,
  });
  recordAudit(em, principal, { action: "metric_definition.create", resource: `metric-definitions/${definition.id}`, after: snapshot(definition) });
  try {
    await em.flush();
  } catch (err) {
    if (err instanceof UniqueConstraintViolationException) throw new AlreadyExistsError("name", `a metric named "${name}" already exists`);
    throw err;
  }
  return definition;
}

/** By id or by name, as GetMetricDefinition allows either. */
export async function loadMetricDefinition(em: EntityManager, principal: Principal, idOrName: string): Promise<MetricDefinition> {
  const ref = requireText("id", idOrName, 120);
  const isUuid = /^[0-9a-f-]{36}$/i.test(ref);
  const definition = await em.findOne(MetricDefinition, {
    organisationId: principal.organisationId,
    deletedAt: null,
    ...(isUuid ? { id: ref.toLowerCase() } : { name: ref }),
  });
  if (!definition) throw new NotFoundError(`metric definition ${ref}`);
  return definition;
}

export async function listMetricDefinitions(em: EntityManager, principal: Principal, request: { pageSize: number; pageToken: string }): Promise<Page<MetricDefinition>> {
  return listPage(em, MetricDefinition, { organisationId: principal.organisationId, deletedAt: null }, request);
}

export async function updateMetricDefinition(em: EntityManager, principal: Principal, id: string, input: UpdateMetricDefinitionInput): Promise<MetricDefinition> {
  const definition = await loadMetricDefinition(em, principal, id);
  const resource = `metric-definitions/${definition.id}`;
  checkEtag(resource, definition, input.etag);
  const before = snapshot(definition);
  if (input.description !== undefined) definition.description = optionalText("description", input.description, 2000);
  if (input.unit !== undefined) definition.unit = optionalText("unit", input.unit, 40);
  if (input.tags !== undefined) definition.tags = checkTags(input.tags);
  if (input.aggregationDefault !== undefined) definition.aggregationDefault = input.aggregationDefault;
  if (input.retentionDays !== undefined) definition.retentionDays = requireRange("retention_days", input.retentionDays, 0, 36_500);
  if (input.schema !== undefined) definition.schema = input.schema;
  if (input.formula !== undefined) {
    if (!definition.formula) throw new InvalidArgumentError("formula", "only derived KPIs (created with a formula) have one");
    const formula = requireText("formula", input.formula, 1000);
    if (formulaOperands(formula).includes(definition.name)) throw new InvalidArgumentError("formula", "must not refer to the metric itself");
    definition.formula = formula;
  }
  recordAudit(em, principal, { action: "metric_definition.update", resource, before, after: snapshot(definition) });
  await flushChecked(em, resource);
  return definition;
}

export async function deleteMetricDefinition(em: EntityManager, principal: Principal, id: string, etag: string): Promise<void> {
  const definition = await loadMetricDefinition(em, principal, id);
  const resource = `metric-definitions/${definition.id}`;
  checkEtag(resource, definition, etag);
  const before = snapshot(definition);
  definition.deletedAt = new Date();
  recordAudit(em, principal, { action: "metric_definition.delete", resource, before });
  await flushChecked(em, resource);
}
