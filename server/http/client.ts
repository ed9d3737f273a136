// Who is calling, as the transport sees it: the client IP (first X-Forwarded-For entry when a
// proxy sets one, else the socket's address), its user agent and privacy headers. Beacons and
// Connect handlers read the same facts the same way.
import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import type { IncomingHttpHeaders } from "node:http";
import type { RequestContext } from "../core/ingest/hit.js";

type NodeRequest = { headers: IncomingHttpHeaders; socket?: { remoteAddress?: string } };

export function clientIp(req: NodeRequest): string {
  const forwarded = req.headers["x-forwarded-for"];
  const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(",")[0]?.trim();
  const real = req.headers["x-real-ip"];
  const ip = first || (Array.isArray(real) ? real[0] : real) || req.socket?.remoteAddress || "";
  return ip.startsWith("::ffff:") ? ip.slice(7) : ip;
}

function header(headers: IncomingHttpHeaders | Headers, name: string): string {
  if (headers instanceof Headers) return headers.get(name) ?? "";
  const value = headers[name];
  return (Array.isArray(value) ? value[0] : value) ?? "";
}

export function requestContext(headers: IncomingHttpHeaders | Headers, ip: string, receivedAt = Date.now()): RequestContext {
  return {
    ip,
    userAgent: header(headers, "user-agent"),
    doNotTrack: header(headers, "dnt") === "1" || header(headers, "sec-gpc") === "1",
    receivedAt,
    idempotencyKey: header(headers, "idempotency-key"),
  };
}

export const clientIpKey = createContextKey<string>("", { description: "the caller's IP address" });

/** For connectNodeAdapter's `contextValues`: makes the socket's address visible to handlers. */
export function connectContextValues(req: NodeRequest): ContextValues {
  return createContextValues().set(clientIpKey, clientIp(req));
}
