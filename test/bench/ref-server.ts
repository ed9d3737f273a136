// Reference servers, each in its own process like Beacon's server:
//   node --import tsx test/bench/ref-server.ts http     a bare node:http server: reads the body, answers 204
//   node --import tsx test/bench/ref-server.ts connect  a no-op Connect unary handler (TrackEvent returns at once)
//   node --import tsx test/bench/ref-server.ts listen   Beacon's own listener (server/http/listen.ts) with the bare 204 handler
//   node --import tsx test/bench/ref-server.ts floor    the accept floor: the least a server of Beacon's design does per
//                                                       event (below), on Beacon's listener; REDIS_URL and FLOOR_KEY say where it writes
//   node --import tsx test/bench/ref-server.ts floor-pipeline   the same, writing real ingest jobs through Beacon's buffer and
//                                                       producer (REDIS_URL, REDIS_PREFIX) for the site FLOOR_SITE_ID: Beacon's worker stores them
// Listens on 127.0.0.1:0, prints {"bench":"ready","port":N}, exits on SIGTERM.
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomUUID } from "node:crypto";
import { IngestBuffer } from "../../server/core/ingest/buffer.js";
import type { RawHit } from "../../server/core/ingest/hit.js";
import { createIngestProducer } from "../../workers/producer.js";
import { rawHit } from "../support/raw-hit.js";
import { TrackEventResponseSchema, TrackEventsResponseSchema, TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";
import { listen, type HttpHandler } from "../../server/http/listen.js";

const mode = process.argv[2] ?? "http";

const bare = (req: IncomingMessage, res: ServerResponse) => {
  req.on("data", () => {});
  req.on("end", () => {
    res.statusCode = 204;
    res.end();
  });
};

/**
 * The accept floor: what no server of Beacon's design can skip for a single-event beacon. It reads
 * and parses the JSON body and holds the answer until the event is in Redis, written with the
 * window's other events in one round trip; then answers /collect's 200 body. No validation, site
 * lookup, rate limits or enrichment: its latency is what the machine leaves Beacon's own work.
 * `write` is the queue write: a plain Redis list (nothing behind it), or Beacon's own ingest
 * buffer and producer, whose jobs Beacon's worker then stores.
 */
function acceptFloor(write: (event: Record<string, unknown>, req: IncomingMessage) => Promise<void>) {
  const answer = JSON.stringify({ status: "ok", received: 1 });
  const respond = (res: ServerResponse, status: number, body: string) => {
    res.writeHead(status, { "Cache-Control": "no-store", "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(body) });
    res.end(body);
  };
  return (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      let event: Record<string, unknown>;
      try {
        event = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
      } catch {
        respond(res, 400, "{}");
        return;
      }
      write(event, req).then(
        () => respond(res, 200, answer),
        () => respond(res, 503, "{}"),
      );
    });
  };
}

/** Events go to one Redis list entry per buffer flush (Beacon's window), trimmed to the newest: durable, and bounded. */
function listBuffer(redis: Redis, key: string): IngestBuffer<unknown> {
  return new IngestBuffer<unknown>(async (events) => {
    const replies = await redis.multi().rpush(key, JSON.stringify(events)).ltrim(key, -1, -1).exec();
    const failed = replies?.find(([err]) => err);
    if (failed) throw failed[0];
  });
}

/** The measurement-protocol body as the hit Beacon would queue, with no checks, through Beacon's buffer and producer. */
function pipelineWriter(buffer: IngestBuffer<RawHit>, siteId: string) {
  const text = (value: unknown) => (typeof value === "string" ? value : "");
  return (event: Record<string, unknown>, req: IncomingMessage) =>
    buffer.add([
      rawHit({
        siteId,
        eventId: randomUUID(),
        ts: Date.now(),
        url: `https://${text(event.dh)}${text(event.dp)}`,
        referrer: text(event.dr),
        title: text(event.dt),
        ip: text(req.headers["x-forwarded-for"]) || "127.0.0.1",
        userAgent: req.headers["user-agent"] ?? "",
        clientId: text(event.cid),
      }),
    ]);
}

let port: number;
let close: () => Promise<void>;

if (mode === "floor") {
  const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
  const key = process.env.FLOOR_KEY ?? "beacon-bench-floor";
  const buffer = listBuffer(redis, key);
  const listener = await listen(acceptFloor((event) => buffer.add([event])) as HttpHandler, { port: 0, host: "127.0.0.1" });
  port = listener.port;
  close = async () => {
    await listener.close(1000);
    await buffer.close();
    await redis.del(key);
    redis.disconnect();
  };
} else if (mode === "floor-pipeline") {
  const { REDIS_URL, REDIS_PREFIX, FLOOR_SITE_ID } = process.env;
  if (!REDIS_URL || !REDIS_PREFIX || !FLOOR_SITE_ID) throw new Error("floor-pipeline needs REDIS_URL, REDIS_PREFIX and FLOOR_SITE_ID");
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const producer = createIngestProducer(redis, REDIS_PREFIX);
  const buffer = new IngestBuffer<RawHit>((hits) => producer.write(hits));
  const listener = await listen(acceptFloor(pipelineWriter(buffer, FLOOR_SITE_ID)) as HttpHandler, { port: 0, host: "127.0.0.1" });
  port = listener.port;
  close = async () => {
    await listener.close(1000);
    await buffer.close();
    await producer.close();
    redis.disconnect();
  };
} else if (mode === "listen") {
  const listener = await listen(bare as HttpHandler, { port: 0, host: "127.0.0.1" });
  port = listener.port;
  close = () => listener.close(1000);
} else {
  const handler =
    mode === "connect"
      ? connectNodeAdapter({
          routes: (router) =>
            router.service(TrackingService, {
              trackEvent: () => create(TrackEventResponseSchema, {}),
              trackEvents: (req) => create(TrackEventsResponseSchema, { received: req.events.length }),
            }),
        })
      : bare;
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as { port: number }).port;
  close = () => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

process.stdout.write(`${JSON.stringify({ bench: "ready", port, mode })}\n`);
process.on("SIGTERM", () => {
  void close().finally(() => process.exit(0));
});
