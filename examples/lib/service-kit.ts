// The HTTP plumbing every example service shares: JSON in and out, a route table, calls to other
// services through the service's own sidecar, and the test hooks on the service's own loopback
// port (`GET /__seen`: what reached it; `POST /__call`: make it call another service through its
// sidecar, as a compromised service would). No route or call rule of any config reaches them.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { request } from 'undici';
import { peerOf, type Authorizer, type ResourceDecision } from '../../src/sdk/index.js';
import { PortcullisError } from '../../src/core/errors.js';

/** A handler's answer: status, body, and the SDK decisions to hand to the sidecar for the audit log. */
export type Answer = [number, unknown] | [number, unknown, ResourceDecision | ResourceDecision[] | undefined];
export type Handler = (req: IncomingMessage, params: string[], body: unknown) => Promise<Answer> | Answer;
export type RouteTable = [string, RegExp, Handler][];

export interface Seen { method: string; path: string; peer?: string; sub?: string }

export async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

/** The user behind a request for the `__seen` hook: the verified one, or none (absent or refused). */
export async function verifiedSub(authz: () => Promise<Authorizer>, req: IncomingMessage): Promise<string | undefined> {
  if (req.headers['x-portcullis-principal'] === undefined) return undefined; // no user: no need to load the authorizer
  try {
    return (await authz()).principalOf(req.headers)?.sub;
  } catch {
    return undefined;
  }
}

/** A handler's failure as an answer: a refused user assertion is 401, bad JSON 400, anything else 500. */
export function sendFailure(res: ServerResponse, err: unknown): void {
  if (err instanceof PortcullisError) return send(res, err.status, err.toPublicJSON());
  send(res, err instanceof SyntaxError ? 400 : 500, { error: err instanceof SyntaxError ? 'bad request' : 'internal error' });
}

export function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The W3C trace context of the request being served, passed on so a call joins its trace. */
export function traceOf(req: IncomingMessage): Record<string, string> {
  const { traceparent, tracestate } = req.headers;
  return { ...(typeof traceparent === 'string' ? { traceparent } : {}), ...(typeof tracestate === 'string' ? { tracestate } : {}) };
}

/** Calls another service through our sidecar's outbound listener; it adds mTLS and our identity. */
export async function callService(outbound: string, service: string, method: string, path: string, o: { body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; json: unknown; requestId?: string }> {
  const res = await request(outbound + path, {
    method: method as 'GET',
    headers: { ...o.headers, host: service, ...(o.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(o.body === undefined ? {} : { body: JSON.stringify(o.body) }),
  });
  const text = await res.body.text();
  let json: unknown = text;
  try { json = text ? JSON.parse(text) : undefined; } catch { /* not JSON: keep the text */ }
  const rid = res.headers['x-request-id'];
  return { status: res.statusCode, json, ...(typeof rid === 'string' ? { requestId: rid } : {}) };
}

/** Serves a route table on loopback, with the test hooks; reports ready to a parent process. */
export function serveService(o: { name: string; port: number; outbound: string; table: RouteTable | undefined; usage: string; authz: () => Promise<Authorizer> }): void {
  const { table } = o;
  if (!table || !Number.isInteger(o.port)) {
    console.error(o.usage);
    process.exit(2);
  }
  const seen: Seen[] = [];
  const testCall = async (body: unknown): Promise<[number, unknown]> => {
    const b = body as { service?: unknown; method?: unknown; path?: unknown; body?: unknown; headers?: unknown } | undefined;
    if (typeof b?.service !== 'string' || typeof b.method !== 'string' || typeof b.path !== 'string' || !b.path.startsWith('/')) {
      return [400, { error: 'service, method and path required' }];
    }
    const headers = typeof b.headers === 'object' && b.headers !== null ? b.headers as Record<string, string> : {}; // test input, passed on as given
    const r = await callService(o.outbound, b.service, b.method, b.path, { body: b.body, headers });
    return [200, { status: r.status, body: r.json, ...(r.requestId ? { requestId: r.requestId } : {}) }];
  };
  const server = createServer((req, res) => void serve(req, res));
  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method === 'GET' && path === '/__seen') return send(res, 200, seen);
    if (req.method === 'POST' && path === '/__call') {
      readJson(req).then(testCall).then(([status, body]) => send(res, status, body), (err: unknown) => send(res, 500, { error: String(err) }));
      return;
    }
    const peer = peerOf(req.headers);
    const sub = await verifiedSub(o.authz, req);
    seen.push({ method: req.method ?? '', path, ...(peer ? { peer } : {}), ...(sub ? { sub } : {}) });
    for (const [method, re, handler] of table) {
      const m = re.exec(path);
      if (req.method !== method || !m) continue;
      readJson(req)
        .then((body) => handler(req, m.slice(1), body))
        .then(async ([status, body, decision]) => {
          // The sidecar records the service's own decisions in the audit log, with this call's request id.
          if (decision) (await o.authz()).report(res, decision);
          send(res, status, body);
        })
        .catch((err: unknown) => sendFailure(res, err));
      return;
    }
    send(res, 404, { error: 'not found' });
  };
  server.listen(o.port, '127.0.0.1', () => {
    process.send?.({ type: 'ready', role: 'service', service: o.name, port: o.port });
  });
  const stop = (): void => { server.close(() => process.exit(0)); server.closeAllConnections(); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
}
