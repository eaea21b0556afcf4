// handleUpgrade on real sockets: a node:https front using it, in front of a node:http WebSocket
// echo server (the `ws` package, tests only). Covers the tunnel both ways, refusals that never reach
// the upstream (decide, h2c, malformed handshakes, a client that leaves), the upstream's own answers
// (relayed non-101, a 101 to another protocol, unreachable, silent), closing and the idle timeout.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { FakeClock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { adoptProtocolBearer, checkUpgradeOrigin, handleUpgrade, type TunnelCloseReason, type UpgradeDecision, type UpgradeOptions, type UpgradePhase, type UpgradeResult } from '../../src/dataplane/upgrade.js';

// ---- the upstream: a WebSocket echo server that counts every upgrade it is asked for ----

interface Upstream {
  origin: string;
  /** Upgrade requests received, of any protocol. */
  upgrades: number;
  /** Plain requests received. */
  requests: number;
  lastHeaders: IncomingMessage['headers'];
  /** Server-side sockets of open WebSockets, to watch them close. */
  open: WebSocket[];
}

let upstream: Upstream;
/** Every server-side socket, to end the run cleanly. */
const sockets = new Set<Socket>();
let upServer: HttpServer;
let wss: WebSocketServer;

function startUpstream(): Promise<void> {
  wss = new WebSocketServer({ noServer: true, handleProtocols: (offered) => (offered.has('chat') ? 'chat' : false) });
  upServer = createHttpServer((_req, res) => {
    upstream.requests++;
    res.end('plain');
  });
  upServer.on('connection', (s: Socket) => sockets.add(s));
  upServer.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    upstream.upgrades++;
    upstream.lastHeaders = req.headers;
    if (req.url === '/reject') {
      const body = '{"upstream":"no"}';
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nX-Upstream: yes\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      upstream.open.push(ws);
      ws.send(`hello ${req.url ?? ''}`);
      ws.on('message', (data, binary) => ws.send(binary ? data : `echo ${String(data)}`, { binary }));
    });
  });
  return new Promise((resolve) => upServer.listen(0, '127.0.0.1', () => {
    upstream.origin = `http://127.0.0.1:${(upServer.address() as AddressInfo).port}`; // a TCP listener's address is an AddressInfo
    resolve();
  }));
}

// ---- the front: node:https with handleUpgrade, its options swapped per test ----

let front: HttpsServer;
let frontPort: number;
let caPem: string;
let options: UpgradeOptions;
let refusals: { code: string; phase: UpgradePhase }[];
let results: UpgradeResult[];
let closes: TunnelCloseReason[];
let decided: number;

/** A decide that allows everything to `path` on the upstream, with a principal header. */
function allowTo(path?: string, extra: Record<string, string> = {}): UpgradeOptions['decide'] {
  return async (req, ctx) => {
    decided++;
    ctx.responseHeaders['x-test-answer'] = 'yes';
    return { target: { origin: upstream.origin }, path: path ?? req.url ?? '/', headers: { 'x-portcullis-principal': 'alice', ...extra } } satisfies UpgradeDecision;
  };
}

function use(o: Partial<UpgradeOptions>): void {
  // This test's lists: a tunnel of an earlier test that closes late must not land in them.
  const mine = { refusals, closes };
  options = {
    decide: allowTo(),
    onRefused: (err, phase) => mine.refusals.push({ code: err.code, phase }),
    onClosed: (reason) => mine.closes.push(reason),
    timeoutMs: 5_000,
    ...o,
  };
}

before(async () => {
  const ca = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), trustDomain: 'ws.test' });
  const { keyPem, csrPem } = await createWorkloadKeyAndCsr('spiffe://ws.test/front');
  const issued = await ca.issue({ csrPem, spiffeId: 'spiffe://ws.test/front', ipAddresses: ['127.0.0.1'] });
  caPem = ca.rootPem;
  front = createHttpsServer({ key: keyPem, cert: issued.chainPem }, (_req, res) => res.end('front'));
  front.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const mine = results; // as in use(): this test's list
    void handleUpgrade(req, socket, head, options).then((r) => mine.push(r));
  });
  // Upgraded sockets are the handler's: closeAllConnections() no longer sees them.
  front.on('secureConnection', (s: Socket) => sockets.add(s));
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
  frontPort = (front.address() as AddressInfo).port; // a TCP listener's address is an AddressInfo
});

beforeEach(async () => {
  upstream = { origin: '', upgrades: 0, requests: 0, lastHeaders: {}, open: [] };
  if (!upServer) await startUpstream();
  else upstream.origin = `http://127.0.0.1:${(upServer.address() as AddressInfo).port}`; // as above
  refusals = [];
  results = [];
  closes = [];
  decided = 0;
  use({});
});

