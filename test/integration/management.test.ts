// ManagementService acceptance against a real server (Postgres, Redis, port 0) through the Connect
// client over HTTP/1.1: who may do what, the site lifecycle with paging, etags, idempotent creates
// and the audit log, every other resource, and InvalidArgument naming the field for bad input.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { AuditEntry } from "../../gen/beacon/v1/audit_pb.js";
import { Aggregation, ErrorDetailSchema, Role } from "../../gen/beacon/v1/common_pb.js";
import { GoalMatchType, GoalType } from "../../gen/beacon/v1/goal_pb.js";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { MetricType } from "../../gen/beacon/v1/metric_definition_pb.js";
import { startTestBeacon, type TestBeacon } from "../support/beacon.js";

type Management = Client<typeof ManagementService>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MISSING_ID = "00000000-0000-4000-8000-000000000000";

let beacon: TestBeacon;
/** The bootstrapped organisation's admin client. */
let admin: Management;

function authorization(key: string): Interceptor {
  return (next) => (req) => {
    req.header.set("Authorization", `Bearer ${key}`);
    return next(req);
  };
}

/** A Connect client over HTTP/1.1 sending `key` as a Bearer token (none when undefined). */
function clientFor(key: string | undefined): Management {
  const transport = createConnectTransport({
    baseUrl: beacon.baseUrl,
    httpVersion: "1.1",
    interceptors: key === undefined ? [] : [authorization(key)],
  });
  return createClient(ManagementService, transport);
}

/** The ConnectError a call fails with; fails the test if the call succeeds. */
async function failure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail, but it succeeded");
}

async function expectCode(call: Promise<unknown>, code: Code): Promise<ConnectError> {
  const err = await failure(call);
  expect(Code[err.code], err.rawMessage).toBe(Code[code]);
  return err;
}

/** A new organisation with its own admin client, for tests that count what an organisation has. */
async function freshOrganisation(name: string): Promise<{ organisationId: string; key: string; client: Management }> {
  const organisationId = await beacon.makeOrganisation(name);
  const key = await beacon.makeKey("admin", { organisationId });
  return { organisationId, key, client: clientFor(key) };
}

let domainCounter = 0;
/** A domain no other test in this file uses (domains are unique within an organisation). */
function uniqueDomain(hint: string): string {
  domainCounter++;
  return `${hint}-${domainCounter}.example.com`;
}

/** Records in the order lists return them: by creation time, then id. */
function inCreationOrder<T extends { id: string; createTime?: { seconds: bigint; nanos: number } }>(records: T[]): string[] {
  const time = (r: T) => (r.createTime ? r.createTime.seconds * 1_000_000_000n + BigInt(r.createTime.nanos) : 0n);
  return [...records].sort((a, b) => (time(a) === time(b) ? (a.id < b.id ? -1 : 1) : time(a) < time(b) ? -1 : 1)).map((r) => r.id);
}

/**
 * Checks audit entries come newest first and hold `expected` (actions, newest first). Entries
 * written in the same millisecond have no defined order between them, so those compare as a set.
 */
function expectAuditActions(entries: AuditEntry[], expected: string[]): void {
  const times = entries.map((e) => (e.createTime ? e.createTime.seconds * 1_000_000_000n + BigInt(e.createTime.nanos) : 0n));
  for (let i = 1; i < times.length; i++) expect(times[i] <= times[i - 1], "audit entries newest first").toBe(true);
  const actions = entries.map((e) => e.action);
  if (new Set(times).size === times.length) expect(actions).toEqual(expected);
  else expect([...actions].sort()).toEqual([...expected].sort());
}

async function createSite(client: Management, hint: string) {
  const { site } = await client.createSite({ domain: uniqueDomain(hint) });
  if (!site) throw new Error("CreateSite returned no site");
  return site;
}

beforeAll(async () => {
  beacon = await startTestBeacon("management");
  admin = clientFor(beacon.adminKey);
});

afterAll(async () => {
  await beacon?.stop();
});

