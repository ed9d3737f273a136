// Plain-HTTP beacons for trackers that cannot speak Connect. Each endpoint reads its seed's shape
// into the shared event shape and hands it to the same Acceptor the TrackingService uses, so the
// rules (Do Not Track, validation, rate limits, durability before the answer) are the same:
//   POST /collect, GET /collect     Universal Analytics hits, JSON or form (000)
//   POST /batch                     000's JSON batch, or newline-separated measurement-protocol lines
//   POST /api/event                 003's event_type / event_data / page_url / referrer → 204
//   POST /api/v1/traffic            001's server-side url / ip_addr / user_agent, with an API key
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { isIP } from "node:net";
import type { Acceptor, AcceptResult, EventError } from "../core/ingest/accept.js";
import { PAGEVIEW } from "../core/ingest/accept.js";
import { emptyIncomingEvent, type IncomingEvent, type RequestContext } from "../core/ingest/hit.js";
import { fromMeasurementProtocol, type MeasurementHit } from "../core/ingest/measurement-protocol.js";
import type { IngestSite, SiteDirectory } from "../core/ingest/sites.js";
import { keyFromAuthorization } from "../core/api-keys.js";
import {
  BeaconError,
  type ErrorReason,
  InvalidArgumentError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitedError,
  UnavailableError,
  UnauthenticatedError,
} from "../core/errors.js";
import { canReachSite, type Principal, roleAllows } from "../core/roles.js";
import type { PrincipalResolver } from "../interceptors/auth.js";
import { logHttpRequest } from "../interceptors/logging.js";
import type { Logger } from "../logger.js";
import { readBody, RequestAbortedError } from "./body.js";
import { clientIp, requestContext } from "./client.js";

type BeaconRequest = IncomingMessage | Http2ServerRequest;
type BeaconResponse = ServerResponse | Http2ServerResponse;

export interface BeaconRoutesDeps {
  acceptor: Pick<Acceptor, "accept">;
  sites: Pick<SiteDirectory, "byTrackingId" | "byId" | "byHostname">;
  principals: PrincipalResolver;
  logger: Logger;
  /** Largest body accepted; a larger one gets 413 without being read. */
  maxBodyBytes: number;
  /** Most events (or measurement-protocol lines) one /batch request may carry. */
  maxBatchEvents: number;
}

/** Answers the request and returns true when its path is a beacon endpoint; false leaves it alone. */
export type BeaconRoutes = (req: BeaconRequest, res: BeaconResponse) => boolean;

/** What an endpoint answers; written (and logged) in one place. */
interface Answer {
  status: number;
  json?: unknown;
  /** A JSON body already serialised (the common answers, written without a stringify each time). */
  jsonText?: string;
  gif?: boolean;
  headers?: Record<string, string>;
}

/** A refusal that belongs to HTTP itself (unreadable body, wrong method) rather than to the domain. */
class HttpRefusal extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

interface Call {
  req: BeaconRequest;
  method: string;
  /** The query string without its "?", '' when there is none (most beacons send none). */
  search: string;
  /** Transport facts (IP, user agent, DNT, Idempotency-Key); endpoints may override IP and agent. */
  ctx: RequestContext;
  /** Set-Cookie values to send with whatever the answer turns out to be. */
  cookies: string[];
}

interface Route {
  methods: string[];
  handle(call: Call): Promise<Answer>;
  /** An endpoint's own wording for some errors (003 documents its 400 and 429 bodies). */
  refusal?(error: unknown): Answer | undefined;
}

const STATUS_OF: Record<ErrorReason, number> = {
  INVALID_FIELD: 400,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  STALE_ETAG: 409,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  RATE_LIMITED: 429,
  PAYLOAD_TOO_LARGE: 413,
  QUOTA_EXCEEDED: 429,
  UNAVAILABLE: 503,
};

// /collect's answers (000), serialised once.
const RECEIVED_ONE = JSON.stringify({ status: "ok", received: 1 });
const RECEIVED_NONE = JSON.stringify({ status: "ok", received: 0 });

// The smallest transparent GIF (1×1, one transparent colour), as Universal Analytics answers.
const PIXEL_GIF = Buffer.from("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7", "base64");

