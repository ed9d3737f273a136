// Foundation acceptance: one real Beacon on one port answers every client Beacon has: grpc-js over
// h2c, plain HTTP/1.1 Connect JSON, gRPC-web, and Connect-node's gRPC and Connect transports over
// both HTTP versions and both formats. Real Postgres and Redis behind it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { startTestBeacon, type TestBeacon } from "../support/beacon.js";

const protoDir = fileURLToPath(new URL("../../proto", import.meta.url));

const loaderOptions: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protoDir],
};

/** A grpc-js service client: each RPC by its proto name, callback style. */
type GrpcMethod = (request: object, metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null, response?: Record<string, unknown>) => void) => grpc.ClientUnaryCall;
type GrpcClient = grpc.Client & Record<string, GrpcMethod>;
type GrpcClientConstructor = new (address: string, credentials: grpc.ChannelCredentials) => GrpcClient;

/** Loads `proto/<file>` with proto-loader and returns the constructor of the service named `typeName`. */
function grpcServiceClient(file: string, typeName: string): GrpcClientConstructor {
  const definition = protoLoader.loadSync(file, loaderOptions);
  let node: unknown = grpc.loadPackageDefinition(definition);
  for (const part of typeName.split(".")) node = (node as Record<string, unknown>)[part];
  if (typeof node !== "function") throw new Error(`${typeName} not found in ${file}`);
  return node as GrpcClientConstructor;
}

function metadataWith(key: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (key !== undefined) metadata.set("authorization", `Bearer ${key}`);
  return metadata;
}

/** Calls a unary grpc-js method; resolves with the response or with the ServiceError. */
function grpcCall(client: GrpcClient, method: string, request: object, key?: string): Promise<{ response?: Record<string, unknown>; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    client[method](request, metadataWith(key), (error, response) => resolve(error ? { error } : { response }));
  });
}

function withKey(key: string): Interceptor {
  return (next) => (req) => {
    req.header.set("Authorization", `Bearer ${key}`);
    return next(req);
  };
}

// Status codes that mean the call never reached a handler: the transport, not the application.
const transportCodes = [grpc.status.UNAVAILABLE, grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.CANCELLED, grpc.status.DEADLINE_EXCEEDED];

