// The load generator, run as its own process so it does not share the server's event loop:
//   node --import tsx test/bench/loadgen.ts '<json options>'
// Opens `connections` keep-alive HTTP/1.1 connections to 127.0.0.1 over raw sockets (no
// pipelining: a connection sends its next request when the previous answer is complete),
// runs for warmupMs + durationMs (or until maxRequests), and prints one JSON line of counts and
// latency percentiles. Only 127.0.0.1 is ever a target.
//
// Two ways to load: closed loop (each connection sends again as soon as it is answered: the most
// the server answers with that many clients), or open loop with `ratePerSec` (requests are due
// on a fixed schedule, as independent browsers send them, and go out on whichever connection is
// free; latency counts from when a request was due, so a server that falls behind is charged for
// the requests waiting for a connection too, not only for the ones it answered).
import net from "node:net";
import { performance } from "node:perf_hooks";
import { requestSource, type Scenario } from "./scenarios.js";
import { percentile } from "./common.js";

export interface LoadgenOptions {
  port: number;
  connections: number;
  warmupMs: number;
  durationMs: number;
  /** A hard bound on requests sent over the whole run, warm-up included. */
  maxRequests: number;
  scenario: Scenario;
  /** Overrides the scenario's path (e.g. the no-op Connect reference, the bare server). */
  path?: string;
  seed: number;
  /** Open loop: requests due at this fixed rate (absent: closed loop). */
  ratePerSec?: number;
}

export interface LoadgenResult {
  /** Epoch ms when the first request was sent and when the last answer arrived. */
  startedAt: number;
  endedAt: number;
  /** The measured window (after warm-up). */
  windowMs: number;
  connections: number;
  /** 2xx answers completed inside the window. */
  okInWindow: number;
  /** Events those carried (from the answers' `received` for batches). */
  eventsInWindow: number;
  /** Over the whole run, warm-up included: what the pipeline must store. */
  okTotal: number;
  eventsAcceptedTotal: number;
  requestsSent: number;
  statuses: Record<string, number>;
  /** A few non-2xx answer bodies, to say why. */
  errorSamples: string[];
  socketErrors: number;
  /** Latency of 2xx answers in the window, ms from writing the request (or, open loop, from when it was due) to the end of the answer. */
  latency: { p50: number; p90: number; p99: number; max: number; mean: number; count: number };
  /** CPU the load generator itself used, ms. */
  cpuMs: number;
}

const CRLFCRLF = Buffer.from("\r\n\r\n");

/** An incremental HTTP/1.1 response reader: Content-Length or chunked bodies, nothing fancier. */
class ResponseReader {
  private buf: Buffer = Buffer.alloc(0);
  private status = 0;
  private retryAfter = 0;
  private headerEnd = -1;
  private contentLength = -1;
  private chunked = false;
  private body: Buffer[] = [];
  private chunkPos = 0;

  constructor(private readonly keepBody: boolean) {}

  /** Feeds bytes; returns completed responses (status, body when kept). */
  push(chunk: Buffer): { status: number; body: string; retryAfter: number }[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const done: { status: number; body: string; retryAfter: number }[] = [];
    for (;;) {
      if (this.headerEnd < 0) {
        const end = this.buf.indexOf(CRLFCRLF);
        if (end < 0) return done;
        const headText = this.buf.toString("latin1", 0, end);
        this.status = Number(headText.slice(9, 12));
        const lower = headText.toLowerCase();
        const cl = /\r\ncontent-length:\s*(\d+)/.exec(lower);
        this.contentLength = cl ? Number(cl[1]) : -1;
        this.chunked = /\r\ntransfer-encoding:[^\r]*chunked/.test(lower);
        const ra = /\r\nretry-after:\s*(\d+)/.exec(lower);
        this.retryAfter = ra ? Number(ra[1]) : 0;
        if (!cl && !this.chunked) this.contentLength = 0; // 204, 304, or a body-less answer
        this.headerEnd = end + 4;
        this.chunkPos = this.headerEnd;
        this.body = [];
      }
      if (!this.chunked) {
        const total = this.headerEnd + this.contentLength;
        if (this.buf.length < total) return done;
        const body = this.keepBody ? this.buf.toString("utf8", this.headerEnd, total) : "";
        done.push({ status: this.status, body, retryAfter: this.retryAfter });
        this.buf = this.buf.subarray(total);
        this.headerEnd = -1;
        continue;
      }
      // Chunked: <hex>\r\n<data>\r\n … 0\r\n\r\n (no trailers expected).
      let finished = false;
      for (;;) {
        const lineEnd = this.buf.indexOf("\r\n", this.chunkPos);
        if (lineEnd < 0) return done;
        const size = parseInt(this.buf.toString("latin1", this.chunkPos, lineEnd), 16);
        if (size === 0) {
          if (this.buf.length < lineEnd + 4) return done;
          this.chunkPos = lineEnd + 4;
          finished = true;
          break;
        }
        if (this.buf.length < lineEnd + 2 + size + 2) return done;
        if (this.keepBody) this.body.push(this.buf.subarray(lineEnd + 2, lineEnd + 2 + size));
        this.chunkPos = lineEnd + 2 + size + 2;
      }
      if (finished) {
        done.push({ status: this.status, body: this.keepBody ? Buffer.concat(this.body).toString("utf8") : "", retryAfter: this.retryAfter });
        this.buf = this.buf.subarray(this.chunkPos);
        this.headerEnd = -1;
      }
    }
  }
}