describe("authentication and authorisation", () => {
  it("refuses a call without a key, and with a key that does not exist", async () => {
    await expectCode(clientFor(undefined).listSites({}), Code.Unauthenticated);
    await expectCode(clientFor("bk_this-key-was-never-issued").listSites({}), Code.Unauthenticated);
    await expectCode(clientFor(undefined).getMyPermissions({}), Code.Unauthenticated);
  });

  it("lets a viewer read but not mutate", async () => {
    const site = await createSite(admin, "viewer");
    const viewer = clientFor(await beacon.makeKey("viewer"));
    expect((await viewer.getSite({ id: site.id })).site?.id).toBe(site.id);
    await expectCode(viewer.createSite({ domain: uniqueDomain("viewer-create") }), Code.PermissionDenied);
    await expectCode(viewer.createGoal({ siteId: site.id, name: "Signup", type: GoalType.DESTINATION, value: "/signup" }), Code.PermissionDenied);
    await expectCode(viewer.createApiKey({ displayName: "escalation", role: Role.VIEWER }), Code.PermissionDenied);
    await expectCode(viewer.updateSettings({ maxCardinality: 10 }), Code.PermissionDenied);
  });

  it("lets an analyst create goals but not sites", async () => {
    const site = await createSite(admin, "analyst");
    const analyst = clientFor(await beacon.makeKey("analyst"));
    const { goal } = await analyst.createGoal({ siteId: site.id, name: "Pricing", type: GoalType.DESTINATION, value: "/pricing" });
    expect(goal?.siteId).toBe(site.id);
    await expectCode(analyst.createSite({ domain: uniqueDomain("analyst-create") }), Code.PermissionDenied);
    await expectCode(analyst.createApiKey({ displayName: "admin please", role: Role.ADMIN }), Code.PermissionDenied);
  });

  it("hides another organisation's sites as not found", async () => {
    const other = await freshOrganisation("Organisation B");
    const theirSite = await createSite(other.client, "org-b");
    await expectCode(admin.getSite({ id: theirSite.id }), Code.NotFound);
    await expectCode(admin.updateSite({ id: theirSite.id, name: "taken over" }), Code.NotFound);
    await expectCode(admin.listGoals({ siteId: theirSite.id }), Code.NotFound);
    await expectCode(admin.createGoal({ siteId: theirSite.id, name: "Steal", type: GoalType.DESTINATION, value: "/" }), Code.NotFound);
    await expectCode(admin.deleteSite({ id: theirSite.id }), Code.NotFound);
    const { sites } = await admin.listSites({ pageSize: 1000 });
    expect(sites.map((s) => s.id)).not.toContain(theirSite.id);
    // And it is untouched.
    expect((await other.client.getSite({ id: theirSite.id })).site?.name).toBe(theirSite.name);
  });

  it("limits a key with site ids to those sites", async () => {
    const { client, organisationId } = await freshOrganisation("Limited keys");
    const x = await createSite(client, "site-x");
    const y = await createSite(client, "site-y");
    const limited = clientFor(await beacon.makeKey("viewer", { organisationId, siteIds: [x.id] }));
    expect((await limited.getSite({ id: x.id })).site?.id).toBe(x.id);
    await expectCode(limited.getSite({ id: y.id }), Code.NotFound);
    await expectCode(limited.listGoals({ siteId: y.id }), Code.NotFound);
    const { sites } = await limited.listSites({});
    expect(sites.map((s) => s.id)).toEqual([x.id]);
    const { permissions } = await limited.getMyPermissions({});
    expect(permissions?.siteIds).toEqual([x.id]);
  });
});