describe("one port, every protocol", () => {
  let beacon: TestBeacon;
  const grpcClients: grpc.Client[] = [];
  const grpcClient = (file: string, typeName: string): GrpcClient => {
    const Client = grpcServiceClient(file, typeName);
    const client = new Client(`127.0.0.1:${beacon.port}`, grpc.credentials.createInsecure());
    grpcClients.push(client);
    return client;
  };

  beforeAll(async () => {
    beacon = await startTestBeacon("protocols");
  });

  afterAll(async () => {
    for (const client of grpcClients) client.close();
    await beacon?.stop();
  });

  it("grpc-js over h2c creates and lists sites with a Bearer key", async () => {
    const management = grpcClient("beacon/v1/management_service.proto", "beacon.v1.ManagementService");
    const created = await grpcCall(management, "CreateSite", { domain: "grpc.example.com", timezone: "Europe/Berlin" }, beacon.adminKey);
    expect(created.error).toBeUndefined();
    const site = created.response?.site as Record<string, unknown>;
    expect(site.domain).toBe("grpc.example.com");
    expect(site.timezone).toBe("Europe/Berlin");
    expect(site.trackingId).toMatch(/^BK-[0-9A-Z]{8}$/);

    const listed = await grpcCall(management, "ListSites", {}, beacon.adminKey);
    expect(listed.error).toBeUndefined();
    const domains = (listed.response?.sites as { domain: string }[]).map((s) => s.domain);
    expect(domains).toContain("grpc.example.com");
  });

  it("grpc-js without a key gets UNAUTHENTICATED", async () => {
    const management = grpcClient("beacon/v1/management_service.proto", "beacon.v1.ManagementService");
    const { error } = await grpcCall(management, "ListSites", {});
    expect(error?.code).toBe(grpc.status.UNAUTHENTICATED);
    const wrong = await grpcCall(management, "ListSites", {}, "bk_not-a-real-key");
    expect(wrong.error?.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it("plain HTTP/1.1 fetch of Connect JSON lists sites", async () => {
    const res = await fetch(`${beacon.baseUrl}/beacon.v1.ManagementService/ListSites`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${beacon.adminKey}` },
      body: JSON.stringify({ pageSize: 10 }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const body = (await res.json()) as { sites?: { id: string; domain: string }[] };
    expect(Array.isArray(body.sites)).toBe(true);

    // Reads are NO_SIDE_EFFECTS, so Connect also serves them with GET (cacheable).
    const message = encodeURIComponent(JSON.stringify({ pageSize: 10 }));
    const viaGet = await fetch(`${beacon.baseUrl}/beacon.v1.ManagementService/ListSites?connect=v1&encoding=json&message=${message}`, {
      headers: { Authorization: `Bearer ${beacon.adminKey}` },
    });
    expect(viaGet.status).toBe(200);
    expect(((await viaGet.json()) as { sites?: unknown[] }).sites?.length).toBe(body.sites?.length);

    const unauthenticated = await fetch(`${beacon.baseUrl}/beacon.v1.ManagementService/ListSites`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    expect(unauthenticated.status).toBe(401);
    expect(((await unauthenticated.json()) as { code: string }).code).toBe("unauthenticated");
  });

  const transports: [string, () => Transport][] = [
    ["gRPC-web over HTTP/1.1", () => createGrpcWebTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [withKey(beacon.adminKey)] })],
    ["gRPC over h2c", () => createGrpcTransport({ baseUrl: beacon.baseUrl, interceptors: [withKey(beacon.adminKey)] })],
    ["Connect JSON over HTTP/2", () => createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "2", interceptors: [withKey(beacon.adminKey)] })],
    ["Connect JSON over HTTP/1.1", () => createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", interceptors: [withKey(beacon.adminKey)] })],
    ["Connect binary over HTTP/2", () => createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors: [withKey(beacon.adminKey)] })],
    ["Connect binary over HTTP/1.1", () => createConnectTransport({ baseUrl: beacon.baseUrl, httpVersion: "1.1", useBinaryFormat: true, interceptors: [withKey(beacon.adminKey)] })],
  ];

  it.each(transports)("%s creates, reads and lists sites", async (name, makeTransport) => {
    const client = createClient(ManagementService, makeTransport());
    const domain = `${name.toLowerCase().replace(/[^a-z0-9]+/g, "-")}.example.com`;
    const { site } = await client.createSite({ domain, requestId: `protocols-${domain}` });
    expect(site?.domain).toBe(domain);
    const got = await client.getSite({ id: site!.id });
    expect(got.site?.trackingId).toBe(site?.trackingId);
    const { sites } = await client.listSites({ pageSize: 1000 });
    expect(sites.map((s) => s.id)).toContain(site!.id);
  });

  it.each(transports)("%s reports errors with their Connect code", async (_name, makeTransport) => {
    const client = createClient(ManagementService, makeTransport());
    const error = await client.getSite({ id: "not-a-uuid" }).then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    expect(error?.code).toBe(Code.InvalidArgument);
    expect(error?.rawMessage).toContain("id");
  });

  it("the other four services answer over gRPC with their own status codes", async () => {
    const calls: [file: string, service: string, method: string][] = [
      ["beacon/v1/tracking_service.proto", "beacon.v1.TrackingService", "RecordHit"],
      ["beacon/v1/reporting_service.proto", "beacon.v1.ReportingService", "RunReport"],
      ["beacon/v1/streaming_service.proto", "beacon.v1.StreamingService", "GetSubscription"],
      ["beacon/v1/export_service.proto", "beacon.v1.ExportService", "GetExport"],
    ];
    for (const [file, service, method] of calls) {
      const client = grpcClient(file, service);
      // Every one of these needs a key, so without one the auth interceptor answers.
      const anonymous = await grpcCall(client, method, {});
      expect(anonymous.error?.code, `${service}/${method} without a key`).toBe(grpc.status.UNAUTHENTICATED);
      // With a key the call reaches the service: Unimplemented for now, a validation error once
      // the RPC exists, but never a transport failure.
      const keyed = await grpcCall(client, method, {}, beacon.adminKey);
      expect(keyed.error, `${service}/${method} with an empty request`).toBeDefined();
      expect(transportCodes, `${service}/${method}: ${keyed.error?.details}`).not.toContain(keyed.error?.code);
    }
  });

  it("grpc.health.v1.Health/Check says SERVING for the server and for each service", async () => {
    const health = grpcClient("grpc/health/v1/health.proto", "grpc.health.v1.Health");
    for (const service of ["", "beacon.v1.ManagementService", "beacon.v1.TrackingService"]) {
      const { response, error } = await grpcCall(health, "Check", { service });
      expect(error, `Check(${JSON.stringify(service)})`).toBeUndefined();
      expect(response?.status).toBe("SERVING");
    }
    const unknown = await grpcCall(health, "Check", { service: "no.such.Service" });
    expect(unknown.error?.code).toBe(grpc.status.NOT_FOUND);
  });
});
