// Opaque page tokens for keyset pagination: the sort key of the last item of a page, so the next
// page starts after it even when rows are inserted meanwhile. Clients must not parse them.
import { InvalidArgumentError } from "./errors.js";

export interface PageCursor {
  /** Sort key of the last item returned (ISO time or number). */
  after: string | number;
  /** Tie-breaker: the last item's id. */
  id: string;
}

export function encodePageToken(cursor: PageCursor): string {
  return Buffer.from(JSON.stringify([cursor.after, cursor.id])).toString("base64url");
}

export function decodePageToken(token: string, field = "page_token"): PageCursor | undefined {
  if (token === "") return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (Array.isArray(parsed) && parsed.length === 2 && (typeof parsed[0] === "string" || typeof parsed[0] === "number") && typeof parsed[1] === "string") {
      return { after: parsed[0], id: parsed[1] };
    }
  } catch {
    // fall through to the error below
  }
  throw new InvalidArgumentError(field, "is not a token from a previous response");
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export function pageSize(requested: number, field = "page_size"): number {
  if (requested < 0) throw new InvalidArgumentError(field, "must not be negative");
  if (requested > MAX_PAGE_SIZE) throw new InvalidArgumentError(field, `must be at most ${MAX_PAGE_SIZE}`);
  return requested === 0 ? DEFAULT_PAGE_SIZE : requested;
}
