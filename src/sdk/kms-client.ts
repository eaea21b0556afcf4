// A service's client for the control plane's transit and secrets APIs. It talks plain HTTP to
// its own sidecar's outbound listener with `Host: portcullis.control`; the sidecar carries the
// call over mutual TLS with the service's identity, and the control plane authorizes it.
import { Pool } from 'undici';
import { PortcullisError, ERROR_CODES, type ErrorCode } from '../core/errors.js';
import type { KmsContext } from '../kms/types.js';
import { CONTROL_HOST } from '../core/principal.js';

export { CONTROL_HOST };

export interface Secret {
  data: Record<string, string>;
  version: number;
  createdAt: string;
}

export interface KmsClientOptions {
  /** The sidecar's outbound address, e.g. http://127.0.0.1:16103; default: env PORTCULLIS_OUTBOUND. */
  outbound?: string;
  /** Per-call timeout in ms (default 10 s). */
  timeoutMs?: number;
}

export class KmsClient {
  private readonly pool: Pool;

  constructor(o: KmsClientOptions = {}) {
    const t = o.timeoutMs ?? 10_000;
    const outbound = o.outbound ?? process.env.PORTCULLIS_OUTBOUND;
    if (!outbound) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'no sidecar outbound address: pass `outbound` or set PORTCULLIS_OUTBOUND');
    this.pool = new Pool(new URL(outbound).origin, { connections: 16, headersTimeout: t, bodyTimeout: t });
  }

  async encrypt(keyring: string, plaintext: Buffer, context?: KmsContext): Promise<string> {
    const r = await this.post<{ ciphertext: string }>(`/v1/transit/encrypt/${enc(keyring)}`, { plaintext: plaintext.toString('base64'), ...(context ? { context } : {}) });
    return r.ciphertext;
  }

  async decrypt(keyring: string, ciphertext: string, context?: KmsContext): Promise<Buffer> {
    const r = await this.post<{ plaintext: string }>(`/v1/transit/decrypt/${enc(keyring)}`, { ciphertext, ...(context ? { context } : {}) });
    return Buffer.from(r.plaintext, 'base64');
  }

  async rewrap(keyring: string, ciphertext: string, context?: KmsContext): Promise<string> {
    const r = await this.post<{ ciphertext: string }>(`/v1/transit/rewrap/${enc(keyring)}`, { ciphertext, ...(context ? { context } : {}) });
    return r.ciphertext;
  }

  async dataKey(keyring: string, context?: KmsContext): Promise<{ plaintext: Buffer; ciphertext: string }> {
    const r = await this.post<{ plaintext: string; ciphertext: string }>(`/v1/transit/datakey/${enc(keyring)}`, context ? { context } : {});
    return { plaintext: Buffer.from(r.plaintext, 'base64'), ciphertext: r.ciphertext };
  }

  /** The latest version of a secret (or a given one). */
  async getSecret(path: string, version?: number): Promise<Secret> {
    return this.send<Secret>('GET', `/v1/secrets/${encPath(path)}${version ? `?version=${version}` : ''}`);
  }

  /** Long-polls (up to 30 s) until the secret passes `afterVersion`: the new version, or undefined. */
  async waitForSecret(path: string, afterVersion: number): Promise<Secret | undefined> {
    const res = await this.pool.request({ method: 'GET', path: `/v1/secrets/${encPath(path)}?wait=${afterVersion}`, headers: { host: CONTROL_HOST }, headersTimeout: 40_000 });
    const text = await res.body.text();
    if (res.statusCode === 304) return undefined;
    if (res.statusCode !== 200) throw failure(res.statusCode, text, 'GET secret');
    return JSON.parse(text) as Secret; // the control plane's documented reply
  }

  /**
   * Fetches a secret now and calls `onChange` with it, then again on every new version, until
   * `signal` aborts. Errors go to `onError` and the watch retries after `retryMs`.
   */
  watchSecret(path: string, onChange: (s: Secret) => void, o: { signal: AbortSignal; onError?: (err: unknown) => void; retryMs?: number }): void {
    const loop = async (): Promise<void> => {
      let version = 0;
      while (!o.signal.aborted) {
        try {
          const next = version === 0 ? await this.getSecret(path) : await this.waitForSecret(path, version);
          if (next && next.version > version && !o.signal.aborted) {
            version = next.version;
            onChange(next);
          }
        } catch (err) {
          o.onError?.(err);
          await new Promise((r) => setTimeout(r, o.retryMs ?? 5000).unref());
        }
      }
    };
    void loop();
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  private post<T>(path: string, body: unknown): Promise<T> {
    return this.send<T>('POST', path, body);
  }

  private async send<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const res = await this.pool.request({
      method, path,
      headers: { host: CONTROL_HOST, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw failure(res.statusCode, text, `${method} ${path.split('/').slice(0, 4).join('/')}`);
    return JSON.parse(text) as T; // the control plane's documented reply
  }
}

const enc = (s: string): string => encodeURIComponent(s);
const encPath = (p: string): string => p.split('/').map(encodeURIComponent).join('/');

/** The control plane's coded error, re-raised here without any request content. */
function failure(status: number, text: string, what: string): PortcullisError {
  let code: ErrorCode = status === 403 ? 'PCL_ERR_FORBIDDEN' : 'PCL_ERR_INTERNAL';
  try {
    const c = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
    if (c && c in ERROR_CODES) code = c as ErrorCode; // checked against the catalogue
  } catch { /* not JSON: keep the status-derived code */ }
  return new PortcullisError(code, `${what} refused: ${status} ${code}`);
}
