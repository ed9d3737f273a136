// Subscriptions (002 §10) against a real Beacon with its workers in process, the subscription
// workers included (their query runner built as server/main.ts builds it): the API (create with
// its secret once, get, list, update with etags, delete, audit entries, bad input, roles), and a
// webhook receiver in the test that answers 500 once: the delivery is retried and succeeds, every
// request carries a valid HMAC signature, deliveries are never closer together than
// throttle_seconds while the result keeps changing, nothing is sent while it does not, and
// ListDeliveries shows every attempt.
import { createHmac } from "node:crypto";
import http from "node:http";
import type net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { StreamingService } from "../../gen/beacon/v1/streaming_service_pb.js";
import { DeliveryKind, SubscriptionQueryKind } from "../../gen/beacon/v1/subscription_pb.js";
import { TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";
import { verifySignature } from "../../server/core/streams/webhooks.js";
import { createLogger } from "../../server/logger.js";
import { buildSubscriptionQueryRunner } from "../../server/services/subscription-queries.js";
import { startWorkers, type Workers } from "../../workers/main.js";
import { startTestBeacon, type TestBeacon } from "../support/beacon.js";
import { caller, createSite, eventually, pageview, type TestSite } from "./streaming-helpers.js";

let beacon: TestBeacon;
let workers: Workers;
let management: Client<typeof ManagementService>;
let tracking: Client<typeof TrackingService>;
let analyst: Client<typeof StreamingService>;
let viewer: Client<typeof StreamingService>;

const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
const today = new Date().toISOString().slice(0, 10);
const pageviewsQuery = (siteId = "") => JSON.stringify({ siteId, metrics: ["pageviews"], dateRange: { startDate: yesterday, endDate: today } });

function client(key: string): Client<typeof StreamingService> {
  return createClient(StreamingService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [caller(key)] }));
}

async function expectCode(promise: Promise<unknown>, code: Code, field?: string): Promise<ConnectError> {
  const error = await promise.then(() => undefined, (err: unknown) => err);
  expect(error, `expected ${Code[code]}`).toBeInstanceOf(ConnectError);
  expect(Code[(error as ConnectError).code], (error as ConnectError).message).toBe(Code[code]);
  if (field) expect((error as ConnectError).message).toContain(field);
  return error as ConnectError;
}

interface Received {
  at: number;
  body: string;
  signature: string;
  deliveryId: string;
}

