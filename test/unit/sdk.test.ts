// The SDK: typed clients for the five services, the API key on every call, over the default
// fetch transport and over any transport of the caller's (here Connect's in-memory router).
import { create } from "@bufbuild/protobuf";
import { createRouterTransport, type ServiceImpl } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApiKeyInterceptor, createBeaconClient, GetSiteResponseSchema, ManagementService, SiteSchema } from "../../sdk/index.js";
import { createNodeTransport } from "../../sdk/node.js";

const siteId = "0b6f3c52-3d6a-4a53-9d5c-2f1e5b9a7c10";

/** A ManagementService that answers GetSite and remembers each call's Authorization header. */
function fakeManagement(seen: (string | null)[]): Partial<ServiceImpl<typeof ManagementService>> {
  return {
    getSite(req, ctx) {
      seen.push(ctx.requestHeader.get("authorization"));
      return create(GetSiteResponseSchema, { site: create(SiteSchema, { id: req.id, domain: "example.com", trackingId: "BK-TEST2345" }) });
    },
  };
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("createBeaconClient", () => {
  it("sends the API key as a bearer token over the default fetch transport, and reads the answer", async () => {
    const requests: { url: string; headers: Headers; body: unknown }[] = [];
    vi.stubGlobal("fetch", async (url: string, init: RequestInit) => {
      requests.push({ url, headers: new Headers(init.headers), body: JSON.parse(new TextDecoder().decode(init.body as Uint8Array)) });
      const answer = { sites: [{ id: siteId, domain: "example.com", trackingId: "BK-TEST2345" }], nextPageToken: "" };
      return new Response(JSON.stringify(answer), { status: 200, headers: { "Content-Type": "application/json" } });
    });
    const beacon = createBeaconClient({ baseUrl: "http://beacon.test:8787", apiKey: "bk_secret" });

    const { sites } = await beacon.management.listSites({ pageSize: 2 });

    expect(sites.map((site) => [site.id, site.trackingId])).toEqual([[siteId, "BK-TEST2345"]]);
    expect(requests).toHaveLength(1);
    expect(requests[0].url).toBe("http://beacon.test:8787/beacon.v1.ManagementService/ListSites");
    expect(requests[0].headers.get("authorization")).toBe("Bearer bk_secret");
    expect(requests[0].body).toEqual({ pageSize: 2 });
  });

  it("sends no Authorization header without a key (public tracking calls)", async () => {
    const headers: Headers[] = [];
    vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
      headers.push(new Headers(init.headers));
      return new Response("{}", { status: 200, headers: { "Content-Type": "application/json" } });
    });
    await createBeaconClient({ baseUrl: "http://beacon.test" }).tracking.collect({ v: "1", tid: "BK-TEST2345" });
    expect(headers[0].has("authorization")).toBe(false);
  });

  it("round-trips a call through a caller's transport carrying the key's interceptor", async () => {
    const seen: (string | null)[] = [];
    const transport = createRouterTransport((router) => router.service(ManagementService, fakeManagement(seen)), {
      transport: { interceptors: [createApiKeyInterceptor("bk_router")] },
    });
    const beacon = createBeaconClient({ transport });

    const { site } = await beacon.management.getSite({ id: siteId });
    // A call that sets its own header keeps it.
    await beacon.management.getSite({ id: siteId }, { headers: { Authorization: "Bearer bk_other" } });

    expect(site?.id).toBe(siteId);
    expect(site?.trackingId).toBe("BK-TEST2345");
    expect(seen).toEqual(["Bearer bk_router", "Bearer bk_other"]);
  });

  it("has a typed client for each of the five services", () => {
    const beacon = createBeaconClient({ baseUrl: "http://beacon.test" });
    expect(typeof beacon.tracking.trackEvent).toBe("function");
    expect(typeof beacon.reporting.runReport).toBe("function");
    expect(typeof beacon.management.createSite).toBe("function");
    expect(typeof beacon.streaming.watchRealtime).toBe("function");
    expect(typeof beacon.export.createExport).toBe("function");
  });
});

describe("createNodeTransport", () => {
  it("refuses gRPC over HTTP/1.1, which gRPC cannot use", () => {
    expect(() => createNodeTransport({ baseUrl: "http://localhost:8787", protocol: "grpc", httpVersion: "1.1" })).toThrow(/HTTP\/2/);
  });
});
