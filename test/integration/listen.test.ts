// One real server on port 0, reached by every kind of client Beacon has, then shut down gracefully.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import type { Client, ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { listen } from "../../server/http/listen.js";
import type { HttpListener } from "../../server/http/listen.js";
import { withCors } from "../../server/http/cors.js";
import { handleHealthHttp } from "../../server/http/health.js";
import type { ReadinessProbe } from "../../server/http/health.js";
import { createLoggingInterceptor } from "../../server/interceptors/logging.js";
import { createLogger } from "../../server/logger.js";
import { HealthService, HealthState } from "../../server/services/health.js";

const allowedOrigin = "https://app.example.com";

interface Started {
  server: HttpListener;
  state: HealthState;
  baseUrl: string;
  logLines: Record<string, unknown>[];
}

/** The server as app.ts wires it: RPCs behind CORS and the health endpoints, shutdown ending watches. */
async function start(options: {
  health?: (service: HealthService) => ServiceImpl<typeof Health>;
  probes?: Record<string, ReadinessProbe>;
  firstByteTimeoutMs?: number;
} = {}): Promise<Started> {
  const state = new HealthState();
  const logLines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: "debug", stream: { write: (line: string) => logLines.push(JSON.parse(line)) } });
  const service = new HealthService(state);
  const rpc = connectNodeAdapter({
    routes: (router) => router.service(Health, options.health ? options.health(service) : service),
    interceptors: [createLoggingInterceptor(logger)],
  });
  const health = { state, probes: options.probes ?? {}, probeTimeoutMs: 500 };
  const handler = withCors((req, res) => {
    if (!handleHealthHttp(req, res, health)) rpc(req, res);
  }, { origins: [allowedOrigin] });
  const server = await listen(handler, { port: 0, host: "127.0.0.1", logger, firstByteTimeoutMs: options.firstByteTimeoutMs });
  server.shutdownSignal.addEventListener("abort", () => state.shutdown());
  return { server, state, baseUrl: `http://127.0.0.1:${server.port}`, logLines };
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > giveUpAt) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A POST over HTTP/1.1 with node:http, which shows the Connection header fetch hides. */
function http1Post(port: number, path: string, body: string, agent?: http.Agent): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: "POST", agent, headers: { "Content-Type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

function connectRefused(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** Forwards to `port`, cutting the client's first chunk after `splitAt` bytes with a pause between. */
async function splittingProxy(port: number, splitAt: number): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    sockets.add(client).add(upstream);
    let first = true;
    client.on("data", (chunk) => {
      if (!first) {
        upstream.write(chunk);
        return;
      }
      first = false;
      client.pause();
      upstream.write(chunk.subarray(0, splitAt));
      setTimeout(() => {
        upstream.write(chunk.subarray(splitAt));
        client.resume();
      }, 50);
    });
    upstream.pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  return {
    port: (proxy.address() as net.AddressInfo).port,
    close() {
      for (const socket of sockets) socket.destroy();
      proxy.close();
    },
  };
}

describe("listen: every protocol on one port", () => {
  let started: Started;
  let postgresError: string | undefined;

  beforeAll(async () => {
    started = await start({
      probes: {
        postgres: async () => {
          if (postgresError) throw new Error(postgresError);
        },
        redis: async () => {},
      },
    });
  });
  afterAll(async () => {
    await started.server.close(1_000);
  });

  it("answers Connect JSON over plain fetch (HTTP/1.1)", async () => {
    const res = await fetch(`${started.baseUrl}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "SERVING" });
  });

  for (const httpVersion of ["1.1", "2"] as const) {
    it(`answers a Connect client over HTTP/${httpVersion}`, async () => {
      const client = createClient(Health, createConnectTransport({ baseUrl: started.baseUrl, httpVersion }));
      expect((await client.check({})).status).toBe(ServingStatus.SERVING);
    });
  }

  it("answers a Connect-es gRPC client (h2c)", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: started.baseUrl }));
    expect((await client.check({})).status).toBe(ServingStatus.SERVING);
    expect(started.logLines).toContainEqual(expect.objectContaining({ msg: "rpc", procedure: "/grpc.health.v1.Health/Check", protocol: "grpc", code: "ok" }));
  });

  it("answers a gRPC-web client over HTTP/1.1", async () => {
    const client = createClient(Health, createGrpcWebTransport({ baseUrl: started.baseUrl, httpVersion: "1.1" }));
    expect((await client.check({})).status).toBe(ServingStatus.SERVING);
    expect(started.logLines).toContainEqual(expect.objectContaining({ procedure: "/grpc.health.v1.Health/Check", protocol: "grpc-web" }));
  });

  it("answers @grpc/grpc-js loading the .proto (h2c with prior knowledge)", async () => {
    const protoPath = fileURLToPath(new URL("../../proto/grpc/health/v1/health.proto", import.meta.url));
    const definition = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { enums: String })) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    const client = new definition.grpc.health.v1.Health(`127.0.0.1:${started.server.port}`, grpc.credentials.createInsecure());
    try {
      const res = await new Promise<{ status: string }>((resolve, reject) => {
        client.Check({ service: "" }, (error: grpc.ServiceError | null, value: { status: string }) => (error ? reject(error) : resolve(value)));
      });
      expect(res.status).toBe("SERVING");
      const unknown = await new Promise<grpc.ServiceError | null>((resolve) => {
        client.Check({ service: "beacon.v1.Nope" }, (error: grpc.ServiceError | null) => resolve(error));
      });
      expect(unknown?.code).toBe(grpc.status.NOT_FOUND);
    } finally {
      client.close();
    }
  });

  it("streams Watch changes over gRPC until the client cancels", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: started.baseUrl }));
    const abort = new AbortController();
    const statuses: ServingStatus[] = [];
    const watching = (async () => {
      for await (const res of client.watch({ service: "beacon.v1.EventService" }, { signal: abort.signal })) {
        statuses.push(res.status);
        if (res.status === ServingStatus.SERVICE_UNKNOWN) started.state.setServing("beacon.v1.EventService", true);
        if (res.status === ServingStatus.SERVING) started.state.setServing("beacon.v1.EventService", false);
        if (res.status === ServingStatus.NOT_SERVING) abort.abort();
      }
    })().catch((e: unknown) => e);
    await watching;
    expect(statuses).toEqual([ServingStatus.SERVICE_UNKNOWN, ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    // The server noticed the cancel and ended the handler, leaving nothing in flight.
    await until(() => started.server.inFlight() === 0);
    await until(() => started.logLines.some((l) => l.procedure === "/grpc.health.v1.Health/Watch" && l.code === "canceled" && l.stream === true));
  });

  it("logs one line per RPC with the code in snake_case", async () => {
    const client = createClient(Health, createConnectTransport({ baseUrl: started.baseUrl, httpVersion: "1.1" }));
    await expect(client.check({ service: "missing" })).rejects.toThrow(/unknown service/);
    const line = started.logLines.findLast((l) => l.msg === "rpc");
    expect(line).toMatchObject({ level: "info", procedure: "/grpc.health.v1.Health/Check", protocol: "connect", code: "not_found" });
    expect(typeof line?.duration_ms).toBe("number");
  });

  it("decides the protocol even when the first bytes arrive in pieces", async () => {
    // "P" could begin the HTTP/2 preface or "POST": the listener must wait for more.
    const h1 = await splittingProxy(started.server.port, 1);
    const h2 = await splittingProxy(started.server.port, 5);
    try {
      const viaH1 = await http1Post(h1.port, "/grpc.health.v1.Health/Check", "{}");
      expect(viaH1.status).toBe(200);
      const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${h2.port}` }));
      expect((await client.check({})).status).toBe(ServingStatus.SERVING);
    } finally {
      h1.close();
      h2.close();
    }
  });

  it("answers CORS preflights for allowed origins only", async () => {
    const preflight = (origin: string) =>
      fetch(`${started.baseUrl}/grpc.health.v1.Health/Check`, {
        method: "OPTIONS",
        headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization" },
      });
    const allowed = await preflight(allowedOrigin);
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get("access-control-allow-origin")).toBe(allowedOrigin);
    expect(allowed.headers.get("access-control-allow-methods")).toContain("POST");
    const allowHeaders = allowed.headers.get("access-control-allow-headers") ?? "";
    for (const header of ["Content-Type", "Connect-Protocol-Version", "X-Grpc-Web", "Authorization", "Idempotency-Key", "If-Match"]) {
      expect(allowHeaders).toContain(header);
    }
    expect(allowed.headers.get("access-control-max-age")).toBe("7200");
    expect(allowed.headers.get("vary")).toContain("Origin");

    const refused = await preflight("https://evil.example");
    expect(refused.status).toBe(204);
    expect(refused.headers.get("access-control-allow-origin")).toBeNull();
    expect(refused.headers.get("access-control-allow-methods")).toBeNull();

    const actual = await fetch(`${started.baseUrl}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { Origin: allowedOrigin, "Content-Type": "application/json" },
      body: "{}",
    });
    expect(actual.status).toBe(200);
    expect(actual.headers.get("access-control-allow-origin")).toBe(allowedOrigin);
    expect(actual.headers.get("access-control-expose-headers")).toContain("Grpc-Status");
  });

  it("serves /healthz and /readyz, 503 with the failing check when a probe fails", async () => {
    const healthz = await fetch(`${started.baseUrl}/healthz`);
    expect(healthz.status).toBe(200);
    expect(await healthz.json()).toEqual({ status: "ok" });

    postgresError = undefined;
    const ready = await fetch(`${started.baseUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: "ready", checks: { postgres: "ok", redis: "ok" } });

    postgresError = "connection refused";
    const notReady = await fetch(`${started.baseUrl}/readyz?verbose=1`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ status: "not_ready", checks: { postgres: "connection refused", redis: "ok" } });
    postgresError = undefined;
  });

  it("survives clients that reset or send garbage", async () => {
    await new Promise<void>((resolve) => {
      const socket = net.connect(started.server.port, "127.0.0.1", () => {
        socket.write("POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
        setTimeout(() => {
          socket.resetAndDestroy();
          resolve();
        }, 20);
      });
    });
    const garbage = await new Promise<string>((resolve) => {
      const socket = net.connect(started.server.port, "127.0.0.1", () => socket.write("\x00\x01garbage\r\n\r\n"));
      let answer = "";
      socket.on("data", (chunk) => (answer += chunk.toString()));
      socket.on("close", () => resolve(answer));
      socket.on("error", () => {});
    });
    expect(garbage).toMatch(/^HTTP\/1\.1 400/);
    const res = await fetch(`${started.baseUrl}/healthz`);
    expect(res.status).toBe(200);
  });
});

