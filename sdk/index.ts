// Beacon's typed client, for browsers and Node alike: one client per service, generated from the
// same .proto contracts the server implements. It imports only the generated code and Connect, so
// a bundler pulls in nothing of the server.
//
//   const beacon = createBeaconClient({ baseUrl: "http://localhost:8787", apiKey: process.env.BEACON_API_KEY });
//   const { sites } = await beacon.management.listSites({});
//
// The default transport is Connect over fetch (connect-web), which works in browsers and in
// Node 18+. For gRPC or HTTP/2 from Node, pass `createNodeTransport` from `./node.js`.
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ExportService } from "../gen/beacon/v1/export_service_pb.js";
import { ManagementService } from "../gen/beacon/v1/management_service_pb.js";
import { ReportingService } from "../gen/beacon/v1/reporting_service_pb.js";
import { StreamingService } from "../gen/beacon/v1/streaming_service_pb.js";
import { TrackingService } from "../gen/beacon/v1/tracking_service_pb.js";

// The messages, enums and schemas the clients take and return (build requests with
// `create(XSchema, …)` from @bufbuild/protobuf, or pass plain objects).
export * from "../gen/beacon/v1/api_key_pb.js";
export * from "../gen/beacon/v1/audit_pb.js";
export * from "../gen/beacon/v1/common_pb.js";
export * from "../gen/beacon/v1/dead_letter_pb.js";
export * from "../gen/beacon/v1/event_pb.js";
export * from "../gen/beacon/v1/export_pb.js";
export * from "../gen/beacon/v1/export_service_pb.js";
export * from "../gen/beacon/v1/goal_pb.js";
export * from "../gen/beacon/v1/management_service_pb.js";
export * from "../gen/beacon/v1/metric_definition_pb.js";
export * from "../gen/beacon/v1/organisation_pb.js";
export * from "../gen/beacon/v1/report_pb.js";
export * from "../gen/beacon/v1/reporting_service_pb.js";
export * from "../gen/beacon/v1/settings_pb.js";
export * from "../gen/beacon/v1/site_pb.js";
export * from "../gen/beacon/v1/streaming_service_pb.js";
export * from "../gen/beacon/v1/subscription_pb.js";
export * from "../gen/beacon/v1/tracking_service_pb.js";
// Errors come back as ConnectError with a Code; ErrorDetail (in common_pb) says which field.
export { Code, ConnectError } from "@connectrpc/connect";

export interface BeaconClient {
  /** Events in: single, batch, measurement-protocol hits, server-side hits, dry runs. Public except RecordHit. */
  tracking: Client<typeof TrackingService>;
  /** Reports, time series, realtime numbers and aggregates. */
  reporting: Client<typeof ReportingService>;
  /** Organisation, sites, goals, API keys, metric definitions, settings, quotas, audit log. */
  management: Client<typeof ManagementService>;
  /** Server streams: realtime metric updates and the live event feed. */
  streaming: Client<typeof StreamingService>;
  /** Exports of events and reports, and report schedules. */
  export: Client<typeof ExportService>;
}

export type BeaconClientOptions =
  | {
      /** Beacon's address, e.g. `http://localhost:8787`. */
      baseUrl: string;
      /** An API key; sent as `Authorization: Bearer <key>`. Tracking RPCs other than RecordHit need none. */
      apiKey?: string;
      /** Further interceptors for the default transport (logging, tracing…), run before the key's. */
      interceptors?: Interceptor[];
      transport?: undefined;
    }
  | {
      /**
       * A transport of your own: `createNodeTransport({ baseUrl, apiKey, protocol: "grpc" })`, or
       * `createRouterTransport` in tests. It carries the key itself (`createApiKeyInterceptor`).
       */
      transport: Transport;
      baseUrl?: undefined;
      apiKey?: undefined;
      interceptors?: undefined;
    };

export function createBeaconClient(options: BeaconClientOptions): BeaconClient {
  const transport =
    options.transport ??
    createConnectTransport({ baseUrl: options.baseUrl, interceptors: [...(options.interceptors ?? []), ...apiKeyInterceptors(options.apiKey)] });
  return {
    tracking: createClient(TrackingService, transport),
    reporting: createClient(ReportingService, transport),
    management: createClient(ManagementService, transport),
    streaming: createClient(StreamingService, transport),
    export: createClient(ExportService, transport),
  };
}

/** Sends `apiKey` as `Authorization: Bearer <key>` on every call that does not set its own. */
export function createApiKeyInterceptor(apiKey: string): Interceptor {
  const authorization = `Bearer ${apiKey}`;
  return (next) => (req) => {
    if (!req.header.has("Authorization")) req.header.set("Authorization", authorization);
    return next(req);
  };
}

/** The key's interceptor, or none without a key: for the transports this SDK builds. */
export function apiKeyInterceptors(apiKey: string | undefined): Interceptor[] {
  return apiKey ? [createApiKeyInterceptor(apiKey)] : [];
}
