// audit.failClosed: while the audit log cannot write, the gateway and the sidecars refuse
// requests (503) rather than serve them unrecorded — and the service never sees them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/core/config/load.js';
import type { PortcullisConfig } from '../../src/core/config/types.js';
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
import { repoRoot } from '../helpers/paths.js';
import { call, codeOf, freePorts } from '../helpers/net.js';

let dir: string;
let config: PortcullisConfig;
let cp: ControlPlane;
let upstream: Server;
let reached = 0;
let healthy = true;
let gateway: Gateway;
let sidecar: Sidecar;
let gatewayCreds: { key: string; cert: string };
const stops: (() => void)[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-failclosed-'));
  const base = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));
  const [control, gw, up, inbound, outbound] = await freePorts(5);
  config = {
    ...base,
    audit: { ...base.audit, failClosed: true },
    control: { ...base.control, listen: `127.0.0.1:${control}`, url: `https://127.0.0.1:${control}`, dataDir: dir },
    gateway: { ...base.gateway, listen: `127.0.0.1:${gw}` },
    tokens: { ...base.tokens, issuer: `https://127.0.0.1:${control}`, audience: `https://127.0.0.1:${gw}` },
    services: base.services.map((s) => s.name === 'users' ? { ...s, upstream: `http://127.0.0.1:${up}`, sidecar: { listen: `127.0.0.1:${inbound}`, outbound: `127.0.0.1:${outbound}` } } : s),
  };
  cp = await ControlPlane.create({ config, store: new MemoryStore(), wrapper: new KeyWrapper(Buffer.alloc(32, 3)) });
  await cp.listen();
  upstream = createServer((req, res) => { reached++; req.resume(); res.end('{"ok":true}'); });
  await new Promise<void>((r) => upstream.listen(up, '127.0.0.1', () => r()));

  const identity = async (spiffeId: string): Promise<{ id: WorkloadIdentity; control: ControlClient }> => {
    const control = new ControlClient(config.control.url, cp.ca.trustBundlePem());
    const id = await WorkloadIdentity.obtain({ spiffeId, control, stateDir: mkdtempSync(join(dir, 'id-')), joinToken: await cp.joinTokens.create(spiffeId) });
    return { id, control };
  };
  const users = await identity('spiffe://demo/shop/users');
  sidecar = new Sidecar({ config, service: 'users', identity: users.id, policies: new ActivePolicies(cp.policies.current()), auditHealthy: () => healthy });
  await sidecar.listen();
  const gw1 = await identity(config.gateway.spiffeId);
  gatewayCreds = { key: gw1.id.current().keyPem, cert: gw1.id.current().chainPem };
  const snapshot = new SnapshotSource({ control: gw1.control, identity: gw1.id, stateDir: join(dir, 'gw-state') });
  await snapshot.init();
  stops.push(() => snapshot.stop());
  gateway = new Gateway({ config, identity: gw1.id, snapshot, policies: new ActivePolicies(snapshot), auditHealthy: () => healthy });
  await gateway.listen();
});

after(async () => {
  for (const s of stops) s();
  await gateway.close();
  await sidecar.close();
  await cp.close();
  await new Promise((r) => upstream.close(r));
  rmSync(dir, { recursive: true, force: true });
});

test('requests are refused with 503 while the audit log cannot write, and served again once it can', async () => {
  const { token } = await issueAccessToken(cp.keys, { issuer: config.tokens.issuer, audience: config.tokens.audience, subject: 'alice', clientId: 'test', roles: ['customer'], ttlSec: 300 });
  const ask = () => call(`https://${config.gateway.listen}/shop/users/me`, { ca: cp.ca.trustBundlePem(), headers: { authorization: `Bearer ${token}` } });

  healthy = true;
  assert.equal((await ask()).status, 200);
  assert.equal(reached, 1);

  healthy = false;
  const refused = await ask();
  assert.equal(refused.status, 503);
  assert.equal(codeOf(refused), 'PCL_ERR_AUDIT_UNAVAILABLE');
  assert.equal(reached, 1, 'the service never saw the unrecordable request');

  healthy = true;
  assert.equal((await ask()).status, 200);
  assert.equal(reached, 2);
});

test('a sidecar refuses too, whoever calls it', async () => {
  const listen = config.services.find((s) => s.name === 'users')?.sidecar.listen ?? '';
  const ask = () => call(`https://${listen}/shop/users/me`, { ca: cp.ca.trustBundlePem(), workload: { ...gatewayCreds, serverSpiffeId: 'spiffe://demo/shop/users' } });
  const before = reached;
  healthy = false;
  const refused = await ask();
  assert.equal(refused.status, 503);
  assert.equal(codeOf(refused), 'PCL_ERR_AUDIT_UNAVAILABLE');
  assert.equal(reached, before);
  healthy = true;
  assert.equal((await ask()).status, 200);
  assert.equal(reached, before + 1);
});
