// Step 7: forward to the upstream from a keep-alive pool, streaming both ways. For mTLS upstreams
// the pool is replaced when our certificate rotates; the old one drains its in-flight requests.
// `request()` and `relay()` are the two halves of `forward()`, so a cluster can look at the answer
// (and retry elsewhere) before anything is written to the client.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
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

/** The upstream's answer: status and headers received, body not read yet. */
export type UpstreamResponse = Dispatcher.ResponseData;

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
  async request(req: IncomingMessage, f: ForwardRequest): Promise<UpstreamResponse> {
    try {
      return await this.pool.request({
        method: f.method as 'GET', // validated against the route's method list before we get here
        path: f.pathAndQuery,
        headers: f.headers,
        body: f.body ?? (hasStreamedBody(req) ? req : null),
      });
    } catch (err) {
      throw mapError(err, this.origin);
    }
  }

  /** Writes an upstream response to the client: filtered headers, our request id, streamed body. */
  async relay(res: ServerResponse, upstream: UpstreamResponse, requestId: string, onHeaders?: (h: Record<string, string | string[] | undefined>) => void): Promise<number> {
    onHeaders?.(upstream.headers);
    let headers = forwardableResponseHeaders(upstream.headers);
    headers[REQUEST_ID_HEADER] = requestId;
    if (this.shapeResponse) headers = this.shapeResponse(headers, upstream.statusCode);
    res.writeHead(upstream.statusCode, headers);
    await relayBody(upstream.body, res);
    return upstream.statusCode;
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

/**
 * Streams the upstream body to the client. Plain `pipe` rather than stream/promises' pipeline: the
 * latter builds an AbortController and, on every completion, an AbortError with a stack trace —
 * measurable per request on the hot path. Either side failing ends both; it never rejects.
 */
function relayBody(body: UpstreamResponse['body'], res: ServerResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const fail = (): void => {
      body.destroy();
      res.destroy(); // client went away or upstream broke mid-body: nothing more to say
      resolve();
    };
    body.once('error', fail);
    res.once('finish', () => resolve());
    res.once('close', () => {
      if (!res.writableFinished) fail();
    });
    body.pipe(res);
  });
}

function mapError(err: unknown, origin: string): UpstreamFailure {
  const kind = failureKind(err);
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.ConnectTimeoutError) {
    return new UpstreamFailure('PCL_ERR_UPSTREAM_TIMEOUT', `upstream ${origin} timed out`, kind, err);
  }
  return new UpstreamFailure('PCL_ERR_UPSTREAM_UNAVAILABLE', `upstream ${origin} failed: ${err instanceof Error ? err.message : String(err)}`, kind, err);
}
