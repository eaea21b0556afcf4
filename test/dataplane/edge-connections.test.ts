// Client connections at the gateway's TLS edge, over real TLS, for both kinds of edge server
// (HTTP/2 with HTTP/1.1 fallback, the default; HTTP/1.1 only): an idle HTTP/1.1 keep-alive
// connection and an HTTP/2 session with no open stream are closed after gateway.keepAliveTimeout;
// HTTP/1.1 spoken byte by byte — a request without Host and the smuggling shapes are refused with
// 400, and none of them reaches the service (a GET route that would forward them).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { connect as h2connect } from 'node:http2';
import type { ControlPlane } from '../../src/control/server.js';
import { Gateway } from '../../src/dataplane/gateway.js';
import { ActivePolicies } from '../../src/dataplane/policies.js';
import { Sidecar } from '../../src/dataplane/sidecar.js';
import { SnapshotSource } from '../../src/dataplane/snapshot.js';
import { issueAccessToken } from '../../src/tokens/issue.js';
import { startLocalShop, type LocalShop } from '../helpers/local-shop.js';
import { freePorts } from '../helpers/net.js';

const KEEP_ALIVE_MS = 300;
let dir: string;
let shop: LocalShop;
let cp: ControlPlane;
let sidecar: Sidecar;
let token: string;
const gateways: { name: string; port: number; gateway: Gateway }[] = [];
const reached = (): number => shop.reached();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-edge-conn-'));
  shop = await startLocalShop(dir, (c) => ({ ...c, gateway: { ...c.gateway, keepAliveTimeout: KEEP_ALIVE_MS } }));
  const { config } = shop;
  cp = shop.cp;
  const users = await shop.enrol('spiffe://demo/shop/users');
  sidecar = new Sidecar({ config, service: 'users', identity: users.id, policies: new ActivePolicies(cp.policies.current()) });
  await sidecar.listen();
  const gw = await shop.enrol(config.gateway.spiffeId);
  const snapshot = new SnapshotSource({ control: gw.control, identity: gw.id, stateDir: join(dir, 'gw-state') });
  await snapshot.init();
  const [h1Port] = await freePorts(1);
  for (const [name, listen, http2] of [['HTTP/2 edge', config.gateway.listen, true], ['HTTP/1.1 edge', `127.0.0.1:${h1Port}`, false]] as const) {
    const gateway = new Gateway({ config: { ...config, gateway: { ...config.gateway, http2 } }, identity: gw.id, snapshot, policies: new ActivePolicies(snapshot), listen });
    gateways.push({ name, port: (await gateway.listen()).port, gateway });
  }
  token = (await issueAccessToken(cp.keys, { issuer: config.tokens.issuer, audience: config.tokens.audience, subject: 'bob', clientId: 'test', roles: ['customer'], ttlSec: 300 })).token;
});

after(async () => {
  for (const g of gateways) await g.gateway.close();
  await sidecar.close();
  await shop.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A TLS connection offering only HTTP/1.1, with everything it receives collected. */
function open(port: number): Promise<{ socket: TLSSocket; received: () => string; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    let data = '';
    const socket = connect({ host: '127.0.0.1', port, ca: cp.ca.trustBundlePem(), servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => {
      const opened = Date.now();
      const closed = new Promise<number>((done) => socket.on('close', () => done(Date.now() - opened)));
      resolve({ socket, received: () => data, closed });
    });
    socket.on('data', (c: Buffer) => { data += c.toString('latin1'); });
    socket.on('error', reject);
  });
}

/** Resolves when `text` has arrived on the connection (or fails after `ms`). */
async function waitFor(received: () => string, text: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!received().includes(text)) {
    if (Date.now() > until) throw new Error(`no ${JSON.stringify(text)} within ${ms} ms; got ${JSON.stringify(received().slice(0, 200))}`);
    await new Promise((r) => setImmediate(r));
  }
}

