// Checkpoint signers: a workload's key and X.509-SVID chain anchored in the trust domain's CA, and a
// KMS ecdsa-p256 keyring verified with its published public keys.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../src/core/clock.js';
import { AuditLog } from '../../src/audit/log.js';
import { WorkloadSigner, type WorkloadKeyMaterial } from '../../src/audit/signers.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { decision, issue, kmsFixture, removeTempDirs, tempDir, workloadFixture } from './helpers.js';

after(removeTempDirs);

async function writeLog(o: Omit<Parameters<typeof AuditLog.open>[0], 'dir'>, n = 12): Promise<string> {
  const dir = tempDir();
  const log = await AuditLog.open({ dir, checkpointEvery: 5, ...o });
  for (let i = 0; i < n; i++) await log.append(decision(i));
  await log.close();
  return dir;
}

test('workload signer: verified against the CA; refused without it, or with a foreign CA', async () => {
  const w = await workloadFixture();
  const dir = await writeLog({ signer: w.signer });
  const v = await verifyAuditLog(dir, { caPem: w.caPem });
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.equal(v.checkpoints, 3);
  assert.equal(v.lastCheckpoint?.signer, w.spiffeId);

  const none = await verifyAuditLog(dir);
  assert.equal(none.ok, false);
  assert.match(none.firstBad?.reason ?? '', /no CA certificate was given/);

  // Another trust domain's CA, and a CA of the same name made separately: neither anchors the chain.
  for (const foreign of [await workloadFixture({ td: 'other.test' }), await workloadFixture()]) {
    const f = await verifyAuditLog(dir, { caPem: foreign.caPem });
    assert.equal(f.ok, false);
    assert.equal(f.firstBad?.line, 6, 'the first checkpoint');
    assert.match(f.firstBad?.reason ?? '', /not anchored in the given CA/);
  }
  // A bundle holding the right CA among others is fine.
  const bundle = (await workloadFixture({ td: 'other.test' })).caPem + w.caPem;
  assert.equal((await verifyAuditLog(dir, { caPem: bundle })).ok, true);
});

test('workload signer follows certificate renewal; each checkpoint must fall within its certificate\'s validity', async () => {
  const start = Math.floor(Date.parse('2025-05-01T00:00:00Z') / 1000) * 1000;
  const clock = new FakeClock(start);
  const w = await workloadFixture({ clock, ttlMs: 3_600_000 });
  let current: WorkloadKeyMaterial = w.material;
  const dir = tempDir();
  const log = await AuditLog.open({ dir, clock, signer: new WorkloadSigner(() => current), checkpointEvery: 1000 });
  await log.append(decision(1));
  await log.checkpoint();
  await clock.advance(30 * 60_000);
  current = await issue(w.ca, 'gateway', 3_600_000); // renewed at half-life
  await log.append(decision(2));
  await log.checkpoint();
  await log.close();
  const v = await verifyAuditLog(dir, { caPem: w.caPem });
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.equal(v.checkpoints, 3);

  // A checkpoint signed after the certificate expired (renewal failed, clock went on) is refused.
  const late = tempDir();
  const lateLog = await AuditLog.open({ dir: late, clock, signer: new WorkloadSigner(w.material) });
  await clock.advance(2 * 3_600_000);
  await lateLog.append(decision(3));
  await lateLog.close();
  const lv = await verifyAuditLog(late, { caPem: w.caPem });
  assert.equal(lv.ok, false);
  assert.match(lv.firstBad?.reason ?? '', /not valid at/);
});

test('workload signer refuses a key that is not its certificate\'s', async () => {
  const w = await workloadFixture();
  const other = await issue(w.ca, 'other');
  const signer = new WorkloadSigner({ keyPem: other.keyPem, chainPem: w.material.chainPem });
  assert.throws(() => signer.describe(), /does not belong to the leaf certificate/);
  const dir = tempDir();
  const log = await AuditLog.open({ dir, signer });
  await log.append(decision(1));
  await log.close();
  assert.equal(log.stats().checkpointFailures, 1);
});

test('KMS signer: verified with the published public keys, across a rotation', async () => {
  const k = await kmsFixture();
  const dir = tempDir();
  const log = await AuditLog.open({ dir, signer: k.signer, checkpointEvery: 5 });
  for (let i = 0; i < 5; i++) await log.append(decision(i));
  await log.flush();
  await k.kms.rotate('audit');
  for (let i = 5; i < 10; i++) await log.append(decision(i));
  await log.close();

  const keys = await k.publicKeys();
  assert.equal(keys.length, 2);
  const v = await verifyAuditLog(dir, { kmsPublicKeys: keys });
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.equal(v.checkpoints, 3);
  assert.equal(v.lastCheckpoint?.signer, 'kms:audit:v2');

  const onlyV1 = await verifyAuditLog(dir, { kmsPublicKeys: keys.filter((x) => x.version === 1) });
  assert.equal(onlyV1.ok, false);
  assert.match(onlyV1.firstBad?.reason ?? '', /no public key given for kms:audit:v2/);

  // Another KMS's key under the same name and version does not verify.
  const stranger = await kmsFixture();
  await stranger.kms.rotate('audit');
  const wrong = await verifyAuditLog(dir, { kmsPublicKeys: await stranger.publicKeys() });
  assert.equal(wrong.ok, false);
  assert.match(wrong.firstBad?.reason ?? '', /kms:audit:v1 does not verify/);
});
