// audit.failClosed: while the audit log cannot write, the gateway and the sidecars refuse
// requests (503) rather than serve them unrecorded — and the service never sees them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PortcullisConfig } from '../../src/core/config/types.js';
import type { ControlPlane } from '../../src/control/server.js';
import { Gateway } from '../../src/dataplane/gateway.js';
import { ActivePolicies } from '../../src/dataplane/policies.js';
import { Sidecar } from '../../src/dataplane/sidecar.js';
import { SnapshotSource } from '../../src/dataplane/snapshot.js';
import { issueAccessToken } from '../../src/tokens/issue.js';
import { startLocalShop, type LocalShop } from '../helpers/local-shop.js';
import { call, codeOf } from '../helpers/net.js';

let dir: string;
let shop: LocalShop;
let config: PortcullisConfig;
let cp: ControlPlane;
let healthy = true;
let gateway: Gateway;
let sidecar: Sidecar;
let gatewayCreds: { key: string; cert: string };
const stops: (() => void)[] = [];
const reached = (): number => shop.reached();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-failclosed-'));
  shop = await startLocalShop(dir, (c) => ({ ...c, audit: { ...c.audit, failClosed: true } }));
  ({ config, cp } = shop);
  const users = await shop.enrol('spiffe://demo/shop/users');
  sidecar = new Sidecar({ config, service: 'users', identity: users.id, policies: new ActivePolicies(cp.policies.current()), auditHealthy: () => healthy });
  await sidecar.listen();
  const gw1 = await shop.enrol(config.gateway.spiffeId);
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
  await shop.close();
  rmSync(dir, { recursive: true, force: true });
});

test('requests are refused with 503 while the audit log cannot write, and served again once it can', async () => {
  const { token } = await issueAccessToken(cp.keys, { issuer: config.tokens.issuer, audience: config.tokens.audience, subject: 'alice', clientId: 'test', roles: ['customer'], ttlSec: 300 });
  const ask = () => call(`https://${config.gateway.listen}/shop/users/me`, { ca: cp.ca.trustBundlePem(), headers: { authorization: `Bearer ${token}` } });

  healthy = true;
  assert.equal((await ask()).status, 200);
  assert.equal(reached(), 1);

  healthy = false;
  const refused = await ask();
  assert.equal(refused.status, 503);
  assert.equal(codeOf(refused), 'PCL_ERR_AUDIT_UNAVAILABLE');
  assert.equal(reached(), 1, 'the service never saw the unrecordable request');

  healthy = true;
  assert.equal((await ask()).status, 200);
  assert.equal(reached(), 2);
});

test('a sidecar refuses too, whoever calls it', async () => {
  const listen = config.services.find((s) => s.name === 'users')?.sidecar.listen ?? '';
  const ask = () => call(`https://${listen}/shop/users/me`, { ca: cp.ca.trustBundlePem(), workload: { ...gatewayCreds, serverSpiffeId: 'spiffe://demo/shop/users' } });
  const before = reached();
  healthy = false;
  const refused = await ask();
  assert.equal(refused.status, 503);
  assert.equal(codeOf(refused), 'PCL_ERR_AUDIT_UNAVAILABLE');
  assert.equal(reached(), before);
  healthy = true;
  assert.equal((await ask()).status, 200);
  assert.equal(reached(), before + 1);
});
