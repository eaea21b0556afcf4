// Certificates renew at half-life with no failed request: a real control plane and a real sidecar
// over real TLS, with the sidecar's renewal driven by a fake clock (no sleeps).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { FakeClock } from '../../src/core/clock.js';
import { loadConfig } from '../../src/core/config/load.js';
import type { PortcullisConfig } from '../../src/core/config/types.js';
import { ControlPlane } from '../../src/control/server.js';
import { ControlClient } from '../../src/dataplane/control-client.js';
import { ActivePolicies } from '../../src/dataplane/policies.js';
import { Sidecar } from '../../src/dataplane/sidecar.js';
import { WorkloadIdentity } from '../../src/dataplane/workload-identity.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { repoRoot } from '../helpers/paths.js';
import { call, freePorts } from '../helpers/net.js';

let dir: string;
let config: PortcullisConfig;
let cp: ControlPlane;
let upstream: Server;
let controlUrl: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-renew-'));
  const base = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));
  const [control, up, inbound, outbound] = await freePorts(4);
  controlUrl = `https://127.0.0.1:${control}`;
  config = {
    ...base,
    control: { ...base.control, listen: `127.0.0.1:${control}`, url: controlUrl, dataDir: dir },
    services: base.services.map((s) => s.name === 'payments' ? { ...s, upstream: `http://127.0.0.1:${up}`, sidecar: { listen: `127.0.0.1:${inbound}`, outbound: `127.0.0.1:${outbound}` } } : s),
  };
  cp = await ControlPlane.create({ config, store: new MemoryStore(), wrapper: new KeyWrapper(Buffer.alloc(32, 1)) });
  await cp.listen();
  upstream = createServer((req, res) => { req.resume(); res.end('{"ok":true}'); });
  await new Promise<void>((r) => upstream.listen(up, '127.0.0.1', () => r()));
});

after(async () => {
  await cp.close();
  await new Promise((r) => upstream.close(r));
  rmSync(dir, { recursive: true, force: true });
});

async function identity(spiffeId: string, clock?: FakeClock): Promise<WorkloadIdentity> {
  const control = new ControlClient(controlUrl, cp.ca.trustBundlePem());
  return WorkloadIdentity.obtain({ spiffeId, control, stateDir: mkdtempSync(join(dir, 'id-')), joinToken: await cp.joinTokens.create(spiffeId), ...(clock ? { clock } : {}) });
}

/** Serial number of the certificate a TLS server presents on a new connection. */
function servedSerial(address: string, client: { key: string; cert: string }): Promise<string> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const s = connect({ host, port: Number(port), ca: cp.ca.trustBundlePem(), ...client, checkServerIdentity: () => undefined }, () => {
      resolve(s.getPeerCertificate().serialNumber);
      s.end();
    });
    s.on('error', reject);
  });
}

test('the sidecar renews at half-life, serves the new certificate, and no request fails meanwhile', async () => {
  const clock = new FakeClock(Date.now());
  const paymentsId = await identity('spiffe://demo/shop/payments', clock);
  const first = paymentsId.current();
  assert.equal(first.notAfter - first.notBefore, 3600_000 + 60_000, '1 h lifetime (plus the 60 s back-dating for skew)');
  const sidecar = new Sidecar({ config, service: 'payments', identity: paymentsId, policies: new ActivePolicies(cp.policies.current()), clock });
  await sidecar.listen();
  paymentsId.start();

  const orders = (await identity('spiffe://demo/shop/orders')).current();
  const client = { key: orders.keyPem, cert: orders.chainPem, serverSpiffeId: 'spiffe://demo/shop/payments' };
  const listen = config.services.find((s) => s.name === 'payments')?.sidecar.listen ?? '';
  const url = `https://${listen}/payments/charge`;

  // Traffic runs throughout: a request failing at any point fails the test.
  let stop = false;
  const statuses: number[] = [];
  const traffic = (async () => {
    while (!stop) statuses.push((await call(url, { method: 'POST', ca: cp.ca.trustBundlePem(), workload: client, body: {} })).status);
  })();

  try {
    await clock.advance(29 * 60_000);
    assert.equal(paymentsId.current().serial, first.serial, 'no renewal before half-life');
    const rotated = new Promise((r) => paymentsId.once('rotated', r));
    await clock.advance(2 * 60_000);
    await rotated;
    const second = paymentsId.current();
    assert.notEqual(second.serial, first.serial);
    assert.ok(second.notAfter >= first.notAfter);
    assert.equal(await servedSerial(listen, { key: orders.keyPem, cert: orders.chainPem }), second.serial, 'new connections get the renewed certificate');
    assert.equal(paymentsId.renewalDue(), second.notBefore + (second.notAfter - second.notBefore) / 2, 'next renewal at its half-life');

    const before = statuses.length;
    while (statuses.length < before + 20) await new Promise((r) => setImmediate(r));
  } finally {
    stop = true;
    await traffic;
  }
  assert.ok(statuses.length > 20);
  assert.deepEqual([...new Set(statuses)], [200], 'every request succeeded across the rotation');
  paymentsId.stop();
  await sidecar.close();
});

test('a failed renewal is retried, always before the certificate expires', async () => {
  const clock = new FakeClock(Date.now());
  const id = await identity('spiffe://demo/shop/users', clock);
  const first = id.current();
  // Point the identity at a control plane that is not there.
  const [dead] = await freePorts(1);
  const broken = await WorkloadIdentity.obtain({ spiffeId: 'spiffe://demo/shop/users', control: new ControlClient(`https://127.0.0.1:${dead}`, cp.ca.trustBundlePem()), stateDir: join(dir, 'broken'), joinToken: 'unused', clock })
    .catch(() => undefined);
  assert.equal(broken, undefined, 'no certificate without a reachable control plane');

  let failures = 0;
  const original = id.renewNow.bind(id);
  id.renewNow = async () => { failures++; if (failures < 3) throw new Error('control plane away'); return original(); };
  id.start();
  const rotated = new Promise((r) => id.once('rotated', r));
  await clock.advance(31 * 60_000);
  for (let i = 0; i < 10 && failures < 3; i++) await clock.advance(60_000);
  await rotated;
  assert.equal(failures, 3);
  assert.ok(clock.now() < first.notAfter, 'renewed before expiry');
  assert.notEqual(id.current().serial, first.serial);
  id.stop();
});
