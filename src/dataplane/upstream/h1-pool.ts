// HTTP/1.1 connections to one upstream origin, kept alive and reused: the data plane's forwarding
// client. It replaced undici's Pool on the hot path: a bare Node.js proxy on this pool spent ~25 %
// less CPU per request than the same proxy on undici's dispatch API, the full gateway 3–8 % less
// (docs/upstreams.md). Responses are parsed by Node's own llhttp binding in strict mode — the
// parser Node's http client and server use — so no HTTP parsing is written here; this module only
// frames requests and decides when a connection may be reused.
//
// One exchange at a time per connection (no pipelining). A connection is reused only after a
// complete response that allows keep-alive, to a request that was sent whole; anything unexpected
// (a byte after the response, a parse error, an early answer to an unfinished upload) closes it.
import { createRequire } from 'node:module';
import net from 'node:net';
import type { Readable } from 'node:stream';
import tls, { type ConnectionOptions, type SecureContext } from 'node:tls';

/**
 * What went wrong, for retry and health decisions:
 * - `connect`: the request never left (refused, unreachable, connect timeout);
 * - `reset`: the connection failed before response headers (the upstream may have seen the request;
 *   TLS handshake refusals land here too);
 * - `timeout`: the request was sent and no response headers came within the timeout;
 * - `request`: the request itself failed (client aborted its upload, invalid header or length) —
 *   the endpoint is not to blame.
 */
export type FailureKind = 'connect' | 'reset' | 'timeout' | 'request';

/** A failed exchange. `timedOut` separates "too slow" from "failed" for the caller's error code. */
export class ExchangeError extends Error {
  constructor(message: string, readonly kind: FailureKind, readonly timedOut = false, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ExchangeError';
  }
}

export interface ExchangeRequest {
  method: string;
  /** Path and query, sent as is (the caller has canonicalized it). */
  path: string;
  /** Lower-case names. Framing headers (content-length, transfer-encoding, host, connection) are ours. */
  headers: Record<string, string | string[]>;
  body: Buffer | Readable | null;
}

/** Response headers as received: names in lower case, repeated ones as arrays. */
export type ResponseHeaders = Record<string, string | string[] | undefined>;

/** Receives one exchange's events. Exactly one of onEnd / onError ends it. */
export interface ExchangeHandler {
  /** The exchange is assigned a connection; `ex` pauses, resumes or aborts it. */
  onStart(ex: Exchange): void;
  /** The final (non-1xx) response head. */
  onHead(statusCode: number, headers: ResponseHeaders): void;
  onData(chunk: Buffer): void;
  onEnd(): void;
  /** Before onHead: the request failed; after it: the body broke off. Not called after abort(). */
  onError(err: ExchangeError): void;
}

export interface Exchange {
  readonly paused: boolean;
  /** Stops reading the response (backpressure); what is already read still arrives. */
  pause(): void;
  resume(): void;
  /** Ends the exchange and closes its connection; no handler call follows. */
  abort(): void;
}

export interface H1PoolOptions {
  /** `http://host:port` or `https://host:port`. */
  origin: string;
  /** TLS client options for an https origin (CA, client certificate, servername, identity check). */
  tls?: ConnectionOptions | undefined;
  /** At most this many connections (and so exchanges in flight); more wait in order. */
  connections: number;
  connectTimeoutMs: number;
  /** No byte in either direction for this long during an exchange: headers or body timeout. */
  timeoutMs: number;
  /** An idle connection is closed after this long, or sooner when the upstream's Keep-Alive says so. */
  keepAliveMs: number;
}

// ---- Node's llhttp binding (the same one node:http uses) -------------------------------------------
interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  [callback: number]: unknown;
}
interface ParserClass {
  new (): NativeParser;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
}
const HTTPParser = loadParser();