describe("site lifecycle", () => {
  it("creates, reads, pages, updates with etags, deletes, and audits each change", async () => {
    const actorKeyId = (await admin.getMyPermissions({})).permissions!.keyId;
    expect(actorKeyId).toMatch(UUID);

    const domain = uniqueDomain("lifecycle");
    const { site } = await admin.createSite({ domain, name: "Lifecycle", timezone: "Europe/Paris", currency: "eur", industry: "retail" });
    expect(site?.id).toMatch(UUID);
    expect(site?.trackingId).toMatch(/^BK-[0-9A-Z]{8}$/);
    expect(site).toMatchObject({ domain, name: "Lifecycle", timezone: "Europe/Paris", currency: "EUR", industry: "retail", organisationId: beacon.organisationId });
    expect(site?.etag).not.toBe("");

    const got = (await admin.getSite({ id: site!.id })).site;
    expect(got?.trackingId).toBe(site?.trackingId);
    expect(got?.etag).toBe(site?.etag);

    // Someone else's update makes our etag stale.
    const first = (await admin.updateSite({ id: site!.id, etag: site!.etag, name: "Renamed once" })).site!;
    expect(first.etag).not.toBe(site!.etag);
    const stale = await expectCode(admin.updateSite({ id: site!.id, etag: site!.etag, name: "Lost update" }), Code.Aborted);
    expect(stale.findDetails(ErrorDetailSchema)[0]?.reason).toBe("STALE_ETAG");
    const second = (await admin.updateSite({ id: site!.id, etag: first.etag, name: "Renamed twice", timezone: "Asia/Tokyo" })).site!;
    expect(second.name).toBe("Renamed twice");
    expect(second.timezone).toBe("Asia/Tokyo");
    expect(second.etag).not.toBe(first.etag);
    expect((await admin.getSite({ id: site!.id })).site?.name).toBe("Renamed twice");

    await expectCode(admin.deleteSite({ id: site!.id, etag: first.etag }), Code.Aborted);
    await admin.deleteSite({ id: site!.id, etag: second.etag });
    await expectCode(admin.getSite({ id: site!.id }), Code.NotFound);
    const { sites } = await admin.listSites({ pageSize: 1000 });
    expect(sites.map((s) => s.id)).not.toContain(site!.id);

    const { auditEntries } = await admin.listAuditEntries({ resource: `sites/${site!.id}` });
    expectAuditActions(auditEntries, ["site.delete", "site.update", "site.update", "site.create"]);
    for (const entry of auditEntries) {
      expect(entry.actorKeyId).toBe(actorKeyId);
      expect(entry.resource).toBe(`sites/${site!.id}`);
    }
    const created = auditEntries.find((e) => e.action === "site.create")!;
    const secondUpdate = auditEntries.find((e) => e.action === "site.update" && e.after?.name === "Renamed twice")!;
    const deleted = auditEntries.find((e) => e.action === "site.delete")!;
    expect(created.after?.domain).toBe(domain);
    expect(secondUpdate.before?.name).toBe("Renamed once");
    expect(secondUpdate.after?.name).toBe("Renamed twice");
    expect(secondUpdate.before?.timezone).toBe("Europe/Paris");
    expect(secondUpdate.after?.timezone).toBe("Asia/Tokyo");
    expect(deleted.before?.name).toBe("Renamed twice");

    const byAction = await admin.listAuditEntries({ action: "site.delete", actorKeyId });
    expect(byAction.auditEntries.map((e) => e.resource)).toContain(`sites/${site!.id}`);
  });

  it("pages through sites: 3 sites at page_size 2 are 2 then 1, with no duplicates", async () => {
    const { client } = await freshOrganisation("Paging");
    const made = [];
    for (const hint of ["page-a", "page-b", "page-c"]) made.push(await createSite(client, hint));

    const firstPage = await client.listSites({ pageSize: 2 });
    expect(firstPage.sites).toHaveLength(2);
    expect(firstPage.nextPageToken).not.toBe("");
    const secondPage = await client.listSites({ pageSize: 2, pageToken: firstPage.nextPageToken });
    expect(secondPage.sites).toHaveLength(1);
    expect(secondPage.nextPageToken).toBe("");

    const ids = [...firstPage.sites, ...secondPage.sites].map((s) => s.id);
    expect(new Set(ids).size).toBe(3);
    // Oldest first, by creation.
    expect(ids).toEqual(inCreationOrder(made));

    // The audit log pages the same way, newest first.
    const all = (await client.listAuditEntries({})).auditEntries;
    // The admin key's creation, then the three sites'.
    expectAuditActions(all, ["site.create", "site.create", "site.create", "api_key.create"]);
    const auditFirst = await client.listAuditEntries({ pageSize: 3 });
    const auditSecond = await client.listAuditEntries({ pageSize: 3, pageToken: auditFirst.nextPageToken });
    expect(auditSecond.auditEntries).toHaveLength(1);
    expect(auditFirst.nextPageToken).not.toBe("");
    expect(auditSecond.nextPageToken).toBe("");
    expect([...auditFirst.auditEntries, ...auditSecond.auditEntries].map((e) => e.id)).toEqual(all.map((e) => e.id));
  });

  it("returns the first site when a create is retried with the same request_id", async () => {
    const { client } = await freshOrganisation("Idempotent field");
    const request = { domain: uniqueDomain("retry"), name: "Retried", requestId: "create-site-1" };
    const first = (await client.createSite(request)).site!;
    const retry = (await client.createSite(request)).site!;
    expect(retry.id).toBe(first.id);
    expect(retry.trackingId).toBe(first.trackingId);
    const { sites } = await client.listSites({});
    expect(sites.map((s) => s.id)).toEqual([first.id]);
    const { auditEntries } = await client.listAuditEntries({ action: "site.create" });
    expect(auditEntries).toHaveLength(1);
  });

  it("returns the first site to retries that race it with the same request_id", async () => {
    const { client } = await freshOrganisation("Idempotent race");
    const request = { domain: uniqueDomain("race"), requestId: "create-site-race" };
    // Sent together, so the retries can reach the database while the first create is in flight.
    const results = await Promise.allSettled([client.createSite(request), client.createSite(request), client.createSite(request)]);
    const outcomes = results.map((r) => (r.status === "fulfilled" ? r.value.site!.id : ConnectError.from(r.reason).message));
    const { sites } = await client.listSites({});
    expect(sites).toHaveLength(1);
    expect(outcomes).toEqual([sites[0].id, sites[0].id, sites[0].id]);
  });

  it("returns the first site when a create is retried with the same Idempotency-Key header", async () => {
    const { client } = await freshOrganisation("Idempotent header");
    const request = { domain: uniqueDomain("header-retry") };
    const headers = { "Idempotency-Key": "3c1f0e3e-header-key" };
    const first = (await client.createSite(request, { headers })).site!;
    const retry = (await client.createSite(request, { headers })).site!;
    expect(retry.id).toBe(first.id);
    const { sites } = await client.listSites({});
    expect(sites).toHaveLength(1);
  });

  it("refuses a request_id reused for a different request, naming request_id", async () => {
    const { client } = await freshOrganisation("Idempotent misuse");
    await client.createSite({ domain: uniqueDomain("reuse"), requestId: "reused-id" });
    const err = await expectCode(client.createSite({ domain: uniqueDomain("reuse-other"), requestId: "reused-id" }), Code.InvalidArgument);
    expect(err.rawMessage).toContain("request_id");
    expect(err.findDetails(ErrorDetailSchema)[0]?.field).toBe("request_id");
    expect((await client.listSites({})).sites).toHaveLength(1);
  });

  it("refuses a second site for the same domain", async () => {
    const domain = uniqueDomain("duplicate");
    await admin.createSite({ domain });
    const err = await expectCode(admin.createSite({ domain }), Code.AlreadyExists);
    expect(err.rawMessage).toContain("domain");
  });
});

