// Realtime streams against one real Beacon (server and workers in process, real Postgres and
// Redis): TailEvents through connect-web's Connect transport over HTTP/1.1 and through grpc-js
// over h2c, filters, WatchRealtime's snapshot → update → heartbeat, auth and the per-key stream
// cap, and streams that end cleanly on cancel and on shutdown. The slow-subscriber test stops
// reading for 30 s while 50,000 events flow and checks every event is either delivered or
// counted as dropped, and that the server's heap did not keep them.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport as createWebTransport } from "@connectrpc/connect-web";
import { createConnectTransport as createNodeTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Classification } from "../../gen/beacon/v1/common_pb.js";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { RealtimeUpdateType, StreamingService, type TailEventsResponse, type WatchRealtimeResponse } from "../../gen/beacon/v1/streaming_service_pb.js";
import { TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";
import { startTestBeacon, type TestBeacon } from "../support/beacon.js";
import { caller, createSite, eventually, pageview, StreamReader, type TestSite } from "./streaming-helpers.js";

const protoDir = fileURLToPath(new URL("../../proto", import.meta.url));
const GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

let beacon: TestBeacon;
let management: Client<typeof ManagementService>;
let tracking: Client<typeof TrackingService>;
let viewerKey: string;

/** connect-web's Connect transport: fetch over HTTP/1.1, as a browser dashboard would call. */
function webTransport(key?: string, target = beacon): Transport {
  return createWebTransport({ baseUrl: target.baseUrl, interceptors: [caller(key)] });
}

function streaming(key?: string, target = beacon): Client<typeof StreamingService> {
  return createClient(StreamingService, webTransport(key, target));
}

async function expectCode(promise: Promise<unknown>, code: Code): Promise<ConnectError> {
  const error = await promise.then(() => undefined, (err: unknown) => err);
  expect(error, `expected ${Code[code]}`).toBeInstanceOf(ConnectError);
  expect(Code[(error as ConnectError).code]).toBe(Code[code]);
  return error as ConnectError;
}

/** Streams open under every key of a server, as the cap counts them in Redis. */
async function openLeases(target: TestBeacon): Promise<number> {
  let open = 0;
  for await (const keys of target.redis.scanStream({ match: `${target.prefix}:streams:*`, count: 100 })) {
    for (const key of keys as string[]) open += await target.redis.zcard(key);
  }
  return open;
}

/** The first message of a stream, or its error. */
async function firstOf<T>(stream: AsyncIterable<T>): Promise<T> {
  for await (const message of stream) return message;
  throw new Error("the stream ended without a message");
}

beforeAll(async () => {
  beacon = await startTestBeacon("streaming", { workers: true });
  management = createClient(ManagementService, createNodeTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [caller(beacon.adminKey)] }));
  tracking = createClient(TrackingService, createNodeTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [caller()] }));
  viewerKey = await beacon.makeKey("viewer");
});

afterAll(async () => {
  await beacon?.stop();
});