describe("listen: connections", () => {
  it("drops a connection that sends nothing before the first-byte timeout", async () => {
    const { server } = await start({ firstByteTimeoutMs: 100 });
    try {
      const startedAt = Date.now();
      await new Promise<void>((resolve) => {
        const socket = net.connect(server.port, "127.0.0.1");
        socket.on("error", () => {});
        socket.on("close", () => resolve());
      });
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(90);
    } finally {
      await server.close(1_000);
    }
  });
});

describe("listen: graceful close", () => {
  /** A Health service whose Check waits until released, to have requests in flight at close. */
  function gated() {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const health = (service: HealthService): ServiceImpl<typeof Health> => ({
      async check(req, context) {
        await gate;
        return service.check(req);
      },
      watch: (req, context) => service.watch(req, context),
    });
    return { health, release };
  }

  it("finishes in-flight HTTP/1.1 and HTTP/2 requests, refuses new connections, then resolves", async () => {
    const { health, release } = gated();
    const { server, baseUrl } = await start({ health });
    const agent = new http.Agent({ keepAlive: true });
    try {
      // An idle keep-alive connection, which close() must drop rather than wait for.
      const idle = net.connect(server.port, "127.0.0.1");
      let idleClosed = false;
      idle.on("close", () => (idleClosed = true));
      idle.on("error", () => {});
      const idleAnswer = new Promise<string>((resolve) => idle.once("data", (chunk) => resolve(chunk.toString())));
      idle.write("GET /healthz HTTP/1.1\r\nHost: beacon\r\n\r\n");
      expect(await idleAnswer).toMatch(/^HTTP\/1\.1 200[\s\S]*keep-alive/i);
      const grpcClient = createClient(Health, createGrpcTransport({ baseUrl }));
      const overHttp1 = http1Post(server.port, "/grpc.health.v1.Health/Check", "{}", agent);
      const overHttp2 = grpcClient.check({});
      await until(() => server.inFlight() === 2);

      let closed = false;
      const closing = server.close(5_000).then(() => (closed = true));
      expect(server.shutdownSignal.aborted).toBe(true);
      expect(await connectRefused(server.port)).toBe("ECONNREFUSED");
      // Node would keep it for its 5 s keep-alive timeout; close() drops it straight away.
      await until(() => idleClosed, 2_000);
      expect(closed).toBe(false);

      release();
      // Both complete normally; they report NOT_SERVING because shutdown has begun by then.
      const h1 = await overHttp1;
      expect(h1.status).toBe(200);
      expect(JSON.parse(h1.body)).toEqual({ status: "NOT_SERVING" });
      expect(h1.headers.connection).toBe("close");
      expect((await overHttp2).status).toBe(ServingStatus.NOT_SERVING);
      await closing;
      expect(server.inFlight()).toBe(0);
    } finally {
      agent.destroy();
      release();
      await server.close(100);
    }
  });

  it("sends GOAWAY so an HTTP/2 client opens no new streams on a draining session", async () => {
    const { health, release } = gated();
    const { server, baseUrl } = await start({ health });
    const session = http2.connect(baseUrl);
    session.on("error", () => {});
    try {
      const goaway = new Promise<void>((resolve) => session.once("goaway", () => resolve()));
      const slow = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/json" });
      slow.end("{}");
      const slowBody = new Promise<{ status: number; body: string }>((resolve, reject) => {
        let status = 0;
        let body = "";
        slow.on("response", (headers) => (status = Number(headers[":status"])));
        slow.setEncoding("utf8");
        slow.on("data", (chunk: string) => (body += chunk));
        slow.on("end", () => resolve({ status, body }));
        slow.on("error", reject);
      });
      await until(() => server.inFlight() === 1);
      const closing = server.close(5_000);
      await goaway;
      expect(() => session.request({ ":path": "/healthz" })).toThrow();
      release();
      expect(await slowBody).toEqual({ status: 200, body: '{"status":"NOT_SERVING"}' });
      await closing;
    } finally {
      session.destroy();
      release();
      await server.close(100);
    }
  });

  it("ends a Watch stream when shutdownSignal fires, with NOT_SERVING last", async () => {
    const { server, baseUrl } = await start();
    const client = createClient(Health, createGrpcTransport({ baseUrl }));
    const statuses: ServingStatus[] = [];
    const watching = (async () => {
      for await (const res of client.watch({})) statuses.push(res.status);
    })();
    await until(() => statuses.length === 1);
    expect(statuses).toEqual([ServingStatus.SERVING]);
    await server.close(5_000);
    await watching;
    expect(statuses).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  });

  it("tells every HTTP/1.1 answer still open at close() to end its connection, after others left out of order", async () => {
    // Each request waits for its own gate; /b is answered first, from between /a and /c.
    const gates = new Map<string, () => void>();
    const opened = new Map<string, Promise<void>>();
    for (const path of ["/a", "/b", "/c"]) opened.set(path, new Promise<void>((resolve) => gates.set(path, resolve)));
    const server = await listen((req, res) => {
      const path = req.url ?? "";
      void opened.get(path)!.then(() => {
        (res as http.ServerResponse).writeHead(200, { "Content-Type": "text/plain" });
        res.end(path);
      });
    }, { port: 0, host: "127.0.0.1" });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 3 });
    try {
      const answers = new Map<string, ReturnType<typeof http1Post>>();
      for (const path of ["/a", "/b", "/c"]) {
        answers.set(path, http1Post(server.port, path, "", agent));
        await until(() => server.inFlight() === answers.size);
      }
      gates.get("/b")!();
      const b = await answers.get("/b")!;
      expect(b.body).toBe("/b");
      expect(b.headers.connection).toBe("keep-alive");
      await until(() => server.inFlight() === 2);

      const closing = server.close(5_000);
      gates.get("/a")!();
      gates.get("/c")!();
      for (const path of ["/a", "/c"]) {
        const answer = await answers.get(path)!;
        expect(answer.body).toBe(path);
        expect(answer.headers.connection).toBe("close");
      }
      await closing;
      expect(server.inFlight()).toBe(0);
    } finally {
      agent.destroy();
      for (const open of gates.values()) open();
      await server.close(100);
    }
  });

  it("destroys what is still open when the timeout passes", async () => {
    const { health, release } = gated();
    const { server, baseUrl, logLines } = await start({ health });
    try {
      const stuck: Client<typeof Health> = createClient(Health, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
      const outcome = stuck.check({}).then(() => "answered", () => "failed");
      await until(() => server.inFlight() === 1);
      await server.close(100);
      expect(await outcome).toBe("failed");
      expect(logLines).toContainEqual(expect.objectContaining({ level: "warn", in_flight: 1 }));
    } finally {
      release();
    }
  });
});
