// Shared by the streaming integration tests: clients with a key and a browser's user agent, sites
// without rate limits, events, and a reader that takes a stream's messages one at a time with a
// deadline (so a missing message fails the test instead of hanging it).
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Client, Interceptor } from "@connectrpc/connect";
import type { EventSchema } from "../../gen/beacon/v1/event_pb.js";
import type { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";

export type EventInit = MessageInitShape<typeof EventSchema>;

export const CHROME_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/** Sends `Authorization: Bearer <key>` (when given) and a browser's user agent (so events count as people). */
export function caller(key?: string, ip = "8.8.8.8"): Interceptor {
  return (next) => (req) => {
    if (key !== undefined) req.header.set("Authorization", `Bearer ${key}`);
    req.header.set("User-Agent", CHROME_WINDOWS);
    req.header.set("X-Forwarded-For", ip);
    return next(req);
  };
}

export interface TestSite {
  id: string;
  trackingId: string;
  domain: string;
}

let sites = 0;

/** A site whose per-visitor rate limit is off, so a test may send thousands of events. */
export async function createSite(management: Client<typeof ManagementService>, label: string): Promise<TestSite> {
  const domain = `${label}-${++sites}-${Date.now().toString(36)}.example.com`;
  const { site } = await management.createSite({ domain, timezone: "UTC", settings: { eventsPerVisitorPerMinute: 0, eventsPerSitePerSecond: 0 } });
  if (!site) throw new Error("CreateSite returned no site");
  return { id: site.id, trackingId: site.trackingId, domain };
}

export function pageview(site: TestSite, path: string, extra: Omit<EventInit, "name" | "url"> = {}): EventInit {
  return { ...extra, name: "pageview", url: `https://${site.domain}${path}` } as EventInit;
}

export const at = (ms: number) => timestampFromMs(ms);

/** Takes messages from a stream one by one; `next` fails after `timeoutMs` without one. */
export class StreamReader<T> {
  private readonly iterator: AsyncIterator<T>;

  constructor(stream: AsyncIterable<T>) {
    this.iterator = stream[Symbol.asyncIterator]();
  }

  async next(what: string, timeoutMs = 30_000): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const result = await Promise.race([this.iterator.next(), timeout]);
      if (result.done) throw new Error(`the stream ended before ${what}`);
      return result.value;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads until `done(message)`; returns every message read. */
  async until(what: string, done: (message: T) => boolean, timeoutMs = 60_000): Promise<T[]> {
    const deadline = Date.now() + timeoutMs;
    const read: T[] = [];
    for (;;) {
      const message = await this.next(what, Math.max(1, deadline - Date.now()));
      read.push(message);
      if (done(message)) return read;
    }
  }

  /** Resolves with how the stream ended: "done", or the error it ended with. */
  async end(timeoutMs = 30_000): Promise<"done" | Error> {
    const deadline = Date.now() + timeoutMs;
    try {
      for (;;) {
        const result = await Promise.race([
          this.iterator.next(),
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the stream did not end")), Math.max(1, deadline - Date.now())).unref()),
        ]);
        if (result.done) return "done";
      }
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }
}

export async function eventually<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, deadlineMs = 60_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}; last value: ${JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}`);
    await new Promise((wake) => setTimeout(wake, 100));
  }
}
