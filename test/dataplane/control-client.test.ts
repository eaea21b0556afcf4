// The data plane's calls to the control plane share one kept-alive mTLS connection per certificate,
// and the snapshot is fetched conditionally: a real control plane over real TLS, behind a TCP relay
// that counts connections.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request, Agent } from 'undici';
import { loadConfig } from '../../src/core/config/load.js';
import type { PortcullisConfig } from '../../src/core/config/types.js';
import { matchesEtag } from '../../src/core/etag.js';
import { ControlPlane } from '../../src/control/server.js';
import { ControlClient, type SnapshotDocument } from '../../src/dataplane/control-client.js';
import { SnapshotSource } from '../../src/dataplane/snapshot.js';
import { WorkloadIdentity } from '../../src/dataplane/workload-identity.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { repoRoot } from '../helpers/paths.js';
import { freePorts } from '../helpers/net.js';

let dir: string;
let config: PortcullisConfig;
let cp: ControlPlane;
let relay: Server;
let relayUrl: string;
let connections = 0;
const sockets = new Set<Socket>();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-ctlclient-'));
  const base = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));
  const [control, relayPort] = await freePorts(2);
  config = { ...base, control: { ...base.control, listen: `127.0.0.1:${control}`, url: `https://127.0.0.1:${control}`, dataDir: dir } };
  cp = await ControlPlane.create({ config, store: new MemoryStore(), wrapper: new KeyWrapper(Buffer.alloc(32, 1)) });
  await cp.listen();
  relay = createServer((client) => {
    connections++;
    const server = tcpConnect(Number(control), '127.0.0.1');
    for (const s of [client, server]) { sockets.add(s); s.on('close', () => sockets.delete(s)).on('error', () => s.destroy()); }
    client.pipe(server).pipe(client);
  });
  await new Promise<void>((r) => relay.listen(relayPort, '127.0.0.1', () => r()));
  relayUrl = `https://127.0.0.1:${relayPort}`;
});

after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => relay.close(r));
  await cp.close();
  rmSync(dir, { recursive: true, force: true });
});

async function workload(spiffeId: string, control: ControlClient): Promise<WorkloadIdentity> {
  return WorkloadIdentity.obtain({ spiffeId, control, stateDir: mkdtempSync(join(dir, 'id-')), joinToken: await cp.joinTokens.create(spiffeId) });
}

test('calls with the same certificate share one connection; a new certificate opens a new one', async () => {
  const control = new ControlClient(relayUrl, cp.ca.trustBundlePem());
  const id = await workload(config.gateway.spiffeId, control);
  const creds = { keyPem: id.current().keyPem, chainPem: id.current().chainPem };
  const opened = connections;
  const first = await control.snapshot(creds);
  assert.ok(first?.version);
  await control.apiKeyRevocations(creds, undefined);
  await control.snapshot(creds);
  await control.apiKeyRevocations(creds, undefined);
  assert.equal(connections - opened, 1, 'four calls, one mTLS connection');

  // A renewed certificate: the next call presents it, on a connection of its own.
  await id.renewNow();
  const renewed = { keyPem: id.current().keyPem, chainPem: id.current().chainPem };
  assert.notEqual(renewed.chainPem, creds.chainPem);
  const before = connections;
  await control.snapshot(renewed);
  assert.equal(connections - before, 1);
  await control.close();
  id.stop();
});

test('the snapshot is conditional: 304 and no document while its version holds, the new one after a change', async () => {
  const control = new ControlClient(relayUrl, cp.ca.trustBundlePem());
  const id = await workload('spiffe://demo/shop/orders', control);
  const creds = { keyPem: id.current().keyPem, chainPem: id.current().chainPem };
  const doc = await control.snapshot(creds) as SnapshotDocument;
  assert.equal(await control.snapshot(creds, doc.version), undefined, 'unchanged: 304');
  assert.equal((await control.snapshot(creds, 'some-other-version'))?.version, doc.version, 'a stale version gets the document');

  await cp.blocks.add({ kind: 'address', value: '203.0.113.9', seconds: 60, rule: 'test', by: 'test' });
  const changed = await control.snapshot(creds, doc.version);
  assert.ok(changed, 'changed: 200 with the new document');
  assert.notEqual(changed.version, doc.version);
  assert.ok(changed.blocks.some((b) => b.value === '203.0.113.9'));
  await control.close();
  id.stop();
});