describe("goals", () => {
  it("creates, reads, lists, updates with etags and deletes goals", async () => {
    const site = await createSite(admin, "goals");
    const { goal } = await admin.createGoal({ siteId: site.id, name: "Checkout", type: GoalType.DESTINATION, matchType: GoalMatchType.STARTS_WITH, value: "/checkout", valueNumeric: 12.5 });
    expect(goal).toMatchObject({ siteId: site.id, name: "Checkout", type: GoalType.DESTINATION, matchType: GoalMatchType.STARTS_WITH, value: "/checkout", valueNumeric: 12.5 });
    const event = (await admin.createGoal({ siteId: site.id, name: "Signup", type: GoalType.EVENT, value: "signup", propertyKey: "plan", propertyValue: "pro" })).goal!;
    expect(event.matchType).toBe(GoalMatchType.EQUALS);
    expect(event.propertyKey).toBe("plan");

    expect((await admin.getGoal({ siteId: site.id, id: goal!.id })).goal?.name).toBe("Checkout");
    const { goals } = await admin.listGoals({ siteId: site.id });
    expect(goals.map((g) => g.id)).toEqual(inCreationOrder([goal!, event]));

    const updated = (await admin.updateGoal({ siteId: site.id, id: goal!.id, etag: goal!.etag, name: "Checkout started" })).goal!;
    expect(updated.name).toBe("Checkout started");
    expect(updated.etag).not.toBe(goal!.etag);
    await expectCode(admin.updateGoal({ siteId: site.id, id: goal!.id, etag: goal!.etag, name: "stale" }), Code.Aborted);
    await expectCode(admin.createGoal({ siteId: site.id, name: "Signup", type: GoalType.EVENT, value: "signup" }), Code.AlreadyExists);

    await admin.deleteGoal({ siteId: site.id, id: goal!.id, etag: updated.etag });
    await expectCode(admin.getGoal({ siteId: site.id, id: goal!.id }), Code.NotFound);
    expect((await admin.listGoals({ siteId: site.id })).goals.map((g) => g.id)).toEqual([event.id]);

    const { auditEntries } = await admin.listAuditEntries({ resource: `sites/${site.id}/goals/${goal!.id}` });
    expectAuditActions(auditEntries, ["goal.delete", "goal.update", "goal.create"]);
  });
});

