// Seed 001's data API, answered by the report engine:
//   GET /api/v1/data/users       distinct visitors            {"…", "users": 12}
//   GET /api/v1/data/views       pageviews                    {"…", "views": 30}
//   GET /api/v1/data/countries   visitors and pageviews per country, most viewed first
//   GET /api/v1/data/cities      … per city (with its country: a city name alone is ambiguous)
//   GET /api/v1/data/urls        … per page path
//   GET /api/v1/data/hostnames   … per hostname
// Query: start_date, end_date (YYYY-MM-DD; 001's clients also send unpadded dates like 2021-3-15),
// optional classification USER (default) or BOT, optional site_id (else the key's only site, or
// its organisation's only site). Key auth as 001 sends it: the key bare in Authorization, or
// `Bearer <key>`; any role may read.
//
// Seed 001 counted a user per IP address. Beacon's visitor is the client's own id when it sends
// one, else a keyed hash of site, IP and user agent with a salt that changes daily (docs/metrics.md):
// two people behind one NAT count as two, and the same person counts again on another day.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { MikroORM } from "@mikro-orm/postgresql";
import { keyFromAuthorization } from "../core/api-keys.js";
import { BeaconError, type ErrorReason, InvalidArgumentError, UnauthenticatedError } from "../core/errors.js";
import { loadSite } from "../core/management/access.js";
import type { ReportEngine, ReportResult } from "../core/reports/engine.js";
import { MAX_LIMIT, MAX_RANGE_DAYS, planReport } from "../core/reports/query.js";
import { daysBetween, isDate } from "../core/reports/time.js";
import type { Principal } from "../core/roles.js";
import { Site } from "../db/entities/index.js";
import type { PrincipalResolver } from "../interceptors/auth.js";
import { logHttpRequest } from "../interceptors/logging.js";
import type { Logger } from "../logger.js";

type DataRequest = IncomingMessage | Http2ServerRequest;
type DataResponse = ServerResponse | Http2ServerResponse;

export interface DataApiDeps {
  orm: MikroORM;
  principals: PrincipalResolver;
  engine: Pick<ReportEngine, "run">;
  logger: Logger;
}

/** Answers the request and returns true when its path is a data-API endpoint; false leaves it alone. */
export type DataApiRoutes = (req: DataRequest, res: DataResponse) => boolean;

/** A count over the range: the metric it is and the JSON key 001 names it by. */
const TOTALS = { users: "visitors", views: "pageviews" } as const;
/** A breakdown: the report dimensions of a row, each with the JSON key it is written under. */
const BREAKDOWNS: Record<string, { dimension: string; key: string }[]> = {
  countries: [{ dimension: "country", key: "country" }],
  cities: [{ dimension: "city", key: "city" }, { dimension: "country", key: "country" }],
  urls: [{ dimension: "page", key: "url" }],
  hostnames: [{ dimension: "hostname", key: "hostname" }],
};
const PREFIX = "/api/v1/data/";

const STATUS_OF: Partial<Record<ErrorReason, number>> = { INVALID_FIELD: 400, NOT_FOUND: 404, UNAUTHENTICATED: 401, PERMISSION_DENIED: 403 };

/** 001's dates, padded: `2021-3-15` → `2021-03-15`; undefined when it is no real date. */
export function dataApiDate(value: string): string | undefined {
  const match = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(value.trim());
  if (!match) return undefined;
  const date = `${match[1]}-${match[2].padStart(2, "0")}-${match[3].padStart(2, "0")}`;
  return isDate(date) ? date : undefined;
}

interface Answer {
  status: number;
  /** No body when absent (204). */
  json?: unknown;
  headers?: Record<string, string>;
}

