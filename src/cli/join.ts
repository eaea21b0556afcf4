// Join tokens from the control plane's admin API (used by `portcullis join-token create`, by the
// demo, and as a development convenience by a data plane started next to its control plane).
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { PortcullisError } from '../core/errors.js';

export function readAdminToken(dataDir: string): string | undefined {
  const file = join(dataDir, 'admin.token');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
}

export async function adminCall<T>(controlUrl: string, caPem: string, adminToken: string, path: string, body: unknown): Promise<T> {
  const dispatcher = new Agent({ connect: { ca: caPem } });
  try {
    const res = await request(new URL(path, controlUrl), {
      method: 'POST', dispatcher,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
      body: JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) {
      let code = 'PCL_ERR_INTERNAL';
      try { code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? code; } catch { /* not JSON */ }
      throw new PortcullisError('PCL_ERR_ADMIN_AUTH', `control plane refused ${path}: ${res.statusCode} ${code}`);
    }
    return JSON.parse(text) as T; // our own API's documented response
  } finally {
    await dispatcher.close();
  }
}

export async function createJoinToken(controlUrl: string, caPem: string, adminToken: string, spiffeId: string): Promise<string> {
  const r = await adminCall<{ token: string }>(controlUrl, caPem, adminToken, '/v1/admin/join-tokens', { spiffeId });
  return r.token;
}
