// Universal Analytics measurement-protocol hits (000's /collect, and the lines of /batch) read
// into Beacon's event shape. Only what a web analytics report uses is kept.
import { InvalidArgumentError } from "../errors.js";
import { emptyIncomingEvent, type IncomingEvent } from "./hit.js";

export interface MeasurementHit {
  trackingId: string;
  event: IncomingEvent;
  /** `ua` override (server-side senders), '' when absent. */
  userAgent: string;
  /** `uip` override, honoured only for authenticated senders; '' when absent. */
  ip: string;
}

/** Measurement-protocol campaign parameters, by the page-URL parameter each becomes. */
const CAMPAIGN_PARAMS = [["utm_source", "cs"], ["utm_medium", "cm"], ["utm_campaign", "cn"], ["utm_term", "ck"], ["utm_content", "cc"], ["gclid", "gclid"]] as const;
const HIT_TYPES = new Set(["pageview", "screenview", "event", "transaction", "item", "social", "exception", "timing"]);

function num(field: string, raw: string | undefined): number | undefined {
  if (raw === undefined || raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new InvalidArgumentError(field, `must be a number, got "${raw.slice(0, 40)}"`);
  return value;
}

/**
 * Reads one hit from its parameters (query string, form body or JSON object of strings).
 * Throws InvalidArgumentError naming the parameter when the hit cannot be understood.
 */
export function fromMeasurementProtocol(params: Record<string, string | undefined>, receivedAt: number): MeasurementHit {
  const v = params.v ?? "1";
  if (v !== "1") throw new InvalidArgumentError("v", `protocol version must be 1, got "${v.slice(0, 10)}"`);
  const trackingId = (params.tid ?? "").trim();
  if (trackingId === "") throw new InvalidArgumentError("tid", "is required (the site's tracking id)");
  const type = (params.t ?? "pageview").trim().toLowerCase();
  if (!HIT_TYPES.has(type)) throw new InvalidArgumentError("t", `must be one of ${[...HIT_TYPES].join(", ")}, got "${type.slice(0, 40)}"`);
  const event = emptyIncomingEvent();
  let url = params.dl ?? "";
  if (url === "" && (params.dh || params.dp)) {
    const host = (params.dh ?? "").trim();
    const path = (params.dp ?? "/").trim();
    url = host ? `https://${host}${path.startsWith("/") ? path : `/${path}`}` : "";
  }
  if (url === "" && type === "screenview" && params.cd) url = `app://screen/${encodeURIComponent(params.cd)}`;
  event.url = url;
  event.referrer = params.dr ?? "";
  event.title = params.dt ?? "";
  event.clientId = params.cid ?? "";
  event.userId = params.uid ?? "";
  event.screen = params.sr ?? "";
  event.language = params.ul ?? "";
  event.eventId = params.event_id ?? "";
  const qt = num("qt", params.qt);
  if (qt !== undefined) event.timestamp = receivedAt - qt;
  const props: Record<string, string | number> = {};
  if (type === "pageview" || type === "screenview") {
    event.name = "pageview";
  } else if (type === "event") {
    const action = (params.ea ?? "").trim();
    if (action === "") throw new InvalidArgumentError("ea", "is required for event hits (the event action)");
    event.name = action;
    if (params.ec) props.category = params.ec;
    if (params.el) props.label = params.el;
    const ev = num("ev", params.ev);
    if (ev !== undefined) props.value = ev;
  } else {
    event.name = type;
  }
  const tr = num("tr", params.tr);
  if (tr !== undefined) event.revenue = tr;
  event.currency = params.cu ?? "";
  // Campaign parameters become utm_* on the page URL, where enrichment reads them.
  if (event.url && CAMPAIGN_PARAMS.some(([, param]) => params[param])) {
    try {
      const parsed = new URL(event.url);
      for (const [key, param] of CAMPAIGN_PARAMS) {
        const value = params[param];
        if (value && !parsed.searchParams.has(key)) parsed.searchParams.set(key, value);
      }
      event.url = parsed.toString();
    } catch {
      // An invalid URL is stored as empty by acceptance anyway.
    }
  }
  event.properties = props;
  return { trackingId, event, userAgent: params.ua ?? "", ip: params.uip ?? "" };
}