describe("TailEvents", () => {
  it("streams stored events in order through connect-web over HTTP/1.1, filtered, bots only when asked", async () => {
    const site = await createSite(management, "tail");
    const abort = new AbortController();
    const docs = new StreamReader(streaming(viewerKey).tailEvents({ siteId: site.id, pagePrefix: "/docs" }, { signal: abort.signal }));
    const everything = new StreamReader(streaming(viewerKey).tailEvents({ siteId: site.id, includeBots: true }, { signal: abort.signal }));
    const signups = new StreamReader(streaming(viewerKey).tailEvents({ siteId: site.id, eventNames: ["signup"], countries: ["us"] }, { signal: abort.signal }));
    // The first message is a heartbeat: the stream is live from here on.
    for (const reader of [docs, everything, signups]) expect((await reader.next("the opening heartbeat")).event).toBeUndefined();

    const base = Date.now() - 60_000;
    const paths = Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? `/docs/page-${i}` : `/pricing/${i}`));
    const sent = await tracking.trackEvents({
      trackingId: site.trackingId,
      events: [
        ...paths.map((path, i) => pageview(site, path, { eventId: `pv-${i}`, timestamp: { seconds: BigInt(Math.floor((base + i * 1000) / 1000)), nanos: 0 } })),
        { name: "signup", url: `https://${site.domain}/welcome`, eventId: "signup-1", timestamp: { seconds: BigInt(Math.floor((base + 20_000) / 1000)), nanos: 0 } },
      ],
    });
    expect(sent.received).toBe(13);
    const bot = createClient(TrackingService, createNodeTransport({
      baseUrl: beacon.baseUrl,
      httpVersion: "1.1",
      interceptors: [(next) => (req) => {
        req.header.set("User-Agent", GOOGLEBOT);
        return next(req);
      }],
    }));
    await bot.trackEvents({ trackingId: site.trackingId, events: [pageview(site, "/docs/crawled", { eventId: "bot-1" })] });

    const events = (reader: StreamReader<TailEventsResponse>, count: number) =>
      reader.until(`${count} events`, () => --count === 0).then((messages) => messages.map((m) => m.event!));
    const docsEvents = await events(docs, 4);
    expect(docsEvents.map((e) => e.eventId)).toEqual(["pv-0", "pv-3", "pv-6", "pv-9"]);
    expect(docsEvents.every((e) => e.classification === Classification.USER && e.siteId === site.id && e.hostname === site.domain)).toBe(true);
    const all = await events(everything, 14);
    // One batch is stored (and published) in time order; the bot's event came in its own batch.
    const people = all.filter((e) => e.classification === Classification.USER).map((e) => e.eventId);
    expect(people).toEqual([...paths.map((_, i) => `pv-${i}`), "signup-1"]);
    expect(all.filter((e) => e.classification === Classification.BOT).map((e) => e.eventId)).toEqual(["bot-1"]);
    const [signup] = await events(signups, 1);
    expect(signup).toMatchObject({ eventId: "signup-1", name: "signup", pathname: "/welcome", country: "US", browser: "Chrome" });
    expect(signup.visitorId).toMatch(/^\d+$/);
    abort.abort();
  });

  it("streams through @grpc/grpc-js over h2c", async () => {
    const site = await createSite(management, "grpc");
    const definition = protoLoader.loadSync("beacon/v1/streaming_service.proto", { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [protoDir] });
    const Service = (grpc.loadPackageDefinition(definition).beacon as grpc.GrpcObject).v1 as grpc.GrpcObject;
    const Client = Service.StreamingService as unknown as new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client & Record<string, (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<Record<string, unknown>>>;
    const client = new Client(`127.0.0.1:${beacon.port}`, grpc.credentials.createInsecure());
    try {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${viewerKey}`);
      const call = client.TailEvents({ siteId: site.id }, metadata);
      const received: Record<string, unknown>[] = [];
      const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
      const arrived = (count: number) => eventually(`${count} grpc messages`, async () => received.length, (n) => n >= count, 30_000);
      call.on("data", (message: Record<string, unknown>) => received.push(message));
      call.on("error", () => {});
      await arrived(1);
      expect(received[0].event).toBeNull();
      await tracking.trackEvents({ trackingId: site.trackingId, events: [pageview(site, "/a", { eventId: "g-1" }), pageview(site, "/b", { eventId: "g-2" })] });
      await arrived(3);
      expect(received.slice(1).map((m) => (m.event as Record<string, unknown>).eventId)).toEqual(["g-1", "g-2"]);
      expect((received[1].event as Record<string, unknown>).classification).toBe("CLASSIFICATION_USER");
      call.cancel();
      expect((await ended).code).toBe(grpc.status.CANCELLED);
    } finally {
      client.close();
    }
  });
});

describe("WatchRealtime", () => {
  it("sends a snapshot at once, an update reflecting new events, and heartbeats while nothing changes", async () => {
    const site = await createSite(management, "watch");
    const abort = new AbortController();
    const watch = new StreamReader(streaming(viewerKey).watchRealtime({ siteId: site.id, intervalSeconds: 1 }, { signal: abort.signal }));
    const first = await watch.next("the snapshot");
    expect(first.type).toBe(RealtimeUpdateType.SNAPSHOT);
    expect(first.report?.activeUsers).toBe(0n);
    await tracking.trackEvents({ trackingId: site.trackingId, events: [pageview(site, "/live", { clientId: "visitor-a" }), pageview(site, "/live", { clientId: "visitor-b" })] });
    const updates = await watch.until("an update with the new visitors", (m) => m.type === RealtimeUpdateType.METRICS_UPDATE && m.report?.activeUsers === 2n);
    const update = updates.at(-1)!;
    expect(update.report?.topPages.map((p) => [p.value, p.activeUsers])).toEqual([["/live", 2n]]);
    expect(update.report?.pageviewsLastMinute).toBe(2n);
    // Nothing changes now: heartbeats, without figures (a minute turning over may still bring one update).
    const quiet = await watch.until("a heartbeat", (m) => m.type === RealtimeUpdateType.HEARTBEAT);
    expect(quiet.at(-1)!.report).toBeUndefined();
    expect(quiet.at(-1)!.dropped).toBe(0n);
    abort.abort();
  });

  it("refuses an interval under a second", async () => {
    const site = await createSite(management, "interval");
    await expectCode(firstOf(streaming(viewerKey).watchRealtime({ siteId: site.id, intervalSeconds: -1 })), Code.InvalidArgument);
  });
});

describe("auth and the stream cap", () => {
  it("needs a key, and hides other organisations' sites", async () => {
    const site = await createSite(management, "auth");
    await expectCode(firstOf(streaming().tailEvents({ siteId: site.id })), Code.Unauthenticated);
    await expectCode(firstOf(streaming().watchRealtime({ siteId: site.id })), Code.Unauthenticated);
    const otherOrg = await beacon.makeOrganisation("other");
    const otherKey = await beacon.makeKey("admin", { organisationId: otherOrg });
    await expectCode(firstOf(streaming(otherKey).tailEvents({ siteId: site.id })), Code.NotFound);
    await expectCode(firstOf(streaming(otherKey).watchRealtime({ siteId: site.id })), Code.NotFound);
    await expectCode(firstOf(streaming(viewerKey).tailEvents({ siteId: site.id, countries: ["GBR"] })), Code.InvalidArgument);
  });

  it("caps concurrent streams per key at the organisation's max_concurrent_streams", async () => {
    const org = await beacon.makeOrganisation("capped");
    const admin = await beacon.makeKey("admin", { organisationId: org });
    const orgManagement = createClient(ManagementService, createNodeTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [caller(admin)] }));
    await orgManagement.updateQuotas({ maxConcurrentStreams: 2 });
    const site = await createSite(orgManagement, "capped");
    const key = await beacon.makeKey("viewer", { organisationId: org });
    const first = new AbortController();
    const second = new AbortController();
    const a = new StreamReader(streaming(key).tailEvents({ siteId: site.id }, { signal: first.signal }));
    const b = new StreamReader(streaming(key).watchRealtime({ siteId: site.id }, { signal: second.signal }));
    await a.next("the first stream's heartbeat");
    await b.next("the second stream's snapshot");
    const refused = await expectCode(firstOf(streaming(key).tailEvents({ siteId: site.id })), Code.ResourceExhausted);
    expect(refused.message).toContain("max_concurrent_streams");
    // Another key of the organisation has its own streams.
    const otherKey = await beacon.makeKey("viewer", { organisationId: org });
    const other = new AbortController();
    await firstOf(streaming(otherKey).tailEvents({ siteId: site.id }, { signal: other.signal }));
    other.abort();
    // A cancelled stream gives its place back.
    first.abort();
    await eventually(
      "a stream place after a cancel",
      () => firstOf(streaming(key).tailEvents({ siteId: site.id }, { signal: AbortSignal.timeout(10_000) })).then(() => "open", (err: unknown) => (err instanceof ConnectError ? Code[err.code] : String(err))),
      (state) => state === "open",
      20_000,
    );
    second.abort();
  });
});

describe("a subscriber that stops reading", () => {
  it("costs a bounded queue while 50,000 events flow for 30 s; the rest are dropped and counted, and the stream still ends cleanly", { timeout: 180_000 }, async () => {
    const TOTAL = 50_000;
    const BATCH = 1000;
    const PAUSE_MS = 30_000;
    // A full GC before each heap reading, so the figures compare what is kept, not what is garbage.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const heap = () => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };

    // Its own server, so that it alone is measured, and so that it can end the stream itself.
    const own = await startTestBeacon("streaming-slow", { workers: true });
    try {
      const ownManagement = createClient(ManagementService, createNodeTransport({ baseUrl: own.baseUrl, httpVersion: "1.1", interceptors: [caller(own.adminKey)] }));
      const ownTracking = createClient(TrackingService, createNodeTransport({ baseUrl: own.baseUrl, httpVersion: "1.1", interceptors: [caller()] }));
      const site = await createSite(ownManagement, "slow");
      const slow = new StreamReader(streaming(own.adminKey, own).tailEvents({ siteId: site.id }));
      const fast = streaming(own.adminKey, own).tailEvents({ siteId: site.id })[Symbol.asyncIterator]();
      expect((await slow.next("the slow stream's heartbeat")).event).toBeUndefined();
      expect((await fast.next()).value?.event).toBeUndefined();
      // The fast subscriber reads everything: it says when all 50,000 have been published.
      let fastSeen = 0;
      const fastDone = (async () => {
        for (;;) {
          const { value, done } = await fast.next();
          if (done) return;
          if (value.event) fastSeen++;
          if (fastSeen === TOTAL) return;
        }
      })();

      const pausedAt = Date.now();
      const before = heap();
      for (let sent = 0; sent < TOTAL; sent += BATCH) {
        const events = Array.from({ length: BATCH }, (_, i) => pageview(site, `/flood/${(sent + i) % 50}`, { eventId: `e-${sent + i}`, clientId: `v-${(sent + i) % 500}` }));
        const response = await ownTracking.trackEvents({ trackingId: site.trackingId, events });
        expect(response.received).toBe(BATCH);
      }
      await fastDone;
      expect(fastSeen).toBe(TOTAL);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, PAUSE_MS - (Date.now() - pausedAt))));
      const grown = heap() - before;

      // Reading again: what was already on its way in socket buffers, then the newest queued
      // events with the count of the ones dropped. Every event is one or the other.
      let received = 0;
      let dropped = 0n;
      await slow.until("every event delivered or counted as dropped", (m) => {
        if (m.event) received++;
        dropped = m.dropped;
        return BigInt(received) + dropped >= BigInt(TOTAL);
      }, 120_000);
      expect(BigInt(received) + dropped).toBe(BigInt(TOTAL));
      expect(dropped).toBeGreaterThan(0n);
      // 50,000 events held as objects would take well over 50 MB; the queue holds 1,000.
      expect(grown, `heap grew by ${(grown / 1e6).toFixed(1)} MB`).toBeLessThan(40e6);

      // The server ends the stream: the reader sees a normal end, and its place under the cap is free.
      own.app.shutdown();
      const closed = own.listener.close(20_000);
      expect(await slow.end()).toBe("done");
      await closed;
      expect(await openLeases(own)).toBe(0);
    } finally {
      await own.stop();
    }
  });
});

describe("shutdown", () => {
  it("ends open streams cleanly, so the listener closes well within its timeout", async () => {
    const own = await startTestBeacon("streaming-shutdown");
    try {
      const ownManagement = createClient(ManagementService, createNodeTransport({ baseUrl: own.baseUrl, httpVersion: "1.1", interceptors: [caller(own.adminKey)] }));
      const site = await createSite(ownManagement, "shutdown");
      const tail = new StreamReader(streaming(own.adminKey, own).tailEvents({ siteId: site.id }));
      const watch = new StreamReader(streaming(own.adminKey, own).watchRealtime({ siteId: site.id, intervalSeconds: 60 }));
      await tail.next("the heartbeat");
      await watch.next("the snapshot");
      own.app.shutdown();
      const closed = own.listener.close(20_000).then(() => "closed");
      expect(await tail.end()).toBe("done");
      expect(await watch.end()).toBe("done");
      // Closing did not have to wait for its 20 s timeout to cut the streams off.
      expect(await Promise.race([closed, new Promise((resolve) => setTimeout(() => resolve("still open"), 10_000))])).toBe("closed");
      expect(await openLeases(own)).toBe(0);
    } finally {
      await own.stop();
    }
  });
});

export type { TestSite, WatchRealtimeResponse };