function loadParser(): ParserClass {
  const P = (createRequire(import.meta.url)('_http_common') as { HTTPParser?: ParserClass }).HTTPParser;
  const keys = ['RESPONSE', 'kOnMessageBegin', 'kOnHeaders', 'kOnHeadersComplete', 'kOnBody', 'kOnMessageComplete'] as const;
  if (typeof P !== 'function' || keys.some((k) => typeof P[k] !== 'number')) {
    throw new Error(`this Node.js (${process.version}) has no usable HTTP parser binding; Node.js 20, 22 or 24 is required`);
  }
  return P;
}

/** Node's parser refuses lenient parsing with 0 (kLenientNone). */
const STRICT = 0;
/** Header names and values we write: a token; no CR, LF or NUL (they would split the request). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\r\n\0]/;
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const BAD_TARGET = /[\x00-\x20\x7f]/;
/** Set by us from the body, or hop-by-hop: never copied from the caller's headers. */
const FRAMING = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'expect', 'upgrade', 'te', 'trailer']);
const PAYLOAD_METHODS = new Set(['POST', 'PUT', 'PATCH']);
/** Errors of the connect phase that mean the request never left. */
const CONNECT_ERRNOS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);
/** The upstream's Keep-Alive timeout, less this, is how long we keep its connection idle (undici's margin). */
const KEEP_ALIVE_MARGIN_MS = 2000;

export class H1Pool {
  private readonly host: string;
  private readonly port: number;
  private readonly hostHeader: string;
  private readonly secure: boolean;
  private readonly tlsOptions: ConnectionOptions | undefined;
  private readonly idle: Connection[] = [];
  private readonly waiting: { req: Framed; handler: ExchangeHandler }[] = [];
  private readonly all = new Set<Connection>();
  private closing = false;
  private closed: (() => void) | undefined;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(readonly options: H1PoolOptions) {
    const url = new URL(options.origin);
    this.secure = url.protocol === 'https:';
    this.host = url.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(url.port) || (this.secure ? 443 : 80);
    this.hostHeader = url.host;
    if (this.secure) {
      const o = options.tls ?? {};
      // One secure context for every connection (building one per connect costs a key parse).
      const secureContext: SecureContext = o.secureContext ?? tls.createSecureContext(o);
      this.tlsOptions = {
        ...o, secureContext, host: this.host, port: this.port, ALPNProtocols: ['http/1.1'],
        servername: o.servername ?? (net.isIP(this.host) ? undefined : this.host),
      };
    }
  }

  /** Starts an exchange: on an idle connection, a new one, or after those in flight. */
  dispatch(req: ExchangeRequest, handler: ExchangeHandler): void {
    if (this.closing) return handler.onError(new ExchangeError('upstream pool is closed', 'connect'));
    const framed = frame(req, this.hostHeader);
    if (typeof framed === 'string') return handler.onError(new ExchangeError(framed, 'request'));
    const conn = this.idle.pop();
    if (conn) return conn.start(framed, handler);
    if (this.all.size < this.options.connections) return this.open().start(framed, handler);
    this.waiting.push({ req: framed, handler });
  }

  /** Connections open (busy and idle), for tests and metrics. */
  get size(): number {
    return this.all.size;
  }

  /** Closes idle connections now and busy ones once their exchange is over; refuses new exchanges. */
  close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    for (const w of this.waiting.splice(0)) w.handler.onError(new ExchangeError('upstream pool is closed', 'connect'));
    for (const c of this.idle.splice(0)) c.destroy();
    if (this.all.size === 0) return Promise.resolve();
    return new Promise((resolve) => { this.closed = resolve; });
  }

  /** A connection finished an exchange and may be reused. */
  release(conn: Connection): void {
    const next = this.waiting.shift();
    if (next) return conn.start(next.req, next.handler);
    if (this.closing) return conn.destroy();
    conn.idleSince = Date.now();
    this.idle.push(conn);
    this.sweeper ??= setInterval(() => this.sweep(), 1000).unref();
  }

  /** A connection closed (for whatever reason). */
  forget(conn: Connection): void {
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    if (this.all.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      this.closed?.();
    }
    // Someone waits and a slot is free: a new connection for them.
    const next = this.waiting.shift();
    if (next) this.open().start(next.req, next.handler);
  }

  private open(): Connection {
    const socket = this.secure ? tls.connect(this.tlsOptions as tls.ConnectionOptions) : net.connect({ host: this.host, port: this.port });
    const conn = new Connection(this, socket, this.options);
    this.all.add(conn);
    return conn;
  }

  /** Closes connections idle past their keep-alive (ours, or the upstream's hint, whichever is shorter). */
  private sweep(): void {
    const now = Date.now();
    for (const c of [...this.idle]) if (now - c.idleSince >= c.keepAliveMs) c.destroy();
  }
}

