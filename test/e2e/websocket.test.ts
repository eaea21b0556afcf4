// WebSocket end to end over the data plane's two hops, with the real parts each hop decides with:
// client --TLS--> gateway (normalize, route, JWT access token, roles, principal header) --mTLS,
// SPIFFE IDs both ways--> sidecar (caller's SPIFFE ID, principal only from the gateway) --plain
// HTTP on loopback--> a `ws` echo service. Both hops are handleUpgrade with their own `decide`, as
// gateway.ts and sidecar.ts wire it (docs/upstreams.md, "WebSocket"). Every refusal is shown not to
// reach the service; a client hanging up closes the service's socket two hops away.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { WebSocket, WebSocketServer } from 'ws';
import type { RouteConfig } from '../../src/core/config/types.js';
import { PortcullisError } from '../../src/core/errors.js';
import { PrincipalAssertionVerifier } from '../../src/identity/principal-assertion.js';
import { assertionBy, unsignedAssertion } from '../helpers/principal-assertion.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { mtlsClientOptions, mtlsServerOptions, peerSpiffeId } from '../../src/identity/tls-options.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { createAccessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify.js';
import { forwardableRequestHeaders, PEER_HEADER, PRINCIPAL_HEADER, REQUEST_ID_HEADER } from '../../src/dataplane/headers.js';
import { checkPathRules, forwardTarget, normalizeTarget } from '../../src/dataplane/normalize.js';
import { Router } from '../../src/dataplane/router.js';
import { adoptProtocolBearer, handleUpgrade, type UpgradeOptions } from '../../src/dataplane/upgrade.js';

const TD = 'ws.e2e';
const GATEWAY_ID = `spiffe://${TD}/gateway`;
const CHAT_ID = `spiffe://${TD}/chat`;
const ISSUER = 'https://control.ws.e2e';
const AUDIENCE = 'https://gateway.ws.e2e';
const RULES = { allowEncodedSlash: false, allowSemicolon: false, caseSensitive: true, trailingSlash: 'strict' } as const;
const route = (id: string, path: string, roles: string[]): RouteConfig => ({ id, method: 'GET', path, service: 'chat', auth: ['jwt'], roles, pathRules: { ...RULES } });
const ROUTES = [route('chat.room', '/chat/rooms/{room}', ['member']), route('chat.browser', '/chat/browser/{room}', ['member'])];
/** Routes that take the token from a `bearer.` subprotocol (browsers); stands in for a route config key. */
const PROTOCOL_TOKEN_ROUTES = new Set(['chat.browser']);

interface Service { upgrades: number; seen: { path: string; sub?: string; peer?: string; headers: IncomingMessage['headers'] }[]; open: WebSocket[] }
const service: Service = { upgrades: 0, seen: [], open: [] };
const servers: (HttpServer | HttpsServer)[] = [];
const sockets = new Set<Socket>();
let gatewayPort: number;
let sidecarOrigin: string;
let caPem: string;
let otherWorkload: { key: string; cert: string };
let signKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let verifier: AccessTokenVerifier;

async function issue(ca: CertificateAuthority, spiffeId: string): Promise<{ key: string; cert: string }> {
  const { keyPem, csrPem } = await createWorkloadKeyAndCsr(spiffeId);
  return { key: keyPem, cert: (await ca.issue({ csrPem, spiffeId, ipAddresses: ['127.0.0.1'] })).chainPem };
}

async function listen(server: HttpServer | HttpsServer): Promise<number> {
  servers.push(server);
  server.on('connection', (s: Socket) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as AddressInfo).port; // a TCP listener's address is an AddressInfo
}

async function token(sub: string, roles: string[]): Promise<string> {
  return new SignJWT({ roles, client_id: 'web', jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' })
    .setIssuer(ISSUER).setAudience(AUDIENCE).setSubject(sub).setIssuedAt().setExpirationTime('5m')
    .sign(signKey);
}

/** The gateway's decide: steps 1–4 of its pipeline (normalize, route, authenticate, authorize), then what it forwards. */
function gatewayDecide(gatewayCreds: { key: string; cert: string }): UpgradeOptions['decide'] {
  const router = new Router(ROUTES);
  return async (req, ctx) => {
    const target = normalizeTarget(req.url ?? '', router.admits);
    const match = router.match(req.method ?? 'GET', target.path);
    if (!match) throw new PortcullisError('PCL_ERR_ROUTE_NOT_FOUND', `no route for ${target.path}`);
    checkPathRules(target, match.rules);
    if (PROTOCOL_TOKEN_ROUTES.has(match.route.id)) adoptProtocolBearer(req);
    const h = req.headers.authorization;
    if (!h) throw new PortcullisError('PCL_ERR_TOKEN_MISSING', 'no Authorization header');
    const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(h);
    if (!m?.[1]) throw new PortcullisError('PCL_ERR_TOKEN_MALFORMED', 'not a Bearer token');
    const claims = await verifier.verify(m[1]);
    // Stands in for the Cedar decision of `route:<id>`: any one of the route's roles.
    if (!claims.roles.some((r) => match.route.roles.includes(r))) throw new PortcullisError('PCL_ERR_FORBIDDEN', `${claims.sub} may not use ${match.route.id}`);
    const headers = forwardableRequestHeaders(req.headers, ['authorization', 'x-api-key']);
    headers[PRINCIPAL_HEADER] = assertionBy({ spiffeId: GATEWAY_ID, keyPem: gatewayCreds.key, chainPem: gatewayCreds.cert }, { sub: claims.sub, roles: claims.roles, ...(claims.client_id ? { clientId: claims.client_id } : {}), iss: claims.iss }, CHAT_ID);
    headers[REQUEST_ID_HEADER] = ctx.requestId;
    headers['x-forwarded-for'] = req.socket.remoteAddress ?? '';
    return {
      target: { origin: sidecarOrigin, tls: mtlsClientOptions({ keyPem: gatewayCreds.key, chainPem: gatewayCreds.cert, trustBundlePem: caPem, expectedSpiffeId: CHAT_ID }) },
      path: forwardTarget(target, match.canonicalPath),
      headers,
    };
  };
}

/** The sidecar's decide: the caller's SPIFFE ID (only the gateway here), the principal only from it. */
function sidecarDecide(serviceOrigin: string): UpgradeOptions['decide'] {
  return async (req, ctx) => {
    const caller = peerSpiffeId(req.socket as TLSSocket); // the inbound server is TLS-only
    const fromGateway = caller === GATEWAY_ID;
    if (!fromGateway) throw new PortcullisError('PCL_ERR_FORBIDDEN', `${caller} may not call chat`);
    const id = req.headers[REQUEST_ID_HEADER];
    if (typeof id === 'string' && /^[\w-]{1,64}$/.test(id)) ctx.requestId = id;
    const target = normalizeTarget(req.url ?? '');
    const headers = forwardableRequestHeaders(req.headers, [], [PRINCIPAL_HEADER, 'x-forwarded-for', 'x-forwarded-proto']);
    headers[PEER_HEADER] = caller;
    headers[REQUEST_ID_HEADER] = ctx.requestId;
    return { target: { origin: serviceOrigin }, path: forwardTarget(target), headers };
  };
}

const refusals: { hop: string; code: string }[] = [];
const on = (hop: string, decide: UpgradeOptions['decide']): UpgradeOptions => ({
  decide, timeoutMs: 5_000, onRefused: (err) => refusals.push({ hop, code: err.code }),
});

before(async () => {
  const ca = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), trustDomain: TD });
  caPem = ca.rootPem;
  const [gatewayCreds, chatCreds, other] = await Promise.all([issue(ca, GATEWAY_ID), issue(ca, CHAT_ID), issue(ca, `spiffe://${TD}/other`)]);
  otherWorkload = other;
  const keys = await generateKeyPair('ES256');
  signKey = keys.privateKey;
  verifier = createAccessTokenVerifier({ jwks: { keys: [{ ...(await exportJWK(keys.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] }, issuer: ISSUER, audience: AUDIENCE });

  // The service: a WebSocket echo that records who it was told is calling.
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (offered) => (offered.has('chat.v1') ? 'chat.v1' : false) });
  const svc = createHttpServer((_req, res) => res.end('plain'));
  svc.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    service.upgrades++;
    const users = new PrincipalAssertionVerifier({ audience: CHAT_ID, issuer: GATEWAY_ID, trustBundlePem: () => caPem });
    const assertion = req.headers[PRINCIPAL_HEADER];
    const sub = typeof assertion === 'string' ? users.verify(assertion).sub : undefined;
    const peer = req.headers[PEER_HEADER];
    service.seen.push({ path: req.url ?? '', headers: req.headers, ...(sub ? { sub } : {}), ...(typeof peer === 'string' ? { peer } : {}) });
    wss.handleUpgrade(req, socket, head, (ws) => {
      service.open.push(ws);
      ws.on('message', (data) => ws.send(`${sub ?? '?'}: ${String(data)}`));
    });
  });
  const svcOrigin = `http://127.0.0.1:${await listen(svc)}`;

  const sidecar = createHttpsServer(mtlsServerOptions({ keyPem: chatCreds.key, chainPem: chatCreds.cert, trustBundlePem: caPem }), (_req, res) => res.end());
  sidecar.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => void handleUpgrade(req, socket, head, on('sidecar', sidecarDecide(svcOrigin))));
  sidecar.on('secureConnection', (s: Socket) => sockets.add(s));
  sidecarOrigin = `https://127.0.0.1:${await listen(sidecar)}`;

  const gateway = createHttpsServer({ key: gatewayCreds.key, cert: gatewayCreds.cert, minVersion: 'TLSv1.2' }, (_req, res) => res.end());
  gateway.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => void handleUpgrade(req, socket, head, on('gateway', gatewayDecide(gatewayCreds))));
  gateway.on('secureConnection', (s: Socket) => sockets.add(s));
  gatewayPort = await listen(gateway);
});

