// One access-log line per RPC and per plain-HTTP request, in the same shape, so an operator can
// follow latency and error codes across Connect, gRPC, gRPC-web and the beacon endpoints alike.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Interceptor, StreamResponse, UnaryRequest, StreamRequest } from "@connectrpc/connect";
import type { Logger } from "../logger.js";

export type RpcProtocol = "connect" | "grpc" | "grpc-web";

/** Which wire protocol a request used, from its content type (Connect GET requests have none). */
export function rpcProtocol(contentType: string | null): RpcProtocol {
  const type = (contentType ?? "").toLowerCase();
  if (type.startsWith("application/grpc-web")) return "grpc-web";
  if (type.startsWith("application/grpc")) return "grpc";
  return "connect";
}

/** The Connect code name as it appears on the wire, e.g. `invalid_argument`. */
export function codeName(code: Code): string {
  return Code[code].replace(/[A-Z]/g, (c, i: number) => (i === 0 ? c : "_" + c).toLowerCase());
}

// Codes that mean the server is at fault; the rest are the caller's business and logged as info.
const serverFaults = new Set([Code.Unknown, Code.Internal, Code.DataLoss, Code.Unavailable]);

function elapsedMs(startedAt: number): number {
  return Math.round((performance.now() - startedAt) * 10) / 10;
}

export function createLoggingInterceptor(logger: Logger): Interceptor {
  const record = (req: UnaryRequest | StreamRequest, startedAt: number, error: unknown, stream: boolean) => {
    const code = error === undefined ? undefined : ConnectError.from(error).code;
    const fields = {
      procedure: `/${req.service.typeName}/${req.method.name}`,
      protocol: rpcProtocol(req.header.get("content-type")),
      code: code === undefined ? "ok" : codeName(code),
      duration_ms: elapsedMs(startedAt),
      stream: stream || undefined,
    };
    if (code !== undefined && serverFaults.has(code)) {
      logger.error("rpc", { ...fields, error: ConnectError.from(error).rawMessage });
    } else {
      logger.info("rpc", fields);
    }
  };

  return (next) => async (req) => {
    const startedAt = performance.now();
    let res;
    try {
      res = await next(req);
    } catch (error) {
      record(req, startedAt, error, req.stream);
      throw error;
    }
    if (!res.stream) {
      record(req, startedAt, cancellation(req), false);
      return res;
    }
    // A server stream is only over when its last message has been sent (or it failed, or the
    // client went away), so the line is written when the response iterator finishes.
    return { ...res, message: loggedMessages(res, req, (error) => record(req, startedAt, error, true)) };
  };
}

/**
 * Why the call was cut short, if it was. Handlers usually end quietly when their signal aborts
 * (a Watch returns when the client cancels), so a normal return does not mean the client got "ok".
 */
function cancellation(req: UnaryRequest | StreamRequest): unknown {
  if (!req.signal.aborted) return undefined;
  return req.signal.reason ?? new ConnectError("call aborted", Code.Canceled);
}

async function* loggedMessages(
  res: StreamResponse,
  req: UnaryRequest | StreamRequest,
  done: (error: unknown) => void,
): StreamResponse["message"] {
  let finished = false;
  try {
    yield* res.message;
    finished = true;
    done(cancellation(req));
  } catch (error) {
    finished = true;
    done(error);
    throw error;
  } finally {
    // Stopped early by the consumer: the client went away, or the response could not be written.
    if (!finished) done(cancellation(req) ?? new ConnectError("stream not read to the end", Code.Canceled));
  }
}

export interface HttpRequestRecord {
  method: string;
  path: string;
  status: number;
  durationMs: number;
}

/** The access-log line for a plain-HTTP endpoint (beacons, health checks). */
export function logHttpRequest(logger: Logger, request: HttpRequestRecord): void {
  const fields = {
    method: request.method,
    path: request.path,
    status: request.status,
    duration_ms: Math.round(request.durationMs * 10) / 10,
  };
  if (request.status >= 500) logger.error("http", fields);
  else logger.info("http", fields);
}
