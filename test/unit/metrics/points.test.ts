// Checking one metric point against its definition, NDJSON lines, series ids and metadata schemas.
import { describe, expect, it } from "vitest";
import { ndjsonLines, parsePointLine } from "../../../server/core/metrics/ndjson.js";
import { checkPoint, type IncomingMetricPoint, type MetricDefinitionView } from "../../../server/core/metrics/points.js";
import { schemaViolation } from "../../../server/core/metrics/schema.js";
import { seriesIdOf } from "../../../server/core/metrics/series.js";

const NOW = Date.UTC(2026, 0, 10, 12);
const orders: MetricDefinitionView = { id: "d1", name: "orders_count", type: "counter", tags: ["country", "channel"], aggregationDefault: "sum", retentionDays: 30, schema: {}, formula: null };
const point = (over: Partial<IncomingMetricPoint> = {}): IncomingMetricPoint => ({
  metricName: "orders_count",
  value: 3,
  timestamp: NOW - 60_000,
  source: "checkout",
  tags: { country: "GB", channel: "web" },
  metadata: undefined,
  idempotencyKey: "",
  ...over,
});
const check = (p: IncomingMetricPoint, d = orders) => checkPoint(p, d, { siteId: "s1", receivedAt: NOW, defaultPointId: () => "generated" });
const refusal = (p: IncomingMetricPoint, d = orders) => {
  const result = check(p, d);
  if (!("error" in result)) throw new Error("expected a refusal");
  return result.error;
};

describe("checkPoint", () => {
  it("accepts a good point, with canonical tags and a stable series id", () => {
    const result = check(point({ tags: { channel: "web", country: "GB" }, idempotencyKey: " k1 " }));
    if ("error" in result) throw new Error(result.error.message);
    expect(result.point).toMatchObject({ siteId: "s1", metric: "orders_count", ts: NOW - 60_000, pointId: "k1", value: 3, source: "checkout" });
    expect(Object.keys(result.point.tags)).toEqual(["channel", "country"]);
    expect(result.point.seriesId).toBe(seriesIdOf({ country: "GB", channel: "web" }));
    expect(check(point({ timestamp: undefined }))).toMatchObject({ point: { ts: NOW, pointId: "generated" } });
  });

  it("treats an empty tag value as no tag", () => {
    const a = check(point({ tags: { country: "GB", channel: "" } }));
    const b = check(point({ tags: { country: "GB" } }));
    expect("point" in a && "point" in b && a.point.seriesId === b.point.seriesId).toBe(true);
  });

  it.each([
    [{ value: Number.NaN }, "value", "INVALID_VALUE"],
    [{ value: undefined }, "value", "INVALID_VALUE"],
    [{ value: -1 }, "value", "INVALID_VALUE"],
    [{ timestamp: NOW + 2 * 3600_000 }, "timestamp", "TIMESTAMP_IN_FUTURE"],
    [{ timestamp: NOW - 31 * 86_400_000 }, "timestamp", "TIMESTAMP_TOO_OLD"],
    [{ tags: { colour: "red" } }, "tags.colour", "TAG_NOT_ALLOWED"],
    [{ tags: { "bad key": "x" } }, "tags", "INVALID_TAG"],
    [{ tags: { country: { nested: true } } }, "tags.country", "INVALID_TAG"],
    [{ source: "x".repeat(201) }, "source", "INVALID_SOURCE"],
    [{ idempotencyKey: "k".repeat(129) }, "idempotency_key", "INVALID_IDEMPOTENCY_KEY"],
  ] as [Partial<IncomingMetricPoint>, string, string][])("refuses %j in %s", (over, field, reason) => {
    expect(refusal(point(over))).toMatchObject({ field, reason });
  });

  it("refuses points of derived KPIs", () => {
    expect(refusal(point(), { ...orders, formula: "a / b" })).toMatchObject({ field: "metric_name", reason: "DERIVED_METRIC" });
  });

  it("checks metadata against the definition's schema", () => {
    const withSchema = { ...orders, schema: { type: "object", required: ["plan"], properties: { plan: { enum: ["free", "pro"] } }, additionalProperties: false } };
    expect(refusal(point({ metadata: { plan: "gold" } }), withSchema)).toMatchObject({ field: "metadata.plan", reason: "INVALID_METADATA" });
    expect(refusal(point({ metadata: {} }), withSchema)).toMatchObject({ field: "metadata.plan", reason: "INVALID_METADATA" });
    expect(refusal(point({ metadata: { plan: "pro", x: 1 } }), withSchema)).toMatchObject({ field: "metadata.x" });
    expect(check(point({ metadata: { plan: "pro" } }), withSchema)).toHaveProperty("point");
  });
});

