// Reading a plain-HTTP request body with a hard size limit. Beacon endpoints are public, so a body
// is never buffered past the limit: a declared Content-Length over it is refused before a byte
// is read, and an undeclared (chunked) body is cut off as soon as it crosses it.
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { PayloadTooLargeError } from "../core/errors.js";

/** The client went away before its body arrived; there is no one left to answer. */
export class RequestAbortedError extends Error {
  override name = "RequestAbortedError";
  constructor() {
    super("the client closed the request before its body was complete");
  }
}

/**
 * The body, once complete. Rejects with PayloadTooLargeError past `maxBytes` (the stream is left
 * paused: the caller answers 413 and closes the connection rather than reading the rest), and
 * with RequestAbortedError when the client disconnects first.
 */
export function readBody(req: IncomingMessage | Http2ServerRequest, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.reject(new PayloadTooLargeError(maxBytes));
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (error: Error | undefined) => {
      if (settled) return;
      settled = true;
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
      if (error) reject(error);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer | string) => {
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      size += bytes.length;
      if (size > maxBytes) {
        req.pause();
        chunks.length = 0;
        settle(new PayloadTooLargeError(maxBytes));
        return;
      }
      chunks.push(bytes);
    };
    const onEnd = () => settle(undefined);
    const onError = () => settle(new RequestAbortedError());
    // 'close' before 'end' means the body never completed.
    const onClose = () => settle(new RequestAbortedError());
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}
