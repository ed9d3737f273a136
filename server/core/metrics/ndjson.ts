// NDJSON for bulk ingestion: splitting a byte stream into lines (with a limit on line length, so
// one endless line cannot exhaust memory) and reading each line as a metric point. A line holds
// one JSON object with MetricPoint's fields in snake_case or camelCase:
//   {"metric_name":"orders_count","value":3,"timestamp":"2025-08-01T10:00:00Z","tags":{"country":"GB"}}
// `timestamp` is RFC 3339 text or epoch milliseconds; blank lines are skipped.
import type { IncomingMetricPoint } from "./points.js";

export const MAX_LINE_BYTES = 64 * 1024;

/** One line of the input: its text, or `tooLong` when it exceeded the limit (its text is dropped). */
export type NdjsonLine = { text: string; tooLong?: false } | { text: ""; tooLong: true };

/** Splits a byte stream into lines (LF or CRLF), numbered by position from 1 by the caller. */
export async function* ndjsonLines(chunks: AsyncIterable<Uint8Array | string>, maxLineBytes = MAX_LINE_BYTES): AsyncGenerator<NdjsonLine> {
  let parts: Buffer[] = [];
  let size = 0;
  let tooLong = false;
  const finish = (): NdjsonLine => {
    const line: NdjsonLine = tooLong ? { text: "", tooLong: true } : { text: Buffer.concat(parts).toString("utf8").replace(/\r$/, "") };
    parts = [];
    size = 0;
    tooLong = false;
    return line;
  };
  for await (const raw of chunks) {
    let chunk = typeof raw === "string" ? Buffer.from(raw) : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    for (;;) {
      const newline = chunk.indexOf(0x0a);
      const piece = newline === -1 ? chunk : chunk.subarray(0, newline);
      if (!tooLong) {
        if (size + piece.length > maxLineBytes) {
          tooLong = true;
          parts = [];
        } else {
          // Copied: the stream may reuse its buffers.
          parts.push(Buffer.from(piece));
          size += piece.length;
        }
      }
      if (newline === -1) break;
      yield finish();
      chunk = chunk.subarray(newline + 1);
    }
  }
  if (size > 0 || tooLong) yield finish();
}

class LineProblem {
  constructor(readonly error: string) {}
}

const isError = (value: unknown): value is LineProblem => value instanceof LineProblem;

function text(value: unknown, field: string): string | LineProblem {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") return new LineProblem(`${field}: must be a string`);
  return value;
}

function object(value: unknown, field: string): Record<string, unknown> | undefined | LineProblem {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "object" || Array.isArray(value)) return new LineProblem(`${field}: must be a JSON object`);
  return value as Record<string, unknown>;
}

/** A line read as a point, or what is wrong with it ("field: problem"). */
export function parsePointLine(line: string): { point: IncomingMetricPoint } | { error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return { error: "is not valid JSON" };
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return { error: "must be a JSON object" };
  const o = parsed as Record<string, unknown>;
  const metricName = text(o.metric_name ?? o.metricName, "metric_name");
  if (isError(metricName)) return { error: metricName.error };
  let value: number | undefined;
  const rawValue = o.value;
  if (typeof rawValue === "number") value = rawValue;
  else if (typeof rawValue === "string" && rawValue.trim() !== "" && Number.isFinite(Number(rawValue))) value = Number(rawValue);
  else if (rawValue !== undefined && rawValue !== null) return { error: "value: must be a number" };
  let timestamp: number | undefined;
  const rawTime = o.timestamp;
  if (typeof rawTime === "number") timestamp = rawTime;
  else if (typeof rawTime === "string") {
    timestamp = Date.parse(rawTime);
    if (!Number.isFinite(timestamp)) return { error: "timestamp: must be RFC 3339 time text or epoch milliseconds" };
  } else if (rawTime !== undefined && rawTime !== null) return { error: "timestamp: must be RFC 3339 time text or epoch milliseconds" };
  const source = text(o.source, "source");
  if (isError(source)) return { error: source.error };
  const tags = object(o.tags, "tags");
  if (isError(tags)) return { error: tags.error };
  const metadata = object(o.metadata, "metadata");
  if (isError(metadata)) return { error: metadata.error };
  const idempotencyKey = text(o.idempotency_key ?? o.idempotencyKey, "idempotency_key");
  if (isError(idempotencyKey)) return { error: idempotencyKey.error };
  return { point: { metricName, value, timestamp, source, tags: tags ?? {}, metadata, idempotencyKey } };
}
