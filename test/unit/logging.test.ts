import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import type { ServiceImpl } from "@connectrpc/connect";
import { Health, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { createLogger } from "../../server/logger.js";
import type { LogLevel } from "../../server/logger.js";
import { codeName, createLoggingInterceptor, logHttpRequest, rpcProtocol } from "../../server/interceptors/logging.js";
import { HealthService, HealthState } from "../../server/services/health.js";

function capture(level: LogLevel = "debug") {
  const lines: string[] = [];
  const logger = createLogger({ level, stream: { write: (line: string) => lines.push(line) }, now: () => new Date(0) });
  const records = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { lines, logger, records };
}

function clientFor(impl: Partial<ServiceImpl<typeof Health>>, logger: ReturnType<typeof capture>["logger"]) {
  const transport = createRouterTransport((router) => router.service(Health, impl), {
    router: { interceptors: [createLoggingInterceptor(logger)] },
  });
  return createClient(Health, transport);
}

describe("createLogger", () => {
  it("writes one JSON line per record with time, level, msg first and fields after", () => {
    const { lines, logger } = capture();
    logger.info("started", { port: 8787 });
    expect(lines).toEqual(['{"time":"1970-01-01T00:00:00.000Z","level":"info","msg":"started","port":8787}\n']);
  });

  it("drops records below its level and writes nothing when silent", () => {
    const info = capture("info");
    info.logger.debug("noise");
    info.logger.warn("kept");
    expect(info.records().map((r) => r.msg)).toEqual(["kept"]);
    const silent = capture("silent");
    silent.logger.error("nothing");
    expect(silent.lines).toEqual([]);
  });

  it("binds fields in children without letting fields replace the record's own keys", () => {
    const { logger, records } = capture();
    logger.child({ component: "redis" }).child({ pid: 7 }).warn("exited", { msg: "spoof", level: "debug" });
    expect(records()).toEqual([{ time: "1970-01-01T00:00:00.000Z", level: "warn", msg: "exited", component: "redis", pid: 7 }]);
  });

  it("serialises errors and survives cycles", () => {
    const { logger, records } = capture();
    logger.error("failed", { error: new Error("boom") });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    logger.info("cyclic", { cyclic });
    const [failed, cyclicRecord] = records();
    expect(failed.error).toMatchObject({ name: "Error", message: "boom" });
    expect(cyclicRecord).toMatchObject({ msg: "cyclic", log_error: "fields not serializable" });
  });
});

describe("createLoggingInterceptor", () => {
  it("logs one line per unary RPC with procedure, protocol, code and duration", async () => {
    const { logger, records } = capture();
    const client = clientFor(new HealthService(new HealthState()), logger);
    const res = await client.check({ service: "" });
    expect(res.status).toBe(ServingStatus.SERVING);
    const lines = records();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: "info", msg: "rpc", procedure: "/grpc.health.v1.Health/Check", protocol: "connect", code: "ok" });
    expect(typeof lines[0].duration_ms).toBe("number");
    expect(lines[0]).not.toHaveProperty("stream");
  });

  it("logs the error code in snake_case and rethrows the error unchanged", async () => {
    const { logger, records } = capture();
    const thrown = new ConnectError("no such site", Code.NotFound);
    const client = clientFor({
      check() {
        throw thrown;
      },
    }, logger);
    const error = await client.check({ service: "x" }).catch((e: unknown) => e);
    expect(ConnectError.from(error).code).toBe(Code.NotFound);
    expect(ConnectError.from(error).rawMessage).toBe("no such site");
    expect(records()).toEqual([expect.objectContaining({ level: "info", procedure: "/grpc.health.v1.Health/Check", code: "not_found" })]);
  });

  it("logs server faults at error level", async () => {
    const { logger, records } = capture();
    const client = clientFor({
      check() {
        throw new ConnectError("db down", Code.Internal);
      },
    }, logger);
    await expect(client.check({})).rejects.toThrow("db down");
    expect(records()).toEqual([expect.objectContaining({ level: "error", code: "internal", error: "db down" })]);
  });

  it("logs a server stream once, when it ends", async () => {
    const { logger, records } = capture();
    const client = clientFor({
      async *watch() {
        yield create(HealthCheckResponseSchema, { status: ServingStatus.SERVING });
        expect(records()).toEqual([]);
        yield create(HealthCheckResponseSchema, { status: ServingStatus.NOT_SERVING });
      },
    }, logger);
    const statuses: ServingStatus[] = [];
    for await (const res of client.watch({})) statuses.push(res.status);
    expect(statuses).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    expect(records()).toEqual([
      expect.objectContaining({ msg: "rpc", procedure: "/grpc.health.v1.Health/Watch", code: "ok", stream: true }),
    ]);
  });

  it("logs a stream that fails midway with its code", async () => {
    const { logger, records } = capture();
    const client = clientFor({
      async *watch() {
        yield create(HealthCheckResponseSchema, { status: ServingStatus.SERVING });
        throw new ConnectError("gone", Code.Unavailable);
      },
    }, logger);
    const error = await (async () => {
      for await (const _ of client.watch({})) {
        // drain
      }
    })().catch((e: unknown) => e);
    expect(ConnectError.from(error).code).toBe(Code.Unavailable);
    expect(records()).toEqual([expect.objectContaining({ code: "unavailable", stream: true })]);
  });
});

describe("wire names", () => {
  it("names codes and protocols as the Connect protocol does", () => {
    expect(codeName(Code.DeadlineExceeded)).toBe("deadline_exceeded");
    expect(codeName(Code.Unauthenticated)).toBe("unauthenticated");
    expect(rpcProtocol("application/grpc-web+proto")).toBe("grpc-web");
    expect(rpcProtocol("application/grpc")).toBe("grpc");
    expect(rpcProtocol("application/connect+json")).toBe("connect");
    expect(rpcProtocol(null)).toBe("connect");
  });

  it("logs plain HTTP requests in the same shape", () => {
    const { logger, records } = capture();
    logHttpRequest(logger, { method: "POST", path: "/api/event", status: 202, durationMs: 1.234 });
    logHttpRequest(logger, { method: "GET", path: "/readyz", status: 503, durationMs: 2 });
    expect(records()).toEqual([
      expect.objectContaining({ level: "info", msg: "http", method: "POST", path: "/api/event", status: 202, duration_ms: 1.2 }),
      expect.objectContaining({ level: "error", msg: "http", status: 503 }),
    ]);
  });
});