after(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

type Opened = { ws: WebSocket } | { status: number; code?: string };

function open(path: string, o: { headers?: Record<string, string>; protocols?: string[] } = {}): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${gatewayPort}${path}`, o.protocols ?? [], { ca: caPem, headers: o.headers ?? {} });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => {
        const code = /"code":"([A-Z_]+)"/.exec(body)?.[1];
        resolve({ status: res.statusCode ?? 0, ...(code ? { code } : {}) });
        ws.terminate();
      });
    });
    ws.once('error', reject);
  });
}

function ws(r: Opened): WebSocket {
  assert.ok('ws' in r, `expected an open WebSocket, got ${'status' in r ? `${r.status} ${r.code ?? ''}` : '?'}`);
  return r.ws;
}

const reply = (w: WebSocket, text: string): Promise<string> => new Promise((resolve) => {
  w.once('message', (d) => resolve(String(d)));
  w.send(text);
});
const closed = (w: WebSocket): Promise<void> => new Promise((resolve) => { if (w.readyState === WebSocket.CLOSED) resolve(); else w.once('close', () => resolve()); });

test('a member opens a WebSocket with a bearer token: the service sees the verified principal, via the gateway\'s sidecar hop', async () => {
  const t = await token('alice', ['member']);
  const w = ws(await open('/chat/rooms/tea?since=5', { headers: { authorization: `Bearer ${t}`, 'x-portcullis-principal': unsignedAssertion({ sub: 'mallory', roles: ['admin'] }), 'x-forwarded-for': '6.6.6.6' } }));
  assert.equal(await reply(w, 'hello'), 'alice: hello');
  assert.equal(await reply(w, 'again'), 'alice: again');
  const seen = service.seen.at(-1);
  assert.equal(seen?.path, '/chat/rooms/tea?since=5');
  assert.equal(seen?.sub, 'alice', 'the principal is the gateway\'s, never the client\'s claim');
  assert.equal(seen?.peer, GATEWAY_ID, 'the sidecar names its verified caller');
  assert.equal(seen?.headers.authorization, undefined, 'the token ends at the gateway');
  assert.equal(seen?.headers['x-forwarded-for'], '127.0.0.1');
  w.close();
  await closed(w);
});

test('a browser-style token in the bearer. subprotocol works on the route that opts in, and never reaches the service', async () => {
  const t = await token('bob', ['member']);
  const w = ws(await open('/chat/browser/tea', { protocols: ['chat.v1', `bearer.${t}`] }));
  assert.equal(w.protocol, 'chat.v1');
  assert.equal(await reply(w, 'hi'), 'bob: hi');
  const seen = service.seen.at(-1);
  assert.equal(seen?.headers['sec-websocket-protocol'], 'chat.v1');
  assert.ok(!JSON.stringify(seen?.headers).includes(t), 'no trace of the token at the service');
  w.close();
  await closed(w);
  // The route that did not opt in ignores it: no credential.
  const r = await open('/chat/rooms/tea', { protocols: ['chat.v1', `bearer.${t}`] });
  assert.deepEqual(r, { status: 401, code: 'PCL_ERR_TOKEN_MISSING' });
});

test('refusals at the gateway (no token 401, bad token 401, wrong role 403, no route 404, h2c 400) never reach the service', async () => {
  const before = service.upgrades;
  const guest = await token('gus', ['guest']);
  assert.deepEqual(await open('/chat/rooms/tea'), { status: 401, code: 'PCL_ERR_TOKEN_MISSING' });
  assert.deepEqual(await open('/chat/rooms/tea', { headers: { authorization: `Bearer ${guest.slice(0, -4)}AAAA` } }), { status: 401, code: 'PCL_ERR_TOKEN_SIGNATURE' });
  assert.deepEqual(await open('/chat/rooms/tea', { headers: { authorization: `Bearer ${guest}` } }), { status: 403, code: 'PCL_ERR_FORBIDDEN' });
  assert.deepEqual(await open('/admin/shell', { headers: { authorization: `Bearer ${guest}` } }), { status: 404, code: 'PCL_ERR_ROUTE_NOT_FOUND' });
  assert.deepEqual(await open('/chat/rooms/../../admin', { headers: { authorization: `Bearer ${guest}` } }), { status: 404, code: 'PCL_ERR_ROUTE_NOT_FOUND' });
  const h2c = await new Promise<string>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: gatewayPort, ca: caPem });
    let text = '';
    s.on('data', (c: Buffer) => { text += c.toString(); });
    s.on('close', () => resolve(text));
    s.on('error', reject);
    s.write('GET /chat/rooms/tea HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n');
  });
  assert.match(h2c, /^HTTP\/1\.1 400 /);
  assert.match(h2c, /PCL_ERR_UPGRADE_UNSUPPORTED/);
  assert.equal(service.upgrades, before, 'not one refused upgrade reached the service');
  assert.ok(refusals.every((r) => r.hop === 'gateway'), 'all refused at the first hop');
});

test('the sidecar refuses a workload that is not the gateway, even with a principal header', async () => {
  const before = service.upgrades;
  const status = await new Promise<number>((resolve, reject) => {
    const w = new WebSocket(`${sidecarOrigin.replace('https', 'wss')}/chat/rooms/tea`, {
      ...mtlsClientOptions({ keyPem: otherWorkload.key, chainPem: otherWorkload.cert, trustBundlePem: caPem, expectedSpiffeId: CHAT_ID }),
      headers: { [PRINCIPAL_HEADER]: unsignedAssertion({ sub: 'alice', roles: ['member'] }) },
    });
    w.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); w.terminate(); });
    w.once('open', () => reject(new Error('the sidecar let another workload in')));
    w.once('error', reject);
  });
  assert.equal(status, 403);
  assert.equal(service.upgrades, before);
  assert.deepEqual(refusals.at(-1), { hop: 'sidecar', code: 'PCL_ERR_FORBIDDEN' });
});

test('a client hanging up closes the service\'s socket, two hops away', async () => {
  const t = await token('alice', ['member']);
  const w = ws(await open('/chat/rooms/bye', { headers: { authorization: `Bearer ${t}` } }));
  assert.equal(await reply(w, 'x'), 'alice: x');
  const serverSide = service.open.at(-1);
  assert.ok(serverSide);
  w.terminate(); // TCP close, no WebSocket close frame
  await closed(serverSide);
  assert.equal(serverSide.readyState, WebSocket.CLOSED);
});
