// Floors for the proxy benchmark (bench/floors.ts): Node.js proxies that do none of the gateway's
// checks, so a run can show what one event loop costs before any security work. Same front
// certificate, same mTLS upstream and the same BENCH_* variables as bench/proxy-gateway.ts.
//   tls-relay   TLS in, one mTLS connection out per client connection, bytes piped both ways: no HTTP at all
//   h1-pool     TLS in, requests parsed by Node's llhttp binding (as our upstream pool parses answers),
//               forwarded on our HTTP/1.1 pool (upstream/h1-pool.ts), answer written in one write
//   https-pool  `node:https` server in front of the same pool (through forward.ts, as the gateway does)
// Benchmark code only: GET without a body, nothing checked, no error pages worth the name.
//   node dist/bench/floor-proxy.js <mode>
import { createServer as createHttpsServer } from 'node:https';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { Upstream } from '../src/dataplane/forward.js';
import { H1Pool, type ResponseHeaders } from '../src/dataplane/upstream/h1-pool.js';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run through bench/floors.ts)`);
  return v;
};
const read = (name: string): Buffer => readFileSync(env(name));

const mode = process.argv[2];
const upstream = new URL(env('BENCH_UPSTREAM_URL'));
const upstreamTls: tls.ConnectionOptions = {
  key: read('BENCH_CLIENT_KEY'), cert: read('BENCH_CLIENT_CERT'), ca: read('BENCH_CA'),
  servername: env('BENCH_UPSTREAM_SERVERNAME'), rejectUnauthorized: true, minVersion: 'TLSv1.2',
};
const front = { key: read('BENCH_FRONT_KEY'), cert: read('BENCH_FRONT_CERT'), minVersion: 'TLSv1.2' as const };
const origin = `https://${upstream.hostname}:${upstream.port}`;

function tlsRelay(): tls.Server {
  return tls.createServer(front, (client) => {
    const server = tls.connect({ ...upstreamTls, host: upstream.hostname, port: Number(upstream.port) });
    client.setNoDelay(true);
    server.setNoDelay(true);
    client.pipe(server).pipe(client);
    const close = (): void => { client.destroy(); server.destroy(); };
    client.on('error', close).on('close', close);
    server.on('error', close).on('close', close);
  });
}

interface ParserBinding {
  new (): {
    initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
    execute(data: Buffer): number | Error;
    close(): void;
    [callback: number]: unknown;
  };
  REQUEST: number;
  kOnHeadersComplete: number;
  kOnMessageComplete: number;
}

function h1Pool(): tls.Server {
  const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common') as { HTTPParser: ParserBinding; methods: string[] };
  const pool = new H1Pool({ origin, tls: upstreamTls, connections: 64, connectTimeoutMs: 10_000, timeoutMs: 15_000, keepAliveMs: 30_000 });
  return tls.createServer(front, (socket) => {
    socket.setNoDelay(true);
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.REQUEST, {}, 0, 0);
    let method = 'GET';
    let url = '/';
    let headers: Record<string, string> = {};
    parser[HTTPParser.kOnHeadersComplete] = (_maj: number, _min: number, raw: string[], m: number, u: string): number => {
      method = methods[m] ?? 'GET';
      url = u;
      headers = {};
      for (let i = 0; i < raw.length; i += 2) {
        const name = (raw[i] as string).toLowerCase();
        if (name !== 'host' && name !== 'connection') headers[name] = raw[i + 1] as string;
      }
      return 0;
    };
    parser[HTTPParser.kOnMessageComplete] = (): void => {
      let status = 502;
      let answer: ResponseHeaders = {};
      const chunks: Buffer[] = [];
      pool.dispatch({ method, path: url, headers, body: null }, {
        onStart: () => undefined,
        onHead: (s, h) => { status = s; answer = h; },
        onData: (c) => { chunks.push(Buffer.from(c)); },
        onEnd: () => {
          const body = Buffer.concat(chunks);
          let head = `HTTP/1.1 ${status} OK\r\n`;
          for (const [k, v] of Object.entries(answer)) {
            if (k !== 'connection' && k !== 'keep-alive' && k !== 'transfer-encoding' && k !== 'content-length' && typeof v === 'string') head += `${k}: ${v}\r\n`;
          }
          socket.write(Buffer.concat([Buffer.from(`${head}content-length: ${body.length}\r\n\r\n`, 'latin1'), body]));
        },
        onError: () => socket.destroy(),
      });
    };
    socket.on('data', (d: Buffer) => { if (parser.execute(d) instanceof Error) socket.destroy(); });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => setImmediate(() => parser.close()));
  });
}

function httpsPool(): ReturnType<typeof createHttpsServer> {
  const up = new Upstream(origin, upstreamTls, 15_000);
  return createHttpsServer(front, (req, res) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'connection') headers[k] = v;
    up.forward(req, res, { method: req.method ?? 'GET', pathAndQuery: req.url ?? '/', headers }, 'floor').catch(() => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
  });
}

const server = mode === 'tls-relay' ? tlsRelay() : mode === 'h1-pool' ? h1Pool() : mode === 'https-pool' ? httpsPool() : undefined;
if (!server) throw new Error(`usage: floor-proxy.js tls-relay|h1-pool|https-pool (got ${mode ?? 'nothing'})`);
server.listen(Number(env('BENCH_LISTEN_PORT')), env('BENCH_LISTEN_HOST'), () => process.stdout.write(`floor ${mode} ready\n`));
process.on('SIGTERM', () => process.exit(0));
