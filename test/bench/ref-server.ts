// Reference servers, each in its own process like Beacon's server:
//   node --import tsx test/bench/ref-server.ts http     a bare node:http server: reads the body, answers 204
//   node --import tsx test/bench/ref-server.ts connect  a no-op Connect unary handler (TrackEvent returns at once)
//   node --import tsx test/bench/ref-server.ts listen   Beacon's own listener (server/http/listen.ts) with the bare 204 handler
// Listens on 127.0.0.1:0, prints {"bench":"ready","port":N}, exits on SIGTERM.
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
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

let port: number;
let close: () => Promise<void>;

if (mode === "listen") {
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
