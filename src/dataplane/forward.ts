// Step 7: forward to the upstream from a keep-alive pool, streaming both ways. For mTLS upstreams
// the pool is replaced when our certificate rotates; the old one drains its in-flight requests.
// `request()` and `relay()` are the two halves of `forward()`, so a cluster can look at the answer
// (and retry elsewhere) before anything is written to the client.
//
// The exchange runs on our own HTTP/1.1 pool (upstream/h1-pool.ts) and its answer is read by
// UpstreamAnswer: the body goes from the upstream's parser straight to the client's response, with
// no Readable stream, pipe or async resource in between, and a small answer that is complete by the
// time it is relayed leaves in one write (docs/performance.md has what that saves).
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { PortcullisError } from '../core/errors.js';
import { forwardableResponseHeaders, REQUEST_ID_HEADER } from './headers.js';
import { ExchangeError, H1Pool, type Exchange, type ExchangeHandler, type FailureKind, type ResponseHeaders } from './upstream/h1-pool.js';

export type { FailureKind } from './upstream/h1-pool.js';

export interface ForwardRequest {
  method: string;
  /** Canonical path plus query, exactly as authorized. */
  pathAndQuery: string;
  headers: Record<string, string | string[]>;
  /** A buffered body, sent instead of streaming the IncomingMessage's (and so replayable). */
  body?: Buffer;
}

/** Response headers as received: names in lower case, repeated ones as arrays. */
export type UpstreamHeaders = ResponseHeaders;

/** Rewrites the (already filtered) response headers before they are written to the client. */
export type ResponseShaper = (headers: OutgoingHttpHeaders, status: number) => OutgoingHttpHeaders;

/** A failed try, before anything was written to the client. */
export class UpstreamFailure extends PortcullisError {
  /** See {@link FailureKind}. */
  readonly kind: FailureKind;

  constructor(code: 'PCL_ERR_UPSTREAM_UNAVAILABLE' | 'PCL_ERR_UPSTREAM_TIMEOUT', message: string, kind: FailureKind, cause: unknown) {
    super(code, message, { cause });
    this.name = 'UpstreamFailure';
    this.kind = kind;
  }
}

/** True when the client's request carries a body to stream (then it cannot be replayed). */
export function hasStreamedBody(req: IncomingMessage): boolean {
  return req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
}

export class Upstream {
  private pool: H1Pool;

  constructor(
    readonly origin: string,
    private tls: ConnectionOptions | undefined,
    private readonly timeoutMs: number,
    /** Last say over the response headers the client gets (the gateway's security headers). */
    private readonly shapeResponse?: ResponseShaper,
  ) {
    this.pool = this.makePool();
  }

  /** New TLS material (certificate rotation): new connections use it, old ones drain. */
  setTls(tls: ConnectionOptions): void {
    this.tls = tls;
    const old = this.pool;
    this.pool = this.makePool();
    void old.close(); // its in-flight exchanges finish on the old connections
  }

  /** `onHeaders` sees the upstream's response headers before they are filtered for the client. */
  async forward(req: IncomingMessage, res: ServerResponse, f: ForwardRequest, requestId: string, onHeaders?: (h: Record<string, string | string[] | undefined>) => void): Promise<number> {
    return this.relay(res, await this.request(req, f), requestId, onHeaders);
  }

  /**
   * Sends the request and resolves once the response headers are in, writing nothing to the
   * client. The body is `f.body` when buffered, else the IncomingMessage's (streamed, if any).
   * Rejects with an {@link UpstreamFailure}.
   */
  request(req: IncomingMessage, f: ForwardRequest): Promise<UpstreamAnswer> {
    const body = f.body ?? (hasStreamedBody(req) ? req : null);
    return new Promise<UpstreamAnswer>((resolve, reject) => {
      const answer = new UpstreamAnswer(body, resolve, (err) => reject(mapError(err, this.origin)));
      this.pool.dispatch({ method: f.method, path: f.pathAndQuery, headers: f.headers, body }, answer);
    });
  }

  /** Writes an upstream answer to the client: filtered headers, our request id, the body as it comes. */
  async relay(res: ServerResponse, answer: UpstreamAnswer, requestId: string, onHeaders?: (h: UpstreamHeaders) => void): Promise<number> {
    onHeaders?.(answer.headers);
    let headers = forwardableResponseHeaders(answer.headers);
    headers[REQUEST_ID_HEADER] = requestId;
    if (this.shapeResponse) headers = this.shapeResponse(headers, answer.statusCode);
    res.writeHead(answer.statusCode, headers);
    await answer.pipeTo(res);
    return answer.statusCode;
  }

  /**
   * One active health check: GET `path` over this upstream's pool (same TLS), true on a 2xx within
   * `timeoutMs`. Never throws.
   */
  async check(path: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return false;
    return new Promise<boolean>((resolve) => {
      let exchange: Exchange | undefined;
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', stop);
        resolve(ok);
      };
      const stop = (): void => { exchange?.abort(); done(false); };
      const timer = setTimeout(stop, timeoutMs);
      signal?.addEventListener('abort', stop, { once: true });
      let status = 0;
      this.pool.dispatch({ method: 'GET', path, headers: {}, body: null }, {
        onStart: (ex) => { exchange = ex; },
        onHead: (s) => { status = s; },
        onData: () => undefined, // a health answer's body is read and dropped
        onEnd: () => done(status >= 200 && status < 300),
        onError: () => done(false),
      });
    });
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  private makePool(): H1Pool {
    return new H1Pool({
      origin: this.origin,
      tls: this.tls,
      connections: 64,
      keepAliveMs: 30_000,
      timeoutMs: this.timeoutMs,
      connectTimeoutMs: Math.min(this.timeoutMs, 10_000),
    });
  }
}

