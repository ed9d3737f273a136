// The shapes an event takes on its way in: what an arrival path hands to acceptance
// (IncomingEvent), and what acceptance queues for the workers (RawHit).

/** An event as any arrival path (Connect, /collect, /batch, /api/event, /api/v1/traffic) reads it. */
export interface IncomingEvent {
  /** The client's own id for deduplication, '' when it sent none. */
  eventId: string;
  name: string;
  url: string;
  referrer: string;
  /** Epoch ms from the client, or undefined to use the receive time. */
  timestamp: number | undefined;
  title: string;
  clientId: string;
  userId: string;
  screen: string;
  language: string;
  /** Custom properties as sent: sanitised during acceptance. */
  properties: unknown;
  revenue: number | undefined;
  currency: string;
}

/** Who sent it, as the transport saw it. The IP never reaches Postgres. */
export interface RequestContext {
  ip: string;
  userAgent: string;
  /** `DNT: 1` or `Sec-GPC: 1` was sent. */
  doNotTrack: boolean;
  /** Receive time, epoch ms. */
  receivedAt: number;
  /** The `Idempotency-Key` header, used as the event id of a single-event request. */
  idempotencyKey: string;
}

/** An accepted event, as queued for enrichment. Times are epoch milliseconds. */
export interface RawHit {
  siteId: string;
  eventId: string;
  /** When it happened; fixed at accept so retries and duplicates carry the same time. */
  ts: number;
  name: string;
  url: string;
  referrer: string;
  title: string;
  /** Used by enrichment (geo, visitor hash) and then discarded. */
  ip: string;
  userAgent: string;
  clientId: string;
  userId: string;
  screen: string;
  language: string;
  props: Record<string, string | number | boolean>;
  revenue: number | null;
  currency: string;
  receivedAt: number;
}

export function emptyIncomingEvent(): IncomingEvent {
  return {
    eventId: "",
    name: "",
    url: "",
    referrer: "",
    timestamp: undefined,
    title: "",
    clientId: "",
    userId: "",
    screen: "",
    language: "",
    properties: undefined,
    revenue: undefined,
    currency: "",
  };
}
