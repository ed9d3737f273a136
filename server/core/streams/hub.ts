// The per-process relay between Redis pub/sub and this server's stream subscribers. One
// subscriber connection per process, subscribed to the channels of the sites that have at least
// one local subscriber (and unsubscribed when the last one leaves); each published message is
// decoded once and handed to every local listener of its site. Listeners must be quick and never
// block: stream subscribers put what they want in their own bounded queues (see BoundedQueue).
import type { Redis } from "ioredis";
import type { Logger } from "../../logger.js";
import { UnavailableError } from "../errors.js";
import { decodeLiveMessage, type LiveEvent, liveEventsChannel } from "./live-events.js";

export type LiveListener = (events: readonly LiveEvent[]) => void;

export interface StreamHubOptions {
  /** A new Redis connection, used only by this hub (subscriber mode allows nothing else). */
  connect: () => Redis;
  /** The Redis key prefix the worker publishes under. */
  prefix: string;
  logger?: Logger;
  /** How long a SUBSCRIBE may take before the stream is refused as Unavailable (5 s unless a test says). */
  subscribeTimeoutMs?: number;
}

interface SiteChannel {
  siteId: string;
  listeners: Set<LiveListener>;
  /** Settles once Redis has confirmed the SUBSCRIBE. */
  subscribed: Promise<unknown>;
}

export class StreamHub {
  private subscriber: Redis | undefined;
  private readonly channels = new Map<string, SiteChannel>();
  private closed = false;

  constructor(private readonly options: StreamHubOptions) {}

  /**
   * Relays `siteId`'s stored events to `listener` until the returned function is called. Resolves
   * once Redis has confirmed the subscription, so every event stored after that reaches it.
   */
  async join(siteId: string, listener: LiveListener): Promise<() => void> {
    if (this.closed) throw new UnavailableError("the server is shutting down");
    const name = liveEventsChannel(this.options.prefix, siteId);
    let channel = this.channels.get(name);
    if (!channel) {
      const subscriber = this.connection();
      channel = { siteId, listeners: new Set(), subscribed: subscriber.subscribe(name) };
      this.channels.set(name, channel);
    }
    channel.listeners.add(listener);
    const joined = channel;
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      joined.listeners.delete(listener);
      // Commands on one connection run in order, so a later SUBSCRIBE of the same channel (a new
      // listener) still wins over this UNSUBSCRIBE.
      if (joined.listeners.size === 0 && this.channels.get(name) === joined) {
        this.channels.delete(name);
        if (!this.closed) this.subscriber?.unsubscribe(name).catch((err: unknown) => this.options.logger?.debug("unsubscribe failed", { err: String(err) }));
      }
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      // Redis away: ioredis would hold the command until it is back; the caller should hear now.
      await Promise.race([
        joined.subscribed,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("SUBSCRIBE timed out")), this.options.subscribeTimeoutMs ?? 5000);
        }),
      ]);
    } catch (err) {
      leave();
      this.options.logger?.warn("live events subscription failed", { err: String(err) });
      throw new UnavailableError("live events are unavailable right now; retry shortly");
    } finally {
      clearTimeout(timer);
    }
    return leave;
  }

  /** Whether any local listener still relays `siteId`. */
  relays(siteId: string): boolean {
    return this.channels.has(liveEventsChannel(this.options.prefix, siteId));
  }

  /** Sites and listeners relayed right now, for diagnostics and tests. */
  stats(): { sites: number; listeners: number } {
    let listeners = 0;
    for (const channel of this.channels.values()) listeners += channel.listeners.size;
    return { sites: this.channels.size, listeners };
  }

  /** Drops every listener and closes the subscriber connection. */
  async close(): Promise<void> {
    this.closed = true;
    this.channels.clear();
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (!subscriber) return;
    try {
      await subscriber.quit();
    } catch {
      subscriber.disconnect();
    }
  }

  private connection(): Redis {
    if (this.subscriber) return this.subscriber;
    const subscriber = this.options.connect();
    // ioredis re-subscribes after a reconnect; events published while disconnected are lost.
    subscriber.on("error", (err: Error) => this.options.logger?.warn("live events connection error", { err: err.message }));
    subscriber.on("message", (name: string, payload: string) => this.relay(name, payload));
    this.subscriber = subscriber;
    return subscriber;
  }

  private relay(name: string, payload: string): void {
    const channel = this.channels.get(name);
    if (!channel || channel.listeners.size === 0) return;
    const events = decodeLiveMessage(payload);
    if (events.length === 0) return;
    for (const listener of channel.listeners) {
      try {
        listener(events);
      } catch (err) {
        this.options.logger?.error("live events listener failed", { err: String(err) });
      }
    }
  }
}