test('on the wire: ETag on 200, 304 without a body for If-None-Match, the snapshot still refused without a certificate', async () => {
  const control = new ControlClient(relayUrl, cp.ca.trustBundlePem());
  const id = await workload('spiffe://demo/shop/payments', control);
  const agent = new Agent({ connect: { ca: cp.ca.trustBundlePem(), key: id.current().keyPem, cert: id.current().chainPem } });
  try {
    const full = await request(`${relayUrl}/v1/snapshot`, { dispatcher: agent });
    const body = await full.body.json() as { version: string };
    assert.equal(full.statusCode, 200);
    assert.equal(full.headers.etag, `"${body.version}"`);
    const again = await request(`${relayUrl}/v1/snapshot`, { dispatcher: agent, headers: { 'if-none-match': `W/"x", "${body.version}"` } });
    assert.equal(again.statusCode, 304);
    assert.equal(await again.body.text(), '');
    assert.equal(again.headers.etag, `"${body.version}"`);
    const anonymous = new Agent({ connect: { ca: cp.ca.trustBundlePem() } });
    const refused = await request(`${relayUrl}/v1/snapshot`, { dispatcher: anonymous, headers: { 'if-none-match': `"${body.version}"` } });
    assert.equal(refused.statusCode, 401);
    await refused.body.dump();
    await anonymous.close();
  } finally {
    await agent.close();
    await control.close();
    id.stop();
  }
});

test('SnapshotSource keeps its document and emits nothing on 304', async () => {
  const control = new ControlClient(relayUrl, cp.ca.trustBundlePem());
  const id = await workload('spiffe://demo/shop/users', control);
  const source = new SnapshotSource({ control, identity: id, stateDir: mkdtempSync(join(dir, 'snap-')) });
  const first = await source.init();
  let updates = 0;
  source.on('updated', () => updates++);
  await source.refresh();
  assert.equal(updates, 0);
  assert.equal(source.current(), first, 'the same document object: nothing was re-parsed or re-applied');
  await cp.blocks.add({ kind: 'principal', value: 'mallory', seconds: 60, rule: 'test', by: 'test' });
  await source.refresh();
  assert.equal(updates, 1);
  assert.notEqual(source.current().version, first.version);
  await control.close();
  id.stop();
});

test('a revoked workload gets nothing with its still-valid certificate: 403 PCL_ERR_WORKLOAD_REVOKED; other workloads are served', async () => {
  const control = new ControlClient(relayUrl, cp.ca.trustBundlePem());
  const revoked = await workload('spiffe://demo/shop/reports', control);
  const other = await workload('spiffe://demo/shop/users', control);
  const creds = (id: WorkloadIdentity) => ({ keyPem: id.current().keyPem, chainPem: id.current().chainPem });
  assert.ok(await control.snapshot(creds(revoked)), 'served before the revocation');
  await cp.workloadRevocations.revoke('spiffe://demo/shop/reports', { reason: 'test: key leaked', by: 'test' });
  await assert.rejects(control.snapshot(creds(revoked)), /answered 403 \(PCL_ERR_WORKLOAD_REVOKED\)/);
  await assert.rejects(control.publishCheckpoint(creds(revoked), { seq: 1, hash: 'a'.repeat(64), time: new Date().toISOString(), signer: 'x', signature: 'x', final: false }), /PCL_ERR_WORKLOAD_REVOKED/);
  const agent = new Agent({ connect: { ca: cp.ca.trustBundlePem(), key: revoked.current().keyPem, cert: revoked.current().chainPem } });
  try {
    for (const path of ['/v1/workload/identity', '/v1/secrets/db-password', '/healthz']) {
      const r = await request(`${relayUrl}${path}`, { dispatcher: agent });
      const body = await r.body.json() as { error?: { code?: string } };
      assert.equal(r.statusCode, 403, path);
      assert.equal(body.error?.code, 'PCL_ERR_WORKLOAD_REVOKED', path);
    }
  } finally {
    await agent.close();
  }
  assert.ok(await control.snapshot(creds(other)), 'another workload is still served');
  await control.close();
  revoked.stop();
  other.stop();
});

test('If-None-Match: lists, weak tags, * and malformed headers', () => {
  assert.equal(matchesEtag('"abc"', '"abc"'), true);
  assert.equal(matchesEtag('W/"abc"', '"abc"'), true);
  assert.equal(matchesEtag('"x" , W/"abc"', '"abc"'), true);
  assert.equal(matchesEtag('*', '"abc"'), true);
  assert.equal(matchesEtag('"abd"', '"abc"'), false);
  assert.equal(matchesEtag('abc', '"abc"'), false);
  assert.equal(matchesEtag('"abc', '"abc"'), false);
  assert.equal(matchesEtag('"x" junk "abc"', '"abc"'), false);
  assert.equal(matchesEtag(undefined, '"abc"'), false);
});
