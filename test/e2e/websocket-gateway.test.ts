// The real Gateway and Sidecar carry a WebSocket end to end: authenticated and authorized at the gateway, checked again at the sidecar; h2c and unauthenticated upgrades never reach the service.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { loadConfig } from '../../src/core/config/load.js';
import type { PortcullisConfig } from '../../src/core/config/types.js';
import { subscribeAudit, type AuditEvent } from '../../src/core/events.js';
import { ControlPlane } from '../../src/control/server.js';
import { ControlClient } from '../../src/dataplane/control-client.js';
import { Gateway } from '../../src/dataplane/gateway.js';
import { ActivePolicies } from '../../src/dataplane/policies.js';
import { Sidecar } from '../../src/dataplane/sidecar.js';
import { SnapshotSource } from '../../src/dataplane/snapshot.js';
import { WorkloadIdentity } from '../../src/dataplane/workload-identity.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { issueAccessToken } from '../../src/tokens/issue.js';
import { PRINCIPAL_HEADER } from '../../src/core/principal.js';
import { PrincipalAssertionVerifier } from '../../src/identity/principal-assertion.js';
import { freePorts } from '../helpers/net.js';

import { repoRoot } from '../helpers/paths.js';
let dir: string; let config: PortcullisConfig; let cp: ControlPlane; let svc: Server; let gateway: Gateway; let sidecar: Sidecar;
const stops: (() => void)[] = []; let upgrades = 0; const subs: string[] = []; const audit: AuditEvent[] = [];
const sockets = new Set<Socket>();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-wsreal-'));
  const base = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));
  const [control, gw, up, inbound, outbound] = await freePorts(5);
  config = {
    ...base,
    control: { ...base.control, listen: `127.0.0.1:${control}`, url: `https://127.0.0.1:${control}`, dataDir: dir },
    gateway: { ...base.gateway, listen: `127.0.0.1:${gw}` },
    tokens: { ...base.tokens, issuer: `https://127.0.0.1:${control}`, audience: `https://127.0.0.1:${gw}` },
    services: base.services.map((s) => s.name === 'users' ? { ...s, upstream: `http://127.0.0.1:${up}`, sidecar: { listen: `127.0.0.1:${inbound}`, outbound: `127.0.0.1:${outbound}` } } : s),
  };
  cp = await ControlPlane.create({ config, store: new MemoryStore(), wrapper: new KeyWrapper(Buffer.alloc(32, 3)) });
  await cp.listen();
  const wss = new WebSocketServer({ noServer: true });
  svc = createServer((_q, r) => r.end());
  svc.on('connection', (s: Socket) => sockets.add(s));
  svc.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    upgrades++;
    // What the SDK does in a service: check the gateway's signed assertion.
    const assertion = req.headers[PRINCIPAL_HEADER];
    const users = new PrincipalAssertionVerifier({ audience: 'spiffe://demo/shop/users', issuer: config.gateway.spiffeId, trustBundlePem: () => cp.ca.trustBundlePem() });
    subs.push(typeof assertion === 'string' ? users.verify(assertion).sub : '?');
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (d) => ws.send(`echo ${String(d)}`)));
  });
  await new Promise<void>((r) => svc.listen(up, '127.0.0.1', () => r()));
  const identity = async (spiffeId: string) => {
    const c = new ControlClient(config.control.url, cp.ca.trustBundlePem());
    return { id: await WorkloadIdentity.obtain({ spiffeId, control: c, stateDir: mkdtempSync(join(dir, 'id-')), joinToken: await cp.joinTokens.create(spiffeId) }), control: c };
  };
  const users = await identity('spiffe://demo/shop/users');
  sidecar = new Sidecar({ config, service: 'users', identity: users.id, policies: new ActivePolicies(cp.policies.current()) });
  await sidecar.listen();
  const g = await identity(config.gateway.spiffeId);
  const snapshot = new SnapshotSource({ control: g.control, identity: g.id, stateDir: join(dir, 'gw-state') });
  await snapshot.init();
  stops.push(() => snapshot.stop());
  gateway = new Gateway({ config, identity: g.id, snapshot, policies: new ActivePolicies(snapshot) });
  await gateway.listen();
  stops.push(subscribeAudit((e) => audit.push(e)));
});

after(async () => {
  for (const s of stops) s();
  for (const s of sockets) s.destroy();
  await gateway.close(); await sidecar.close(); await cp.close();
  await new Promise((r) => svc.close(r));
  rmSync(dir, { recursive: true, force: true });
});

function open(token?: string): Promise<WebSocket | number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://${config.gateway.listen}/shop/users/me`, { ca: cp.ca.trustBundlePem(), headers: token ? { authorization: `Bearer ${token}` } : {} });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_q, res) => { resolve(res.statusCode ?? 0); ws.terminate(); });
    ws.once('error', reject);
  });
}

test('real gateway + sidecar carry a WebSocket; refusals stay at the gateway', async () => {
  const { token } = await issueAccessToken(cp.keys, { issuer: config.tokens.issuer, audience: config.tokens.audience, subject: 'alice', clientId: 'test', roles: ['customer'], ttlSec: 300 });
  const ws = await open(token);
  assert.ok(ws instanceof WebSocket);
  const answer = new Promise<string>((r) => ws.once('message', (d) => r(String(d))));
  ws.send('hi');
  assert.equal(await answer, 'echo hi');
  assert.deepEqual(subs, ['alice']);
  ws.close();
  assert.equal(await open(), 401);
  const h2c = await new Promise<string>((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port: Number(config.gateway.listen.split(':')[1]), ca: cp.ca.trustBundlePem() });
    let t = ''; s.on('data', (c: Buffer) => { t += c; }); s.on('close', () => resolve(t));
    s.write('GET /shop/users/me HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n');
  });
  assert.match(h2c, /^HTTP\/1\.1 400 .*PCL_ERR_UPGRADE_UNSUPPORTED/s);
  assert.equal(upgrades, 1);
  const decisions = audit.filter((e) => e.type === 'decision' && e.component === 'gateway') as { status: number; code?: string }[];
  assert.deepEqual(decisions.map((e) => e.status), [101, 401, 400]);
  const sc = audit.filter((e) => e.type === 'decision' && e.component.startsWith('sidecar')) as { status: number }[];
  assert.deepEqual(sc.map((e) => e.status), [101]);
});