/** Body bytes held while no client response is attached yet; beyond that the upstream is paused. */
const HOLD_BYTES = 64 * 1024;
/** Body bytes of a discarded answer (a retried 5xx) read before its connection is given up instead. */
const DISCARD_BYTES = 128 * 1024;

/**
 * One exchange with an upstream, as an {@link ExchangeHandler}. `request()` resolves with it once
 * the response head is in; what body arrives before `pipeTo()` (or `discard()`) is held — often the
 * whole of it, in the same parser run as the head — and from then on each chunk is written to the
 * client as it comes, the upstream paused while the client's socket is full. Either side failing
 * ends both.
 */
export class UpstreamAnswer implements ExchangeHandler {
  statusCode = 0;
  headers: UpstreamHeaders = {};
  private exchange: Exchange | undefined;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private ended = false;
  /** The upstream failed after the head (mid-body). */
  private broken = false;
  private res: ServerResponse | undefined;
  private discarded = -1;
  private settle: (() => void) | undefined;

  constructor(
    private readonly body: Readable | Buffer | null,
    private whenHead: ((a: UpstreamAnswer) => void) | undefined,
    private whenFailed: ((err: ExchangeError) => void) | undefined,
  ) {}

  onStart(exchange: Exchange): void {
    this.exchange = exchange;
  }

  onHead(statusCode: number, headers: UpstreamHeaders): void {
    this.statusCode = statusCode;
    this.headers = headers;
    const whenHead = this.whenHead;
    this.whenHead = this.whenFailed = undefined;
    whenHead?.(this);
  }

  onData(chunk: Buffer): void {
    const ex = this.exchange as Exchange; // data comes only after onStart
    if (this.res) {
      if (!this.res.write(chunk)) this.waitForDrain(ex, this.res);
    } else if (this.discarded >= 0) {
      this.discarded += chunk.length;
      if (this.discarded > DISCARD_BYTES) this.giveUp();
    } else {
      this.held.push(chunk);
      if ((this.heldBytes += chunk.length) >= HOLD_BYTES) ex.pause();
    }
  }

  onEnd(): void {
    this.ended = true;
    this.res?.end();
  }

  onError(err: ExchangeError): void {
    if (this.whenFailed) { // before the head: request() rejects, and a streamed request body is destroyed with it
      const whenFailed = this.whenFailed;
      this.whenHead = this.whenFailed = undefined;
      if (this.body && !Buffer.isBuffer(this.body)) this.body.on('error', noop).destroy(err);
      whenFailed(err);
      return;
    }
    this.broken = true;
    if (this.res) this.breakOff(this.res);
  }

  /**
   * Writes the body to `res` (whose head the caller has written) and resolves when the response is
   * over: finished, or cut off because either side went away. Never rejects.
   */
  pipeTo(res: ServerResponse): Promise<void> {
    return new Promise<void>((resolve) => {
      this.settle = resolve;
      if (isGone(res)) return this.breakOff(res);
      // 'close' comes after 'finish' too; unfinished, the client went away and the upstream is stopped.
      res.once('close', () => {
        if (!res.writableFinished) this.breakOff(res);
        else resolve();
      });
      if (this.broken) return this.breakOff(res);
      const held = this.held;
      this.held = [];
      if (this.ended) {
        // The common case: the whole answer is in, and head and body leave in one write.
        for (let i = 0; i < held.length - 1; i++) res.write(held[i]);
        res.end(held[held.length - 1]);
        return;
      }
      this.res = res;
      let full = false;
      for (const chunk of held) full = !res.write(chunk);
      const ex = this.exchange;
      if (ex?.paused) {
        if (full) this.waitForDrain(ex, res);
        else ex.resume();
      } else if (full && ex) {
        this.waitForDrain(ex, res);
      }
    });
  }

  /** The answer is not relayed (a retry goes elsewhere): its body is read and dropped, or its connection closed. */
  discard(): void {
    this.discarded = this.heldBytes;
    this.held = [];
    if (this.discarded > DISCARD_BYTES) this.giveUp();
    else if (this.exchange?.paused) this.exchange.resume();
  }

  /** Too long to read to its end: the connection is closed instead. */
  private giveUp(): void {
    this.broken = true;
    this.exchange?.abort();
  }

  private waitForDrain(ex: Exchange, res: ServerResponse): void {
    ex.pause();
    res.once('drain', () => ex.resume());
  }

  private breakOff(res: ServerResponse): void {
    if (!this.ended && !this.broken) {
      this.broken = true;
      this.exchange?.abort();
    }
    res.destroy(); // nothing more to say: the client hung up, or the upstream broke mid-body
    this.settle?.();
    this.settle = undefined;
  }
}

const noop = (): void => {};

/** The client's response can no longer be written (HTTP/2's compatibility response has no `destroyed`: its stream does). */
function isGone(res: ServerResponse): boolean {
  return res.destroyed || (res as { stream?: { destroyed: boolean } }).stream?.destroyed === true;
}

function mapError(err: ExchangeError, origin: string): UpstreamFailure {
  return new UpstreamFailure(err.timedOut ? 'PCL_ERR_UPSTREAM_TIMEOUT' : 'PCL_ERR_UPSTREAM_UNAVAILABLE',
    err.timedOut ? `upstream ${origin} timed out` : `upstream ${origin} failed: ${err.message}`, err.kind, err);
}