export function createDataApiRoutes(deps: DataApiDeps): DataApiRoutes {
  const { orm, principals, engine, logger } = deps;

  async function principalOf(req: DataRequest): Promise<Principal> {
    const secret = keyFromAuthorization(header(req, "authorization") || undefined);
    if (!secret) throw new UnauthenticatedError("an API key is required: send Authorization: <key> or Authorization: Bearer <key>");
    const principal = await principals.resolve(secret);
    if (!principal) throw new UnauthenticatedError("the API key is not valid or has been revoked");
    return principal;
  }

  /** The named site, else the one site the key (or else its organisation) can reach. */
  async function siteOf(principal: Principal, siteId: string): Promise<Site> {
    const em = orm.em.fork();
    if (siteId !== "") return loadSite(em, principal, siteId, "site_id");
    if (principal.siteIds.length === 1) return loadSite(em, principal, principal.siteIds[0], "site_id");
    const reachable = principal.siteIds.length > 0 ? { id: { $in: [...principal.siteIds] } } : {};
    const sites = await em.find(Site, { organisationId: principal.organisationId, deletedAt: null, ...reachable }, { limit: 2, orderBy: { id: "asc" } });
    if (sites.length === 1) return sites[0];
    throw new InvalidArgumentError("site_id", sites.length === 0 ? "this key reaches no site" : "this key reaches several sites; name one with site_id");
  }

  async function handle(endpoint: string, query: URLSearchParams, req: DataRequest): Promise<Answer> {
    const principal = await principalOf(req);
    const dates: Record<"start_date" | "end_date", string> = { start_date: "", end_date: "" };
    for (const field of ["start_date", "end_date"] as const) {
      const raw = query.get(field) ?? "";
      if (raw === "") throw new InvalidArgumentError(field, "is required, as YYYY-MM-DD");
      const date = dataApiDate(raw);
      if (!date) throw new InvalidArgumentError(field, `must be a date as YYYY-MM-DD, got "${raw.slice(0, 20)}"`);
      dates[field] = date;
    }
    const span = daysBetween(dates.start_date, dates.end_date);
    if (span < 0) throw new InvalidArgumentError("end_date", "must not be before start_date");
    if (span >= MAX_RANGE_DAYS) throw new InvalidArgumentError("end_date", `the range may span at most ${MAX_RANGE_DAYS} days`);
    const classification = (query.get("classification") ?? "USER").trim().toUpperCase() || "USER";
    if (classification !== "USER" && classification !== "BOT") throw new InvalidArgumentError("classification", `must be USER or BOT, got "${(query.get("classification") ?? "").slice(0, 20)}"`);
    const site = await siteOf(principal, (query.get("site_id") ?? "").trim());

    const breakdown = BREAKDOWNS[endpoint];
    const plan = planReport({ id: site.id, timezone: site.timezone }, [], {
      startDate: dates.start_date,
      endDate: dates.end_date,
      metrics: ["visitors", "pageviews"],
      dimensions: breakdown ? breakdown.map((b) => b.dimension) : [],
      filters: [],
      // Most viewed first, then most users; the engine breaks remaining ties by value.
      orderBy: [{ metric: "pageviews", direction: "desc" }, { metric: "visitors", direction: "desc" }],
      limit: MAX_LIMIT,
      pageToken: "",
      classification,
    });
    const result: ReportResult = await engine.run(plan);
    const body: Record<string, unknown> = { start_date: dates.start_date, end_date: dates.end_date, classification, site_id: site.id };
    if (endpoint in TOTALS) {
      const metric = TOTALS[endpoint as keyof typeof TOTALS];
      body[endpoint] = result.totals[metric] ?? 0;
    } else {
      // Unknown values are stored as '' and written as null.
      body[endpoint] = result.rows.map((row) => ({
        ...Object.fromEntries(breakdown.map((b) => [b.key, row.dimensions[b.dimension] || null])),
        users: row.metrics.visitors,
        views: row.metrics.pageviews,
      }));
    }
    if (result.approximate) body.approximate = true;
    return { status: 200, json: body };
  }

  function refusal(error: unknown, path: string): Answer {
    if (error instanceof BeaconError && STATUS_OF[error.reason]) {
      return { status: STATUS_OF[error.reason]!, json: { error: error.reason.toLowerCase(), message: error.message, ...(error.field ? { field: error.field } : {}) } };
    }
    // A driver or engine failure: the cause stays in the log, never in the answer.
    logger.error("data API request failed", { path, err: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    return { status: 500, json: { error: "internal", message: "the report could not be computed" } };
  }

  function write(req: DataRequest, res: DataResponse, answer: Answer, path: string, startedAt: number): void {
    try {
      res.statusCode = answer.status;
      res.setHeader("Cache-Control", "no-store");
      for (const [name, value] of Object.entries(answer.headers ?? {})) res.setHeader(name, value);
      if (answer.json === undefined) {
        res.end();
      } else {
        const text = JSON.stringify(answer.json);
        res.setHeader("Content-Type", "application/json; charset=utf-8");
        res.setHeader("Content-Length", Buffer.byteLength(text));
        if (req.method === "HEAD") res.end();
        else res.end(text);
      }
    } catch (error) {
      logger.debug("data API answer not written", { err: error instanceof Error ? error.message : String(error) });
    }
    logHttpRequest(logger, { method: req.method ?? "", path, status: answer.status, durationMs: performance.now() - startedAt });
  }

  return (req, res) => {
    const target = req.url ?? "";
    const queryAt = target.indexOf("?");
    const path = queryAt === -1 ? target : target.slice(0, queryAt);
    if (!path.startsWith(PREFIX)) return false;
    const endpoint = path.slice(PREFIX.length);
    if (!(endpoint in TOTALS) && !(endpoint in BREAKDOWNS)) return false;
    const startedAt = performance.now();
    const method = (req.method ?? "").toUpperCase();
    if (method !== "GET" && method !== "HEAD") {
      const allow = "GET, HEAD, OPTIONS";
      const answer: Answer = method === "OPTIONS"
        ? { status: 204, headers: { Allow: allow } }
        : { status: 405, json: { error: "method_not_allowed", message: `${method} is not allowed here; use GET` }, headers: { Allow: allow } };
      write(req, res, answer, path, startedAt);
      return true;
    }
    const query = new URLSearchParams(queryAt === -1 ? "" : target.slice(queryAt + 1));
    void handle(endpoint, query, req)
      .catch((error: unknown) => refusal(error, path))
      .then((answer) => write(req, res, answer, path, startedAt));
    return true;
  };
}

function header(req: DataRequest, name: string): string {
  const value = req.headers[name];
  return (Array.isArray(value) ? value[0] : value) ?? "";
}
