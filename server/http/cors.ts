// Lets dashboards and tracking scripts on other origins call Beacon from a browser. The header
// lists come from Connect, so every protocol it serves (Connect, gRPC-web) works cross-origin.
import { cors } from "@connectrpc/connect";
import type { HttpHandler } from "./listen.js";

export interface CorsOptions {
  /** Origins allowed to call from a browser, e.g. `https://app.example.com`; `*` allows any. */
  origins: string[] | "*";
}

// Beacon's own request headers, on top of the ones the RPC protocols need.
const beaconRequestHeaders = ["Authorization", "Idempotency-Key", "If-Match"];

const allowMethods = [...cors.allowedMethods].join(", ");
const allowHeaders = [...cors.allowedHeaders, ...beaconRequestHeaders].join(", ");
const exposeHeaders = [...cors.exposedHeaders].join(", ");
/** How long a browser may cache a preflight answer, in seconds (Chromium caps it at 7200). */
const maxAgeSeconds = "7200";

function normalizeOrigin(origin: string): string {
  try {
    return new URL(origin).origin;
  } catch {
    return origin;
  }
}

export function withCors(handler: HttpHandler, options: CorsOptions): HttpHandler {
  const allowed = options.origins === "*" ? "*" : new Set(options.origins.map(normalizeOrigin));
  const isAllowed = (origin: string) => allowed === "*" || allowed.has(origin);

  return (req, res) => {
    const origin = req.headers.origin;
    if (origin === undefined) {
      handler(req, res);
      return;
    }
    // The answer depends on the Origin, so shared caches must not hand one origin's answer to another.
    res.setHeader("Vary", "Origin");
    const preflight = req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
    if (preflight) {
      if (isAllowed(origin)) {
        res.setHeader("Access-Control-Allow-Origin", origin);
        res.setHeader("Access-Control-Allow-Methods", allowMethods);
        res.setHeader("Access-Control-Allow-Headers", allowHeaders);
        res.setHeader("Access-Control-Max-Age", maxAgeSeconds);
      }
      // A disallowed origin gets an answer without CORS headers, which the browser treats as a refusal.
      res.statusCode = 204;
      res.end();
      return;
    }
    if (isAllowed(origin)) {
      res.setHeader("Access-Control-Allow-Origin", origin);
      res.setHeader("Access-Control-Expose-Headers", exposeHeaders);
    }
    handler(req, res);
  };
}