/** A request ready to write: its head, and the body's length (undefined: chunked, or no body). */
interface Framed {
  req: ExchangeRequest;
  head: string;
  length: number | undefined;
}

/**
 * The request head, framed for its body — the caller's framing headers are replaced by ours — or
 * why it cannot be written (then nothing is sent). One pass over the headers checks and writes them.
 */
function frame(req: ExchangeRequest, hostHeader: string): Framed | string {
  if (!TOKEN.test(req.method)) return 'invalid request method';
  if (req.path === '' || BAD_TARGET.test(req.path)) return 'invalid request target';
  const body = req.body;
  let length: number | undefined;
  if (Buffer.isBuffer(body)) length = body.length;
  else if (body) {
    const declared = req.headers['content-length']; // a streamed body keeps the client's length
    if (declared !== undefined) {
      if (typeof declared !== 'string' || !/^\d{1,15}$/.test(declared)) return 'invalid content-length';
      length = Number(declared);
    }
  } else if (PAYLOAD_METHODS.has(req.method)) length = 0;
  let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${hostHeader}\r\n`;
  for (const name of Object.keys(req.headers)) {
    if (FRAMING.has(name)) continue;
    if (!TOKEN.test(name)) return 'invalid header name';
    const v = req.headers[name];
    if (typeof v === 'string') {
      if (BAD_VALUE.test(v)) return `invalid value for header ${name}`;
      head += `${name}: ${v}\r\n`;
    } else if (v) {
      for (const x of v) {
        if (BAD_VALUE.test(x)) return `invalid value for header ${name}`;
        head += `${name}: ${x}\r\n`;
      }
    }
  }
  if (length !== undefined) head += `content-length: ${length}\r\n\r\n`;
  else head += body ? 'transfer-encoding: chunked\r\n\r\n' : '\r\n';
  return { req, head, length };
}

class Connection implements Exchange {
  idleSince = 0;
  keepAliveMs: number;
  private readonly parser: NativeParser;
  private connected = false;
  private handler: ExchangeHandler | undefined;
  /** The response head arrived (onHead was called). */
  private headed = false;
  /** An interim (1xx) response is being parsed. */
  private interim = false;
  private complete = false;
  private keepAlive = false;
  /** The request (with its body) is written whole. */
  private sent = false;
  /** Bytes arrived that belong to no exchange. */
  private unsolicited = false;
  private headerChunks: string[] = [];
  private socketError: (Error & { code?: string; syscall?: string }) | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private request: Framed | undefined;
  /** Detaches from the caller's streamed body, while one is being sent. */
  private bodyCleanup: (() => void) | undefined;
  private gone = false;
  paused = false;

  constructor(
    private readonly pool: H1Pool,
    private readonly socket: net.Socket,
    private readonly options: H1PoolOptions,
  ) {
    this.keepAliveMs = options.keepAliveMs;
    const p = this.parser = new HTTPParser();
    p.initialize(HTTPParser.RESPONSE, {}, 0, STRICT);
    p[HTTPParser.kOnMessageBegin] = () => {
      if (!this.handler || this.complete) this.unsolicited = true;
    };
    p[HTTPParser.kOnHeaders] = (chunk: string[]) => { this.headerChunks.push(...chunk); };
    p[HTTPParser.kOnHeadersComplete] = (_maj: number, _min: number, raw: string[] | undefined, _m: unknown, _u: unknown, status: number, _msg: string, _upgrade: boolean, keepAlive: boolean) =>
      this.onHeadersComplete(raw ?? this.takeHeaderChunks(), status, keepAlive);
    p[HTTPParser.kOnBody] = (chunk: Buffer) => {
      if (this.handler && !this.interim) this.handler.onData(chunk);
    };
    p[HTTPParser.kOnMessageComplete] = () => {
      if (this.interim) this.interim = false;
      else this.complete = true;
    };
    socket.setNoDelay(true);
    socket.setTimeout(options.timeoutMs);
    this.connectTimer = setTimeout(() => this.onTimeout(), options.connectTimeoutMs);
    socket.once(this.socket instanceof tls.TLSSocket ? 'secureConnect' : 'connect', () => {
      clearTimeout(this.connectTimer);
      this.connected = true;
      if (this.handler && !this.sent) this.write();
    });
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('end', () => this.onEof());
    socket.on('error', (err: Error) => { this.socketError ??= err; });
    socket.on('timeout', () => this.onTimeout());
    socket.on('close', () => this.onClose());
  }

  start(req: Framed, handler: ExchangeHandler): void {
    this.handler = handler;
    this.headed = this.complete = this.keepAlive = this.sent = this.interim = false;
    this.request = req;
    handler.onStart(this);
    if (this.connected) this.write();
  }

  pause(): void {
    this.paused = true;
    this.socket.pause();
    this.socket.setTimeout(0); // a slow reader on the client's side is not the upstream being slow
  }

  resume(): void {
    this.paused = false;
    this.socket.resume();
    this.socket.setTimeout(this.options.timeoutMs);
  }

  abort(): void {
    this.handler = undefined;
    this.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private write(): void {
    const { req: { body }, head, length } = this.request as Framed; // set by start() before any write
    if (body && !Buffer.isBuffer(body)) {
      this.socket.write(head, 'latin1');
      return this.streamBody(body, length);
    }
    if (body && body.length > 0) {
      this.socket.cork();
      this.socket.write(head, 'latin1');
      this.socket.write(body);
      this.socket.uncork();
    } else {
      this.socket.write(head, 'latin1');
    }
    this.sent = true;
  }

  /** Streams the caller's body, chunked when no length was declared, pausing it while the socket is full. */
  private streamBody(body: Readable, length: number | undefined): void {
    let sent = 0;
    const onData = (chunk: Buffer): void => {
      sent += chunk.length;
      if (length !== undefined && sent > length) return this.failBody('request body longer than its content-length');
      const ok = length === undefined
        ? this.socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1') && this.socket.write(chunk) && this.socket.write('\r\n', 'latin1')
        : this.socket.write(chunk);
      if (!ok) {
        body.pause();
        this.socket.once('drain', () => body.resume());
      }
    };
    const onEnd = (): void => {
      cleanup();
      if (length !== undefined && sent !== length) return this.failBody('request body shorter than its content-length');
      if (length === undefined) this.socket.write('0\r\n\r\n', 'latin1');
      this.sent = true;
    };
    const onAbort = (): void => this.failBody('the client aborted its request body');
    const cleanup = (): void => {
      body.off('data', onData).off('end', onEnd).off('error', onAbort).off('aborted', onAbort);
      this.bodyCleanup = undefined;
    };
    this.bodyCleanup = cleanup;
    body.on('data', onData).once('end', onEnd).once('error', onAbort).once('aborted', onAbort);
    if (body.readableEnded) onEnd();
  }

  private failBody(message: string): void {
    this.bodyCleanup?.();
    this.fail(new ExchangeError(message, 'request'));
  }

  private onHeadersComplete(raw: string[], status: number, keepAlive: boolean): number {
    if (!this.handler || this.complete) return 1;
    if (status < 200) {
      if (status === 101) this.unsolicited = true; // we never ask to switch protocols
      this.interim = true;
      return 1;
    }
    this.keepAlive = keepAlive;
    this.headed = true;
    const headers: ResponseHeaders = {};
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      const value = raw[i + 1] as string;
      const had = headers[name];
      if (had === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
      else if (Array.isArray(had)) had.push(value);
      else headers[name] = [had, value];
    }
    const hint = headers['keep-alive'];
    if (typeof hint === 'string') this.keepAliveHint(hint);
    this.handler.onHead(status, headers);
    // No body: HEAD, and 204/304 whatever their headers say.
    return this.request?.req.method === 'HEAD' || status === 204 || status === 304 ? 1 : 0;
  }

  private takeHeaderChunks(): string[] {
    const h = this.headerChunks;
    this.headerChunks = [];
    return h;
  }

  private keepAliveHint(value: string): void {
    const m = /(?:^|[,;\s])timeout=(\d+)/i.exec(value);
    if (m) this.keepAliveMs = Math.min(this.options.keepAliveMs, Math.max(1000, Number(m[1]) * 1000 - KEEP_ALIVE_MARGIN_MS));
  }

  private onData(d: Buffer): void {
    if (!this.handler) { // a byte while idle: the upstream is not speaking HTTP/1.1 as we know it
      this.destroy();
      return;
    }
    const r = this.parser.execute(d);
    if (r instanceof Error) return this.fail(new ExchangeError(`invalid response from upstream (${(r as { code?: string }).code ?? 'parse error'})`, 'reset'));
    if (this.unsolicited) return this.fail(new ExchangeError('unexpected bytes from upstream', 'reset'));
    if (this.complete) this.finish();
  }

  /** The response is complete: tell the handler; reuse the connection if both sides are done cleanly. */
  private finish(): void {
    const handler = this.handler;
    if (!handler) return;
    // Answered before the upload ended (a 413, say): the connection cannot carry another request.
    const reusable = this.sent && this.keepAlive && !this.gone;
    this.bodyCleanup?.();
    this.handler = undefined;
    this.request = undefined;
    if (this.paused) this.resume();
    handler.onEnd();
    if (reusable) this.pool.release(this);
    else this.destroy();
  }

  private onEof(): void {
    if (this.handler) {
      // A body delimited by the connection's end completes here; anything else was cut off.
      const r = this.parser.finish();
      if (!(r instanceof Error) && this.complete) {
        this.keepAlive = false;
        return this.finish();
      }
    }
    this.socket.end();
  }

  private onTimeout(): void {
    if (!this.connected) this.socketError = Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT_CONNECT' });
    if (!this.handler || !this.connected) return this.destroy(); // idle past the exchange timeout, or not connected in time
    this.fail(new ExchangeError(this.headed ? 'upstream body timed out' : 'upstream response timed out', this.headed ? 'reset' : 'timeout', true));
  }

  private onClose(): void {
    this.gone = true;
    clearTimeout(this.connectTimer);
    this.bodyCleanup?.();
    if (this.handler) {
      const e = this.socketError;
      if (!this.connected) {
        const timedOut = e?.code === 'ETIMEDOUT_CONNECT';
        const kind: FailureKind = timedOut || e === undefined || e.syscall === 'connect' || (e.code !== undefined && CONNECT_ERRNOS.has(e.code)) ? 'connect' : 'reset';
        this.fail(new ExchangeError(timedOut ? 'upstream connect timed out' : `upstream connection failed: ${e?.message ?? 'closed'}`, kind, timedOut, { cause: e }));
      } else {
        this.fail(new ExchangeError(`upstream closed the connection${e ? `: ${e.message}` : ''}`, 'reset', false, { cause: e }));
      }
    }
    this.pool.forget(this);
    // Node frees a parser only after the stack that used it has unwound.
    setImmediate(() => this.parser.close());
  }

  private fail(err: ExchangeError): void {
    const handler = this.handler;
    this.handler = undefined;
    this.request = undefined;
    this.destroy();
    handler?.onError(err);
  }
}