export async function runLoad(options: LoadgenOptions): Promise<LoadgenResult> {
  const source = requestSource(options.scenario, options.port, options.seed, options.path);
  const cpuStart = process.cpuUsage();
  const startedAt = Date.now();
  const t0 = performance.now();
  const windowStart = t0 + options.warmupMs;
  const windowEnd = windowStart + options.durationMs;
  let next = 0;
  let okInWindow = 0;
  let eventsInWindow = 0;
  let okTotal = 0;
  let eventsAcceptedTotal = 0;
  let socketErrors = 0;
  const statuses: Record<string, number> = {};
  const errorSamples: string[] = [];
  const latencies: number[] = [];
  let lastAnswer = t0;

  // Open loop: due times of requests not yet sent, and connections waiting for one.
  const rate = options.ratePerSec;
  // Read from `head` on, never shifted: a server that falls behind leaves tens of thousands due,
  // and shift() copying them all for every request sent made the generator the busiest process.
  const backlog: number[] = [];
  let head = 0;
  const idle: (() => void)[] = [];
  let scheduled = 0;
  let ticker: NodeJS.Timeout | undefined;
  if (rate !== undefined) {
    ticker = setInterval(() => {
      const now = performance.now();
      const due = Math.min(Math.floor(((Math.min(now, windowEnd) - t0) * rate) / 1000), options.maxRequests);
      for (; scheduled < due; scheduled++) backlog.push(t0 + (scheduled * 1000) / rate);
      while (head < backlog.length && idle.length > 0) idle.pop()!();
      if (now >= windowEnd) {
        clearInterval(ticker);
        while (idle.length > 0) idle.pop()!();
      }
    }, 1);
  }

  const connection = (): Promise<void> =>
    new Promise((resolve) => {
      let sentAt = 0;
      let open = false;
      const reader = new ResponseReader(source.countsReceived || true);
      const socket = net.connect({ host: "127.0.0.1", port: options.port, noDelay: true });
      const send = () => {
        const now = performance.now();
        if (now >= windowEnd || next >= options.maxRequests) {
          socket.end();
          return;
        }
        if (rate !== undefined) {
          const due = head < backlog.length ? backlog[head++] : undefined;
          if (due === undefined) {
            idle.push(send);
            return;
          }
          sentAt = due;
        } else {
          sentAt = now;
        }
        socket.write(source.request(next++));
      };
      socket.on("connect", () => {
        open = true;
        send();
      });
      socket.on("data", (chunk: Buffer) => {
        for (const answer of reader.push(chunk)) {
          const now = performance.now();
          lastAnswer = now;
          statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
          const ok = answer.status >= 200 && answer.status < 300;
          let events = 0;
          if (ok) {
            events = source.eventsPerRequest;
            if (source.countsReceived) {
              try {
                const parsed = JSON.parse(answer.body) as { received?: number };
                events = Number(parsed.received ?? 0);
              } catch {
                events = 0;
              }
            }
            okTotal++;
            eventsAcceptedTotal += events;
            if (now >= windowStart && now < windowEnd) {
              okInWindow++;
              eventsInWindow += events;
              latencies.push(now - sentAt);
            }
          } else if (errorSamples.length < 5) {
            errorSamples.push(`${answer.status} ${answer.body.slice(0, 300)}`);
          }
          // A refusal with Retry-After (backpressure, rate limits) is honoured as a real client would.
          if ((answer.status === 503 || answer.status === 429) && answer.retryAfter > 0) setTimeout(send, answer.retryAfter * 1000);
          else send();
        }
      });
      socket.on("error", () => {
        socketErrors++;
      });
      socket.on("close", () => {
        // A connection the server closed early is replaced while the run lasts.
        if (!open || performance.now() >= windowEnd || next >= options.maxRequests) resolve();
        else connection().then(resolve, resolve);
      });
    });

  const conns: Promise<void>[] = [];
  for (let i = 0; i < options.connections; i++) conns.push(connection());
  // Bounded: answers still outstanding 10 s after the window are abandoned.
  await Promise.race([Promise.all(conns), new Promise((r) => setTimeout(r, options.warmupMs + options.durationMs + 10_000).unref())]);
  if (ticker) clearInterval(ticker);
  const sorted = Float64Array.from(latencies).sort();
  const sum = latencies.reduce((a, b) => a + b, 0);
  const cpu = process.cpuUsage(cpuStart);
  return {
    startedAt,
    endedAt: startedAt + (lastAnswer - t0),
    windowMs: options.durationMs,
    connections: options.connections,
    okInWindow,
    eventsInWindow,
    okTotal,
    eventsAcceptedTotal,
    requestsSent: next,
    statuses,
    errorSamples,
    socketErrors,
    latency: {
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p99: percentile(sorted, 99),
      max: sorted.length ? sorted[sorted.length - 1] : NaN,
      mean: latencies.length ? sum / latencies.length : NaN,
      count: latencies.length,
    },
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

if (process.argv[1]?.endsWith("loadgen.ts")) {
  const options = JSON.parse(process.argv[2] ?? "{}") as LoadgenOptions;
  // The parent starts its CPU meter on this line and stops it on the result line, then closes
  // stdin: the process stays alive until then so its CPU time can still be read from /proc.
  process.stdout.write(`${JSON.stringify({ bench: "running" })}\n`);
  const result = await runLoad(options);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  setTimeout(() => process.exit(0), 30_000).unref();
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("error", () => process.exit(0));
  process.stdin.resume();
}
