// Webhook deliveries: a signed POST, and what its outcome means for retrying. The signature
// follows the scheme receivers already know from payment providers: the header carries the time
// it was signed and an HMAC-SHA256 of "<time>.<body>", so a receiver can check both that Beacon
// sent the body and that it is fresh (refusing replays outside a tolerance).
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "Beacon-Signature";

export function signatureHeader(secret: string, body: string, unixSeconds: number): string {
  const digest = createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex");
  return `t=${unixSeconds},v1=${digest}`;
}

/** A receiver's check: the header matches the body and was made within `toleranceSeconds` of now. */
export function verifySignature(secret: string, body: string, header: string, nowSeconds = Math.floor(Date.now() / 1000), toleranceSeconds = 300): boolean {
  const parts = new Map(header.split(",").map((part) => {
    const at = part.indexOf("=");
    return [part.slice(0, at).trim(), part.slice(at + 1).trim()] as const;
  }));
  const t = Number(parts.get("t"));
  const given = parts.get("v1") ?? "";
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds || !/^[0-9a-f]{64}$/.test(given)) return false;
  const expected = createHmac("sha256", secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(given, "hex"));
}

export interface WebhookRequest {
  endpoint: string;
  body: string;
  secret: string;
  /** Extra headers (the subscription and delivery ids). */
  headers: Record<string, string>;
  timeoutMs: number;
}

export interface WebhookOutcome {
  /** The endpoint's status; 0 when there was no answer. */
  statusCode: number;
  succeeded: boolean;
  /** Whether another attempt may succeed: no answer, a timeout, 408, 429 or 5xx. */
  retryable: boolean;
  error: string;
  durationMs: number;
}

export async function postWebhook(request: WebhookRequest, fetchImpl: typeof fetch = fetch): Promise<WebhookOutcome> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  try {
    const response = await fetchImpl(request.endpoint, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "User-Agent": "Beacon-Webhooks/1",
        [SIGNATURE_HEADER]: signatureHeader(request.secret, request.body, Math.floor(Date.now() / 1000)),
        ...request.headers,
      },
      body: request.body,
      // A redirect could send the signed result somewhere the subscriber never named.
      redirect: "manual",
      signal: AbortSignal.timeout(request.timeoutMs),
    });
    // The answer's body is not used; reading it frees the connection.
    await response.arrayBuffer().catch(() => undefined);
    const status = response.status;
    if (status >= 200 && status < 300) return { statusCode: status, succeeded: true, retryable: false, error: "", durationMs: elapsed() };
    const retryable = status >= 500 || status === 408 || status === 429;
    const error = status >= 300 && status < 400 ? `the endpoint answered ${status} (redirects are not followed)` : `the endpoint answered ${status}`;
    return { statusCode: status, succeeded: false, retryable, error, durationMs: elapsed() };
  } catch (err) {
    const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : err instanceof Error ? err.message : String(err);
    const error = timedOut ? `no answer within ${request.timeoutMs} ms` : `could not reach the endpoint: ${cause}`;
    return { statusCode: 0, succeeded: false, retryable: true, error: error.slice(0, 500), durationMs: elapsed() };
  }
}