/** A webhook endpoint answering each request with the next status of `statuses` (then 204). */
async function startReceiver(statuses: number[] = []) {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      received.push({ at: Date.now(), body, signature: String(req.headers["beacon-signature"] ?? ""), deliveryId: String(req.headers["beacon-delivery"] ?? "") });
      res.writeHead(statuses.shift() ?? 204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { received, url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hook`, close: () => new Promise((resolve) => server.close(resolve)) };
}

beforeAll(async () => {
  beacon = await startTestBeacon("streaming-subscriptions");
  workers = await startWorkers({
    orm: beacon.orm,
    connection: () => beacon.connection(),
    prefix: beacon.prefix,
    logger: createLogger({ level: "silent" }),
    hasher: beacon.hasher,
    subscriptionQueries: buildSubscriptionQueryRunner({ orm: beacon.orm, redis: beacon.redis, config: beacon.config, ingestLagSeconds: () => beacon.producer.lagSeconds() }),
  });
  management = createClient(ManagementService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [caller(beacon.adminKey)] }));
  tracking = createClient(TrackingService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [caller()] }));
  analyst = client(await beacon.makeKey("analyst"));
  viewer = client(await beacon.makeKey("viewer"));
});

afterAll(async () => {
  await workers?.close();
  await beacon?.stop();
});

describe("the subscriptions API", () => {
  let site: TestSite;

  beforeAll(async () => {
    site = await createSite(management, "subs-api");
  });

  it("creates with the signing secret shown once, reads, lists, updates with etags, deletes, and audits each change", async () => {
    const { subscription: created } = await analyst.createSubscription({
      siteId: site.id,
      queryJson: pageviewsQuery(),
      delivery: DeliveryKind.WEBHOOK,
      endpoint: "https://hooks.example.com/beacon",
      throttleSeconds: 120,
    });
    expect(created).toMatchObject({ siteId: site.id, delivery: DeliveryKind.WEBHOOK, queryKind: SubscriptionQueryKind.RUN_REPORT, endpoint: "https://hooks.example.com/beacon", throttleSeconds: 120, etag: "1" });
    expect(created!.signingSecret).toMatch(/^whsec_/);
    // The site id is filled into the stored query.
    expect(JSON.parse(created!.queryJson).siteId).toBe(site.id);

    const { subscription: read } = await viewer.getSubscription({ siteId: site.id, id: created!.id });
    expect(read).toMatchObject({ id: created!.id, signingSecret: "", etag: "1" });
    const listed = await viewer.listSubscriptions({ siteId: site.id });
    expect(listed.subscriptions.map((s) => s.id)).toEqual([created!.id]);

    const { subscription: updated } = await analyst.updateSubscription({ siteId: site.id, id: created!.id, etag: "1", throttleSeconds: 30, queryJson: JSON.stringify({ metrics: ["visitors"], start: new Date(Date.now() - 3_600_000).toISOString(), end: new Date().toISOString() }) });
    expect(updated).toMatchObject({ throttleSeconds: 30, queryKind: SubscriptionQueryKind.GET_TIME_SERIES, etag: "2", signingSecret: "" });
    await expectCode(analyst.updateSubscription({ siteId: site.id, id: created!.id, etag: "1", throttleSeconds: 10 }), Code.Aborted);
    await expectCode(analyst.deleteSubscription({ siteId: site.id, id: created!.id, etag: "1" }), Code.Aborted);
    await analyst.deleteSubscription({ siteId: site.id, id: created!.id, etag: "2" });
    await expectCode(viewer.getSubscription({ siteId: site.id, id: created!.id }), Code.NotFound);

    const audit = await management.listAuditEntries({ resource: `sites/${site.id}/subscriptions/${created!.id}` });
    expect(audit.auditEntries.map((e) => e.action).sort()).toEqual(["subscription.create", "subscription.delete", "subscription.update"]);
    expect(JSON.stringify(audit.auditEntries, (_key, value: unknown) => (typeof value === "bigint" ? String(value) : value))).not.toContain(created!.signingSecret);
  });

  it("returns the first subscription to a retried create with the same request id", async () => {
    const request = { siteId: site.id, queryJson: pageviewsQuery(), delivery: DeliveryKind.WEBHOOK, endpoint: "https://hooks.example.com/retry", throttleSeconds: 60, requestId: "create-once" };
    const first = await analyst.createSubscription(request);
    const again = await analyst.createSubscription(request);
    expect(again.subscription?.id).toBe(first.subscription?.id);
    expect(again.subscription?.signingSecret).toBe(first.subscription?.signingSecret);
  });

  it("refuses what could never be delivered, and callers without the role or the site", async () => {
    const base = { siteId: site.id, queryJson: pageviewsQuery(), delivery: DeliveryKind.WEBHOOK, endpoint: "https://hooks.example.com/x", throttleSeconds: 60 };
    await expectCode(analyst.createSubscription({ ...base, endpoint: "ftp://hooks.example.com/x" }), Code.InvalidArgument, "endpoint");
    await expectCode(analyst.createSubscription({ ...base, delivery: DeliveryKind.UNSPECIFIED }), Code.InvalidArgument, "delivery");
    await expectCode(analyst.createSubscription({ ...base, throttleSeconds: -5 }), Code.InvalidArgument, "throttle_seconds");
    await expectCode(analyst.createSubscription({ ...base, queryJson: "{not json" }), Code.InvalidArgument, "query_json");
    await expectCode(analyst.createSubscription({ ...base, queryJson: JSON.stringify({ bogusField: 1 }) }), Code.InvalidArgument, "query_json");
    await expectCode(analyst.createSubscription({ ...base, queryJson: pageviewsQuery("00000000-0000-4000-8000-000000000000") }), Code.InvalidArgument, "query_json.site_id");
    await expectCode(analyst.createSubscription({ ...base, queryJson: JSON.stringify({ metrics: ["no_such_metric"], dateRange: { startDate: today, endDate: today } }) }), Code.InvalidArgument, "query_json.metrics[0]");
    await expectCode(analyst.createSubscription({ ...base, queryKind: SubscriptionQueryKind.GET_TIME_SERIES }), Code.InvalidArgument, "GetTimeSeries");
    await expectCode(viewer.createSubscription(base), Code.PermissionDenied);
    await expectCode(client("bk_not_a_key").listSubscriptions({ siteId: site.id }), Code.Unauthenticated);
    const otherOrg = await beacon.makeOrganisation("elsewhere");
    const outsider = client(await beacon.makeKey("admin", { organisationId: otherOrg }));
    await expectCode(outsider.createSubscription(base), Code.NotFound);
    await expectCode(outsider.listSubscriptions({ siteId: site.id }), Code.NotFound);
  });
});

describe("webhook delivery", () => {
  it("delivers signed results, retries after a 500, keeps throttle_seconds between deliveries, sends nothing while unchanged, and logs every attempt", { timeout: 120_000 }, async () => {
    const THROTTLE = 3;
    const site = await createSite(management, "subs-hook");
    await tracking.trackEvents({ trackingId: site.trackingId, events: [pageview(site, "/first", { clientId: "a" })] });
    await eventually("the first event stored", () => viewerPageviews(site), (n) => n === 1);
    const receiver = await startReceiver([500]);
    try {
      const { subscription } = await analyst.createSubscription({ siteId: site.id, queryJson: pageviewsQuery(), delivery: DeliveryKind.WEBHOOK, endpoint: receiver.url, throttleSeconds: THROTTLE });
      const secret = subscription!.signingSecret;
      const pageviewsIn = (r: Received) => (JSON.parse(r.body) as { result: { totals: { metrics: { pageviews: number } } } }).result.totals.metrics.pageviews;

      // The first attempt gets a 500; the retry (after a backoff) gets through with the same result.
      await eventually("the retried delivery", async () => receiver.received.length, (n) => n >= 2, 30_000);
      expect(receiver.received.slice(0, 2).map(pageviewsIn)).toEqual([1, 1]);
      const envelope = JSON.parse(receiver.received[1].body) as Record<string, unknown>;
      expect(envelope).toMatchObject({ subscriptionId: subscription!.id, siteId: site.id });
      // The receiver sees a delivery before the worker logs its answer: wait for the log to catch up.
      const { deliveries } = await eventually("both attempts logged", () => viewer.listDeliveries({ siteId: site.id, subscriptionId: subscription!.id }), (r) => r.deliveries.length >= 2);
      expect(deliveries.map((d) => [d.attempt, d.statusCode, d.succeeded])).toEqual([[2, 204, true], [1, 500, false]]);
      expect(deliveries[1].error).toContain("500");
      expect(deliveries.map((d) => d.id)).toEqual([receiver.received[1].deliveryId, receiver.received[0].deliveryId]);
      await eventually("the last delivery time", async () => (await viewer.getSubscription({ siteId: site.id, id: subscription!.id })).subscription?.lastDeliveryTime, (t) => t !== undefined);

      // The result changes all the time for a while: deliveries come at most once per throttle.
      const changingUntil = Date.now() + 3 * THROTTLE * 1000;
      let sent = 1;
      while (Date.now() < changingUntil) {
        await tracking.trackEvents({ trackingId: site.trackingId, events: [pageview(site, `/more/${sent}`, { clientId: "a" })] });
        sent++;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      // The last change is delivered too, and then nothing more while the result stays the same.
      await eventually("the final count delivered", async () => receiver.received.at(-1)!, (r) => pageviewsIn(r) === sent, 30_000);
      const settled = receiver.received.length;
      await new Promise((resolve) => setTimeout(resolve, (2 * THROTTLE + 1) * 1000));
      expect(receiver.received.length).toBe(settled);

      const successes = receiver.received.slice(1);
      expect(successes.length).toBeGreaterThanOrEqual(3);
      for (let i = 1; i < successes.length; i++) {
        expect(successes[i].at - successes[i - 1].at, `gap before delivery ${i}`).toBeGreaterThanOrEqual(THROTTLE * 1000);
        expect(pageviewsIn(successes[i])).toBeGreaterThan(pageviewsIn(successes[i - 1]));
      }
      for (const r of receiver.received) expect(verifySignature(secret, r.body, r.signature), r.signature).toBe(true);
      // The scheme, spelled out as a receiver would check it.
      const last = receiver.received.at(-1)!;
      const t = /^t=(\d+),/.exec(last.signature)![1];
      expect(last.signature).toBe(`t=${t},v1=${createHmac("sha256", secret).update(`${t}.${last.body}`).digest("hex")}`);
      expect(verifySignature("whsec_wrong", last.body, last.signature)).toBe(false);

      const log = await eventually("every attempt logged", () => viewer.listDeliveries({ siteId: site.id, subscriptionId: subscription!.id, pageSize: 1000 }), (r) => r.deliveries.length >= receiver.received.length, 10_000);
      expect(log.deliveries.length).toBe(receiver.received.length);
      expect(log.deliveries.filter((d) => d.succeeded).length).toBe(successes.length);
    } finally {
      await receiver.close();
    }
  });
});

/** The site's pageviews as RunReport answers them. */
async function viewerPageviews(site: TestSite): Promise<number> {
  const { ReportingService } = await import("../../gen/beacon/v1/reporting_service_pb.js");
  const reporting = createClient(ReportingService, createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [caller(beacon.adminKey)] }));
  const response = await reporting.runReport({ siteId: site.id, metrics: ["pageviews"], dateRange: { startDate: yesterday, endDate: today } });
  return response.totals?.metrics.pageviews ?? 0;
}