after(async () => {
  for (const c of wss.clients) c.terminate();
  for (const s of sockets) s.destroy();
  front.closeAllConnections();
  upServer.closeAllConnections();
  await new Promise((r) => front.close(r));
  await new Promise((r) => upServer.close(r));
});

// ---- clients ----

interface Refused { status: number; headers: IncomingMessage['headers']; body: string; code?: string }

/** Opens a WebSocket through the front; resolves with it and its first message, or with the refusal. */
function open(path: string, o: { headers?: Record<string, string>; protocols?: string[] } = {}): Promise<{ ws: WebSocket; first: string } | Refused> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${frontPort}${path}`, o.protocols ?? [], { ca: caPem, headers: o.headers ?? {} });
    ws.once('message', (data) => resolve({ ws, first: String(data) }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => {
        let code: string | undefined;
        try { code = (JSON.parse(body) as { error?: { code?: string } }).error?.code; } catch { /* not ours */ }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ...(code ? { code } : {}) });
        ws.terminate();
      });
    });
    ws.once('error', (err) => { if (ws.readyState !== WebSocket.CLOSED) reject(err); });
  });
}

function opened(r: Awaited<ReturnType<typeof open>>): { ws: WebSocket; first: string } {
  assert.ok('ws' in r, `expected an open WebSocket, got ${'status' in r ? r.status : '?'}`);
  return r;
}

function refused(r: Awaited<ReturnType<typeof open>>): Refused {
  assert.ok('status' in r, 'expected a refusal, got an open WebSocket');
  return r;
}

const nextMessage = (ws: WebSocket): Promise<string> => new Promise((resolve) => ws.once('message', (d) => resolve(String(d))));
const closed = (ws: WebSocket): Promise<void> => new Promise((resolve) => { if (ws.readyState === WebSocket.CLOSED) resolve(); else ws.once('close', () => resolve()); });
const until = async (what: () => boolean): Promise<void> => { while (!what()) await new Promise((r) => setImmediate(r)); };

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const WS_HEADERS = `Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n`;

/** Sends a raw request head over TLS; resolves with the status and the error code of the answer. */
function raw(head: string): Promise<{ status: number; code?: string; text: string }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: frontPort, ca: caPem });
    let text = '';
    s.on('data', (c: Buffer) => { text += c.toString('latin1'); });
    s.on('error', reject);
    s.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      const code = /"code":"([A-Z_]+)"/.exec(text)?.[1];
      resolve({ status, text, ...(code ? { code } : {}) });
    });
    s.write(head);
  });
}

// ---- the tests ----

test('an allowed upgrade is tunnelled: messages both ways, text and binary, handshake headers kept, ours replaced', async () => {
  use({ decide: allowTo(undefined, { connection: 'keep-alive', upgrade: 'h2c', host: 'evil.example', 'sec-websocket-key': 'forged', 'x-from-decide': '1' }) });
  const r = await open('/chat/room?x=1', { headers: { 'x-client': 'c' } });
  const { ws, first } = opened(r);
  assert.equal(first, 'hello /chat/room?x=1', 'the upstream spoke first, through the tunnel');
  ws.send('ping');
  assert.equal(await nextMessage(ws), 'echo ping');
  const bin = randomBytes(70_000); // more than one TCP segment, and a 64-bit frame length
  ws.send(bin);
  const back = await new Promise<Buffer>((resolve) => ws.once('message', (d) => resolve(d as Buffer))); // ws delivers binary frames as Buffers by default
  assert.ok(back.equals(bin));
  // What the upstream saw: the decision's headers, the handshake's own (never the decision's), no client extras.
  const h = upstream.lastHeaders;
  assert.equal(h['x-portcullis-principal'], 'alice');
  assert.equal(h['x-from-decide'], '1');
  assert.equal(h['x-client'], undefined, 'only what decide forwards');
  assert.equal(h.upgrade, 'websocket');
  assert.equal(h.connection, 'Upgrade');
  assert.equal(h.host, new URL(upstream.origin).host);
  assert.notEqual(h['sec-websocket-key'], 'forged');
  assert.equal(upstream.upgrades, 1);
  ws.close();
  await closed(ws);
  await until(() => results.length === 1 && closes.length === 1);
  assert.deepEqual(results[0], { outcome: 'open', status: 101 });
  assert.deepEqual(refusals, []);
});

test('the 101 carries the request id and decide\'s response headers', async () => {
  const { ws } = opened(await new Promise<Awaited<ReturnType<typeof open>>>((resolve) => {
    const c = new WebSocket(`wss://127.0.0.1:${frontPort}/x`, { ca: caPem });
    c.once('upgrade', (res) => {
      assert.match(String(res.headers['x-request-id']), /^[0-9a-f-]{36}$/);
      assert.equal(res.headers['x-test-answer'], 'yes');
    });
    c.once('message', (d) => resolve({ ws: c, first: String(d) }));
  }));
  ws.close();
  await closed(ws);
});

