import { createServer } from 'node:net';
import { Agent, request } from 'undici';
import { mtlsClientOptions } from '../../src/identity/tls-options.js';

/** n distinct free TCP ports on loopback (bound then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<import('node:net').Server>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = servers.map((s) => {
    const a = s.address();
    return typeof a === 'object' && a ? a.port : 0;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** A block of `n` consecutive free ports (for portBase), retried until one is found. */
export async function freePortBlock(n: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const ok = await Promise.all(Array.from({ length: n }, (_, i) => new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(base + i, '127.0.0.1', () => s.close(() => resolve(true)));
    })));
    if (ok.every(Boolean)) return base;
  }
  throw new Error('no free port block');
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

export interface CallOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: unknown;
  ca?: string;
  /** mTLS as a workload: our key and chain, and the SPIFFE ID the server must have. */
  workload?: { key: string; cert: string; serverSpiffeId: string };
}

export async function call(url: string, o: CallOptions = {}): Promise<Reply> {
  const w = o.workload;
  const tls = w ? mtlsClientOptions({ keyPem: w.key, chainPem: w.cert, trustBundlePem: o.ca ?? '', expectedSpiffeId: w.serverSpiffeId }) : o.ca ? { ca: o.ca } : {};
  const dispatcher = new Agent({ connect: tls });
  try {
    const res = await request(url, {
      method: (o.method ?? 'GET') as 'GET', // any method string is fine for undici
      dispatcher,
      headers: { ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...o.headers },
      ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
    });
    const text = await res.body.text();
    let json: unknown;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.statusCode, headers: res.headers, text, json };
  } finally {
    await dispatcher.close();
  }
}

/** The error code of a Portcullis refusal body. */
export function codeOf(r: Reply): string | undefined {
  return (r.json as { error?: { code?: string } } | undefined)?.error?.code;
}
