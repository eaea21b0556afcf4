// Real servers for the cluster tests: plain node:http upstreams on 127.0.0.1 that count what they
// see, and a small front server that calls cluster.forward() the way the gateway does.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { asPortcullisError } from '../../../src/core/errors.js';
import { forwardableRequestHeaders } from '../../../src/dataplane/headers.js';
import { sendError } from '../../../src/dataplane/respond.js';
import type { UpstreamCluster } from '../../../src/dataplane/upstream/cluster.js';
import { freePorts } from '../../helpers/net.js';

export interface TestUpstream {
  origin: string;
  /** Requests received (health checks on /healthz not included). */
  hits: number;
  /** Health checks received. */
  checks: number;
  /** Bodies of the requests received, in order. */
  bodies: string[];
  /** Resolves once `hits` reaches n. */
  reached(n: number): Promise<void>;
  close(): Promise<void>;
}

/** Answers each request after reading its body; by default 200 with the upstream's name. */
export type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

export async function startUpstream(name: string, handler?: Handler, health?: Handler): Promise<TestUpstream> {
  const waiters: { n: number; resolve: () => void }[] = [];
  const u: TestUpstream = {
    origin: '',
    hits: 0,
    checks: 0,
    bodies: [],
    reached: (n) => new Promise((resolve) => { if (u.hits >= n) resolve(); else waiters.push({ n, resolve }); }),
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      if (req.url === '/healthz') {
        u.checks++;
        if (health) health(req, res, body);
        else res.end('ok');
        return;
      }
      u.hits++;
      u.bodies.push(body);
      for (const w of waiters.splice(0)) {
        if (u.hits >= w.n) w.resolve();
        else waiters.push(w);
      }
      if (handler) handler(req, res, body);
      else res.end(name);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  u.origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`; // a TCP listener's address is an AddressInfo
  return u;
}

/** An origin nobody listens on: connections are refused. */
export async function deadOrigin(): Promise<string> {
  const [port] = await freePorts(1);
  return `http://127.0.0.1:${port}`;
}

export interface Front {
  url: string;
  close(): Promise<void>;
}

/** Stands in for the gateway: forwards every request through the cluster, buffering the body when asked. */
export async function startFront(cluster: UpstreamCluster, o: { buffer?: boolean } = {}): Promise<Front> {
  let n = 0;
  const server = createServer((req, res) => {
    const requestId = `req-${++n}`;
    void (async () => {
      try {
        let body: Buffer | undefined;
        if (o.buffer) {
          const chunks: Buffer[] = [];
          for await (const c of req) chunks.push(c as Buffer); // an IncomingMessage yields Buffers
          body = Buffer.concat(chunks);
        }
        const headers = forwardableRequestHeaders(req.headers);
        await cluster.forward(req, res, { method: req.method ?? 'GET', pathAndQuery: req.url ?? '/', headers, ...(body ? { body } : {}) }, requestId);
      } catch (e) {
        sendError(res, asPortcullisError(e), requestId);
        req.resume();
      }
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, // a TCP listener's address is an AddressInfo
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A promise and its resolver, to hold an upstream's answer until the test lets it go. */
export function gate(): { wait: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const wait = new Promise<void>((r) => { open = r; });
  return { wait, open };
}

/** Lets pending I/O callbacks run until `cond` holds; gives up after 5 s of wall time (no sleeping). */
export async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`never happened: ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}
