// Records → proto messages, and proto enums ↔ the core's names. The only place the two shapes meet.
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ApiKey as ApiKeyMsg, ApiKeySchema } from "../../gen/beacon/v1/api_key_pb.js";
import { type AuditEntry as AuditEntryMsg, AuditEntrySchema } from "../../gen/beacon/v1/audit_pb.js";
import { Aggregation, Role } from "../../gen/beacon/v1/common_pb.js";
import { type DeadLetter as DeadLetterMsg, DeadLetterSchema } from "../../gen/beacon/v1/dead_letter_pb.js";
import { type Goal as GoalMsg, GoalMatchType, GoalSchema, GoalType } from "../../gen/beacon/v1/goal_pb.js";
import { type MetricDefinition as MetricDefinitionMsg, MetricDefinitionSchema, MetricType } from "../../gen/beacon/v1/metric_definition_pb.js";
import { type Organisation as OrganisationMsg, OrganisationSchema } from "../../gen/beacon/v1/organisation_pb.js";
import { type Quotas, QuotasSchema, type Settings, SettingsSchema } from "../../gen/beacon/v1/settings_pb.js";
import { type Site as SiteMsg, SiteSchema, type SiteSettings as SiteSettingsMsg, SiteSettingsSchema } from "../../gen/beacon/v1/site_pb.js";
import type { ApiKey, AuditEntry, DeadLetter, Goal, MetricDefinition, Organisation, Setting, Site } from "../db/entities/index.js";
import { etagOf } from "../core/management/access.js";
import type { AggregationName } from "../core/management/metric-definitions.js";
import type { OrganisationQuotas, OrganisationSettings } from "../core/management/settings.js";
import type { SiteSettingsInput } from "../core/management/sites.js";
import type { RollupPolicyView } from "../core/management/rollup-policy.js";
import { RollupPolicySchema, RollupRuleSchema } from "../../gen/beacon/v1/rollup_pb.js";
import type { RoleName } from "../core/roles.js";

const ts = (date: Date | null | undefined) => (date ? timestampFromDate(date) : undefined);

/** A two-way table between a proto enum and the core's string names. */
function enumMap<E extends number, N extends string>(pairs: [E, N][]) {
  const toName = new Map(pairs);
  const toEnum = new Map(pairs.map(([e, n]) => [n, e] as const));
  return {
    name: (value: E): N | undefined => toName.get(value),
    value: (name: N): E => toEnum.get(name) ?? (0 as E),
  };
}

export const roles = enumMap<Role, RoleName>([
  [Role.VIEWER, "viewer"],
  [Role.ANALYST, "analyst"],
  [Role.ADMIN, "admin"],
]);

export const goalTypes = enumMap<GoalType, Goal["type"]>([
  [GoalType.DESTINATION, "destination"],
  [GoalType.EVENT, "event"],
]);

export const goalMatchTypes = enumMap<GoalMatchType, Goal["matchType"]>([
  [GoalMatchType.EQUALS, "equals"],
  [GoalMatchType.STARTS_WITH, "starts_with"],
  [GoalMatchType.REGEX, "regex"],
]);

export const metricTypes = enumMap<MetricType, MetricDefinition["type"]>([
  [MetricType.COUNTER, "counter"],
  [MetricType.GAUGE, "gauge"],
  [MetricType.HISTOGRAM, "histogram"],
  [MetricType.TIMING, "timing"],
  [MetricType.EVENT, "event"],
]);

export const aggregations = enumMap<Aggregation, AggregationName>([
  [Aggregation.SUM, "sum"],
  [Aggregation.AVG, "avg"],
  [Aggregation.MIN, "min"],
  [Aggregation.MAX, "max"],
  [Aggregation.COUNT, "count"],
  [Aggregation.P50, "p50"],
  [Aggregation.P95, "p95"],
  [Aggregation.P99, "p99"],
  [Aggregation.LAST, "last"],
]);

export function organisationToProto(org: Organisation): OrganisationMsg {
  return create(OrganisationSchema, { id: org.id, name: org.name, createTime: ts(org.createdAt), updateTime: ts(org.updatedAt), etag: etagOf(org) });
}

export function siteSettingsFromProto(settings: SiteSettingsMsg | undefined): SiteSettingsInput {
  if (!settings) return {};
  return {
    // A repeated field cannot say "unset"; an empty list keeps the current value on update.
    allowedEventTypes: settings.allowedEventTypes.length > 0 ? settings.allowedEventTypes : undefined,
    respectDoNotTrack: settings.respectDoNotTrack,
    sessionTimeoutMinutes: settings.sessionTimeoutMinutes,
    customEventsPerSessionPerMinute: settings.customEventsPerSessionPerMinute,
    eventsPerVisitorPerMinute: settings.eventsPerVisitorPerMinute,
    eventsPerSitePerSecond: settings.eventsPerSitePerSecond,
    retentionDays: settings.retentionDays,
    maxPropertiesPerEvent: settings.maxPropertiesPerEvent,
    additionalHostnames: settings.additionalHostnames.length > 0 ? settings.additionalHostnames : undefined,
    autoDefineMetrics: settings.autoDefineMetrics,
  };
}

