// One TCP port for every client Beacon has: browsers and beacons (HTTP/1.1), Connect and gRPC-web
// clients (either), and gRPC clients, which speak cleartext HTTP/2 with prior knowledge. Node's
// cleartext HTTP/2 server cannot fall back to HTTP/1.1 (`allowHTTP1` needs TLS and ALPN), so a
// plain TCP server reads the first bytes of each connection and hands it to the right one.
import net from "node:net";
import http from "node:http";
import http2 from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Logger } from "../logger.js";
import { LinkedSet } from "./linked-set.js";

export type HttpHandler = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

export interface ListenOptions {
  port: number;
  host: string;
  /** Where connection-level trouble (resets, handler crashes) is reported. */
  logger?: Logger;
  /** How long a new connection may stay silent before its first byte; 10 s unless a test says. */
  firstByteTimeoutMs?: number;
}

export interface HttpListener {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /**
   * Fires when close() starts. Long-lived responses (server-streaming RPCs) listen to it and end
   * themselves, because close() waits for every in-flight request.
   */
  readonly shutdownSignal: AbortSignal;
  /** Requests received and not yet answered, over both protocols. */
  inFlight(): number;
  /**
   * Stops accepting connections, lets in-flight requests finish (HTTP/1 responses go out with
   * `Connection: close`, HTTP/2 sessions get GOAWAY), destroys what is left after `timeoutMs`,
   * and resolves once every connection is closed. Calling it again returns the same promise.
   */
  close(timeoutMs: number): Promise<void>;
}

// Every HTTP/2 connection opens with this preface (RFC 9113 §3.4); no HTTP/1 request line can.
const http2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

const defaultFirstByteTimeoutMs = 10_000;

// HTTP/1 requests open on a connection, so a drained connection can be closed at once.
const openRequests = Symbol("openRequests");
// The connection a response went out on (a response lets go of its socket before 'close').
const responseSocket = Symbol("responseSocket");
type Http1Socket = net.Socket & { [openRequests]?: number };
type CountedSocket = net.Socket & { [openRequests]: number };
type Http1Response = ServerResponse & { [responseSocket]: CountedSocket };

