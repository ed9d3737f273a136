// Domain errors. The core throws these; one interceptor (server/interceptors/errors.ts) maps them
// to Connect codes, and the plain-HTTP endpoints map them to HTTP statuses. Anything else that
// escapes is a bug or a driver failure and becomes Internal without echoing its message.

/** Stable, machine-readable reasons, sent to clients in an ErrorDetail. */
export type ErrorReason =
  | "INVALID_FIELD"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "STALE_ETAG"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "RATE_LIMITED"
  | "PAYLOAD_TOO_LARGE"
  | "QUOTA_EXCEEDED"
  | "UNAVAILABLE";

export abstract class BeaconError extends Error {
  abstract readonly reason: ErrorReason;
  /** The request field at fault, as a dotted path, when there is one. */
  readonly field: string;
  readonly metadata: Record<string, string>;

  constructor(message: string, field = "", metadata: Record<string, string> = {}) {
    super(message);
    this.field = field;
    this.metadata = metadata;
  }
}

/** The caller sent a value that can never be right (Connect InvalidArgument, HTTP 400). */
export class InvalidArgumentError extends BeaconError {
  override name = "InvalidArgumentError";
  readonly reason = "INVALID_FIELD" as const;
  constructor(field: string, problem: string, metadata: Record<string, string> = {}) {
    super(field ? `${field}: ${problem}` : problem, field, metadata);
  }
}

/** The resource does not exist, or the caller may not know that it exists (NotFound, 404). */
export class NotFoundError extends BeaconError {
  override name = "NotFoundError";
  readonly reason = "NOT_FOUND" as const;
  constructor(resource: string, field = "id") {
    super(`${resource} not found`, field);
  }
}

export class AlreadyExistsError extends BeaconError {
  override name = "AlreadyExistsError";
  readonly reason = "ALREADY_EXISTS" as const;
  constructor(field: string, problem: string) {
    super(`${field}: ${problem}`, field);
  }
}

/** An update carried an etag that no longer matches (Aborted, 409). */
export class StaleEtagError extends BeaconError {
  override name = "StaleEtagError";
  readonly reason = "STALE_ETAG" as const;
  constructor(resource: string, current: string) {
    super(`etag: ${resource} was changed by someone else; read it again (current etag ${current})`, "etag", { current });
  }
}

export class UnauthenticatedError extends BeaconError {
  override name = "UnauthenticatedError";
  readonly reason = "UNAUTHENTICATED" as const;
  constructor(message = "an API key is required: send Authorization: Bearer <key>") {
    super(message, "authorization");
  }
}

export class PermissionDeniedError extends BeaconError {
  override name = "PermissionDeniedError";
  readonly reason = "PERMISSION_DENIED" as const;
  constructor(message: string) {
    super(message);
  }
}

/** Too many requests (ResourceExhausted, 429 with Retry-After). */
export class RateLimitedError extends BeaconError {
  override name = "RateLimitedError";
  readonly reason = "RATE_LIMITED" as const;
  constructor(readonly retryAfterSeconds: number, what = "rate limit exceeded") {
    super(`${what}; retry after ${retryAfterSeconds} s`, "", { retry_after_seconds: String(retryAfterSeconds) });
  }
}

export class PayloadTooLargeError extends BeaconError {
  override name = "PayloadTooLargeError";
  readonly reason = "PAYLOAD_TOO_LARGE" as const;
  constructor(limitBytes: number) {
    super(`request body is larger than ${limitBytes} bytes`, "body", { limit_bytes: String(limitBytes) });
  }
}

export class QuotaExceededError extends BeaconError {
  override name = "QuotaExceededError";
  readonly reason = "QUOTA_EXCEEDED" as const;
  constructor(what: string) {
    super(what);
  }
}

/** A dependency (Redis, Postgres) cannot take the work right now (Unavailable, 503, with Retry-After when known). */
export class UnavailableError extends BeaconError {
  override name = "UnavailableError";
  readonly reason = "UNAVAILABLE" as const;
  constructor(message: string, readonly retryAfterSeconds?: number) {
    super(message, "", retryAfterSeconds === undefined ? {} : { retry_after_seconds: String(retryAfterSeconds) });
  }
}
