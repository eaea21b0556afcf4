// The /metrics listener: plain HTTP, GET /metrics and nothing else. It is unauthenticated, as
// Prometheus scrapes usually are, so it belongs on loopback or a private network (the caller warns
// otherwise) and answers nothing but the exposition text.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PortcullisError } from '../errors.js';

export interface MetricsSource {
  render(): Promise<string>;
  readonly contentType: string;
}

export interface MetricsServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

/** host:port → parts; brackets of an IPv6 host removed. The schema has checked the shape already. */
function splitListen(listen: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(listen);
  if (!m?.[1] || !m[2] || Number(m[2]) > 65535) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `not a host:port address: ${listen}`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

export async function startMetricsServer(listen: string, source: MetricsSource): Promise<MetricsServer> {
  const { host, port } = splitListen(listen);
  const server = createServer({ requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => void answer(req, res, source));
  server.maxConnections = 64; // a scraper or two, not a crowd
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  const bound = (server.address() as AddressInfo).port; // a TCP server's address() is an AddressInfo once listening
  return {
    host,
    port: bound,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}

async function answer(req: IncomingMessage, res: ServerResponse, source: MetricsSource): Promise<void> {
  req.resume(); // no request here has a body worth reading
  const path = (req.url ?? '').split('?')[0];
  if (req.method !== 'GET' || path !== '/metrics') {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found\n');
    return;
  }
  try {
    const text = await source.render();
    res.writeHead(200, { 'content-type': source.contentType, 'cache-control': 'no-store' });
    res.end(text);
  } catch {
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('metrics unavailable\n');
  }
}
