// Every entity, and the list handed to MikroORM. The events and sessions tables are not here:
// they are raw SQL (partitioned, written in bulk, read by aggregations), see ../migrations.
import { ApiKeySchema } from "./api-key.js";
import { AuditEntrySchema } from "./audit-entry.js";
import { DeadLetterSchema } from "./dead-letter.js";
import { GoalSchema } from "./goal.js";
import { IdempotencyRecordSchema } from "./idempotency-record.js";
import { MetricDefinitionSchema } from "./metric-definition.js";
import { OrganisationSchema } from "./organisation.js";
import { SettingSchema } from "./setting.js";
import { SiteSchema } from "./site.js";
import { SubscriptionDeliverySchema, SubscriptionSchema } from "./subscription.js";

export * from "./api-key.js";
export * from "./audit-entry.js";
export * from "./dead-letter.js";
export * from "./goal.js";
export * from "./idempotency-record.js";
export * from "./metric-definition.js";
export * from "./organisation.js";
export * from "./setting.js";
export * from "./site.js";
export * from "./subscription.js";

export const entities = [
  OrganisationSchema,
  SiteSchema,
  GoalSchema,
  ApiKeySchema,
  MetricDefinitionSchema,
  SettingSchema,
  AuditEntrySchema,
  IdempotencyRecordSchema,
  DeadLetterSchema,
  SubscriptionSchema,
  SubscriptionDeliverySchema,
];
