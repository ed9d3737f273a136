// Subscriptions (002 §10): a tick every second claims the subscriptions due for evaluation and
// queues one delivery job for each; a delivery job evaluates the query and posts a changed result
// (server/core/streams/delivery.ts). A failed post that may succeed later (5xx, timeout, no
// answer) fails the job, and BullMQ retries it with backoff; one that never will (4xx, a query
// that no longer runs) fails it for good.
import type { MikroORM } from "@mikro-orm/postgresql";
import { type Job, type Queue, UnrecoverableError } from "bullmq";
import { deliverSubscription, type DeliveryDeps } from "../../server/core/streams/delivery.js";
import { claimDueSubscriptions } from "../../server/core/streams/subscription-schedule.js";
import { sqlPool } from "../../server/db/orm.js";
import type { Logger } from "../../server/logger.js";
import { JOB_NAMES, SUBSCRIPTION_DELIVERY_JOB_OPTIONS, type SubscriptionDeliveryJob, subscriptionDeliveryJobId } from "../queues.js";

export function createSubscriptionTickProcessor(deps: { orm: MikroORM; deliveries: Queue<SubscriptionDeliveryJob> }) {
  return async (): Promise<{ due: number }> => {
    const due = await claimDueSubscriptions(await sqlPool(deps.orm), new Date());
    if (due.length > 0) {
      await deps.deliveries.addBulk(due.map((subscriptionId) => ({
        name: JOB_NAMES.subscriptionDelivery,
        data: { subscriptionId },
        opts: { ...SUBSCRIPTION_DELIVERY_JOB_OPTIONS, jobId: subscriptionDeliveryJobId(subscriptionId) },
      })));
    }
    return { due: due.length };
  };
}

export function createSubscriptionDeliveryProcessor(deps: DeliveryDeps & { logger: Logger }) {
  return async (job: Job<SubscriptionDeliveryJob>): Promise<string> => {
    const result = await deliverSubscription(deps, job.data.subscriptionId, job.attemptsMade + 1);
    if (result.kind === "failed") {
      deps.logger.info("subscription delivery failed", { subscription: job.data.subscriptionId, attempt: job.attemptsMade + 1, retryable: result.retryable, err: result.error });
      if (result.retryable) throw new Error(result.error);
      throw new UnrecoverableError(result.error);
    }
    return result.kind;
  };
}
