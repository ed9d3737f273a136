// Subscriptions (002 §10): a query whose result a worker pushes to a webhook when it changes, at
// most once per throttle. The records and their rules live here; what a query is (a RunReport or
// GetTimeSeries request) is the services' business, so the core sees it as a kind and a JSON text
// that the caller has already checked, and runs it through a SubscriptionQueryRunner.
import { randomBytes } from "node:crypto";
import type { EntityManager } from "@mikro-orm/postgresql";
import { type DeliveryKindName, Subscription, SubscriptionDelivery, type SubscriptionQueryKindName } from "../../db/entities/index.js";
import { InvalidArgumentError, NotFoundError } from "../errors.js";
import { checkEtag, flushChecked, loadSite } from "../management/access.js";
import { recordAudit, snapshot } from "../management/audit.js";
import { listPage, type Page } from "../management/paging.js";
import { requireUuid } from "../management/validate.js";
import type { Principal } from "../roles.js";

export const DEFAULT_THROTTLE_SECONDS = 60;
export const MAX_THROTTLE_SECONDS = 7 * 24 * 3600;
const MAX_QUERY_JSON = 64 * 1024;

/** A subscription's query, as the runner needs it. */
export interface SubscriptionQuery {
  organisationId: string;
  siteId: string;
  kind: SubscriptionQueryKindName;
  queryJson: string;
}

export interface EvaluatedQuery {
  /** The response, as JSON (what the webhook receives). */
  result: unknown;
  /** Equal for equal results: the response without its per-run fields (query id, timings). */
  fingerprint: string;
}

/**
 * Runs a subscription's query exactly as the ReportingService would answer it, on behalf of the
 * subscription's organisation, limited to its site. Throws core errors for bad queries.
 */
export interface SubscriptionQueryRunner {
  run(query: SubscriptionQuery, signal?: AbortSignal): Promise<EvaluatedQuery>;
}

export interface CreateSubscriptionInput {
  kind: SubscriptionQueryKindName;
  /** Checked and normalised by the caller. */
  queryJson: string;
  delivery: DeliveryKindName | undefined;
  endpoint: string;
  /** 0 for the default. */
  throttleSeconds: number;
}

export interface UpdateSubscriptionInput {
  etag: string;
  kind?: SubscriptionQueryKindName;
  queryJson?: string;
  endpoint?: string;
  throttleSeconds?: number;
}

export function checkEndpoint(field: string, value: string): string {
  const trimmed = value.trim();
  if (trimmed === "") throw new InvalidArgumentError(field, "is required: an http(s) URL");
  if (trimmed.length > 2000) throw new InvalidArgumentError(field, "must be at most 2,000 characters");
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    throw new InvalidArgumentError(field, `is not a URL: "${trimmed.slice(0, 60)}"`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new InvalidArgumentError(field, `must be an http or https URL, got "${url.protocol}"`);
  if (url.username || url.password) throw new InvalidArgumentError(field, "must not carry credentials; deliveries are authenticated by their signature");
  url.hash = "";
  return url.toString();
}

export function checkThrottle(field: string, seconds: number, fallback: number): number {
  if (seconds === 0) return fallback;
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_THROTTLE_SECONDS) {
    throw new InvalidArgumentError(field, `must be between 1 and ${MAX_THROTTLE_SECONDS} seconds (default ${DEFAULT_THROTTLE_SECONDS}), got ${seconds}`);
  }
  return seconds;
}

export function checkQueryJson(field: string, json: string): string {
  if (json.trim() === "") throw new InvalidArgumentError(field, "is required: a RunReport or GetTimeSeries request in Connect JSON");
  if (json.length > MAX_QUERY_JSON) throw new InvalidArgumentError(field, `must be at most ${MAX_QUERY_JSON} characters`);
  return json;
}

function newSigningSecret(): string {
  return `whsec_${randomBytes(32).toString("base64url")}`;
}

const resourceOf = (s: { siteId: string; id: string }) => `sites/${s.siteId}/subscriptions/${s.id}`;
// The secret never goes to the audit log; the scheduling columns are the worker's, not changes.
const auditView = (s: Subscription) => snapshot(s, ["signingSecret", "lastResultHash", "lastDeliveredAt", "nextEvaluationAt"]);

