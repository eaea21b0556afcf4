// Step 7: forward to the upstream from a keep-alive pool, streaming both ways. For mTLS upstreams
// the pool is replaced when our certificate rotates; the old one drains its in-flight requests.
// `request()` and `relay()` are the two halves of `forward()`, so a cluster can look at the answer
// (and retry elsewhere) before anything is written to the client.
//
// The answer is read by a dispatch handler of our own (UpstreamAnswer) rather than undici's
// `request()`: the body goes from the upstream's parser straight to the client's response, with no
// Readable stream, pipe or async resource in between, and a small answer that is complete by the
// time it is relayed leaves in one write (docs/performance.md has what that saves).
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { PortcullisError } from '../core/errors.js';
import { forwardableResponseHeaders, REQUEST_ID_HEADER } from './headers.js';

export interface ForwardRequest {
  method: string;
  /** Canonical path plus query, exactly as authorized. */
  pathAndQuery: string;
  headers: Record<string, string | string[]>;
  /** A buffered body, sent instead of streaming the IncomingMessage's (and so replayable). */
  body?: Buffer;
}

/** Response headers as received: names in lower case, repeated ones as arrays. */
export type UpstreamHeaders = Record<string, string | string[] | undefined>;

/** Rewrites the (already filtered) response headers before they are written to the client. */
export type ResponseShaper = (headers: OutgoingHttpHeaders, status: number) => OutgoingHttpHeaders;

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
  private pool: Pool;

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
    old.close().catch(() => { /* draining pool errors are not the new pool's business */ });
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
      this.pool.dispatch({
        method: f.method as 'GET', // validated against the route's method list before we get here
        path: f.pathAndQuery,
        headers: f.headers,
        body,
      }, answer);
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
    try {
      const r = await this.pool.request({ method: 'GET', path, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, ...(signal ? { signal } : {}) });
      await r.body.dump();
      return r.statusCode >= 200 && r.statusCode < 300;
    } catch {
      return false;
    }
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  private makePool(): Pool {
    return new Pool(this.origin, {
      connections: 64,
      keepAliveTimeout: 30_000,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connect: this.tls ? { ...this.tls, timeout: Math.min(this.timeoutMs, 10_000) } : { timeout: Math.min(this.timeoutMs, 10_000) },
    });
  }
}

/** Socket errors raised while connecting: the request was never sent. */
const CONNECT_ERRNOS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

function failureKind(err: unknown): FailureKind {
  if (err instanceof undiciErrors.HeadersTimeoutError) return 'timeout';
  if (err instanceof undiciErrors.ConnectTimeoutError) return 'connect';
  if (err instanceof undiciErrors.RequestAbortedError || err instanceof undiciErrors.InvalidArgumentError
    || err instanceof undiciErrors.RequestContentLengthMismatchError || err instanceof undiciErrors.NotSupportedError) return 'request';
  const e = err as NodeJS.ErrnoException; // only its optional fields are read
  if (e.syscall === 'connect' || (e.code !== undefined && CONNECT_ERRNOS.has(e.code))) return 'connect';
  // Node's IncomingMessage reports a client that hung up mid-upload as ECONNRESET "aborted" with no
  // syscall; an upstream reset comes from undici (SocketError) or the socket (with a syscall).
  if (!(err instanceof undiciErrors.UndiciError) && e.code === 'ECONNRESET' && e.syscall === undefined) return 'request';
  return 'reset';
}

/** Body bytes held while no client response is attached yet; beyond that the upstream is paused. */
const HOLD_BYTES = 64 * 1024;
/** Body bytes of a discarded answer (a retried 5xx) read before its connection is given up instead. */
const DISCARD_BYTES = 128 * 1024;

/**
 * One exchange with an upstream, as an undici dispatch handler. `request()` resolves with it once
 * the response head is in; what body arrives before `pipeTo()` (or `discard()`) is held — often the
 * whole of it, in the same parser run as the head — and from then on each chunk is written to the
 * client as it comes, the upstream paused while the client's socket is full. Either side failing
 * ends both.
 */
export class UpstreamAnswer implements Dispatcher.DispatchHandler {
  statusCode = 0;
  headers: UpstreamHeaders = {};
  private controller: Dispatcher.DispatchController | undefined;
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
    private onHead: ((a: UpstreamAnswer) => void) | undefined,
    private onFail: ((err: unknown) => void) | undefined,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: UpstreamHeaders): void {
    if (statusCode < 200) return; // 1xx informational: not relayed
    this.statusCode = statusCode;
    this.headers = headers;
    const onHead = this.onHead;
    this.onHead = this.onFail = undefined;
    onHead?.(this);
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.res) {
      if (!this.res.write(chunk)) this.waitForDrain(c, this.res);
    } else if (this.discarded >= 0) {
      this.discarded += chunk.length;
      if (this.discarded > DISCARD_BYTES) c.abort(new Error('discarded answer too long'));
    } else {
      this.held.push(chunk);
      if ((this.heldBytes += chunk.length) >= HOLD_BYTES) c.pause();
    }
  }

  onResponseEnd(): void {
    this.ended = true;
    this.res?.end();
  }

  onResponseError(_c: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.onFail) { // before the head: request() rejects; a streamed request body goes too, as undici's request() does
      const onFail = this.onFail;
      this.onHead = this.onFail = undefined;
      if (this.body && !Buffer.isBuffer(this.body)) this.body.on('error', noop).destroy(err);
      onFail(err);
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
      const c = this.controller;
      if (c?.paused) {
        if (full) this.waitForDrain(c, res);
        else c.resume();
      } else if (full && c) {
        this.waitForDrain(c, res);
      }
    });
  }

  /** The answer is not relayed (a retry goes elsewhere): its body is read and dropped, or its connection closed. */
  discard(): void {
    this.discarded = this.heldBytes;
    this.held = [];
    if (this.discarded > DISCARD_BYTES) this.controller?.abort(new Error('discarded answer too long'));
    else if (this.controller?.paused) this.controller.resume();
  }

  private waitForDrain(c: Dispatcher.DispatchController, res: ServerResponse): void {
    c.pause();
    res.once('drain', () => c.resume());
  }

  private breakOff(res: ServerResponse): void {
    if (!this.ended && !this.broken) this.controller?.abort(new undiciErrors.RequestAbortedError());
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

function mapError(err: unknown, origin: string): UpstreamFailure {
  const kind = failureKind(err);
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.ConnectTimeoutError) {
    return new UpstreamFailure('PCL_ERR_UPSTREAM_TIMEOUT', `upstream ${origin} timed out`, kind, err);
  }
  return new UpstreamFailure('PCL_ERR_UPSTREAM_UNAVAILABLE', `upstream ${origin} failed: ${err instanceof Error ? err.message : String(err)}`, kind, err);
}
