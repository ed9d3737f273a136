// One delivery attempt of a subscription: evaluate its query, and when the result differs from
// the one last delivered, POST it signed to the endpoint and record the attempt. The caller (a
// job) retries retryable failures with backoff; every attempt re-evaluates, so a retry carries
// the newest result, and a result that went back to the delivered one is not sent at all.
import { randomUUID } from "node:crypto";
import { ForeignKeyConstraintViolationException } from "@mikro-orm/core";
import type { MikroORM } from "@mikro-orm/postgresql";
import { Subscription, SubscriptionDelivery } from "../../db/entities/index.js";
import { sqlPool } from "../../db/orm.js";
import { BeaconError } from "../errors.js";
import { markDelivered, pruneDeliveries } from "./subscription-schedule.js";
import type { SubscriptionQueryRunner } from "./subscriptions.js";
import { postWebhook, type WebhookOutcome, type WebhookRequest } from "./webhooks.js";

export interface DeliveryDeps {
  orm: MikroORM;
  queries: SubscriptionQueryRunner;
  /** How long an endpoint may take to answer. */
  timeoutMs: number;
  /** Attempts kept per subscription in its delivery log. */
  keepDeliveries: number;
  post?: (request: WebhookRequest) => Promise<WebhookOutcome>;
}

export type DeliveryResult =
  /** The subscription was deleted meanwhile. */
  | { kind: "gone" }
  /** The result is the one last delivered: nothing to send. */
  | { kind: "unchanged" }
  | { kind: "delivered"; deliveryId: string }
  | { kind: "failed"; deliveryId: string; retryable: boolean; error: string };

export async function deliverSubscription(deps: DeliveryDeps, subscriptionId: string, attempt: number): Promise<DeliveryResult> {
  const em = deps.orm.em.fork();
  const subscription = await em.findOne(Subscription, { id: subscriptionId });
  if (!subscription) return { kind: "gone" };
  const record = async (deliveryId: string, outcome: Omit<WebhookOutcome, "retryable">): Promise<boolean> => {
    em.create(SubscriptionDelivery, {
      id: deliveryId,
      siteId: subscription.siteId,
      subscriptionId: subscription.id,
      attempt,
      statusCode: outcome.statusCode,
      succeeded: outcome.succeeded,
      error: outcome.error,
      durationMs: outcome.durationMs,
    });
    try {
      await em.flush();
      return true;
    } catch (err) {
      if (err instanceof ForeignKeyConstraintViolationException) return false;
      throw err;
    }
  };

  let evaluated;
  const started = performance.now();
  try {
    evaluated = await deps.queries.run({ organisationId: subscription.organisationId, siteId: subscription.siteId, kind: subscription.queryKind, queryJson: subscription.queryJson });
  } catch (err) {
    // A query that became invalid (a goal or metric it names was deleted) fails the same way
    // every time: recorded, not retried. Anything else (the database away) is the job's to retry.
    if (!(err instanceof BeaconError)) throw err;
    const deliveryId = randomUUID();
    const error = `the query failed: ${err.message}`.slice(0, 500);
    if (!(await record(deliveryId, { statusCode: 0, succeeded: false, error, durationMs: Math.round(performance.now() - started) }))) return { kind: "gone" };
    return { kind: "failed", deliveryId, retryable: false, error };
  }
  if (evaluated.fingerprint === subscription.lastResultHash) return { kind: "unchanged" };

  const deliveryId = randomUUID();
  const body = JSON.stringify({ subscriptionId: subscription.id, siteId: subscription.siteId, evaluatedAt: new Date().toISOString(), result: evaluated.result });
  const outcome = await (deps.post ?? postWebhook)({
    endpoint: subscription.endpoint,
    body,
    secret: subscription.signingSecret,
    headers: { "Beacon-Subscription": subscription.id, "Beacon-Delivery": deliveryId },
    timeoutMs: deps.timeoutMs,
  });
  if (!(await record(deliveryId, outcome))) return { kind: "gone" };
  const pool = await sqlPool(deps.orm);
  await pruneDeliveries(pool, subscription.id, deps.keepDeliveries);
  if (!outcome.succeeded) return { kind: "failed", deliveryId, retryable: outcome.retryable, error: outcome.error };
  await markDelivered(pool, subscription.id, evaluated.fingerprint, new Date());
  return { kind: "delivered", deliveryId };
}