export async function createSubscription(em: EntityManager, principal: Principal, siteId: string, input: CreateSubscriptionInput): Promise<Subscription> {
  const site = await loadSite(em, principal, siteId);
  if (input.delivery !== "webhook") throw new InvalidArgumentError("delivery", "is required: DELIVERY_KIND_WEBHOOK");
  const subscription = em.create(Subscription, {
    siteId: site.id,
    organisationId: site.organisationId,
    queryKind: input.kind,
    queryJson: checkQueryJson("query_json", input.queryJson),
    delivery: input.delivery,
    endpoint: checkEndpoint("endpoint", input.endpoint),
    throttleSeconds: checkThrottle("throttle_seconds", input.throttleSeconds, DEFAULT_THROTTLE_SECONDS),
    signingSecret: newSigningSecret(),
    // Evaluated at the worker's next tick: the first result is delivered at once.
    nextEvaluationAt: new Date(),
    lastResultHash: null,
    lastDeliveredAt: null,
  });
  recordAudit(em, principal, { action: "subscription.create", resource: resourceOf(subscription), after: auditView(subscription) });
  await em.flush();
  return subscription;
}

export async function loadSubscription(em: EntityManager, principal: Principal, siteId: string, subscriptionId: string, field = "id"): Promise<Subscription> {
  const site = await loadSite(em, principal, siteId);
  const id = requireUuid(field, subscriptionId);
  const subscription = await em.findOne(Subscription, { siteId: site.id, id });
  if (!subscription) throw new NotFoundError(`subscription ${id}`, field);
  return subscription;
}

export async function listSubscriptions(em: EntityManager, principal: Principal, siteId: string, request: { pageSize: number; pageToken: string }): Promise<Page<Subscription>> {
  const site = await loadSite(em, principal, siteId);
  return listPage(em, Subscription, { siteId: site.id }, request);
}

export async function updateSubscription(em: EntityManager, principal: Principal, siteId: string, subscriptionId: string, input: UpdateSubscriptionInput): Promise<Subscription> {
  const subscription = await loadSubscription(em, principal, siteId, subscriptionId);
  const resource = resourceOf(subscription);
  checkEtag(resource, subscription, input.etag);
  const before = auditView(subscription);
  if (input.queryJson !== undefined) {
    subscription.queryJson = checkQueryJson("query_json", input.queryJson);
    if (input.kind) subscription.queryKind = input.kind;
    // A new query's first result is delivered whatever the old one's last was.
    subscription.lastResultHash = null;
  }
  if (input.endpoint !== undefined) {
    subscription.endpoint = checkEndpoint("endpoint", input.endpoint);
    subscription.lastResultHash = null;
  }
  if (input.throttleSeconds !== undefined) subscription.throttleSeconds = checkThrottle("throttle_seconds", input.throttleSeconds, subscription.throttleSeconds);
  recordAudit(em, principal, { action: "subscription.update", resource, before, after: auditView(subscription) });
  await flushChecked(em, resource);
  return subscription;
}

export async function deleteSubscription(em: EntityManager, principal: Principal, siteId: string, subscriptionId: string, etag: string): Promise<void> {
  const subscription = await loadSubscription(em, principal, siteId, subscriptionId);
  const resource = resourceOf(subscription);
  checkEtag(resource, subscription, etag);
  recordAudit(em, principal, { action: "subscription.delete", resource, before: auditView(subscription) });
  em.remove(subscription);
  await flushChecked(em, resource);
}

/** A subscription's delivery attempts, newest first. */
export async function listDeliveries(em: EntityManager, principal: Principal, siteId: string, subscriptionId: string, request: { pageSize: number; pageToken: string }): Promise<Page<SubscriptionDelivery>> {
  const subscription = await loadSubscription(em, principal, siteId, subscriptionId, "subscription_id");
  return listPage(em, SubscriptionDelivery, { subscriptionId: subscription.id }, request, true);
}
