// Reference servers, each in its own process like Beacon's server:
//   node --import tsx test/bench/ref-server.ts http     a bare node:http server: reads the body, answers 204
//   node --import tsx test/bench/ref-server.ts connect  a no-op Connect unary handler (TrackEvent returns at once)
//   node --import tsx test/bench/ref-server.ts listen   Beacon's own listener (server/http/listen.ts) with the bare 204 handler
//   node --import tsx test/bench/ref-server.ts floor    the accept floor: the least a server of Beacon's design does per
//                                                       event (below), on Beacon's listener; REDIS_URL and FLOOR_KEY say where it writes
// Listens on 127.0.0.1:0, prints {"bench":"ready","port":N}, exits on SIGTERM.
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { DEFAULT_INGEST_BUFFER_OPTIONS } from "../../server/core/ingest/buffer.js";
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
 * and parses the JSON body, waits for the ingest buffer's window (IngestBuffer's defaults), writes
 * the window's events to Redis in one round trip, and answers /collect's 200 body. No validation,
 * site lookup, rate limits or BullMQ: its latency is what the machine leaves Beacon's own work.
 */
function acceptFloor(redis: Redis, key: string) {
  const answer = JSON.stringify({ status: "ok", received: 1 });
  const { maxEvents, maxWaitMs } = DEFAULT_INGEST_BUFFER_OPTIONS;
  let waiting: { res: ServerResponse; event: unknown }[] = [];
  let timer: NodeJS.Timeout | undefined;
  const respond = (res: ServerResponse, status: number, body: string) => {
    res.writeHead(status, { "Cache-Control": "no-store", "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(body) });
    res.end(body);
  };
  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const batch = waiting;
    waiting = [];
    // One list entry per window, trimmed to the newest: durable like a queue write, and bounded.
    redis.multi().rpush(key, JSON.stringify(batch.map((w) => w.event))).ltrim(key, -1, -1).exec().then(
      () => batch.forEach((w) => respond(w.res, 200, answer)),
      () => batch.forEach((w) => respond(w.res, 503, "{}")),
    );
  };
  return (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      let event: unknown;
      try {
        event = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        respond(res, 400, "{}");
        return;
      }
      waiting.push({ res, event });
      if (waiting.length >= maxEvents) flush();
      else timer ??= setTimeout(flush, maxWaitMs);
    });
  };
}

let port: number;
let close: () => Promise<void>;

if (mode === "floor") {
  const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
  const key = process.env.FLOOR_KEY ?? "beacon-bench-floor";
  const listener = await listen(acceptFloor(redis, key) as HttpHandler, { port: 0, host: "127.0.0.1" });
  port = listener.port;
  close = async () => {
    await listener.close(1000);
    await redis.del(key);
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