export const SESSION_COOKIE = "beacon_session";
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

export function createBeaconRoutes(deps: BeaconRoutesDeps): BeaconRoutes {
  const { acceptor, sites, principals, logger } = deps;

  // ---- shared reading ------------------------------------------------------------------------

  type Payload = { kind: "json"; value: unknown } | { kind: "form"; params: URLSearchParams } | { kind: "lines"; lines: string[] } | { kind: "empty" };

  /** The body, read by its content type. text/plain is what sendBeacon sends: JSON if it looks like it. */
  async function readPayload(req: BeaconRequest): Promise<Payload> {
    const encoding = header(req, "content-encoding").toLowerCase();
    if (encoding !== "" && encoding !== "identity") {
      throw new HttpRefusal(415, "unsupported_encoding", `Content-Encoding ${encoding.slice(0, 40)} is not supported; send the body uncompressed`);
    }
    const type = header(req, "content-type").split(";", 1)[0].trim().toLowerCase();
    const known = type === "" || type === "application/json" || type.endsWith("+json") || type === "text/plain" || type === "application/x-www-form-urlencoded" || type === "application/x-ndjson" || type === "application/jsonl";
    if (!known) throw new HttpRefusal(415, "unsupported_media_type", `Content-Type ${type.slice(0, 80)} is not supported; send application/json, application/x-www-form-urlencoded or text/plain`);
    const text = (await readBody(req, deps.maxBodyBytes)).toString("utf8");
    if (text.trim() === "") return { kind: "empty" };
    if (type === "application/x-www-form-urlencoded") return { kind: "form", params: new URLSearchParams(text) };
    if (type === "application/x-ndjson" || type === "application/jsonl") return { kind: "lines", lines: splitLines(text) };
    if (type === "application/json" || type.endsWith("+json") || /^\s*[[{]/.test(text)) return { kind: "json", value: parseJson(text) };
    return { kind: "lines", lines: splitLines(text) };
  }

  async function readJsonObject(req: BeaconRequest): Promise<Record<string, unknown>> {
    const payload = await readPayload(req);
    if (payload.kind === "empty") throw new InvalidArgumentError("body", "is empty; send a JSON object");
    if (payload.kind !== "json") throw new InvalidArgumentError("body", "must be a JSON object");
    return jsonObject(payload.value, "body");
  }

  /** Measurement-protocol parameters from a JSON object, a form body or the query string. */
  async function readMeasurementParams(call: Call): Promise<Record<string, string | undefined>> {
    // The body's parameters override the query string's; both land in one fresh object.
    const params = call.search === "" ? {} : fromSearchParams(new URLSearchParams(call.search));
    if (call.method === "GET") return params;
    const payload = await readPayload(call.req);
    if (payload.kind === "json") return measurementParams(jsonObject(payload.value, "body"), params);
    if (payload.kind === "form") return Object.assign(params, fromSearchParams(payload.params));
    if (payload.kind === "lines") {
      if (payload.lines.length > 1) throw new InvalidArgumentError("body", "holds more than one hit; send several hits to /batch");
      return Object.assign(params, fromSearchParams(new URLSearchParams(payload.lines[0])));
    }
    return params;
  }

  /** The caller's key, checked, when it sent one; undefined when it sent none. */
  async function optionalPrincipal(req: BeaconRequest): Promise<Principal | undefined> {
    const secret = keyFromAuthorization(header(req, "authorization") || undefined);
    if (secret === undefined) return undefined;
    const principal = await principals.resolve(secret);
    if (!principal) throw new UnauthenticatedError("the API key is not valid or has been revoked");
    return principal;
  }

  /** A measurement-protocol hit's `uip` replaces the client IP only for a key that may reach the site. */
  async function applyOverrides(call: Call, hit: MeasurementHit, site: IngestSite, field: string): Promise<RequestContext> {
    const ctx = { ...call.ctx };
    if (hit.userAgent) ctx.userAgent = hit.userAgent;
    if (hit.ip) {
      if (isIP(hit.ip.trim()) === 0) throw new InvalidArgumentError(field, `must be an IPv4 or IPv6 address, got "${hit.ip.slice(0, 60)}"`);
      const principal = await optionalPrincipal(call.req);
      if (principal && principal.organisationId === site.organisationId && canReachSite(principal, site.id)) ctx.ip = hit.ip.trim();
    }
    return ctx;
  }

  async function siteByTrackingId(trackingId: string, field: string): Promise<IngestSite> {
    if (trackingId.trim() === "") throw new InvalidArgumentError(field, "is required (the site's tracking id)");
    const site = await sites.byTrackingId(trackingId);
    if (!site) throw new NotFoundError(`${field}: site with tracking id "${trackingId.slice(0, 64)}"`, field);
    return site;
  }

  // ---- endpoints -----------------------------------------------------------------------------

  const collect: Route = {
    methods: ["GET", "POST"],
    async handle(call) {
      const params = await readMeasurementParams(call);
      const hit = fromMeasurementProtocol(params, call.ctx.receivedAt);
      const site = await siteByTrackingId(hit.trackingId, "tid");
      const ctx = await applyOverrides(call, hit, site, "uip");
      const result = await acceptor.accept(site, [hit.event], ctx);
      refuseSingle(result, MEASUREMENT_FIELDS);
      if (call.method === "GET") return { status: 200, gif: true };
      return { status: 200, jsonText: result.ignoredDoNotTrack ? RECEIVED_NONE : RECEIVED_ONE };
    },
  };

  const batch: Route = {
    methods: ["POST"],
    async handle(call) {
      const payload = await readPayload(call.req);
      if (payload.kind === "empty") throw new InvalidArgumentError("events", "must hold at least one event; the body is empty");
      if (payload.kind === "form") throw new InvalidArgumentError("body", "must be JSON ({\"tracking_id\", \"events\"}) or measurement-protocol hits, one per line");
      const outcome = payload.kind === "json" ? await batchFromJson(call, payload.value) : await batchFromLines(call, payload.lines);
      const errors = outcome.errors.sort((a, b) => a.index - b.index);
      const body = { status: "ok", received: outcome.received, failed: errors.length, errors };
      if (outcome.received > 0 || outcome.ignoredDoNotTrack) return { status: 200, json: body };
      // Nothing was taken: the request as a whole failed, and says why with the first reason.
      if (outcome.retryAfterSeconds !== undefined && errors.every((e) => e.reason === "RATE_LIMITED")) throw new RateLimitedError(outcome.retryAfterSeconds, "too many events");
      const first = errors[0];
      return {
        status: 400,
        json: { ...body, status: "error", error: "invalid_events", message: first ? `events[${first.index}].${first.field}: ${first.message}` : "no event could be accepted" },
      };
    },
  };

  interface BatchOutcome {
    received: number;
    errors: EventError[];
    ignoredDoNotTrack: boolean;
    retryAfterSeconds?: number;
  }

  async function batchFromJson(call: Call, value: unknown): Promise<BatchOutcome> {
    const body = jsonObject(value, "body");
    const trackingId = optionalString(body.tracking_id ?? body.tid, "tracking_id");
    if (!Array.isArray(body.events)) {
      throw new InvalidArgumentError("events", body.events === undefined ? "is required (an array of events)" : `must be an array, got ${jsonType(body.events)}`);
    }
    checkBatchSize(body.events.length);
    const site = await siteByTrackingId(trackingId, "tracking_id");
    const parsed: { index: number; event: IncomingEvent }[] = [];
    const errors: EventError[] = [];
    body.events.forEach((raw, index) => {
      try {
        parsed.push({ index, event: batchEvent(raw, site) });
      } catch (err) {
        if (!(err instanceof InvalidArgumentError)) throw err;
        errors.push({ index, field: err.field, message: problemOf(err), reason: err.metadata.reason ?? "INVALID_FIELD" });
      }
    });
    // Idempotency-Key names one event; in a batch, events carry their own event_id.
    const ctx = { ...call.ctx, idempotencyKey: body.events.length === 1 ? call.ctx.idempotencyKey : "" };
    const result = await acceptor.accept(site, parsed.map((p) => p.event), ctx);
    if (result.ignoredDoNotTrack) return { received: 0, errors: [], ignoredDoNotTrack: true };
    for (const e of result.errors) errors.push({ ...e, index: parsed[e.index].index });
    return { received: result.accepted.length, errors, ignoredDoNotTrack: false };
  }

  /** Universal Analytics' /batch: one hit per line, possibly for several sites, agents and IPs. */
  async function batchFromLines(call: Call, lines: string[]): Promise<BatchOutcome> {
    if (lines.length === 0) throw new InvalidArgumentError("events", "must hold at least one hit");
    checkBatchSize(lines.length);
    const errors: EventError[] = [];
    const groups = new Map<string, { hit: MeasurementHit; items: { index: number; event: IncomingEvent }[] }>();
    lines.forEach((line, index) => {
      try {
        const params = line.startsWith("{") ? measurementParams(jsonObject(parseJson(line), "body")) : fromSearchParams(new URLSearchParams(line));
        const hit = fromMeasurementProtocol(params, call.ctx.receivedAt);
        const key = [hit.trackingId.toUpperCase(), hit.userAgent, hit.ip].join("\n");
        const group = groups.get(key) ?? { hit, items: [] };
        group.items.push({ index, event: hit.event });
        groups.set(key, group);
      } catch (err) {
        if (err instanceof InvalidArgumentError) errors.push({ index, field: err.field, message: problemOf(err), reason: "INVALID_FIELD" });
        else if (err instanceof HttpRefusal) errors.push({ index, field: "body", message: err.message, reason: "INVALID_JSON" });
        else throw err;
      }
    });
    let received = 0;
    let ignoredDoNotTrack = false;
    let retryAfterSeconds: number | undefined;
    for (const { hit, items } of groups.values()) {
      const fail = (field: string, message: string, reason: string) => items.forEach(({ index }) => errors.push({ index, field, message, reason }));
      const site = await sites.byTrackingId(hit.trackingId);
      if (!site) {
        fail("tid", `no site has tracking id "${hit.trackingId.slice(0, 64)}"`, "SITE_NOT_FOUND");
        continue;
      }
      let result: AcceptResult;
      try {
        const ctx = await applyOverrides({ ...call, ctx: { ...call.ctx, idempotencyKey: lines.length === 1 ? call.ctx.idempotencyKey : "" } }, hit, site, "uip");
        result = await acceptor.accept(site, items.map((i) => i.event), ctx);
      } catch (err) {
        // One site's limit must not refuse the other sites' hits of the same request.
        if (err instanceof RateLimitedError) {
          retryAfterSeconds = Math.max(retryAfterSeconds ?? 0, err.retryAfterSeconds);
          fail("", err.message, "RATE_LIMITED");
          continue;
        }
        if (err instanceof InvalidArgumentError) {
          fail(err.field, problemOf(err), "INVALID_FIELD");
          continue;
        }
        throw err;
      }
      if (result.ignoredDoNotTrack) ignoredDoNotTrack = true;
      received += result.accepted.length;
      for (const e of result.errors) errors.push({ ...e, index: items[e.index].index, field: MEASUREMENT_FIELDS[e.field] ?? e.field });
    }
    return { received, errors, ignoredDoNotTrack: ignoredDoNotTrack && received === 0 && errors.length === 0, retryAfterSeconds };
  }

  function checkBatchSize(count: number): void {
    if (count === 0) throw new InvalidArgumentError("events", "must hold at least one event");
    if (count > deps.maxBatchEvents) throw new InvalidArgumentError("events", `must hold at most ${deps.maxBatchEvents} events, got ${count}`);
  }

  const event003: Route = {
    methods: ["POST"],
    async handle(call) {
      // 003 gives every browser a session cookie. It is not the visitor id (that would change how
      // visitors are counted); rate limits per session use the visitor, as on every other path.
      if (!UUID4.test(cookie(call.req, SESSION_COOKIE))) {
        const secure = isHttps(call.req) ? "; Secure" : "";
        call.cookies.push(`${SESSION_COOKIE}=${randomUUID()}; Path=/; HttpOnly; SameSite=Lax${secure}`);
      }
      const body = await readJsonObject(call.req);
      const type = body.event_type;
      if (type === undefined || type === null) throw new InvalidArgumentError("event_type", "is required");
      if (typeof type !== "string") throw new InvalidArgumentError("event_type", `must be a string, got ${jsonType(type)}`);
      if (type.trim() === "") throw new InvalidArgumentError("event_type", "must not be empty");
      const data = body.event_data;
      if (data !== undefined && data !== null && typeof data !== "string" && typeof data !== "object") {
        throw new InvalidArgumentError("event_data", `must be an object or a string, got ${jsonType(data)}`);
      }
      const pageUrl = optionalString(body.page_url, "page_url");
      const site = await siteForPage(call.req, pageUrl);
      const event: IncomingEvent = {
        ...emptyIncomingEvent(),
        eventId: optionalId(body.event_id, "event_id"),
        // 003's page_view is a page view: counting it as one keeps pageview reports right.
        name: type.trim() === "page_view" ? PAGEVIEW : type,
        url: pageUrl,
        referrer: optionalString(body.referrer, "referrer"),
        title: optionalString(body.title, "title"),
        // 003 sanitises arrays like objects: their indexes become keys.
        properties: Array.isArray(data) ? Object.fromEntries(data.entries()) : data,
      };
      const result = await acceptor.accept(site, [event], call.ctx);
      refuseSingle(result, { name: "event_type", properties: "event_data" });
      return { status: 204 };
    },
    refusal(error) {
      if (error instanceof RateLimitedError) {
        return { status: 429, json: { message: "Rate limit exceeded." }, headers: { "Retry-After": String(error.retryAfterSeconds) } };
      }
      if (error instanceof InvalidArgumentError && error.metadata.reason === "EVENT_TYPE_NOT_ALLOWED") {
        return { status: 400, json: { message: "Invalid event type." } };
      }
      return undefined;
    },
  };

  /** 003 names the site by its page: the page URL's host, else the page the browser says it is on. */
  async function siteForPage(req: BeaconRequest, pageUrl: string): Promise<IngestSite> {
    const host = hostOf(pageUrl) || hostOf(header(req, "origin")) || hostOf(header(req, "referer"));
    if (host === "") throw new InvalidArgumentError("page_url", "must be the absolute URL of a page on a tracked site");
    const site = await sites.byHostname(host);
    if (!site) throw new NotFoundError(`page_url: site for host "${host.slice(0, 253)}"`, "page_url");
    return site;
  }

  const traffic: Route = {
    methods: ["POST"],
    async handle(call) {
      const principal = await optionalPrincipal(call.req);
      if (!principal) throw new UnauthenticatedError("an API key is required: send Authorization: <key> or Authorization: Bearer <key>");
      if (!roleAllows(principal.role, "analyst")) throw new PermissionDeniedError(`recording traffic needs a key with the analyst role; this key is ${principal.role}`);
      const params: Record<string, unknown> = Object.fromEntries(new URLSearchParams(call.search));
      const payload = await readPayload(call.req);
      if (payload.kind === "json") Object.assign(params, jsonObject(payload.value, "body"));
      else if (payload.kind === "form") Object.assign(params, Object.fromEntries(payload.params));
      else if (payload.kind === "lines") throw new InvalidArgumentError("body", "must be JSON or form-encoded (url, ip_addr, user_agent)");
      const rawUrl = optionalString(params.url, "url").trim();
      if (rawUrl === "") throw new InvalidArgumentError("url", "is required (the URL the visitor requested)");
      const ip = optionalString(params.ip_addr, "ip_addr").trim();
      if (isIP(ip) === 0) throw new InvalidArgumentError("ip_addr", ip === "" ? "is required (the visitor's IP address)" : `must be an IPv4 or IPv6 address, got "${ip.slice(0, 60)}"`);
      const site = await siteForTraffic(principal, rawUrl, optionalString(params.site_id, "site_id").trim());
      const event: IncomingEvent = {
        ...emptyIncomingEvent(),
        eventId: optionalId(params.event_id, "event_id"),
        name: PAGEVIEW,
        url: rawUrl.startsWith("/") ? `https://${site.domain}${rawUrl}` : rawUrl,
        referrer: optionalString(params.referrer, "referrer"),
      };
      // A backend reports its visitors' requests: their IP and agent, and no browser privacy headers.
      const ctx = { ...call.ctx, ip, userAgent: optionalString(params.user_agent, "user_agent"), doNotTrack: false };
      const result = await acceptor.accept(site, [event], ctx);
      refuseSingle(result, {});
      return { status: 201, json: { status: "ok", event_id: result.accepted[0]?.eventId ?? "" } };
    },
  };

  /** The key's site for the URL: by site_id, by the URL's host, or the one site a key is limited to. */
  async function siteForTraffic(principal: Principal, url: string, siteId: string): Promise<IngestSite> {
    const reachable = (site: IngestSite | undefined) =>
      site && site.organisationId === principal.organisationId && canReachSite(principal, site.id) ? site : undefined;
    if (siteId !== "") {
      const site = reachable(await sites.byId(siteId));
      if (!site) throw new NotFoundError("site_id: site", "site_id");
      return site;
    }
    if (url.startsWith("/")) {
      if (principal.siteIds.length === 1) {
        const site = reachable(await sites.byId(principal.siteIds[0]));
        if (site) return site;
      }
      throw new InvalidArgumentError("url", "is a path; send the absolute URL, or site_id, or use a key limited to one site");
    }
    const host = hostOf(url);
    if (host === "") throw new InvalidArgumentError("url", `must be an absolute http(s) URL or a path, got "${url.slice(0, 100)}"`);
    const site = reachable(await sites.byHostname(host));
    if (!site) throw new NotFoundError(`url: site of this key's organisation for host "${host.slice(0, 253)}"`, "url");
    return site;
  }

  const routes = new Map<string, Route>([
    ["/collect", collect],
    ["/batch", batch],
    ["/api/event", event003],
    ["/api/v1/traffic", traffic],
  ]);
  const allowOf = new Map([...routes.values()].map((route) => [route, [...route.methods, "OPTIONS"].join(", ")]));

  // ---- dispatch ------------------------------------------------------------------------------

  async function serve(route: Route, req: BeaconRequest, call: Call): Promise<Answer> {
    const allow = allowOf.get(route)!;
    if (call.method === "OPTIONS") return { status: 204, headers: { Allow: allow } };
    if (!route.methods.includes(call.method)) {
      return { status: 405, headers: { Allow: allow }, json: { error: "method_not_allowed", message: `${call.method} is not allowed here; use ${route.methods.join(" or ")}` } };
    }
    try {
      return await route.handle(call);
    } catch (error) {
      const own = route.refusal?.(error);
      if (own) return own;
      return refusalAnswer(error, req);
    }
  }

  function refusalAnswer(error: unknown, req: BeaconRequest): Answer {
    if (error instanceof HttpRefusal) return { status: error.status, headers: error.headers, json: { error: error.code, message: error.message } };
    if (error instanceof BeaconError) {
      const status = STATUS_OF[error.reason];
      const headers: Record<string, string> = {};
      if (error instanceof RateLimitedError) headers["Retry-After"] = String(error.retryAfterSeconds);
      if (error instanceof UnavailableError && error.retryAfterSeconds !== undefined) headers["Retry-After"] = String(error.retryAfterSeconds);
      // The rest of an oversized body is not read, so the connection cannot carry another request.
      if (error instanceof PayloadTooLargeError && req.httpVersionMajor < 2) headers.Connection = "close";
      return { status, headers, json: { error: error.reason.toLowerCase(), message: error.message, ...(error.field ? { field: error.field } : {}) } };
    }
    if (error instanceof RequestAbortedError) return { status: 400, json: { error: "aborted", message: error.message } };
    // Not the caller's doing: Redis or Postgres could not take the work (a failed queue write lands
    // here). The cause stays in the log; the caller learns only that a retry may succeed.
    logger.error("beacon request failed", { path: (req.url ?? "").split("?", 1)[0], err: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    return { status: 503, headers: { "Retry-After": "5" }, json: { error: "unavailable", message: "events cannot be accepted right now; retry later" } };
  }

  function write(req: BeaconRequest, res: BeaconResponse, answer: Answer, cookies: string[], startedAt: number): void {
    try {
      // Headers set by earlier layers (CORS) stay; ours go in one writeHead.
      const headers: Record<string, string | string[] | number> = { "Cache-Control": "no-store" };
      if (cookies.length > 0) headers["Set-Cookie"] = cookies;
      if (answer.headers) Object.assign(headers, answer.headers);
      let body: string | Buffer | undefined;
      if (answer.gif) {
        headers["Content-Type"] = "image/gif";
        body = PIXEL_GIF;
      } else if (answer.jsonText !== undefined) {
        headers["Content-Type"] = "application/json; charset=utf-8";
        body = answer.jsonText;
      } else if (answer.json !== undefined) {
        headers["Content-Type"] = "application/json; charset=utf-8";
        body = JSON.stringify(answer.json);
      }
      if (body !== undefined) headers["Content-Length"] = typeof body === "string" ? Buffer.byteLength(body) : body.length;
      (res as ServerResponse).writeHead(answer.status, headers);
      if (body === undefined) res.end();
      else res.end(body);
    } catch (error) {
      // The client went away mid-answer; nothing is left to tell it.
      logger.debug("beacon answer not written", { err: error instanceof Error ? error.message : String(error) });
    }
    if (logger.enabled(answer.status >= 500 ? "error" : "info")) {
      logHttpRequest(logger, { method: req.method ?? "", path: (req.url ?? "").split("?", 1)[0], status: answer.status, durationMs: performance.now() - startedAt });
    }
  }

  return (req, res) => {
    const target = req.url ?? "";
    const queryAt = target.indexOf("?");
    const path = queryAt === -1 ? target : target.slice(0, queryAt);
    const route = routes.get(path);
    if (!route) return false;
    const startedAt = performance.now();
    const call: Call = {
      req,
      method: (req.method ?? "").toUpperCase(),
      search: queryAt === -1 ? "" : target.slice(queryAt + 1),
      ctx: requestContext(req.headers, clientIp(req)),
      cookies: [],
    };
    void serve(route, req, call).then((answer) => write(req, res, answer, call.cookies, startedAt));
    return true;
  };
}

// ---- helpers -----------------------------------------------------------------------------------

/** The acceptor's field names, as a measurement-protocol sender knows them. */
const MEASUREMENT_FIELDS: Record<string, string> = { name: "ea", timestamp: "qt", revenue: "tr", currency: "cu" };

/** A single-event request fails as a whole when its one event was refused. */
function refuseSingle(result: AcceptResult, fields: Record<string, string>): void {
  const error = result.errors[0];
  if (error) throw new InvalidArgumentError(fields[error.field] ?? error.field, error.message, { reason: error.reason });
}

function header(req: BeaconRequest, name: string): string {
  const value = req.headers[name];
  return (Array.isArray(value) ? value[0] : value) ?? "";
}

function cookie(req: BeaconRequest, name: string): string {
  for (const part of header(req, "cookie").split(";")) {
    const at = part.indexOf("=");
    if (at !== -1 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return "";
}

function isHttps(req: BeaconRequest): boolean {
  const forwarded = header(req, "x-forwarded-proto").split(",", 1)[0].trim().toLowerCase();
  return forwarded === "https" || Boolean((req.socket as { encrypted?: boolean } | undefined)?.encrypted);
}

function hostOf(url: string): string {
  try {
    const parsed = new URL(url.trim());
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.hostname : "";
  } catch {
    return "";
  }
}

function splitLines(text: string): string[] {
  return text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== "");
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpRefusal(400, "invalid_json", `the body is not valid JSON: ${error instanceof Error ? error.message.slice(0, 200) : "parse error"}`);
  }
}

function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function jsonObject(value: unknown, field: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new InvalidArgumentError(field, `must be a JSON object, got ${jsonType(value)}`);
  return value as Record<string, unknown>;
}

function optionalString(value: unknown, field: string): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw new InvalidArgumentError(field, `must be a string, got ${jsonType(value)}`);
  return value;
}

/** A client event id: a string, or a number some clients send. */
function optionalId(value: unknown, field: string): string {
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return optionalString(value, field);
}

function optionalNumber(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const number = typeof value === "string" ? Number(value) : value;
  if (typeof number !== "number" || !Number.isFinite(number)) throw new InvalidArgumentError(field, `must be a number, got ${jsonType(value)}`);
  return number;
}

/** A client time: epoch milliseconds, or an ISO 8601 string. */
function optionalTime(value: unknown, field: string): number | undefined {
  if (typeof value === "string" && value.trim() !== "" && !/^\d+(\.\d+)?$/.test(value.trim())) {
    const ms = Date.parse(value);
    if (Number.isNaN(ms)) throw new InvalidArgumentError(field, `must be epoch milliseconds or an ISO 8601 time, got "${value.slice(0, 40)}"`);
    return ms;
  }
  return optionalNumber(value, field);
}

/** `problem` without the `field: ` prefix InvalidArgumentError adds, for errors that carry the field apart. */
function problemOf(error: InvalidArgumentError): string {
  return error.field && error.message.startsWith(`${error.field}: `) ? error.message.slice(error.field.length + 2) : error.message;
}

function fromSearchParams(params: URLSearchParams): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of params) out[key] ??= value;
  return out;
}

/** A JSON hit's parameters as strings (000 sends some values as numbers), written into `out`. */
function measurementParams(body: Record<string, unknown>, out: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  for (const key of Object.keys(body)) {
    const value = body[key];
    if (value === undefined || value === null) continue;
    if (typeof value === "string") out[key] = value;
    else if ((typeof value === "number" && Number.isFinite(value)) || typeof value === "boolean") out[key] = String(value);
    else throw new InvalidArgumentError(key, `must be a string or a number, got ${jsonType(value)}`);
  }
  return out;
}

/** One event of 000's JSON batch. `page` is a path on the site's domain. */
function batchEvent(raw: unknown, site: IngestSite): IncomingEvent {
  const event = jsonObject(raw, "event");
  const type = optionalString(event.type, "type").trim();
  const name = optionalString(event.name, "name").trim();
  const action = optionalString(event.action, "action").trim();
  const page = optionalString(event.page, "page").trim();
  let url = optionalString(event.url, "url").trim();
  if (url === "" && page !== "") url = /^https?:\/\//i.test(page) ? page : `https://${site.domain}${page.startsWith("/") ? page : `/${page}`}`;
  const props = event.properties ?? event.props;
  if (props !== undefined && props !== null && (typeof props !== "object" || Array.isArray(props))) {
    throw new InvalidArgumentError(event.properties !== undefined ? "properties" : "props", `must be an object, got ${jsonType(props)}`);
  }
  let eventName: string;
  if (type === "pageview" || type === "page_view" || (type === "" && name === "" && action === "")) eventName = PAGEVIEW;
  else if (type === "event" || type === "") {
    eventName = action || name;
    if (eventName === "") throw new InvalidArgumentError("action", "is required for events of type \"event\"");
  } else eventName = type;
  const value = optionalNumber(event.value, "value");
  return {
    ...emptyIncomingEvent(),
    eventId: optionalId(event.event_id ?? event.id, event.event_id !== undefined ? "event_id" : "id"),
    name: eventName,
    url,
    referrer: optionalString(event.referrer, "referrer"),
    title: optionalString(event.title, "title"),
    timestamp: optionalTime(event.timestamp, "timestamp"),
    clientId: optionalId(event.client_id ?? event.cid, event.client_id !== undefined ? "client_id" : "cid"),
    userId: optionalId(event.user_id, "user_id"),
    screen: optionalString(event.screen, "screen"),
    language: optionalString(event.language, "language"),
    properties: {
      ...(event.category !== undefined ? { category: optionalString(event.category, "category") } : {}),
      ...(event.label !== undefined ? { label: optionalString(event.label, "label") } : {}),
      ...(value !== undefined ? { value } : {}),
      ...((props as Record<string, unknown> | null | undefined) ?? {}),
    },
    revenue: optionalNumber(event.revenue, "revenue"),
    currency: optionalString(event.currency, "currency"),
  };
}
