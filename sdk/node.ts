// Transports for Node (connect-node): gRPC, gRPC-web or Connect, over HTTP/1.1 or HTTP/2, all on
// Beacon's one port. Browsers use the default fetch transport of `createBeaconClient` instead.
//
//   const beacon = createBeaconClient({
//     transport: createNodeTransport({ baseUrl: "http://localhost:8787", apiKey, protocol: "grpc" }),
//   });
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { apiKeyInterceptors } from "./index.js";

export interface NodeTransportOptions {
  /** Beacon's address, e.g. `http://localhost:8787`; `http:` with HTTP/2 means cleartext (h2c). */
  baseUrl: string;
  /** An API key; sent as `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** `connect` unless set. */
  protocol?: "connect" | "grpc" | "grpc-web";
  /** `2` for gRPC (which needs it), `1.1` otherwise unless set. */
  httpVersion?: "1.1" | "2";
  /** Use the binary Protobuf format instead of JSON (Connect and gRPC-web; gRPC is always binary). */
  useBinaryFormat?: boolean;
  /** Further interceptors (logging, tracing…), run before the key's. */
  interceptors?: Interceptor[];
}

export function createNodeTransport(options: NodeTransportOptions): Transport {
  const { baseUrl, protocol = "connect", useBinaryFormat } = options;
  const interceptors = [...(options.interceptors ?? []), ...apiKeyInterceptors(options.apiKey)];
  switch (protocol) {
    case "grpc":
      if (options.httpVersion === "1.1") throw new Error("gRPC needs HTTP/2: use httpVersion \"2\", or the grpc-web or connect protocol");
      return createGrpcTransport({ baseUrl, interceptors });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: options.httpVersion ?? "1.1", useBinaryFormat, interceptors });
    case "connect":
      return createConnectTransport({ baseUrl, httpVersion: options.httpVersion ?? "1.1", useBinaryFormat, interceptors });
    default:
      throw new Error(`unknown protocol "${String(protocol)}": use connect, grpc or grpc-web`);
  }
}
