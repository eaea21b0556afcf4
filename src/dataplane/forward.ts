// Step 7: forward to the upstream from a keep-alive pool, streaming both ways. For mTLS upstreams
// the pool is replaced when our certificate rotates; the old one drains its in-flight requests.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { ConnectionOptions } from 'node:tls';
import { Pool, errors as undiciErrors } from 'undici';
import { PortcullisError } from '../core/errors.js';
import { forwardableResponseHeaders, REQUEST_ID_HEADER } from './headers.js';

export interface ForwardRequest {
  method: string;
  /** Canonical path plus query, exactly as authorized. */
  pathAndQuery: string;
  headers: Record<string, string | string[]>;
}

export class Upstream {
  private pool: Pool;

  constructor(
    readonly origin: string,
    private tls: ConnectionOptions | undefined,
    private readonly timeoutMs: number,
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
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    let upstream;
    try {
      upstream = await this.pool.request({
        method: f.method as 'GET', // validated against the route's method list before we get here
        path: f.pathAndQuery,
        headers: f.headers,
        body: hasBody ? req : null,
      });
    } catch (err) {
      throw mapError(err, this.origin);
    }
    onHeaders?.(upstream.headers);
    const headers = forwardableResponseHeaders(upstream.headers);
    headers[REQUEST_ID_HEADER] = requestId;
    res.writeHead(upstream.statusCode, headers);
    try {
      await pipeline(upstream.body, res);
    } catch {
      res.destroy(); // client went away or upstream broke mid-body: nothing more to say
    }
    return upstream.statusCode;
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

function mapError(err: unknown, origin: string): PortcullisError {
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.ConnectTimeoutError) {
    return new PortcullisError('PCL_ERR_UPSTREAM_TIMEOUT', `upstream ${origin} timed out`, { cause: err });
  }
  return new PortcullisError('PCL_ERR_UPSTREAM_UNAVAILABLE', `upstream ${origin} failed: ${(err as Error).message}`, { cause: err });
}
