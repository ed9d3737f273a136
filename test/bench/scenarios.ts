// What the load generator sends: whole HTTP/1.1 requests (request line, headers, body) built
// from a scenario and a request number. Visitors vary (client id, X-Forwarded-For address, user
// agent) the way real traffic does, so per-visitor rate limits, the user-agent cache, geo lookups
// and session state see many visitors rather than one.

export type Scenario =
  /** Universal Analytics style `POST /collect` with a JSON body (the plain-HTTP beacon). */
  | { kind: "collect"; trackingId: string; host: string; visitors: number }
  /** Connect unary `TrackEvent` with a JSON body over HTTP/1.1. */
  | { kind: "track-json"; trackingId: string; host: string; visitors: number }
  /** `POST /batch` with 000's JSON (`tracking_id`, `events[]`). */
  | { kind: "batch-http"; trackingId: string; host: string; size: number }
  /** Connect unary `TrackEvents` with a JSON body. */
  | { kind: "batch-connect"; trackingId: string; host: string; size: number };

export const TRACK_EVENT_PATH = "/beacon.v1.TrackingService/TrackEvent";
export const TRACK_EVENTS_PATH = "/beacon.v1.TrackingService/TrackEvents";

/** Real browsers' user agents (and one crawler), so the user-agent cache and isbot see variety. */
export const USER_AGENTS = [
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36",
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
  "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];

const PAGES = ["/", "/pricing", "/docs", "/docs/getting-started", "/blog", "/blog/launch", "/about", "/signup", "/login", "/features"];
const REFERRERS = ["", "", "", "https://www.google.com/", "https://news.ycombinator.com/", "https://twitter.com/", "https://duckduckgo.com/"];

/** A distinct, well-formed address per visitor number (used only as a header value). */
export function visitorIp(n: number): string {
  return `${11 + ((n >>> 16) % 200)}.${(n >>> 8) & 255}.${n & 255}.${1 + (n % 250)}`;
}

function head(method: string, path: string, port: number, contentType: string, bodyLength: number, extra: string): string {
  return (
    `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: ${contentType}\r\nContent-Length: ${bodyLength}\r\n` +
    `${extra}\r\n`
  );
}

function visitorHeaders(v: number, connect: boolean): string {
  return `User-Agent: ${USER_AGENTS[v % USER_AGENTS.length]}\r\nX-Forwarded-For: ${visitorIp(v)}\r\n${connect ? "Connect-Protocol-Version: 1\r\n" : ""}`;
}

/** One single-event body: the page and referrer vary with the request number. */
function singleBody(scenario: Extract<Scenario, { kind: "collect" | "track-json" }>, v: number, seed: number, n: number): string {
  const page = PAGES[n % PAGES.length];
  const referrer = REFERRERS[n % REFERRERS.length];
  const cid = `v${seed}-${v}`;
  if (scenario.kind === "collect") {
    return JSON.stringify({ v: "1", tid: scenario.trackingId, cid, t: "pageview", dh: scenario.host, dp: page, dt: `Page ${page}`, dr: referrer });
  }
  return JSON.stringify({
    trackingId: scenario.trackingId,
    event: { name: "pageview", url: `https://${scenario.host}${page}`, referrer, title: `Page ${page}`, clientId: cid, screen: "1920x1080", language: "en-GB" },
  });
}

export interface RequestSource {
  /** The request numbered `n` (0, 1, 2, … across the whole load generator). */
  request(n: number): Buffer;
  /** Events each request carries. */
  eventsPerRequest: number;
  /** Whether a 2xx answer's JSON body says how many events were received (batches). */
  countsReceived: boolean;
}

/**
 * Requests for `scenario` against 127.0.0.1:`port`. `seed` keeps client ids and visitor numbers
 * of one run apart from another's. Single-event requests are built once per visitor (a pool
 * that repeats), so building them costs the load generator nothing during the run.
 */
export function requestSource(scenario: Scenario, port: number, seed: number, path?: string): RequestSource {
  switch (scenario.kind) {
    case "collect":
    case "track-json": {
      const connect = scenario.kind === "track-json";
      const target = path ?? (connect ? TRACK_EVENT_PATH : "/collect");
      // Enough distinct request texts that pages and referrers vary per visitor too.
      const pool: Buffer[] = [];
      const size = Math.max(scenario.visitors, 1);
      for (let i = 0; i < size; i++) {
        const v = seed * 1_000_000 + i;
        const body = singleBody(scenario, i, seed, i * 7 + (i >> 4));
        pool.push(Buffer.from(head("POST", target, port, "application/json", Buffer.byteLength(body), visitorHeaders(v, connect)) + body));
      }
      return { request: (n) => pool[n % pool.length], eventsPerRequest: 1, countsReceived: false };
    }
    case "batch-http":
    case "batch-connect": {
      const connect = scenario.kind === "batch-connect";
      const target = path ?? (connect ? TRACK_EVENTS_PATH : "/batch");
      return {
        eventsPerRequest: scenario.size,
        countsReceived: true,
        request(n) {
          // Each batch is a server-side collector's flush: 50 visitors, several events each.
          // The per-visitor rate limit charges a batch to its first event's visitor, so the
          // first visitor (and the forwarded address) is new for every batch.
          const batch = seed * 10_000_000 + n;
          const parts: string[] = [];
          for (let i = 0; i < scenario.size; i++) {
            const page = PAGES[(n + i) % PAGES.length];
            if (connect) {
              const referrer = REFERRERS[(n + i) % REFERRERS.length];
              parts.push(`{"name":"pageview","url":"https://${scenario.host}${page}","referrer":"${referrer}","title":"Page ${page}","clientId":"b${batch}-${i % 50}"}`);
            } else {
              parts.push(`{"type":"pageview","page":"${page}","title":"Page ${page}"}`);
            }
          }
          const body = connect
            ? `{"trackingId":"${scenario.trackingId}","events":[${parts.join(",")}]}`
            : `{"tracking_id":"${scenario.trackingId}","events":[${parts.join(",")}]}`;
          return Buffer.from(head("POST", target, port, "application/json", Buffer.byteLength(body), visitorHeaders(batch, connect)) + body);
        },
      };
    }
  }
}
