import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { postWebhook, signatureHeader, verifySignature, type WebhookRequest } from "../../../server/core/streams/webhooks.js";

const request: WebhookRequest = { endpoint: "https://hooks.example.com/x", body: '{"a":1}', secret: "whsec_test", headers: { "Beacon-Delivery": "d-1" }, timeoutMs: 1000 };

describe("webhook signatures", () => {
  it("are t=<unix>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">, checked with a tolerance", () => {
    const header = signatureHeader("whsec_test", '{"a":1}', 1_700_000_000);
    expect(header).toBe(`t=1700000000,v1=${createHmac("sha256", "whsec_test").update('1700000000.{"a":1}').digest("hex")}`);
    expect(verifySignature("whsec_test", '{"a":1}', header, 1_700_000_100)).toBe(true);
    expect(verifySignature("whsec_test", '{"a":2}', header, 1_700_000_100)).toBe(false);
    expect(verifySignature("whsec_other", '{"a":1}', header, 1_700_000_100)).toBe(false);
    expect(verifySignature("whsec_test", '{"a":1}', header, 1_700_001_000)).toBe(false);
    expect(verifySignature("whsec_test", '{"a":1}', "garbage", 1_700_000_000)).toBe(false);
  });
});

describe("postWebhook", () => {
  const answering = (status: number) => (async () => new Response(null, { status })) as unknown as typeof fetch;

  it("signs the POST and reports success for a 2xx", async () => {
    let seen: RequestInit | undefined;
    const outcome = await postWebhook(request, (async (_url: string, init: RequestInit) => {
      seen = init;
      return new Response("ok", { status: 200 });
    }) as unknown as typeof fetch);
    expect(outcome).toMatchObject({ statusCode: 200, succeeded: true, retryable: false, error: "" });
    const headers = seen!.headers as Record<string, string>;
    expect(verifySignature("whsec_test", request.body, headers["Beacon-Signature"])).toBe(true);
    expect(headers["Beacon-Delivery"]).toBe("d-1");
    expect(seen!.redirect).toBe("manual");
  });

  it("retries 5xx, 408, 429 and no answer; not other 4xx or redirects", async () => {
    expect(await postWebhook(request, answering(500))).toMatchObject({ statusCode: 500, succeeded: false, retryable: true });
    expect(await postWebhook(request, answering(503))).toMatchObject({ retryable: true });
    expect(await postWebhook(request, answering(429))).toMatchObject({ retryable: true });
    expect(await postWebhook(request, answering(408))).toMatchObject({ retryable: true });
    expect(await postWebhook(request, answering(404))).toMatchObject({ statusCode: 404, retryable: false });
    expect(await postWebhook(request, answering(302))).toMatchObject({ statusCode: 302, retryable: false, error: expect.stringContaining("redirects") });
    const refused = await postWebhook(request, (async () => {
      throw new TypeError("fetch failed", { cause: new Error("connect ECONNREFUSED") });
    }) as unknown as typeof fetch);
    expect(refused).toMatchObject({ statusCode: 0, succeeded: false, retryable: true, error: expect.stringContaining("ECONNREFUSED") });
    const slow = await postWebhook({ ...request, timeoutMs: 10 }, ((_url: string, init: RequestInit) =>
      new Promise((_, reject) => init.signal!.addEventListener("abort", () => reject(init.signal!.reason)))) as unknown as typeof fetch);
    expect(slow).toMatchObject({ statusCode: 0, retryable: true, error: "no answer within 10 ms" });
  });
});
