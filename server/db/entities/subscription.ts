// A subscription (002 §10): a report or time-series query whose result is pushed to a webhook
// whenever it changes, at most once per `throttleSeconds`; and the log of its delivery attempts.
// The scheduling columns (`nextEvaluationAt`, `lastResultHash`, `lastDeliveredAt`) are written
// by the subscription worker with plain SQL, so they never change the record's version (etag).
import { defineEntity, p } from "@mikro-orm/core";
import { createdAt, updatedAt, uuidPrimaryKey, version } from "./columns.js";
import { Organisation } from "./organisation.js";
import { Site } from "./site.js";

export const SUBSCRIPTION_QUERY_KINDS = ["run_report", "get_time_series"] as const;
export type SubscriptionQueryKindName = (typeof SUBSCRIPTION_QUERY_KINDS)[number];

export const DELIVERY_KINDS = ["webhook"] as const;
export type DeliveryKindName = (typeof DELIVERY_KINDS)[number];

export const SubscriptionSchema = defineEntity({
  name: "Subscription",
  tableName: "subscriptions",
  properties: {
    siteId: () => p.manyToOne(Site).mapToPk().fieldName("site_id").deleteRule("cascade"),
    id: uuidPrimaryKey(),
    organisationId: () => p.manyToOne(Organisation).mapToPk().fieldName("organisation_id"),
    /** Which ReportingService request `queryJson` is. */
    queryKind: p.enum(SUBSCRIPTION_QUERY_KINDS),
    /** The request in Connect JSON, as checked and normalised on create. */
    queryJson: p.text(),
    delivery: p.enum(DELIVERY_KINDS),
    /** An http(s) URL. */
    endpoint: p.text(),
    throttleSeconds: p.integer(),
    /** The HMAC key of the `Beacon-Signature` header (the worker needs it back, so it is not hashed). */
    signingSecret: p.text().hidden(),
    /** When the worker next evaluates the query. */
    nextEvaluationAt: p.datetime(),
    /** Fingerprint of the result last delivered; null before the first delivery. */
    lastResultHash: p.text().nullable(),
    lastDeliveredAt: p.datetime().nullable(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    version: version(),
  },
  indexes: [{ properties: ["siteId", "id"] }, { properties: ["nextEvaluationAt"] }],
});

export class Subscription extends SubscriptionSchema.class {}
SubscriptionSchema.setClass(Subscription);

/** One attempt to deliver a subscription's result, successful or not. */
export const SubscriptionDeliverySchema = defineEntity({
  name: "SubscriptionDelivery",
  tableName: "subscription_deliveries",
  properties: {
    siteId: () => p.manyToOne(Site).mapToPk().fieldName("site_id").deleteRule("cascade"),
    id: uuidPrimaryKey(),
    subscriptionId: () => p.manyToOne(Subscription).mapToPk().fieldName("subscription_id").deleteRule("cascade"),
    /** From 1; retries of one delivery count up. */
    attempt: p.integer(),
    /** The endpoint's HTTP status; 0 when it could not be reached (or the query failed). */
    statusCode: p.integer(),
    succeeded: p.boolean(),
    error: p.text(),
    durationMs: p.integer(),
    /** When it was attempted. */
    createdAt: createdAt(),
  },
  indexes: [{ properties: ["subscriptionId", "createdAt"] }],
});

export class SubscriptionDelivery extends SubscriptionDeliverySchema.class {}
SubscriptionDeliverySchema.setClass(SubscriptionDelivery);