test('refused by decide (no token 401, wrong role 403, no route 404): a JSON error, and the upstream never asked', async () => {
  use({
    decide: async (req) => {
      decided++;
      if (!req.headers.authorization) throw new PortcullisError('PCL_ERR_TOKEN_MISSING', 'no Authorization header');
      if (req.url !== '/chat') throw new PortcullisError('PCL_ERR_ROUTE_NOT_FOUND', 'no route');
      throw new PortcullisError('PCL_ERR_FORBIDDEN', 'role');
    },
  });
  const cases: [string, Record<string, string>, number, string][] = [
    ['/chat', {}, 401, 'PCL_ERR_TOKEN_MISSING'],
    ['/chat', { authorization: 'Bearer x' }, 403, 'PCL_ERR_FORBIDDEN'],
    ['/nowhere', { authorization: 'Bearer x' }, 404, 'PCL_ERR_ROUTE_NOT_FOUND'],
  ];
  for (const [path, headers, status, code] of cases) {
    const r = refused(await open(path, { headers }));
    assert.equal(r.status, status, code);
    assert.equal(r.code, code);
    assert.equal(r.headers.connection, 'close');
    assert.equal(r.headers['content-type'], 'application/json');
    assert.match(String(r.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    if (status === 401) assert.equal(r.headers['www-authenticate'], 'Bearer');
  }
  assert.equal(decided, 3);
  assert.equal(upstream.upgrades, 0, 'no refused upgrade reached the upstream');
  assert.deepEqual(refusals.map((x) => x.phase), ['decide', 'decide', 'decide']);
});

test('Upgrade: h2c (and any list or other protocol) is refused before decide, and never forwarded', async () => {
  const h2c = await raw('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal(h2c.status, 400);
  assert.equal(h2c.code, 'PCL_ERR_UPGRADE_UNSUPPORTED');
  for (const upgrade of ['websocket, h2c', 'h2c, websocket', 'WebSocket/13', 'TLS/1.2']) {
    const r = await raw(`GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    assert.equal(r.code, 'PCL_ERR_UPGRADE_UNSUPPORTED', upgrade);
  }
  const twice = await raw(`GET /chat HTTP/1.1\r\nHost: x\r\n${WS_HEADERS}Upgrade: h2c\r\n\r\n`);
  assert.equal(twice.code, 'PCL_ERR_HEADER_INVALID', 'two Upgrade headers');
  assert.equal(decided, 0);
  assert.equal(upstream.upgrades + upstream.requests, 0, 'nothing reached the upstream');
  assert.ok(refusals.every((x) => x.phase === 'handshake'));
});

test('a malformed WebSocket handshake is refused before decide', async () => {
  const cases: [string, string, string][] = [
    ['POST', `POST /chat HTTP/1.1\r\nHost: x\r\n${WS_HEADERS}\r\n`, 'PCL_ERR_METHOD_NOT_ALLOWED'],
    ['bad key', `GET /chat HTTP/1.1\r\nHost: x\r\n${WS_HEADERS.replace(KEY, 'short')}\r\n`, 'PCL_ERR_HEADER_INVALID'],
    ['version 8', `GET /chat HTTP/1.1\r\nHost: x\r\n${WS_HEADERS.replace('Version: 13', 'Version: 8')}\r\n`, 'PCL_ERR_HEADER_INVALID'],
    ['a body', `GET /chat HTTP/1.1\r\nHost: x\r\n${WS_HEADERS}Content-Length: 5\r\n\r\nhello`, 'PCL_ERR_HEADER_INVALID'],
    ['subprotocol not a token', `GET /chat HTTP/1.1\r\nHost: x\r\n${WS_HEADERS}Sec-WebSocket-Protocol: chat, a b\r\n\r\n`, 'PCL_ERR_HEADER_INVALID'],
    ['two keys', `GET /chat HTTP/1.1\r\nHost: x\r\n${WS_HEADERS}Sec-WebSocket-Key: ${KEY}\r\n\r\n`, 'PCL_ERR_HEADER_INVALID'],
  ];
  for (const [what, head, code] of cases) assert.equal((await raw(head)).code, code, what);
  assert.equal(decided, 0);
  assert.equal(upstream.upgrades, 0);
});

test('a bearer. subprotocol: adopted into Authorization when the route opts in, and never forwarded', async () => {
  let seenAuth: string | undefined;
  use({
    decide: async (req, ctx) => {
      adoptProtocolBearer(req);
      seenAuth = req.headers.authorization;
      return allowTo()(req, ctx);
    },
  });
  const { ws } = opened(await open('/chat', { protocols: ['chat', 'bearer.eyJhbGciOi.payload.sig'] }));
  assert.equal(seenAuth, 'Bearer eyJhbGciOi.payload.sig');
  assert.equal(upstream.lastHeaders['sec-websocket-protocol'], 'chat', 'the token stays at the front');
  assert.equal(ws.protocol, 'chat', 'the client got the protocol it offered');
  ws.close();
  await closed(ws);
  // Without adoption (the route did not opt in) the entry is still stripped.
  use({});
  const second = opened(await open('/chat', { protocols: ['bearer.abc', 'chat'] }));
  assert.equal(upstream.lastHeaders['sec-websocket-protocol'], 'chat');
  second.ws.close();
  await closed(second.ws);
});

test('adoptProtocolBearer refuses ambiguity: two bearers, another credential, no application subprotocol', () => {
  // adoptProtocolBearer reads and writes `headers` only.
  const req = (headers: Record<string, string>): IncomingMessage => ({ headers }) as unknown as IncomingMessage;
  assert.equal(adoptProtocolBearer(req({ 'sec-websocket-protocol': 'chat' })), false);
  assert.equal(adoptProtocolBearer(req({})), false);
  const invalid = (err: unknown): boolean => err instanceof PortcullisError && err.code === 'PCL_ERR_HEADER_INVALID';
  assert.throws(() => adoptProtocolBearer(req({ 'sec-websocket-protocol': 'chat, bearer.a, bearer.b' })), invalid);
  assert.throws(() => adoptProtocolBearer(req({ 'sec-websocket-protocol': 'chat, bearer.a', authorization: 'Bearer b' })), invalid);
  assert.throws(() => adoptProtocolBearer(req({ 'sec-websocket-protocol': 'chat, bearer.a', 'x-api-key': 'k' })), invalid);
  assert.throws(() => adoptProtocolBearer(req({ 'sec-websocket-protocol': 'bearer.a' })), invalid);
  const ok = req({ 'sec-websocket-protocol': 'Bearer.tok, chat' });
  assert.equal(adoptProtocolBearer(ok), true);
  assert.equal(ok.headers.authorization, 'Bearer tok');
});

test('checkUpgradeOrigin: a page\'s WebSocket only from an allowed origin or the gateway\'s own; no Origin passes', async () => {
  const policy = { origins: ['https://app.example'] };
  const cors = (err: unknown): boolean => err instanceof PortcullisError && err.code === 'PCL_ERR_CORS';
  assert.throws(() => checkUpgradeOrigin({ origin: 'https://evil.example', host: 'gw.example' }, policy), cors);
  assert.throws(() => checkUpgradeOrigin({ origin: 'null', host: 'gw.example' }, policy), cors);
  assert.throws(() => checkUpgradeOrigin({ origin: 'https://app.example', host: 'gw.example' }, undefined), cors, 'no policy: no foreign origin');
  checkUpgradeOrigin({ origin: 'https://app.example', host: 'gw.example' }, policy);
  checkUpgradeOrigin({ origin: 'https://gw.example', host: 'gw.example' }, undefined);
  checkUpgradeOrigin({ host: 'gw.example' }, undefined);
  // Through the front: refused before the upstream is asked.
  use({ decide: async (req, ctx) => { checkUpgradeOrigin(req.headers, policy); return allowTo()(req, ctx); } });
  const r = refused(await open('/chat', { headers: { origin: 'https://evil.example' } }));
  assert.equal(r.status, 403);
  assert.equal(r.code, 'PCL_ERR_CORS');
  assert.equal(upstream.upgrades, 0);
});

test('a client closing closes the upstream socket; an upstream closing closes the client', async () => {
  const a = opened(await open('/a'));
  await until(() => upstream.open.length === 1);
  const serverSide = upstream.open[0];
  assert.ok(serverSide);
  a.ws.terminate(); // a TCP close without a WebSocket close frame
  await closed(serverSide);
  await until(() => closes.length === 1);
  assert.deepEqual(closes, ['client']);

  const b = opened(await open('/b'));
  await until(() => upstream.open.length === 2);
  upstream.open[1]?.terminate();
  await closed(b.ws);
  await until(() => closes.length === 2);
  assert.equal(closes[1], 'upstream');
});

test('an upstream answering 400 is relayed with its body, then the connection closes', async () => {
  const r = refused(await open('/reject'));
  assert.equal(r.status, 400);
  assert.equal(r.body, '{"upstream":"no"}');
  assert.equal(r.headers['x-upstream'], 'yes');
  assert.equal(r.headers.connection, 'close');
  await until(() => results.length === 1);
  assert.deepEqual(results[0], { outcome: 'relayed', status: 400 });
  assert.deepEqual(refusals, []);
});

/** A raw upstream: answers every connection with `answer` (or nothing), counting connections. */
async function rawUpstream(answer?: string): Promise<{ origin: string; connections: number; server: NetServer }> {
  const u = { origin: '', connections: 0, server: createNetServer((s) => {
    u.connections++;
    s.on('error', () => s.destroy());
    if (answer) s.once('data', () => s.write(answer));
  }) };
  await new Promise<void>((r) => u.server.listen(0, '127.0.0.1', () => r()));
  u.origin = `http://127.0.0.1:${(u.server.address() as AddressInfo).port}`; // a TCP listener's address is an AddressInfo
  return u;
}

test('an upstream that switches to another protocol than websocket is not trusted: 502', async () => {
  const u = await rawUpstream('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n');
  use({ decide: async () => ({ target: { origin: u.origin }, path: '/', headers: {} }) });
  const r = refused(await open('/'));
  assert.equal(r.status, 502);
  assert.equal(r.code, 'PCL_ERR_UPSTREAM_UNAVAILABLE');
  assert.deepEqual(refusals, [{ code: 'PCL_ERR_UPSTREAM_UNAVAILABLE', phase: 'upstream' }]);
  u.server.close();
});

test('an unreachable upstream is 502, a silent one 504 after timeoutMs (fake clock)', async () => {
  const dead = await rawUpstream();
  const deadOrigin = dead.origin;
  await new Promise((r) => dead.server.close(r));
  use({ decide: async () => ({ target: { origin: deadOrigin }, path: '/', headers: {} }) });
  assert.equal(refused(await open('/')).code, 'PCL_ERR_UPSTREAM_UNAVAILABLE');

  const silent = await rawUpstream();
  const clock = new FakeClock(0);
  use({ clock, timeoutMs: 1_000, decide: async () => ({ target: { origin: silent.origin }, path: '/', headers: {} }) });
  const pending = open('/');
  await until(() => silent.connections === 1);
  await clock.advance(999);
  assert.equal(results.length, 1, 'still waiting (the one result is the unreachable upstream\'s)');
  await clock.advance(1);
  const r = refused(await pending);
  assert.equal(r.status, 504);
  assert.equal(r.code, 'PCL_ERR_UPSTREAM_TIMEOUT');
  silent.server.close();
});

test('a client that leaves while decide runs: the upstream is never contacted', async () => {
  let release!: () => void; // assigned synchronously by the Promise constructor below
  const gate = new Promise<void>((r) => { release = r; });
  let entered!: (req: IncomingMessage) => void; // likewise
  const deciding = new Promise<IncomingMessage>((r) => { entered = r; });
  use({ decide: async (req, ctx) => { entered(req); await gate; return allowTo()(req, ctx); } });
  const s = tlsConnect({ host: '127.0.0.1', port: frontPort, ca: caPem });
  s.on('error', () => undefined);
  s.write(`GET /chat HTTP/1.1\r\nHost: x\r\n${WS_HEADERS}\r\n`);
  const serverSide = (await deciding).socket;
  const gone = new Promise((r) => serverSide.once('close', r));
  s.destroy();
  await gone;
  release();
  await until(() => results.length === 1);
  assert.deepEqual(results[0], { outcome: 'refused', status: 0 });
  assert.equal(upstream.upgrades, 0);
});

test('an idle tunnel is closed after idleTimeoutMs without traffic; traffic keeps it open (fake clock)', async () => {
  const clock = new FakeClock(0);
  use({ clock, idleTimeoutMs: 10_000 });
  const { ws } = opened(await open('/idle'));
  await clock.advance(6_000);
  ws.send('still here');
  assert.equal(await nextMessage(ws), 'echo still here');
  await clock.advance(6_000); // 12 s since open, 6 s since the last byte
  assert.equal(ws.readyState, WebSocket.OPEN);
  assert.deepEqual(closes, []);
  await clock.advance(4_000);
  await closed(ws);
  assert.deepEqual(closes, ['idle']);
});
