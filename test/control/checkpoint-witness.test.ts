// The control plane as witness of the data planes' audit checkpoints: a gateway's log publishes
// each signed checkpoint; cutting the log back behind it verifies on its own, but not against the
// witness. Only data planes of the config may publish (or ask for blocks), each for its own log.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../../src/audit/log.js';
import { WorkloadSigner } from '../../src/audit/signers.js';
import { verifyDataDir } from '../../src/cli/audit.js';
import { loadConfig } from '../../src/core/config/load.js';
import type { PortcullisConfig } from '../../src/core/config/types.js';
import { ControlPlane } from '../../src/control/server.js';
import { WORKLOAD_BLOCKS_PER_MINUTE } from '../../src/control/blocks.js';
import { ControlClient } from '../../src/dataplane/control-client.js';
import { WorkloadIdentity } from '../../src/dataplane/workload-identity.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { repoRoot } from '../helpers/paths.js';
import { decision } from '../audit/helpers.js';
import { freePorts } from '../helpers/net.js';

let dir: string;
let config: PortcullisConfig;
let cp: ControlPlane;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-witness-'));
  const base = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));
  const [control] = await freePorts(1);
  config = { ...base, control: { ...base.control, listen: `127.0.0.1:${control}`, url: `https://127.0.0.1:${control}`, dataDir: join(dir, 'control') } };
  cp = await ControlPlane.create({ config, store: new MemoryStore(), wrapper: new KeyWrapper(Buffer.alloc(32, 5)) });
  await cp.listen();
});

after(async () => {
  await cp.close();
  rmSync(dir, { recursive: true, force: true });
});

async function workload(spiffeId: string): Promise<{ id: WorkloadIdentity; control: ControlClient }> {
  const control = new ControlClient(config.control.url, cp.ca.trustBundlePem());
  const id = await WorkloadIdentity.obtain({ spiffeId, control, stateDir: mkdtempSync(join(dir, 'id-')), joinToken: await cp.joinTokens.create(spiffeId) });
  return { id, control };
}

async function eventually<T>(fn: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test("a log cut back behind its witnessed checkpoint verifies alone, and fails against the witness", async () => {
  const gw = await workload(config.gateway.spiffeId);
  const dataDir = join(dir, 'gateway-host');
  mkdirSync(join(dataDir, 'audit'), { recursive: true });
  writeFileSync(join(dataDir, 'ca.pem'), cp.ca.trustBundlePem());
  const creds = () => gw.id.current();
  const log = await AuditLog.open({
    dir: join(dataDir, 'audit', 'gateway'), signer: new WorkloadSigner(creds), checkpointEvery: 5,
    onCheckpoint: (c) => void gw.control.publishCheckpoint({ keyPem: creds().keyPem, chainPem: creds().chainPem }, c),
  });
  for (let i = 0; i < 5; i++) await log.append(decision(i));
  const witnessed = await eventually(async () => (await cp.checkpoints.list()).find((c) => c.component === 'gateway'), 'the witnessed checkpoint');
  assert.equal(witnessed.seq, 5);
  assert.equal(witnessed.by, config.gateway.spiffeId);
  for (let i = 5; i < 7; i++) await log.append(decision(i));
  await log.close();

  // The attacker keeps entries 1-4: a consistent chain, signed by nothing that says otherwise.
  const segDir = join(dataDir, 'audit', 'gateway');
  const seg = join(segDir, readdirSync(segDir).filter((f) => f.endsWith('.jsonl')).sort()[0] ?? '');
  writeFileSync(seg, readFileSync(seg, 'utf8').split('\n').slice(0, 4).join('\n') + '\n');
  const alone = await verifyDataDir(dataDir);
  assert.equal(alone[0]?.result.ok, true, 'alone, a cut log is only "uncovered"');
  const heads = new Map((await cp.checkpoints.list()).map((c) => [c.component, { seq: c.seq, hash: c.hash }]));
  const against = await verifyDataDir(dataDir, { witnessed: heads });
  assert.equal(against[0]?.result.ok, false);
  assert.match(against[0]?.result.firstBad?.reason ?? '', /truncated/);
});

test('a workload that is not a data plane of the config may neither publish checkpoints nor ask for blocks', async () => {
  const stranger = await workload('spiffe://demo/stranger');
  const creds = { keyPem: stranger.id.current().keyPem, chainPem: stranger.id.current().chainPem };
  await assert.rejects(stranger.control.publishCheckpoint(creds, { seq: 1, hash: 'a'.repeat(64), time: new Date().toISOString(), signer: 'x', signature: 'y', final: false }), /PCL_ERR_PEER_IDENTITY/);
  await assert.rejects(stranger.control.block(creds, { kind: 'principal', value: 'alice', seconds: 60, rule: 'r', alertId: 'a' }), /PCL_ERR_PEER_IDENTITY/);
  assert.ok(!cp.blocks.list().some((b) => b.value === 'alice'));
});

test('a data plane asking for blocks is held to a rate', async () => {
  const orders = config.services.find((s) => s.name === 'orders');
  const sidecar = await workload(orders?.spiffeId ?? '');
  const creds = { keyPem: sidecar.id.current().keyPem, chainPem: sidecar.id.current().chainPem };
  for (let i = 0; i < WORKLOAD_BLOCKS_PER_MINUTE; i++) await sidecar.control.block(creds, { kind: 'principal', value: `p${i}`, seconds: 60, rule: 'r', alertId: `a${i}` });
  await assert.rejects(sidecar.control.block(creds, { kind: 'principal', value: 'one-too-many', seconds: 60, rule: 'r', alertId: 'x' }), /PCL_ERR_RATE_LIMITED/);
  assert.ok(!cp.blocks.list().some((b) => b.value === 'one-too-many'));
});
