// An OTLP/HTTP JSON collector stub: records every export; answers, fails or hangs as told.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OtlpSpan { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; traceState?: string; status: Record<string, unknown>; attributes: { key: string; value: Record<string, unknown> }[]; [k: string]: unknown }
export interface Received {
  headers: IncomingMessage['headers'];
  url: string;
  body: { resourceSpans: { resource: { attributes: { key: string; value: Record<string, unknown> }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[] };
}

export class Collector {
  received: Received[] = [];
  mode: 'ok' | 'hang' | 'error' = 'ok';
  private readonly hanging: ServerResponse[] = [];
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.received.push({ headers: req.headers, url: req.url ?? '', body: JSON.parse(Buffer.concat(chunks).toString()) as Received['body'] }); // the exporter's JSON
        if (this.mode === 'hang') return void this.hanging.push(res);
        res.writeHead(this.mode === 'ok' ? 200 : 503, { 'content-type': 'application/json' });
        res.end('{}');
      });
    });
    this.server = server;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`; // a listening TCP server
  }

  /** Every span received, each with the service.name of its resource. */
  spans(): (OtlpSpan & { service: string })[] {
    return this.received.flatMap((r) => r.body.resourceSpans.flatMap((rs) => {
      const service = String(rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '');
      return rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({ ...s, service })));
    }));
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}