describe("API keys", () => {
  it("creates a key whose secret works, and revoking it makes it unauthenticated", async () => {
    const { apiKey, secret } = await admin.createApiKey({ displayName: "dashboard", role: Role.VIEWER });
    expect(apiKey?.id).toMatch(UUID);
    expect(apiKey?.role).toBe(Role.VIEWER);
    expect(secret).not.toBe("");
    expect(secret.startsWith(apiKey!.prefix)).toBe(true);

    const dashboard = clientFor(secret);
    const { permissions } = await dashboard.getMyPermissions({});
    expect(permissions).toMatchObject({ keyId: apiKey!.id, role: Role.VIEWER, organisationId: beacon.organisationId });
    await dashboard.listSites({});

    expect((await admin.getApiKey({ id: apiKey!.id })).apiKey?.displayName).toBe("dashboard");
    expect((await admin.listApiKeys({})).apiKeys.map((k) => k.id)).toContain(apiKey!.id);

    const revoked = (await admin.revokeApiKey({ id: apiKey!.id, etag: apiKey!.etag })).apiKey!;
    expect(revoked.revokeTime).toBeDefined();
    await expectCode(dashboard.listSites({}), Code.Unauthenticated);
    expect((await admin.listApiKeys({})).apiKeys.map((k) => k.id)).not.toContain(apiKey!.id);
    expect((await admin.listApiKeys({ showRevoked: true })).apiKeys.map((k) => k.id)).toContain(apiKey!.id);

    const audit = await admin.listAuditEntries({ resource: `api-keys/${apiKey!.id}` });
    expectAuditActions(audit.auditEntries, ["api_key.revoke", "api_key.create"]);
    // The stored hash never reaches the audit log.
    expect(audit.auditEntries.every((e) => e.after?.hash === undefined && e.before?.hash === undefined)).toBe(true);
  });

  it("answers a retried create with the same key id and an empty secret", async () => {
    const request = { displayName: "ci", role: Role.ANALYST, requestId: "create-key-ci" };
    const first = await admin.createApiKey(request);
    expect(first.secret).not.toBe("");
    const retry = await admin.createApiKey(request);
    expect(retry.apiKey?.id).toBe(first.apiKey?.id);
    expect(retry.secret).toBe("");
    const named = (await admin.listApiKeys({ pageSize: 1000 })).apiKeys.filter((k) => k.displayName === "ci");
    expect(named).toHaveLength(1);
  });
});

describe("metric definitions", () => {
  it("creates, reads by id and by name, updates with etags and deletes", async () => {
    const { metricDefinition } = await admin.createMetricDefinition({ name: "checkout.duration", type: MetricType.TIMING, unit: "ms", tags: ["region"] });
    const created = metricDefinition!;
    expect(created).toMatchObject({ name: "checkout.duration", type: MetricType.TIMING, unit: "ms", tags: ["region"], aggregationDefault: Aggregation.P95 });

    expect((await admin.getMetricDefinition({ id: created.id })).metricDefinition?.name).toBe("checkout.duration");
    expect((await admin.getMetricDefinition({ id: "checkout.duration" })).metricDefinition?.id).toBe(created.id);
    expect((await admin.listMetricDefinitions({})).metricDefinitions.map((m) => m.id)).toContain(created.id);
    await expectCode(admin.createMetricDefinition({ name: "checkout.duration", type: MetricType.GAUGE }), Code.AlreadyExists);

    const updated = (await admin.updateMetricDefinition({ id: created.id, etag: created.etag, description: "Time to pay", aggregationDefault: Aggregation.P99 })).metricDefinition!;
    expect(updated.description).toBe("Time to pay");
    expect(updated.aggregationDefault).toBe(Aggregation.P99);
    expect(updated.etag).not.toBe(created.etag);
    await expectCode(admin.updateMetricDefinition({ id: created.id, etag: created.etag, unit: "s" }), Code.Aborted);

    await admin.deleteMetricDefinition({ id: created.id, etag: updated.etag });
    await expectCode(admin.getMetricDefinition({ id: created.id }), Code.NotFound);
    await expectCode(admin.getMetricDefinition({ id: "checkout.duration" }), Code.NotFound);

    const { auditEntries } = await admin.listAuditEntries({ resource: `metric-definitions/${created.id}` });
    expectAuditActions(auditEntries, ["metric_definition.delete", "metric_definition.update", "metric_definition.create"]);
  });
});