describe("schemaViolation", () => {
  it("checks types, ranges, lengths, patterns and items", () => {
    const schema = { type: "object", properties: { n: { type: "integer", minimum: 1, maximum: 3 }, s: { type: "string", maxLength: 2, pattern: "^[a-z]+$" }, xs: { type: "array", items: { type: "number" } } } };
    expect(schemaViolation(schema, { n: 2, s: "ab", xs: [1, 2.5] })).toBeUndefined();
    expect(schemaViolation(schema, { n: 2.5 })?.path).toBe("metadata.n");
    expect(schemaViolation(schema, { n: 4 })?.problem).toBe("must be at most 3");
    expect(schemaViolation(schema, { s: "abc" })?.problem).toContain("at most 2");
    expect(schemaViolation(schema, { s: "A" })?.problem).toContain("must match");
    expect(schemaViolation(schema, { xs: [1, "2"] })?.path).toBe("metadata.xs[1]");
  });
});

describe("NDJSON", () => {
  async function* chunks(...parts: string[]) {
    for (const part of parts) yield Buffer.from(part);
  }
  const collect = async (lines: AsyncIterable<{ text: string; tooLong?: boolean }>) => {
    const out: string[] = [];
    for await (const line of lines) out.push(line.tooLong ? "<too long>" : line.text);
    return out;
  };

  it("splits lines across chunk boundaries, with CRLF and without a final newline", async () => {
    expect(await collect(ndjsonLines(chunks('{"a"', ":1}\r\n\n{", '"b":2}\n', "last")))).toEqual(['{"a":1}', "", '{"b":2}', "last"]);
  });

  it("drops the text of a line that is too long, but keeps counting lines", async () => {
    expect(await collect(ndjsonLines(chunks("short\n", "x".repeat(50), "y".repeat(60), "\nafter\n"), 100))).toEqual(["short", "<too long>", "after"]);
  });

  it("reads points in snake_case or camelCase, with RFC 3339 or epoch-ms times", () => {
    expect(parsePointLine('{"metric_name":"m","value":"1.5","timestamp":"2025-08-01T00:00:00Z","tags":{"error":"x"},"idempotency_key":"k"}')).toEqual({
      point: { metricName: "m", value: 1.5, timestamp: Date.UTC(2025, 7, 1), source: "", tags: { error: "x" }, metadata: undefined, idempotencyKey: "k" },
    });
    expect(parsePointLine('{"metricName":"m","value":2,"timestamp":1000}')).toMatchObject({ point: { metricName: "m", value: 2, timestamp: 1000 } });
    expect(parsePointLine("{nope")).toEqual({ error: "is not valid JSON" });
    expect(parsePointLine("[1]")).toEqual({ error: "must be a JSON object" });
    expect(parsePointLine('{"metric_name":"m","value":true}')).toEqual({ error: "value: must be a number" });
    expect(parsePointLine('{"metric_name":"m","value":1,"timestamp":"yesterday"}')).toMatchObject({ error: expect.stringContaining("timestamp") });
    expect(parsePointLine('{"metric_name":"m","value":1,"tags":[1]}')).toEqual({ error: "tags: must be a JSON object" });
  });
});
