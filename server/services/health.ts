// The standard gRPC health service, so load balancers, Kubernetes and `grpc_health_probe` can ask
// whether Beacon serves, and learn at once when it stops (Watch) during a graceful shutdown.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/grpc/health/v1/health_pb.js";
import type { HealthCheckRequest, HealthCheckResponse } from "../../gen/grpc/health/v1/health_pb.js";

/**
 * The serving status of the server ("") and of each named service. Watchers learn of every
 * change; after shutdown() everything is NOT_SERVING for good.
 */
export class HealthState {
  readonly #statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  readonly #waiters = new Set<() => void>();
  // Bumped on every change, so a watcher that was busy sending can tell it missed one.
  #version = 0;
  #shutDown = false;

  /** Marks `service` ("" for the whole server) as serving or not; ignored after shutdown(). */
  setServing(service: string, serving: boolean): void {
    if (this.#shutDown) return;
    this.#set(service, serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  }

  /** The current status, or undefined for a service never registered. */
  status(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  get isShutDown(): boolean {
    return this.#shutDown;
  }

  /** Everything becomes NOT_SERVING and stays so; every watch ends after saying so. */
  shutdown(): void {
    if (this.#shutDown) return;
    this.#shutDown = true;
    for (const service of this.#statuses.keys()) this.#statuses.set(service, ServingStatus.NOT_SERVING);
    this.#changed();
  }

  /**
   * The current status of `service`, then each change of it (SERVICE_UNKNOWN while it is not
   * registered), until `signal` aborts or the state shuts down. Changes that happen while the
   * consumer is busy are folded into the latest status.
   */
  async *watch(service: string, signal?: AbortSignal): AsyncGenerator<ServingStatus> {
    let sent: ServingStatus | undefined;
    while (!signal?.aborted) {
      const seen = this.#version;
      const current = this.status(service) ?? ServingStatus.SERVICE_UNKNOWN;
      if (current !== sent) {
        yield current;
        sent = current;
      }
      if (this.#shutDown) return;
      if (seen === this.#version) await this.#nextChange(signal);
    }
  }

  #set(service: string, status: ServingStatus): void {
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    this.#changed();
  }

  #changed(): void {
    this.#version++;
    for (const wake of [...this.#waiters]) wake();
  }

  #nextChange(signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        this.#waiters.delete(wake);
        signal?.removeEventListener("abort", wake);
        resolve();
      };
      this.#waiters.add(wake);
      signal?.addEventListener("abort", wake, { once: true });
    });
  }
}

export class HealthService implements ServiceImpl<typeof Health> {
  constructor(private readonly state: HealthState) {}

  async check(req: HealthCheckRequest): Promise<HealthCheckResponse> {
    const status = this.state.status(req.service);
    if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
    return create(HealthCheckResponseSchema, { status });
  }

  async *watch(req: HealthCheckRequest, context: HandlerContext): AsyncGenerator<HealthCheckResponse> {
    for await (const status of this.state.watch(req.service, context.signal)) {
      yield create(HealthCheckResponseSchema, { status });
    }
  }
}
