// Plain-HTTP probes for orchestrators that do not speak gRPC: `/healthz` says the process is
// alive (restart it if not), `/readyz` says it can do its work (send it traffic if so).
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { HealthState } from "../services/health.js";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";

/** Resolves when a dependency answers; rejects (or hangs until `signal` aborts) when it does not. */
export type ReadinessProbe = (signal: AbortSignal) => Promise<void>;

export interface HealthEndpoints {
  /** Shutdown makes the server NOT_SERVING, and /readyz follows it so load balancers drain first. */
  state: HealthState;
  /** One probe per dependency, named as it should appear in the answer, e.g. `postgres`, `redis`. */
  probes: Record<string, ReadinessProbe>;
  /** How long a probe may take before it counts as failed; 2 s unless set. */
  probeTimeoutMs?: number;
}

export interface ReadinessReport {
  status: "ready" | "not_ready";
  /** `ok`, or why the check failed. */
  checks: Record<string, string>;
}

const defaultProbeTimeoutMs = 2_000;

/** Answers GET/HEAD /healthz and /readyz; returns false, touching nothing, for any other request. */
export function handleHealthHttp(
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
  health: HealthEndpoints,
): boolean {
  const path = (req.url ?? "").split("?", 1)[0];
  if (path !== "/healthz" && path !== "/readyz") return false;
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("Allow", "GET, HEAD");
    sendJson(req, res, 405, { status: "method_not_allowed" });
    return true;
  }
  if (path === "/healthz") {
    sendJson(req, res, 200, { status: "ok" });
    return true;
  }
  checkReadiness(health).then(
    (report) => sendJson(req, res, report.status === "ready" ? 200 : 503, report),
    // checkReadiness catches every probe failure; this is only a last resort.
    (error: unknown) => sendJson(req, res, 503, { status: "not_ready", checks: { server: String(error) } }),
  );
  return true;
}

/** Runs every probe at once, each bounded by the probe timeout. */
export async function checkReadiness(health: HealthEndpoints): Promise<ReadinessReport> {
  const timeoutMs = health.probeTimeoutMs ?? defaultProbeTimeoutMs;
  const checks: Record<string, string> = {};
  let ready = true;
  if (health.state.status("") !== ServingStatus.SERVING) {
    checks.server = health.state.isShutDown ? "shutting down" : "not serving";
    ready = false;
  }
  const results = await Promise.all(
    Object.entries(health.probes).map(async ([name, probe]) => [name, await runProbe(probe, timeoutMs)] as const),
  );
  for (const [name, failure] of results) {
    checks[name] = failure ?? "ok";
    if (failure !== undefined) ready = false;
  }
  return { status: ready ? "ready" : "not_ready", checks };
}

/** The failure message, or undefined when the probe passed in time. */
async function runProbe(probe: ReadinessProbe, timeoutMs: number): Promise<string | undefined> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<string>((resolve) => {
    timer = setTimeout(() => {
      controller.abort();
      resolve(`timed out after ${timeoutMs} ms`);
    }, timeoutMs);
  });
  try {
    return await Promise.race([
      probe(controller.signal).then(
        () => undefined,
        (error: unknown) => (error instanceof Error ? error.message : String(error)) || "failed",
      ),
      timedOut,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function sendJson(
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
  status: number,
  body: unknown,
): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader("Content-Type", "application/json; charset=utf-8");
  res.setHeader("Cache-Control", "no-store");
  res.setHeader("Content-Length", Buffer.byteLength(text));
  if (req.method === "HEAD") res.end();
  else res.end(text);
}