test('an idle HTTP/1.1 keep-alive connection is closed after gateway.keepAliveTimeout', async () => {
  for (const g of gateways) {
    const c = await open(g.port);
    c.socket.write(`GET /shop/users/me HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    await waitFor(c.received, '{"ok":true}');
    assert.match(c.received(), /^HTTP\/1\.1 200 /, g.name);
    assert.match(c.received(), /keep-alive/i, `${g.name}: the connection was kept for another request`);
    // Without the setting this waits forever: the HTTP/2 edge never closed idle HTTP/1.1 connections.
    const lived = await Promise.race([c.closed, new Promise<number>((r) => setTimeout(() => r(-1), 5000).unref())]);
    c.socket.destroy();
    assert.notEqual(lived, -1, `${g.name}: the idle connection was still open after 5 s`);
    assert.ok(lived >= KEEP_ALIVE_MS - 50, `${g.name}: closed after ${lived} ms, not before the timeout`);
  }
});

test('an HTTP/2 session with no open stream is closed (GOAWAY) after gateway.keepAliveTimeout', async () => {
  const g = gateways.find((x) => x.name === 'HTTP/2 edge');
  assert.ok(g);
  const opened = Date.now();
  const session = h2connect(`https://127.0.0.1:${g.port}`, { ca: cp.ca.trustBundlePem(), servername: 'localhost' });
  const closed = new Promise<number>((done) => session.on('close', () => done(Date.now() - opened)));
  let goaway = false;
  session.on('goaway', () => { goaway = true; });
  session.on('error', () => undefined);
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': '/shop/users/me', authorization: `Bearer ${token}` });
      let s = 0;
      req.on('response', (h) => { s = Number(h[':status']); });
      req.on('end', () => resolve(s)).on('error', reject);
      req.resume();
      req.end();
    });
    assert.equal(status, 200);
    // Without closeWhenIdle the session stays open for ever.
    const lived = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 5000).unref())]);
    assert.notEqual(lived, -1, 'the idle HTTP/2 session was still open after 5 s');
    assert.ok(goaway, 'closed with GOAWAY');
    assert.ok(lived >= KEEP_ALIVE_MS, `lived ${lived} ms`);
  } finally {
    session.destroy();
  }
});

test('an HTTP/1.1 request without Host is refused with 400 and never forwarded', async () => {
  for (const g of gateways) {
    const before = reached();
    const c = await open(g.port);
    c.socket.write(`GET /shop/users/me HTTP/1.1\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    await waitFor(c.received, '\r\n\r\n');
    assert.match(c.received(), /^HTTP\/1\.1 400 /, g.name);
    assert.equal(reached(), before, `${g.name}: the service never saw it`);
    c.socket.destroy();
  }
});

test('smuggling shapes are refused at the edge with 400, never forwarded, and the edge keeps serving', async () => {
  const cases: [string, string][] = [
    ['Content-Length and Transfer-Encoding', 'Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['two Content-Length', 'Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}'],
    ['signed Content-Length', 'Content-Length: +2\r\n\r\n{}'],
    ['obs-fold', 'X-A: 1\r\n  2\r\nContent-Length: 2\r\n\r\n{}'],
    ['Transfer-Encoding not ending in chunked', 'Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'],
  ];
  for (const g of gateways) {
    for (const [why, rest] of cases) {
      const before = reached();
      const c = await open(g.port);
      c.socket.write(`GET /shop/users/me HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n${rest}`);
      await waitFor(c.received, '\r\n\r\n');
      assert.match(c.received(), /^HTTP\/1\.1 400 /, `${g.name}: ${why}`);
      assert.equal(reached(), before, `${g.name}: ${why} never reached the service`);
      c.socket.destroy();
    }
    const ok = await open(g.port);
    ok.socket.write(`GET /shop/users/me HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
    await ok.closed;
    assert.match(ok.received(), /^HTTP\/1\.1 200 /, `${g.name}: still serving`);
  }
});
