// Accept-to-stored lag, by sampling. While a phase's load runs, the sampler sends its own
// TrackEvent calls (Connect JSON, ~20/s) carrying an event id and a client timestamp; they go
// through the same acceptor, ingest buffer, queue and workers as the load. The poller looks the
// accepted samples up by primary key (site_id, ts, event_id) every 100 ms; an event's lag is the
// start of the first poll that sees it minus its `received_at` (set by the server at accept).
// Resolution: the poll interval (100 ms), always on the late side.
import http from "node:http";
import type pg from "pg";
import { TRACK_EVENT_PATH, USER_AGENTS, visitorIp } from "./scenarios.js";

export interface LagResult {
  sent: number;
  accepted: number;
  refused: number;
  seen: number;
  /** Lag percentiles in ms (received_at → first poll that sees the row). */
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

interface Sample {
  eventId: string;
  tsIso: string;
}

export class LagSampler {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  private readonly pending = new Map<string, Sample>();
  private readonly lags: number[] = [];
  private sent = 0;
  private accepted = 0;
  private refused = 0;
  private sendTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private polling = false;
  private inFlight = new Set<Promise<void>>();

  constructor(
    private readonly opts: { port: number; trackingId: string; host: string; siteId: string; label: string; pool: pg.Pool; perSecond?: number },
  ) {}

  /** Starts sending samples and polling for them. */
  start(): void {
    const every = 1000 / (this.opts.perSecond ?? 20);
    this.sendTimer = setInterval(() => {
      const p = this.sendOne();
      this.inFlight.add(p);
      void p.finally(() => this.inFlight.delete(p));
    }, every);
    this.pollTimer = setInterval(() => void this.poll(), 100);
  }

  /** Stops sending; keeps polling until every accepted sample is seen or `timeoutMs` passes. */
  async finish(timeoutMs: number): Promise<LagResult> {
    await this.stopSending();
    const deadline = Date.now() + timeoutMs;
    while (this.pending.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    clearInterval(this.pollTimer);
    while (this.polling) await new Promise((r) => setTimeout(r, 20));
    this.agent.destroy();
    const sorted = [...this.lags].sort((a, b) => a - b);
    const pct = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN);
    return { sent: this.sent, accepted: this.accepted, refused: this.refused, seen: sorted.length, p50: pct(50), p95: pct(95), p99: pct(99), max: sorted.length ? sorted[sorted.length - 1] : NaN };
  }

  /** Stops sending and waits for the samples in flight; `acceptedCount` is final after it. */
  async stopSending(): Promise<void> {
    clearInterval(this.sendTimer);
    await Promise.all([...this.inFlight]);
  }

  get acceptedCount(): number {
    return this.accepted;
  }

  private sendOne(): Promise<void> {
    const k = this.sent++;
    const eventId = `lag-${this.opts.label}-${k}`;
    const tsIso = new Date().toISOString();
    const body = JSON.stringify({
      trackingId: this.opts.trackingId,
      event: { eventId, name: "pageview", url: `https://${this.opts.host}/lag-sample`, timestamp: tsIso, clientId: `lag-${this.opts.label}-${k}` },
    });
    return new Promise<void>((resolve) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: this.opts.port,
          path: TRACK_EVENT_PATH,
          method: "POST",
          agent: this.agent,
          headers: {
            "Content-Type": "application/json",
            "Content-Length": Buffer.byteLength(body),
            "User-Agent": USER_AGENTS[k % (USER_AGENTS.length - 1)],
            "X-Forwarded-For": visitorIp(9_000_000 + k),
          },
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          res.on("end", () => {
            if (res.statusCode === 200) {
              this.accepted++;
              this.pending.set(eventId, { eventId, tsIso });
            } else {
              this.refused++;
            }
            resolve();
          });
        },
      );
      req.on("error", () => {
        this.refused++;
        resolve();
      });
      req.on("timeout", () => req.destroy());
      req.end(body);
    });
  }

  private async poll(): Promise<void> {
    if (this.polling || this.pending.size === 0) return;
    this.polling = true;
    try {
      const samples = [...this.pending.values()];
      const at = Date.now();
      const { rows } = await this.opts.pool.query<{ event_id: string; received_at: Date }>(
        `select e.event_id, e.received_at
         from unnest($2::timestamptz[], $3::text[]) as t(ts, event_id)
         join events e on e.site_id = $1 and e.ts = t.ts and e.event_id = t.event_id`,
        [this.opts.siteId, samples.map((s) => s.tsIso), samples.map((s) => s.eventId)],
      );
      for (const row of rows) {
        if (!this.pending.delete(row.event_id)) continue;
        this.lags.push(at - row.received_at.getTime());
      }
    } catch {
      // A failed poll is retried on the next tick.
    } finally {
      this.polling = false;
    }
  }
}
