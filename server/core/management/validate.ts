// Field checks shared by the management operations. Each throws InvalidArgumentError naming the
// field, so every bad input reaches the caller as InvalidArgument with the field in its message.
import { InvalidArgumentError } from "../errors.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const HOSTNAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

let timeZones: Set<string> | undefined;
let currencies: Set<string> | undefined;

export function requireUuid(field: string, value: string): string {
  if (value === "") throw new InvalidArgumentError(field, "is required");
  if (!UUID.test(value)) throw new InvalidArgumentError(field, `must be a UUID, got "${truncate(value)}"`);
  return value.toLowerCase();
}

export function requireText(field: string, value: string, maxLength: number): string {
  const trimmed = value.trim();
  if (trimmed === "") throw new InvalidArgumentError(field, "is required");
  return optionalText(field, trimmed, maxLength);
}

export function optionalText(field: string, value: string, maxLength: number): string {
  const trimmed = value.trim();
  if (trimmed.length > maxLength) throw new InvalidArgumentError(field, `must be at most ${maxLength} characters`);
  if (/[\u0000-\u001f\u007f]/.test(trimmed)) throw new InvalidArgumentError(field, "must not contain control characters");
  return trimmed;
}

/** A bare host name: lower case, no scheme, port or path (`example.com`, `shop.example.co.uk`). */
export function requireDomain(field: string, value: string): string {
  const domain = value.trim().toLowerCase().replace(/\.$/, "");
  if (domain === "") throw new InvalidArgumentError(field, "is required");
  if (/[/:?#@\s]/.test(domain) || !HOSTNAME.test(domain) || !domain.includes(".") && domain !== "localhost") {
    throw new InvalidArgumentError(field, `must be a host name such as example.com, without scheme, port or path; got "${truncate(value)}"`);
  }
  return domain;
}

export function requireTimeZone(field: string, value: string): string {
  timeZones ??= new Set([...Intl.supportedValuesOf("timeZone"), "UTC", "Etc/UTC"]);
  if (!timeZones.has(value)) {
    // Canonical names are listed; links such as "Europe/Kiev" are accepted if Intl knows them.
    try {
      new Intl.DateTimeFormat("en", { timeZone: value });
      if (value === "") throw new Error();
    } catch {
      throw new InvalidArgumentError(field, `must be an IANA time zone such as America/New_York, got "${truncate(value)}"`);
    }
  }
  return value;
}

export function requireCurrency(field: string, value: string): string {
  currencies ??= new Set(Intl.supportedValuesOf("currency"));
  const code = value.trim().toUpperCase();
  if (!currencies.has(code)) throw new InvalidArgumentError(field, `must be an ISO 4217 currency code such as USD, got "${truncate(value)}"`);
  return code;
}

export function requireRange(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(field, `must be a whole number from ${min} to ${max}, got ${value}`);
  }
  return value;
}

export function requireRegex(field: string, value: string): string {
  try {
    new RegExp(value);
  } catch {
    throw new InvalidArgumentError(field, "is not a valid regular expression");
  }
  return value;
}

export function truncate(value: string, max = 60): string {
  return value.length > max ? `${value.slice(0, max)}…` : value;
}
