import { createServer } from 'node:net';
import { Agent, request } from 'undici';
import { mtlsClientOptions } from '../../src/identity/tls-options.js';

// Ports handed to the processes a test starts are taken below Linux's ephemeral range (32768 and
// up, /proc/sys/net/ipv4/ip_local_port_range): a port found free there is not given to an outgoing
// connection in the moment before the process binds it — data planes open connections to the
// control plane all the time, and a test that ran alongside lost a service to EADDRINUSE that way.
const LOW = 10_000;
const HIGH = 32_000;

/** Whether `port` can be bound on loopback now (bound then released). */
function bindable(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** n distinct free TCP ports on loopback, below the ephemeral range. */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < n; attempt++) {
    if (attempt > 50 * n) throw new Error('no free ports');
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (!ports.includes(port) && await bindable(port)) ports.push(port);
  }
  return ports;
}

/** A block of `n` consecutive free ports (for portBase), below the ephemeral range, retried until one is found. */
export async function freePortBlock(n: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = LOW + Math.floor(Math.random() * (HIGH - LOW - n));
    const ok = await Promise.all(Array.from({ length: n }, (_, i) => bindable(base + i)));
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
