// The CLI's client for the control plane's HTTPS API, authenticated with the admin token from the
// data directory and trusting only the Portcullis CA bundle written there.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Agent, request } from 'undici';
import { ERROR_CODES, PortcullisError, type ErrorCode } from '../core/errors.js';
import { loadConfig } from '../core/config/load.js';

export function readAdminToken(dataDir: string): string | undefined {
  const file = join(dataDir, 'admin.token');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
}

export class AdminClient {
  private readonly agent: Agent;

  constructor(private readonly url: string, caPem: string, private readonly token: string) {
    this.agent = new Agent({ connect: { ca: caPem, minVersion: 'TLSv1.2' } });
  }

  /** From a control plane's data directory: its CA bundle and admin token. */
  static fromDataDir(url: string, dataDir: string): AdminClient {
    const token = readAdminToken(dataDir);
    if (!token) throw new PortcullisError('PCL_ERR_ADMIN_AUTH', `no admin token in ${dataDir} (is this the control plane's data directory?)`);
    const caFile = join(dataDir, 'ca.pem');
    if (!existsSync(caFile)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no CA bundle at ${caFile}: has the control plane run?`);
    return new AdminClient(url, readFileSync(caFile, 'utf8'), token);
  }

  /** Sends JSON, returns the parsed reply (undefined for 204); a refusal becomes its coded error. */
  async call<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const res = await request(new URL(path, this.url), {
      method, dispatcher: this.agent,
      headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) {
      let code: ErrorCode = 'PCL_ERR_INTERNAL';
      let message = `${res.statusCode}`;
      try {
        const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
        if (e?.code && e.code in ERROR_CODES) code = e.code as ErrorCode; // checked against the catalogue
        if (e?.message) message = e.message;
      } catch { /* not JSON */ }
      throw new PortcullisError(code, `control plane refused ${method} ${path.split('?')[0]}: ${message}`);
    }
    return (text ? JSON.parse(text) : undefined) as T; // our API's documented replies
  }

  /** A one-time join token (10 min) for a workload's first certificate. */
  async joinToken(spiffeId: string): Promise<string> {
    return (await this.call<{ token: string }>('POST', '/v1/admin/join-tokens', { spiffeId })).token;
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

/** Runs `fn` with an admin client of the config's control plane (`dataDir`: where the admin token is), and closes it. */
export async function withAdminClient<T>(o: { config: string; dataDir?: string }, fn: (c: AdminClient) => Promise<T>): Promise<T> {
  const config = loadConfig(o.config);
  const client = AdminClient.fromDataDir(config.control.url, o.dataDir ? resolve(o.dataDir) : config.control.dataDir);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}