export function listen(handler: HttpHandler, opts: ListenOptions): Promise<HttpListener> {
  const { logger } = opts;
  const firstByteTimeoutMs = opts.firstByteTimeoutMs ?? defaultFirstByteTimeoutMs;
  const shutdown = new AbortController();
  let closing: Promise<void> | undefined;

  // Connections and open responses come and go by the thousand a second: LinkedSet, not Set,
  // so what has left is not kept alive for the garbage collector to copy (see linked-set.ts).
  const sockets = new LinkedSet<net.Socket>();
  // Connections whose first bytes have not arrived yet; they hold no request, so close() drops them.
  const undecided = new LinkedSet<net.Socket>();
  const http1Sockets = new LinkedSet<net.Socket>();
  const http1Responses = new LinkedSet<Http1Response>();
  const sessions = new Set<http2.ServerHttp2Session>();
  let inFlight = 0;

  // The bookkeeping rides on the objects themselves, with one shared 'close' listener. A closure,
  // `once` and a Map entry per request made this listener cost a bare server's 204 answer 6.8 µs
  // more server CPU a request; now 2.5 (medians of 12 interleaved runs each: 44.7, 51.5, 47.2 µs).
  const onHttp2Close = () => {
    inFlight--;
  };
  function onHttp1Close(this: Http1Response) {
    inFlight--;
    http1Responses.delete(this);
    const socket = this[responseSocket];
    const open = --socket[openRequests];
    // Headers went out before close() began, so the client may think the connection reusable.
    if (open === 0 && closing) socket.destroySoon();
  }

  const serve: HttpHandler = (req, res) => {
    inFlight++;
    if (req.httpVersionMajor === 2) {
      res.once("close", onHttp2Close);
    } else {
      const socket = req.socket as CountedSocket;
      socket[openRequests] = (socket[openRequests] ?? 0) + 1;
      (res as Http1Response)[responseSocket] = socket;
      http1Responses.add(res as Http1Response);
      if (closing) (res as ServerResponse).setHeader("Connection", "close");
      res.on("close", onHttp1Close);
    }
    try {
      handler(req, res);
    } catch (error) {
      logger?.error("request handler threw", { error, path: req.url });
      if (res.headersSent) {
        res.destroy();
      } else {
        res.statusCode = 500;
        res.end();
      }
    }
  };

  const http1Server = http.createServer(serve);
  // Node starts its headers/request timeout checks (slow-loris protection) on 'listening', which
  // this server never emits because it does not own the port. Start them explicitly.
  http1Server.emit("listening");
  // Malformed requests get Node's own answers (400, 408, 431), since no 'clientError' listener is set.

  const http2Server = http2.createServer(serve);
  http2Server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (closing) session.close();
  });
  http2Server.on("sessionError", (error) => logger?.debug("http/2 session error", { error: error.message }));

  const dispatch = (socket: net.Socket, received: Buffer, isHttp2: boolean) => {
    socket.pause();
    socket.unshift(received);
    if (isHttp2) {
      // The session reads what is buffered on the socket, then takes over its handle.
      http2Server.emit("connection", socket);
    } else {
      http1Sockets.add(socket);
      http1Server.emit("connection", socket);
      // The buffered bytes reach the HTTP/1 parser only once the socket flows again.
      socket.resume();
    }
  };

  const tcpServer = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    // Resets and broken pipes are the client's doing; without a listener they would crash the process.
    socket.on("error", (error: NodeJS.ErrnoException) => {
      logger?.debug("connection error", { error: error.code ?? error.message });
    });
    if (closing) {
      socket.destroy();
      return;
    }
    undecided.add(socket);
    let received: Buffer = Buffer.alloc(0);
    const silent = setTimeout(() => socket.destroy(), firstByteTimeoutMs);
    silent.unref();
    const decided = () => {
      clearTimeout(silent);
      undecided.delete(socket);
      socket.off("data", onData);
    };
    const onData = (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const compared = Math.min(received.length, http2Preface.length);
      const matchesPreface = received.subarray(0, compared).equals(http2Preface.subarray(0, compared));
      if (matchesPreface && received.length < http2Preface.length) return;
      decided();
      dispatch(socket, received, matchesPreface);
    };
    socket.on("data", onData);
    socket.once("close", () => {
      decided();
      sockets.delete(socket);
      http1Sockets.delete(socket);
    });
  });

  const close = (timeoutMs: number): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      shutdown.abort();
      const deadline = setTimeout(() => {
        if (inFlight > 0) logger?.warn("shutdown timeout: closing requests still in flight", { in_flight: inFlight });
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
      }, timeoutMs);
      deadline.unref();
      // The callback runs once every accepted connection has closed.
      tcpServer.close(() => {
        clearTimeout(deadline);
        resolve();
      });
      // Stops the HTTP/1 timeout checks; the server owns no port, so nothing else happens.
      http1Server.close();
      for (const socket of undecided) socket.destroy();
      // An idle keep-alive connection holds no request: a request racing this gets a reset, as
      // with Node's own server.close().
      for (const socket of http1Sockets) {
        if (!(socket as Http1Socket)[openRequests]) socket.destroy();
      }
      for (const res of http1Responses) {
        if (!res.headersSent) res.setHeader("Connection", "close");
      }
      for (const session of sessions) session.close();
    });
    return closing;
  };

  return new Promise((resolve, reject) => {
    tcpServer.once("error", reject);
    tcpServer.listen(opts.port, opts.host, () => {
      tcpServer.off("error", reject);
      tcpServer.on("error", (error) => logger?.error("listener error", { error }));
      const address = tcpServer.address() as net.AddressInfo;
      resolve({
        port: address.port,
        shutdownSignal: shutdown.signal,
        inFlight: () => inFlight,
        close,
      });
    });
  });
}