export function siteToProto(site: Site): SiteMsg {
  const s = site.settings as SiteSettingsInput;
  return create(SiteSchema, {
    id: site.id,
    organisationId: site.organisationId,
    trackingId: site.trackingId,
    domain: site.domain,
    name: site.name,
    timezone: site.timezone,
    currency: site.currency,
    industry: site.industry,
    settings: create(SiteSettingsSchema, {
      allowedEventTypes: s.allowedEventTypes ?? [],
      respectDoNotTrack: s.respectDoNotTrack,
      sessionTimeoutMinutes: s.sessionTimeoutMinutes,
      customEventsPerSessionPerMinute: s.customEventsPerSessionPerMinute,
      eventsPerVisitorPerMinute: s.eventsPerVisitorPerMinute,
      eventsPerSitePerSecond: s.eventsPerSitePerSecond,
      retentionDays: s.retentionDays,
      maxPropertiesPerEvent: s.maxPropertiesPerEvent,
      additionalHostnames: s.additionalHostnames ?? [],
      autoDefineMetrics: s.autoDefineMetrics,
    }),
    createTime: ts(site.createdAt),
    updateTime: ts(site.updatedAt),
    etag: etagOf(site),
  });
}

export function goalToProto(goal: Goal): GoalMsg {
  return create(GoalSchema, {
    id: goal.id,
    siteId: goal.siteId,
    name: goal.name,
    type: goalTypes.value(goal.type),
    matchType: goalMatchTypes.value(goal.matchType),
    value: goal.value,
    propertyKey: goal.propertyKey ?? "",
    propertyValue: goal.propertyValue ?? "",
    valueNumeric: goal.valueNumeric === null || goal.valueNumeric === undefined ? undefined : Number(goal.valueNumeric),
    createTime: ts(goal.createdAt),
    updateTime: ts(goal.updatedAt),
    etag: etagOf(goal),
  });
}

export function apiKeyToProto(key: ApiKey): ApiKeyMsg {
  return create(ApiKeySchema, {
    id: key.id,
    organisationId: key.organisationId,
    displayName: key.name,
    prefix: key.prefix,
    role: roles.value(key.role),
    siteIds: key.siteIds,
    createTime: ts(key.createdAt),
    lastUseTime: ts(key.lastUsedAt),
    revokeTime: ts(key.revokedAt),
    etag: etagOf(key),
  });
}

export function metricDefinitionToProto(definition: MetricDefinition): MetricDefinitionMsg {
  return create(MetricDefinitionSchema, {
    id: definition.id,
    organisationId: definition.organisationId,
    name: definition.name,
    description: definition.description,
    type: metricTypes.value(definition.type),
    unit: definition.unit,
    tags: definition.tags,
    aggregationDefault: aggregations.value(definition.aggregationDefault as AggregationName),
    retentionDays: definition.retentionDays,
    schema: Object.keys(definition.schema ?? {}).length > 0 ? (definition.schema as JsonObject) : undefined,
    formula: definition.formula ?? "",
    createTime: ts(definition.createdAt),
    updateTime: ts(definition.updatedAt),
    etag: etagOf(definition),
  });
}

export function settingsToProto(organisationId: string, values: OrganisationSettings, row: Setting): Settings {
  return create(SettingsSchema, {
    organisationId,
    defaultRetentionDays: values.retentionDays,
    defaultMetricRetentionDays: values.metricRetentionDays,
    maxCardinality: values.maxCardinality,
    ingestRateLimit: values.ingestRateLimit,
    allowedConnectors: values.allowedConnectors,
    updateTime: ts(row.updatedAt),
    etag: etagOf(row),
  });
}

export function quotasToProto(organisationId: string, values: OrganisationQuotas, row: Setting, eventsThisMonth: bigint): Quotas {
  return create(QuotasSchema, {
    organisationId,
    eventsPerMonth: BigInt(values.eventsPerMonth),
    queriesPerMinute: values.queriesPerMinute,
    maxConcurrentStreams: values.maxConcurrentStreams,
    maxSites: values.maxSites,
    eventsThisMonth,
    updateTime: ts(row.updatedAt),
    etag: etagOf(row),
  });
}

export function auditEntryToProto(entry: AuditEntry): AuditEntryMsg {
  return create(AuditEntrySchema, {
    id: entry.id,
    organisationId: entry.organisationId,
    actorKeyId: entry.actorKeyId ?? "",
    actor: entry.actor,
    action: entry.action,
    resource: entry.resource,
    before: (entry.before ?? undefined) as JsonObject | undefined,
    after: (entry.after ?? undefined) as JsonObject | undefined,
    createTime: ts(entry.createdAt),
  });
}

export function deadLetterToProto(letter: DeadLetter): DeadLetterMsg {
  const payload = letter.payload;
  return create(DeadLetterSchema, {
    id: letter.id,
    siteId: letter.siteId,
    reason: letter.reason,
    payload: payload && typeof payload === "object" && !Array.isArray(payload) ? (payload as JsonObject) : { value: payload as never },
    attempts: letter.attempts,
    createTime: ts(letter.createdAt),
  });
}

export function rollupPolicyToProto(policy: RollupPolicyView) {
  return create(RollupPolicySchema, {
    siteId: policy.siteId,
    enabled: policy.enabled,
    rules: policy.rules.map((r) => create(RollupRuleSchema, r)),
    rawRetentionDays: policy.rawRetentionDays,
    hourlyUntil: ts(policy.hourlyUntil),
    dailyUntil: policy.dailyUntil,
    dirtyHours: policy.dirtyHours,
    etag: policy.etag,
  });
}