describe("settings and quotas", () => {
  it("reads and updates settings, refusing a stale etag", async () => {
    const { client } = await freshOrganisation("Settings");
    const before = (await client.getSettings({})).settings!;
    expect(before.maxCardinality).toBeGreaterThan(0);
    // An organisation that never changed its settings still has a real etag.
    expect(before.etag).toMatch(/^\w+$/);
    expect(before.etag).not.toBe("undefined");

    const changed = (await client.updateSettings({ etag: before.etag, maxCardinality: 5000, defaultRetentionDays: 400 })).settings!;
    expect(changed.maxCardinality).toBe(5000);
    expect(changed.defaultRetentionDays).toBe(400);
    expect(changed.etag).not.toBe(before.etag);

    await expectCode(client.updateSettings({ etag: before.etag, maxCardinality: 6000 }), Code.Aborted);
    const again = (await client.updateSettings({ etag: changed.etag, maxCardinality: 6000, updateAllowedConnectors: true, allowedConnectors: ["webhook", "slack"] })).settings!;
    expect(again.maxCardinality).toBe(6000);
    expect(again.defaultRetentionDays).toBe(400);
    expect(again.allowedConnectors).toEqual(["webhook", "slack"]);
    expect((await client.getSettings({})).settings).toMatchObject({ maxCardinality: 6000, etag: again.etag });
    const audit = (await client.listAuditEntries({ resource: "settings" })).auditEntries;
    expectAuditActions(audit, ["settings.update", "settings.update"]);
    const latest = audit.find((e) => e.after?.maxCardinality === 6000)!;
    expect(latest.before?.maxCardinality).toBe(5000);
  });

  it("reads and updates quotas, refusing a stale etag", async () => {
    const { client } = await freshOrganisation("Quotas");
    const before = (await client.getQuotas({})).quotas!;
    expect(before.eventsThisMonth).toBe(0n);
    expect(before.etag).not.toBe("undefined");

    const changed = (await client.updateQuotas({ etag: before.etag, eventsPerMonth: 1_000_000n, maxConcurrentStreams: 5 })).quotas!;
    expect(changed.eventsPerMonth).toBe(1_000_000n);
    expect(changed.maxConcurrentStreams).toBe(5);
    expect(changed.etag).not.toBe(before.etag);

    await expectCode(client.updateQuotas({ etag: before.etag, maxSites: 3 }), Code.Aborted);
    const again = (await client.updateQuotas({ etag: changed.etag, maxSites: 3 })).quotas!;
    expect(again).toMatchObject({ maxSites: 3, maxConcurrentStreams: 5, eventsPerMonth: 1_000_000n });
    expectAuditActions((await client.listAuditEntries({ resource: "quotas" })).auditEntries, ["quotas.update", "quotas.update"]);
    // Quotas and settings have separate etags: changing one leaves the other's valid.
    const settings = (await client.getSettings({})).settings!;
    await client.updateQuotas({ etag: again.etag, queriesPerMinute: 100 });
    await client.updateSettings({ etag: settings.etag, ingestRateLimit: 50 });
  });

  it("answers Aborted, not Internal, to the loser of two racing first updates", async () => {
    for (const [what, update] of [
      ["settings", (c: Management) => c.updateSettings({ maxCardinality: 7 })],
      ["quotas", (c: Management) => c.updateQuotas({ maxSites: 7 })],
    ] as const) {
      const { client } = await freshOrganisation(`Racing ${what}`);
      // Neither organisation has a settings row yet, so both updates try to create it.
      const results = await Promise.allSettled([update(client), update(client)]);
      const codes = results.map((r) => (r.status === "fulfilled" ? "ok" : Code[ConnectError.from(r.reason).code]));
      expect(codes, what).toContain("ok");
      for (const code of codes) expect(["ok", "Aborted"], what).toContain(code);
    }
  });
});

describe("organisation, permissions and dead letters", () => {
  it("tells a key its role and permissions", async () => {
    const { permissions } = await admin.getMyPermissions({});
    expect(permissions?.role).toBe(Role.ADMIN);
    expect(permissions?.organisationId).toBe(beacon.organisationId);
    expect(permissions?.permissions).toEqual(expect.arrayContaining(["sites.write", "keys.write", "audit.read", "sites.read"]));

    const viewer = (await clientFor(await beacon.makeKey("viewer")).getMyPermissions({})).permissions!;
    expect(viewer.role).toBe(Role.VIEWER);
    expect(viewer.permissions).toContain("sites.read");
    expect(viewer.permissions).not.toContain("sites.write");
    expect(viewer.permissions).not.toContain("goals.write");
    const analyst = (await clientFor(await beacon.makeKey("analyst")).getMyPermissions({})).permissions!;
    expect(analyst.role).toBe(Role.ANALYST);
    expect(analyst.permissions).toContain("goals.write");
    expect(analyst.permissions).not.toContain("sites.write");
  });

  it("reads and renames the caller's organisation", async () => {
    const { client, organisationId } = await freshOrganisation("Before rename");
    const organisation = (await client.getOrganisation({})).organisation!;
    expect(organisation).toMatchObject({ id: organisationId, name: "Before rename" });
    expect((await client.getOrganisation({ id: organisationId })).organisation?.id).toBe(organisationId);
    expect((await client.listOrganisations({})).organisations.map((o) => o.id)).toEqual([organisationId]);
    await expectCode(client.getOrganisation({ id: beacon.organisationId }), Code.NotFound);

    const renamed = (await client.updateOrganisation({ id: organisationId, etag: organisation.etag, name: "After rename" })).organisation!;
    expect(renamed.name).toBe("After rename");
    expect(renamed.etag).not.toBe(organisation.etag);
    await expectCode(client.updateOrganisation({ id: organisationId, etag: organisation.etag, name: "Stale" }), Code.Aborted);
    expect((await client.getOrganisation({})).organisation?.name).toBe("After rename");
    const [audit] = (await client.listAuditEntries({ action: "organisation.update" })).auditEntries;
    expect(audit).toMatchObject({ resource: `organisations/${organisationId}`, before: { name: "Before rename" }, after: { name: "After rename" } });
    await expectCode(client.updateOrganisation({ id: beacon.organisationId, name: "Hijack" }), Code.NotFound);
  });

  it("lists no dead letters for a new site", async () => {
    const site = await createSite(admin, "dead-letters");
    const { deadLetters, nextPageToken } = await admin.listDeadLetters({ siteId: site.id });
    expect(deadLetters).toEqual([]);
    expect(nextPageToken).toBe("");
  });
});

