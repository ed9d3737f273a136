// TailEvents in the domain's terms: a site's stored events as they are published, filtered, through
// a bounded per-subscriber queue. The first item is a heartbeat, yielded once the hub has joined
// the site's channel, so a caller that has read it knows every later event will reach it.
import { InvalidArgumentError } from "../errors.js";
import { BoundedQueue } from "./bounded-queue.js";
import type { StreamHub } from "./hub.js";
import type { LiveEvent } from "./live-events.js";

export interface TailFilterInput {
  eventNames: readonly string[];
  pagePrefix: string;
  countries: readonly string[];
  includeBots: boolean;
}

export interface TailFilter {
  eventNames: ReadonlySet<string>;
  pagePrefix: string;
  countries: ReadonlySet<string>;
  includeBots: boolean;
}

const BOT = 2;

/** Checks and normalises the filters of a TailEvents request. */
export function tailFilter(input: TailFilterInput): TailFilter {
  if (input.eventNames.length > 100) throw new InvalidArgumentError("event_names", "at most 100 names");
  input.eventNames.forEach((name, i) => {
    if (name === "" || name.length > 120) throw new InvalidArgumentError(`event_names[${i}]`, "must be 1 to 120 characters");
  });
  if (input.pagePrefix.length > 2000) throw new InvalidArgumentError("page_prefix", "must be at most 2,000 characters");
  if (input.pagePrefix !== "" && !input.pagePrefix.startsWith("/")) throw new InvalidArgumentError("page_prefix", `is a page path and starts with "/", got "${input.pagePrefix.slice(0, 40)}"`);
  if (input.countries.length > 250) throw new InvalidArgumentError("countries", "at most 250 countries");
  const countries = input.countries.map((c, i) => {
    if (!/^[A-Za-z]{2}$/.test(c)) throw new InvalidArgumentError(`countries[${i}]`, `must be an ISO 3166-1 alpha-2 code such as "GB", got "${c.slice(0, 10)}"`);
    return c.toUpperCase();
  });
  return { eventNames: new Set(input.eventNames), pagePrefix: input.pagePrefix, countries: new Set(countries), includeBots: input.includeBots };
}

export function matchesTail(filter: TailFilter, event: LiveEvent): boolean {
  if (!filter.includeBots && event.classification === BOT) return false;
  if (filter.eventNames.size > 0 && !filter.eventNames.has(event.name)) return false;
  if (filter.pagePrefix !== "" && !event.pathname.startsWith(filter.pagePrefix)) return false;
  if (filter.countries.size > 0 && !filter.countries.has(event.country)) return false;
  return true;
}

/** An event, or a heartbeat (no event); `dropped` counts the events missed so far. */
export interface TailItem {
  event: LiveEvent | undefined;
  dropped: number;
}

export interface TailOptions {
  signal: AbortSignal;
  /** Events waiting for this subscriber at most; older ones are dropped beyond it. */
  maxQueued: number;
  /** A heartbeat after this long without an event. */
  heartbeatMs: number;
  /** Told of the subscriber's queue, for diagnostics and tests. */
  onQueue?: (queue: BoundedQueue<LiveEvent>) => void;
}

/** Ends (returns) when `signal` aborts. */
export async function* tailEvents(hub: StreamHub, siteId: string, filter: TailFilter, options: TailOptions): AsyncGenerator<TailItem> {
  const queue = new BoundedQueue<LiveEvent>(options.maxQueued);
  options.onQueue?.(queue);
  const leave = await hub.join(siteId, (events) => {
    for (const event of events) if (matchesTail(filter, event)) queue.push(event);
  });
  try {
    yield { event: undefined, dropped: 0 };
    while (!options.signal.aborted) {
      const event = await queue.take(options.heartbeatMs, options.signal);
      if (options.signal.aborted) return;
      yield { event, dropped: queue.dropped };
    }
  } finally {
    leave();
  }
}