describe("bad input", () => {
  // Resources the bad requests refer to, so each request fails on the field under test.
  let siteId: string;
  let goalId: string;

  beforeAll(async () => {
    siteId = (await createSite(admin, "bad-input")).id;
    goalId = (await admin.createGoal({ siteId, name: "Landing", type: GoalType.DESTINATION, value: "/landing" })).goal!.id;
    await admin.createMetricDefinition({ name: "bad.input.metric", type: MetricType.COUNTER });
  });

  // GetMyPermissions, GetSettings and GetQuotas take no input, so have no bad input.
  const cases: [rpc: string, call: (c: Management) => Promise<unknown>, field: string][] = [
    ["GetOrganisation id", (c) => c.getOrganisation({ id: "not-a-uuid" }), "id"],
    ["ListOrganisations page_size", (c) => c.listOrganisations({ pageSize: 5000 }), "page_size"],
    ["ListOrganisations page_token", (c) => c.listOrganisations({ pageToken: "garbage" }), "page_token"],
    ["UpdateOrganisation name", (c) => c.updateOrganisation({ name: "   " }), "name"],
    ["UpdateOrganisation id", (c) => c.updateOrganisation({ id: "x", name: "x" }), "id"],
    ["CreateSite domain with scheme and path", (c) => c.createSite({ domain: "http://x/y" }), "domain"],
    ["CreateSite missing domain", (c) => c.createSite({}), "domain"],
    ["CreateSite timezone", (c) => c.createSite({ domain: uniqueDomain("tz"), timezone: "Mars/Base" }), "timezone"],
    ["CreateSite currency", (c) => c.createSite({ domain: uniqueDomain("cur"), currency: "XXXX" }), "currency"],
    ["CreateSite settings", (c) => c.createSite({ domain: uniqueDomain("settings"), settings: { sessionTimeoutMinutes: 0 } }), "settings.session_timeout_minutes"],
    ["CreateSite request_id too long", (c) => c.createSite({ domain: uniqueDomain("rid"), requestId: "r".repeat(201) }), "request_id"],
    ["GetSite id", (c) => c.getSite({ id: "not-a-uuid" }), "id"],
    ["ListSites page_size", (c) => c.listSites({ pageSize: 5000 }), "page_size"],
    ["ListSites page_token", (c) => c.listSites({ pageToken: "garbage" }), "page_token"],
    ["UpdateSite id", (c) => c.updateSite({ id: "not-a-uuid", name: "x" }), "id"],
    ["UpdateSite timezone", (c) => c.updateSite({ id: siteId, timezone: "Mars/Base" }), "timezone"],
    ["UpdateSite domain", (c) => c.updateSite({ id: siteId, domain: "https://example.com/" }), "domain"],
    ["DeleteSite id", (c) => c.deleteSite({ id: "not-a-uuid" }), "id"],
    ["CreateGoal missing type", (c) => c.createGoal({ siteId, name: "No type", value: "/x" }), "type"],
    ["CreateGoal destination without /", (c) => c.createGoal({ siteId, name: "No slash", type: GoalType.DESTINATION, value: "pricing" }), "value"],
    ["CreateGoal bad regex", (c) => c.createGoal({ siteId, name: "Bad regex", type: GoalType.DESTINATION, matchType: GoalMatchType.REGEX, value: "/(unclosed" }), "value"],
    ["CreateGoal missing name", (c) => c.createGoal({ siteId, type: GoalType.DESTINATION, value: "/x" }), "name"],
    ["CreateGoal site_id", (c) => c.createGoal({ siteId: "nope", name: "x", type: GoalType.DESTINATION, value: "/x" }), "site_id"],
    ["GetGoal id", (c) => c.getGoal({ siteId, id: "nope" }), "id"],
    ["ListGoals site_id", (c) => c.listGoals({ siteId: "nope" }), "site_id"],
    ["ListGoals page_size", (c) => c.listGoals({ siteId, pageSize: 5000 }), "page_size"],
    ["UpdateGoal value", (c) => c.updateGoal({ siteId, id: goalId, value: "no-slash" }), "value"],
    ["DeleteGoal id", (c) => c.deleteGoal({ siteId, id: "nope" }), "id"],
    ["CreateApiKey missing role", (c) => c.createApiKey({ displayName: "no role" }), "role"],
    ["CreateApiKey missing display_name", (c) => c.createApiKey({ role: Role.VIEWER }), "display_name"],
    ["CreateApiKey site_ids", (c) => c.createApiKey({ displayName: "bad site", role: Role.VIEWER, siteIds: ["nope"] }), "site_ids[0]"],
    ["GetApiKey id", (c) => c.getApiKey({ id: "nope" }), "id"],
    ["ListApiKeys page_token", (c) => c.listApiKeys({ pageToken: "garbage" }), "page_token"],
    ["RevokeApiKey id", (c) => c.revokeApiKey({ id: "nope" }), "id"],
    ["CreateMetricDefinition name", (c) => c.createMetricDefinition({ name: "9 Bad Name", type: MetricType.COUNTER }), "name"],
    ["CreateMetricDefinition missing type", (c) => c.createMetricDefinition({ name: "no.type" }), "type"],
    ["CreateMetricDefinition tags", (c) => c.createMetricDefinition({ name: "bad.tags", type: MetricType.COUNTER, tags: ["no spaces"] }), "tags[0]"],
    ["CreateMetricDefinition formula", (c) => c.createMetricDefinition({ name: "bad.formula", formula: "a + (b" }), "formula"],
    ["GetMetricDefinition id", (c) => c.getMetricDefinition({ id: "" }), "id"],
    ["ListMetricDefinitions page_size", (c) => c.listMetricDefinitions({ pageSize: -1 }), "page_size"],
    ["UpdateMetricDefinition retention_days", (c) => c.updateMetricDefinition({ id: "bad.input.metric", retentionDays: -5 }), "retention_days"],
    ["DeleteMetricDefinition id", (c) => c.deleteMetricDefinition({ id: "" }), "id"],
    ["UpdateSettings max_cardinality", (c) => c.updateSettings({ maxCardinality: 0 }), "max_cardinality"],
    ["UpdateSettings default_retention_days", (c) => c.updateSettings({ defaultRetentionDays: -1 }), "default_retention_days"],
    ["UpdateQuotas max_concurrent_streams", (c) => c.updateQuotas({ maxConcurrentStreams: 0 }), "max_concurrent_streams"],
    ["UpdateQuotas events_per_month", (c) => c.updateQuotas({ eventsPerMonth: -1n }), "events_per_month"],
    ["ListAuditEntries actor_key_id", (c) => c.listAuditEntries({ actorKeyId: "x" }), "actor_key_id"],
    ["ListAuditEntries page_token", (c) => c.listAuditEntries({ pageToken: "garbage" }), "page_token"],
    ["ListDeadLetters site_id", (c) => c.listDeadLetters({ siteId: "x" }), "site_id"],
    ["ListDeadLetters page_size", (c) => c.listDeadLetters({ siteId, pageSize: 5000 }), "page_size"],
  ];

  it.each(cases)("%s → InvalidArgument naming the field", async (_rpc, call, field) => {
    const err = await expectCode(call(admin), Code.InvalidArgument);
    expect(err.rawMessage).toContain(field);
    const [detail] = err.findDetails(ErrorDetailSchema);
    expect(detail?.reason).toBe("INVALID_FIELD");
    expect(detail?.field).toBe(field);
  });

  it("changes nothing when a request is refused", async () => {
    const { sites } = await admin.listSites({ pageSize: 1000 });
    expect(sites.some((s) => s.domain.startsWith("tz-") || s.domain.startsWith("cur-") || s.domain.startsWith("settings-"))).toBe(false);
    const { goals } = await admin.listGoals({ siteId });
    expect(goals.map((g) => g.name)).toEqual(["Landing"]);
    const settings = (await admin.getSettings({})).settings!;
    expect(settings.maxCardinality).toBeGreaterThan(0);
  });
});
