// The KeyManager: keyrings, encryption and its refusals, rotation (manual, scheduled, forced by
// usage), retirement, crash safety of the usage counter and of rotation, persistence.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { subscribeAudit, type AdminEvent } from '../../src/core/events.js';
import { open as openPayload } from '../../src/kms/aead.js';
import { associatedData, formatCiphertext, MAX_PLAINTEXT_BYTES, parseCiphertext } from '../../src/kms/ciphertext.js';
import { KeyManager, keyWrapAad } from '../../src/kms/key-manager.js';
import type { KeyType, KmsContext } from '../../src/kms/types.js';
import { MemoryStore } from '../../src/store/memory.js';
import { NS, type Store } from '../../src/store/store.js';
import type { KeyWrapper } from '../../src/kms/wrap.js';
import { errorText, FailingStore, newWrapper, openKms, rejection } from './helpers.js';

const DAY = 86_400_000;
const card = Buffer.from('4111 1111 1111 1111', 'utf8');
const ctx: KmsContext = { tenant: 't1', field: 'card' };

/** The raw key of a stored version, read the way an attacker with the root key would. */
async function rawKey(store: Store, wrapper: KeyWrapper, keyring: string, version: number, type: KeyType = 'aes256-gcm'): Promise<Buffer> {
  const rec = await store.get<{ wrapped: string }>(NS.kmsKeyVersions, `${keyring}/${version}`);
  assert.ok(rec);
  return wrapper.unwrap(rec.wrapped, keyWrapAad(type, keyring, version));
}

function auditLog(): { events: AdminEvent[]; stop: () => void } {
  const events: AdminEvent[] = [];
  const stop = subscribeAudit((e) => { if (e.type === 'admin' && e.component === 'kms') events.push(e); });
  return { events, stop };
}

test('ensureKeyring creates once, is idempotent, refuses another type, bad names and periods', async () => {
  const { kms } = await openKms();
  const a = await kms.ensureKeyring('payments');
  assert.equal(a.type, 'aes256-gcm');
  assert.equal(a.latestVersion, 1);
  assert.equal(a.minDecryptionVersion, 1);
  assert.deepEqual(await kms.ensureKeyring('payments', { type: 'aes256-gcm' }), a);
  assert.equal((await rejection(kms.ensureKeyring('payments', { type: 'hmac-sha256' }))).code, 'PCL_ERR_KMS_KEYRING_TYPE');
  for (const name of ['', 'Payments', 'a:b', 'a/b', '-a', 'x'.repeat(64)]) {
    assert.equal((await rejection(kms.ensureKeyring(name))).code, 'PCL_ERR_INVALID_ARGUMENT', name);
  }
  for (const rotationPeriodMs of [0, 999, 1.5, -DAY, Number.NaN]) {
    assert.equal((await rejection(kms.ensureKeyring('x', { rotationPeriodMs }))).code, 'PCL_ERR_INVALID_ARGUMENT');
  }
  assert.equal((await rejection(kms.ensureKeyring('x', { type: 'rsa' as never }))).code, 'PCL_ERR_INVALID_ARGUMENT'); // deliberately invalid
  assert.equal(await kms.getKeyring('nope'), undefined);
  assert.equal(await kms.getKeyring('Not A Name'), undefined);
  await kms.ensureKeyring('tokens', { type: 'ed25519' });
  assert.deepEqual((await kms.listKeyrings()).map((k) => k.name), ['payments', 'tokens']);
});

test('concurrent ensureKeyring calls create one keyring', async () => {
  const { kms, store } = await openKms();
  const all = await Promise.all(Array.from({ length: 10 }, () => kms.ensureKeyring('k')));
  assert.equal(new Set(all.map((k) => JSON.stringify(k))).size, 1);
  assert.equal((await store.list(NS.kmsKeyVersions)).length, 1);
});

test('key material is stored only wrapped, and the ciphertext is exactly AES-256-GCM over the documented AAD', async () => {
  const { kms, store, wrapper } = await openKms();
  await kms.ensureKeyring('payments');
  const c = await kms.encrypt('payments', card, ctx);
  const rec = await store.get<Record<string, unknown>>(NS.kmsKeyVersions, 'payments/1');
  assert.deepEqual(Object.keys(rec ?? {}).sort(), ['createdAt', 'keyring', 'version', 'wrapped']);
  assert.match(String(rec?.wrapped), /^pcl:v1:/);
  const key = await rawKey(store, wrapper, 'payments', 1);
  assert.equal(key.length, 32);
  const everything = JSON.stringify([await store.list(NS.kmsKeyrings), await store.list(NS.kmsKeyVersions), await store.list(NS.kmsUsage)]);
  for (const enc of ['hex', 'base64', 'base64url'] as const) assert.ok(!everything.includes(key.toString(enc)), `key in store as ${enc}`);
  // An independent decryption with the raw key and the documented associated data.
  const p = parseCiphertext(c);
  assert.equal(p.payload.length, 12 + card.length + 16);
  assert.deepEqual(openPayload(key, p.payload, associatedData('payments', 1, ctx)), card);
  assert.equal(openPayload(key, p.payload, associatedData('payments', 1)), undefined);
  assert.equal(openPayload(key, p.payload, associatedData('payments', 2, ctx)), undefined);
  assert.equal(openPayload(key, p.payload, associatedData('other', 1, ctx)), undefined);
});

test('encrypt/decrypt round trip; context must match; no context equals {}', async () => {
  const { kms } = await openKms();
  await kms.ensureKeyring('k');
  const c = await kms.encrypt('k', card, ctx);
  assert.match(c, /^pcl:k:v1:[A-Za-z0-9_-]+$/);
  assert.deepEqual(await kms.decrypt(c, { field: 'card', tenant: 't1' }), card);
  assert.deepEqual(await kms.decrypt(c, ctx, 'k'), card);
  assert.notEqual(await kms.encrypt('k', card, ctx), c, 'fresh nonce each time');
  const plain = await kms.encrypt('k', Buffer.alloc(0));
  assert.deepEqual(await kms.decrypt(plain, {}), Buffer.alloc(0));
  assert.deepEqual(await kms.decrypt(await kms.encrypt('k', card, {}), undefined), card);
  const wrongs: (KmsContext | undefined)[] = [undefined, {}, { tenant: 't2', field: 'card' }, { tenant: 't1' }, { tenant: 't1', field: 'card', x: '' }];
  for (const wrong of wrongs) {
    assert.equal((await rejection(kms.decrypt(c, wrong))).code, 'PCL_ERR_KMS_CIPHERTEXT_INVALID');
  }
  const max = Buffer.alloc(MAX_PLAINTEXT_BYTES, 1);
  assert.deepEqual(await kms.decrypt(await kms.encrypt('k', max)), max);
  assert.equal((await rejection(kms.encrypt('k', Buffer.alloc(MAX_PLAINTEXT_BYTES + 1)))).code, 'PCL_ERR_INVALID_ARGUMENT');
  assert.equal((await rejection(kms.encrypt('k', 'text' as unknown as Buffer))).code, 'PCL_ERR_INVALID_ARGUMENT'); // deliberately ill-typed
  assert.deepEqual(await kms.decrypt(await kms.encrypt('k', new Uint8Array([1, 2]) as Buffer)), Buffer.from([1, 2])); // a Uint8Array is accepted as well
});

test('bad ciphertexts: one coded refusal each, in a fixed order, never showing plaintext or key', async () => {
  const { kms, store, wrapper } = await openKms();
  await kms.ensureKeyring('k');
  await kms.ensureKeyring('other');
  await kms.ensureKeyring('mac', { type: 'hmac-sha256' });
  const c = await kms.encrypt('k', card, ctx);
  const b64 = c.slice('pcl:k:v1:'.length);
  const raw = Buffer.from(b64, 'base64url');
  const flip = (i: number): string => {
    const b = Buffer.from(raw);
    b[i] = (b[i] ?? 0) ^ 0x01;
    return 'pcl:k:v1:' + b.toString('base64url');
  };
  const errors: unknown[] = [];
  const expectCode = async (p: Promise<unknown>, code: string, what: string): Promise<void> => {
    const err = await rejection(p);
    errors.push(err);
    assert.equal(err.code, code, what);
  };
  const INVALID = 'PCL_ERR_KMS_CIPHERTEXT_INVALID';
  await expectCode(kms.decrypt(flip(0), ctx), INVALID, 'nonce tampered');
  await expectCode(kms.decrypt(flip(14), ctx), INVALID, 'body tampered');
  await expectCode(kms.decrypt(flip(raw.length - 1), ctx), INVALID, 'tag tampered');
  await expectCode(kms.decrypt(c.slice(0, -1), ctx), INVALID, 'one character short');
  await expectCode(kms.decrypt('pcl:k:v1:' + raw.subarray(0, raw.length - 1).toString('base64url'), ctx), INVALID, 'truncated by a byte');
  await expectCode(kms.decrypt('pcl:k:v1:' + raw.subarray(0, 27).toString('base64url'), ctx), INVALID, 'shorter than nonce + tag');
  await expectCode(kms.decrypt('pcl:k:v1:', ctx), INVALID, 'empty payload');
  await expectCode(kms.decrypt(c + '=', ctx), INVALID, 'padded with =');
  await expectCode(kms.decrypt('pcl:k:v1:' + Buffer.concat([raw, Buffer.alloc(3)]).toString('base64url'), ctx), INVALID, 'padded with bytes');
  await expectCode(kms.decrypt(c.replace('pcl:k:', 'pcl:other:'), ctx), INVALID, 'moved to another keyring');
  await expectCode(kms.decrypt(c, ctx, 'other'), INVALID, 'expectKeyring differs');
  await expectCode(kms.decrypt(c.replace(':v1:', ':v2:'), ctx), INVALID, 'unknown version');
  await expectCode(kms.decrypt(c.replace(':v1:', ':v999999999:'), ctx), INVALID, 'far unknown version');
  await expectCode(kms.decrypt(c.replace('pcl:k:', 'pcl:nope:'), ctx), 'PCL_ERR_KMS_KEYRING_NOT_FOUND', 'unknown keyring');
  await expectCode(kms.decrypt(c.replace('pcl:k:', 'pcl:mac:'), ctx), 'PCL_ERR_KMS_KEYRING_TYPE', 'an hmac keyring cannot decrypt');
  await expectCode(kms.decrypt(c, { n: 1 } as unknown as KmsContext), 'PCL_ERR_INVALID_ARGUMENT', 'bad context'); // deliberately ill-typed
  await kms.rotate('k');
  // Moved to the new version's prefix: the key differs, and the AAD names the version anyway.
  await expectCode(kms.decrypt(c.replace(':v1:', ':v2:'), ctx), INVALID, 'moved to another version');
  await kms.setMinDecryptionVersion('k', 2);
  await expectCode(kms.decrypt(c, ctx), 'PCL_ERR_KMS_VERSION_RETIRED', 'retired');

  // The order of checks: context, format, expected keyring, keyring, type, retired, known version, authentication.
  await expectCode(kms.decrypt('garbage', { n: 1 } as unknown as KmsContext), 'PCL_ERR_INVALID_ARGUMENT', 'context before format'); // deliberately ill-typed
  await expectCode(kms.decrypt('pcl:nope:v1:AAAA=', ctx), INVALID, 'format before keyring');
  await expectCode(kms.decrypt('pcl:nope:v1:AAAA', ctx, 'k'), INVALID, 'expected keyring before keyring lookup');
  await expectCode(kms.decrypt('pcl:mac:v9:AAAA', ctx), 'PCL_ERR_KMS_KEYRING_TYPE', 'type before version');
  await expectCode(kms.decrypt(flip(14), ctx), 'PCL_ERR_KMS_VERSION_RETIRED', 'retired before authentication');

  // Nothing secret in any of them, and the client-facing form is identical for every invalid one.
  const key1 = await rawKey(store, wrapper, 'k', 1);
  const key2 = await rawKey(store, wrapper, 'k', 2);
  for (const err of errors) {
    const text = errorText(err);
    for (const secret of [card.toString('utf8'), '4111', card.toString('hex'), card.toString('base64'), ...[key1, key2].flatMap((k) => [k.toString('hex'), k.toString('base64'), k.toString('base64url')])]) {
      assert.ok(!text.includes(secret), `error text contains a secret: ${text}`);
    }
  }
  const publics = new Set(errors.filter((e) => (e as { code: string }).code === INVALID).map((e) => JSON.stringify((e as { toPublicJSON: () => unknown }).toPublicJSON()))); // all PortcullisErrors (rejection checked)
  assert.deepEqual([...publics], [JSON.stringify({ error: { code: INVALID, message: 'ciphertext cannot be decrypted' } })]);
});

test('operations refuse keyrings of the wrong type and unknown keyrings', async () => {
  const { kms } = await openKms();
  await kms.ensureKeyring('aes');
  await kms.ensureKeyring('mac', { type: 'hmac-sha256' });
  await kms.ensureKeyring('sig', { type: 'ecdsa-p256' });
  const TYPE = 'PCL_ERR_KMS_KEYRING_TYPE';
  const data = Buffer.from('x');
  assert.equal((await rejection(kms.encrypt('mac', data))).code, TYPE);
  assert.equal((await rejection(kms.generateDataKey('sig'))).code, TYPE);
  assert.equal((await rejection(kms.hmac('aes', data))).code, TYPE);
  assert.equal((await rejection(kms.verifyHmac('sig', data, 'x'))).code, TYPE);
  assert.equal((await rejection(kms.sign('mac', data))).code, TYPE);
  assert.equal((await rejection(kms.verify('aes', data, 'x'))).code, TYPE);
  assert.equal((await rejection(kms.publicKeys('aes'))).code, TYPE);
  for (const p of [kms.encrypt('none', data), kms.hmac('none', data), kms.sign('none', data), kms.rotate('none'), kms.setMinDecryptionVersion('none', 1), kms.publicKeys('none')]) {
    assert.equal((await rejection(p)).code, 'PCL_ERR_KMS_KEYRING_NOT_FOUND');
  }
  assert.equal((await rejection(kms.encrypt('Bad Name', data))).code, 'PCL_ERR_INVALID_ARGUMENT');
});

test('manual rotation: old versions keep decrypting, new messages use the latest; rewrap moves them', async () => {
  const { kms } = await openKms();
  const log = auditLog();
  await kms.ensureKeyring('k');
  const v1 = await kms.encrypt('k', card, ctx);
  const info = await kms.rotate('k');
  assert.equal(info.latestVersion, 2);
  assert.deepEqual(info.versions.map((v) => v.version), [1, 2]);
  const v2 = await kms.encrypt('k', card, ctx);
  assert.match(v2, /^pcl:k:v2:/);
  assert.deepEqual(await kms.decrypt(v1, ctx), card);
  const moved = await kms.rewrap(v1, ctx);
  assert.match(moved, /^pcl:k:v2:/);
  assert.deepEqual(await kms.decrypt(moved, ctx), card);
  assert.equal(await kms.rewrap(v2, ctx), v2, 'already at the latest version: returned unchanged');
  assert.equal(await kms.rewrap(moved, ctx, 'k'), moved);
  assert.equal((await rejection(kms.rewrap(v1, { tenant: 't2' }))).code, 'PCL_ERR_KMS_CIPHERTEXT_INVALID');
  assert.equal((await rejection(kms.rewrap(v2.slice(0, -2), ctx))).code, 'PCL_ERR_KMS_CIPHERTEXT_INVALID', 'a broken ciphertext at the latest version is not passed through');
  assert.equal((await rejection(kms.rewrap(v1, ctx, 'other'))).code, 'PCL_ERR_KMS_CIPHERTEXT_INVALID');
  log.stop();
  const rotations = log.events.filter((e) => e.action === 'kms.keyring.rotate');
  assert.deepEqual(rotations.map((e) => e.detail), [{ keyring: 'k', version: 2, reason: 'manual' }]);
});

test('minimum decryption version retires old versions, can be lowered again, and is validated', async () => {
  const { kms } = await openKms();
  await kms.ensureKeyring('k');
  const v1 = await kms.encrypt('k', card);
  await kms.rotate('k');
  for (const bad of [0, -1, 1.5, 3, Number.NaN]) assert.equal((await rejection(kms.setMinDecryptionVersion('k', bad))).code, 'PCL_ERR_INVALID_ARGUMENT', String(bad));
  assert.equal((await kms.setMinDecryptionVersion('k', 2)).minDecryptionVersion, 2);
  assert.equal((await rejection(kms.decrypt(v1))).code, 'PCL_ERR_KMS_VERSION_RETIRED');
  assert.equal((await rejection(kms.rewrap(v1))).code, 'PCL_ERR_KMS_VERSION_RETIRED');
  await kms.setMinDecryptionVersion('k', 1);
  assert.deepEqual(await kms.decrypt(v1), card);
});

test('scheduled rotation on the fake clock; stop() ends it; the audit names the reason', async () => {
  const { kms, clock } = await openKms();
  const log = auditLog();
  const created = await kms.ensureKeyring('k', { rotationPeriodMs: DAY });
  assert.equal(created.nextRotationAt, new Date(clock.now() + DAY).toISOString());
  await kms.ensureKeyring('manual');
  const before = await kms.encrypt('k', card);
  kms.start();
  await clock.advance(DAY - 1);
  assert.equal((await kms.getKeyring('k'))?.latestVersion, 1);
  await clock.advance(1);
  await kms.idle();
  assert.equal((await kms.getKeyring('k'))?.latestVersion, 2);
  await clock.advance(3 * DAY);
  await kms.idle();
  const info = await kms.getKeyring('k');
  assert.equal(info?.latestVersion, 5);
  assert.equal(info?.nextRotationAt, new Date(clock.now() + DAY).toISOString());
  assert.equal((await kms.getKeyring('manual'))?.latestVersion, 1, 'a keyring without a period is never rotated');
  assert.deepEqual(await kms.decrypt(before), card);
  // A manual rotation restarts the period.
  await clock.advance(DAY / 2);
  await kms.rotate('k');
  await clock.advance(DAY / 2 + 1);
  assert.equal((await kms.getKeyring('k'))?.latestVersion, 6);
  // Changing the period re-arms the timer.
  await kms.setRotationPeriod('k', 2 * DAY);
  await clock.advance(DAY);
  assert.equal((await kms.getKeyring('k'))?.latestVersion, 6);
  await clock.advance(DAY);
  await kms.idle();
  assert.equal((await kms.getKeyring('k'))?.latestVersion, 7);
  await kms.setRotationPeriod('k', undefined);
  assert.equal((await kms.getKeyring('k'))?.nextRotationAt, undefined);
  await kms.setRotationPeriod('k', DAY);
  kms.stop();
  assert.equal(clock.pendingTimers(), 0);
  await clock.advance(10 * DAY);
  assert.equal((await kms.getKeyring('k'))?.latestVersion, 7);
  log.stop();
  const scheduled = log.events.filter((e) => e.action === 'kms.keyring.rotate' && e.detail.reason === 'scheduled');
  assert.equal(scheduled.length, 5);
  assert.ok(scheduled.every((e) => e.outcome === 'success' && e.detail.keyring === 'k'));
});

test('a keyring due while the process was down rotates once at start', async () => {
  const store = new MemoryStore();
  const wrapper = newWrapper();
  const first = await openKms({ store, wrapper });
  await first.kms.ensureKeyring('k', { rotationPeriodMs: DAY });
  await first.clock.advance(5 * DAY);
  const { kms, clock } = await openKms({ store, wrapper, clock: first.clock });
  kms.start();
  await clock.advance(0);
  await kms.idle();
  assert.equal((await kms.getKeyring('k'))?.latestVersion, 2);
  kms.stop();
});

test('a failed scheduled rotation is audited and retried later, not in a tight loop', async () => {
  const store = new FailingStore(new MemoryStore());
  const { kms, clock } = await openKms({ store });
  await kms.ensureKeyring('k', { rotationPeriodMs: DAY });
  const log = auditLog();
  store.failWhen = (op, ns) => op === 'insert' && ns === NS.kmsKeyVersions;
  kms.start();
  await clock.advance(DAY);
  await kms.idle();
  assert.equal((await kms.getKeyring('k'))?.latestVersion, 1);
  await clock.advance(30_000);
  store.failWhen = () => false;
  await clock.advance(30_000);
  await kms.idle();
  kms.stop();
  log.stop();
  assert.equal((await kms.getKeyring('k'))?.latestVersion, 2);
  const outcomes = log.events.filter((e) => e.action === 'kms.keyring.rotate').map((e) => `${e.outcome}:${String(e.detail.code ?? '')}`);
  assert.deepEqual(outcomes, ['failure:PCL_ERR_STORE', 'success:']);
});

test('the usage limit forces a rotation before the next message; counts are exact within one process', async () => {
  const { kms } = await openKms({ usageLimit: 5, usageReserveBlock: 2 });
  const log = auditLog();
  await kms.ensureKeyring('k');
  const cts: string[] = [];
  for (let i = 0; i < 12; i++) cts.push(await kms.encrypt('k', Buffer.from([i])));
  assert.deepEqual(cts.map((c) => parseCiphertext(c).version), [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3]);
  const info = await kms.getKeyring('k');
  assert.deepEqual(info?.versions.map((v) => v.usage), [5, 5, 2]);
  for (const [i, c] of cts.entries()) assert.deepEqual(await kms.decrypt(c), Buffer.from([i]));
  log.stop();
  assert.deepEqual(log.events.filter((e) => e.action === 'kms.keyring.rotate').map((e) => e.detail.reason), ['usage-limit', 'usage-limit']);
});

test('concurrent encryptions never pass the usage limit of any version', async () => {
  const { kms } = await openKms({ usageLimit: 7, usageReserveBlock: 3 });
  await kms.ensureKeyring('k');
  const cts = await Promise.all(Array.from({ length: 100 }, (_, i) => kms.encrypt('k', Buffer.from(String(i)))));
  const perVersion = new Map<number, number>();
  for (const c of cts) {
    const v = parseCiphertext(c).version;
    perVersion.set(v, (perVersion.get(v) ?? 0) + 1);
  }
  assert.ok([...perVersion.values()].every((n) => n <= 7), JSON.stringify([...perVersion]));
  const info = await kms.getKeyring('k');
  assert.equal(info?.versions.reduce((s, v) => s + v.usage, 0), 100);
  for (const [i, c] of cts.entries()) assert.equal((await kms.decrypt(c)).toString(), String(i));
});

test('usage counters survive crashes: reopened, the count never goes back and no version passes its limit', async () => {
  const store = new MemoryStore();
  const wrapper = newWrapper();
  const limit = 10;
  let lastUsage = 0;
  const perVersion = new Map<number, number>();
  for (let life = 0; life < 12; life++) {
    // Each "life" opens a KeyManager, encrypts a little and is dropped without any shutdown: a crash.
    const { kms } = await openKms({ store, wrapper, usageLimit: limit, usageReserveBlock: 4 });
    await kms.ensureKeyring('k');
    const before = (await kms.getKeyring('k'))?.versions.reduce((s, v) => s + v.usage, 0) ?? 0;
    assert.ok(before >= lastUsage, `usage went back from ${lastUsage} to ${before}`);
    for (let i = 0; i < 3; i++) {
      const v = parseCiphertext(await kms.encrypt('k', Buffer.from('m'))).version;
      perVersion.set(v, (perVersion.get(v) ?? 0) + 1);
    }
    lastUsage = (await kms.getKeyring('k'))?.versions.reduce((s, v) => s + v.usage, 0) ?? 0;
    assert.ok(lastUsage >= before + 3);
  }
  assert.ok([...perVersion.values()].every((n) => n <= limit));
  // Reservations were persisted ahead of use.
  for (const { key, value } of await store.list<{ reserved: number }>(NS.kmsUsage)) {
    const used = perVersion.get(Number(key.split('/')[1])) ?? 0;
    assert.ok(value.reserved >= used, `${key}: reserved ${value.reserved} < used ${used}`);
  }
});

test('the hot path writes the store once per reserved block, not per message', async () => {
  const store = new FailingStore(new MemoryStore());
  let puts = 0;
  store.failWhen = (op) => { if (op === 'put') puts++; return false; };
  const { kms } = await openKms({ store, usageReserveBlock: 1000 });
  await kms.ensureKeyring('k');
  puts = 0;
  for (let i = 0; i < 2500; i++) await kms.encrypt('k', card);
  assert.ok(puts <= 3, `${puts} store writes for 2500 messages`);
  const r = await store.get<{ reserved: number }>(NS.kmsUsage, 'k/1');
  assert.ok((r?.reserved ?? 0) >= 2500);
});

test('a failing reservation write fails encryption (no message beyond what is persisted)', async () => {
  const store = new FailingStore(new MemoryStore());
  const { kms } = await openKms({ store, usageReserveBlock: 4 });
  await kms.ensureKeyring('k');
  store.failWhen = (op, ns) => op === 'put' && ns === NS.kmsUsage;
  const results = await Promise.allSettled(Array.from({ length: 6 }, () => kms.encrypt('k', card)));
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 4);
  assert.ok(results.filter((r) => r.status === 'rejected').every((r) => (r.reason as { code: string }).code === 'PCL_ERR_STORE')); // rejected with PortcullisErrors
  store.failWhen = () => false;
  await kms.encrypt('k', card);
});

test('persistence: reopened with the same root key everything decrypts; another root key cannot open', async () => {
  const store = new MemoryStore();
  const wrapper = newWrapper();
  const a = await openKms({ store, wrapper });
  await a.kms.ensureKeyring('k', { rotationPeriodMs: DAY });
  await a.kms.ensureKeyring('mac', { type: 'hmac-sha256' });
  await a.kms.ensureKeyring('sig', { type: 'ecdsa-p256' });
  await a.kms.ensureKeyring('ed', { type: 'ed25519' });
  const c1 = await a.kms.encrypt('k', card, ctx);
  await a.kms.rotate('k');
  const c2 = await a.kms.encrypt('k', card, ctx);
  await a.kms.setMinDecryptionVersion('k', 2);
  const mac = await a.kms.hmac('mac', card);
  const sig = await a.kms.sign('sig', card);
  const ed = await a.kms.sign('ed', card);
  const crashed = await openKms({ store, wrapper });
  const usage = async (k: KeyManager): Promise<number[]> => (await k.getKeyring('k'))?.versions.map((v) => v.usage) ?? [];
  assert.deepEqual(await usage(crashed.kms), [65536, 65536], 'without close(), usage is the reservation: an upper bound');
  await a.kms.close();
  const b = await openKms({ store, wrapper });
  assert.deepEqual(await usage(b.kms), [1, 1], 'after close(), exact');
  assert.deepEqual(await b.kms.listKeyrings(), await a.kms.listKeyrings());
  assert.deepEqual(await b.kms.decrypt(c2, ctx), card);
  assert.equal((await rejection(b.kms.decrypt(c1, ctx))).code, 'PCL_ERR_KMS_VERSION_RETIRED');
  assert.equal(await b.kms.verifyHmac('mac', card, mac), true);
  assert.equal(await b.kms.verify('sig', card, sig), true);
  assert.equal(await b.kms.verify('ed', card, ed), true);
  assert.deepEqual(await b.kms.publicKeys('sig'), await a.kms.publicKeys('sig'));
  assert.equal((await rejection(KeyManager.open({ store, wrapper: newWrapper() }))).code, 'PCL_ERR_KEY_UNWRAP');
});

test('tampered key records do not load: swapped between keyrings, or a changed type', async () => {
  const store = new MemoryStore();
  const wrapper = newWrapper();
  const { kms } = await openKms({ store, wrapper });
  await kms.ensureKeyring('a');
  await kms.ensureKeyring('b');
  const a1 = await store.get<Record<string, unknown>>(NS.kmsKeyVersions, 'a/1');
  const b1 = await store.get<Record<string, unknown>>(NS.kmsKeyVersions, 'b/1');
  await store.put(NS.kmsKeyVersions, 'b/1', { ...b1, wrapped: a1?.wrapped });
  assert.equal((await rejection(KeyManager.open({ store, wrapper }))).code, 'PCL_ERR_KEY_UNWRAP');
  await store.put(NS.kmsKeyVersions, 'b/1', b1);
  const rec = await store.get<Record<string, unknown>>(NS.kmsKeyrings, 'b');
  await store.put(NS.kmsKeyrings, 'b', { ...rec, type: 'hmac-sha256' });
  assert.equal((await rejection(KeyManager.open({ store, wrapper }))).code, 'PCL_ERR_KEY_UNWRAP');
  await store.put(NS.kmsKeyrings, 'b', { ...rec, latestVersion: 2 });
  assert.equal((await rejection(KeyManager.open({ store, wrapper }))).code, 'PCL_ERR_STORE', 'a version record missing');
  await store.put(NS.kmsKeyrings, 'b', { ...rec, latestVersion: '1' });
  assert.equal((await rejection(KeyManager.open({ store, wrapper }))).code, 'PCL_ERR_STORE', 'malformed record');
});

test('an interrupted rotation leaves every record readable, and the next rotation completes it', async () => {
  const inner = new MemoryStore();
  const store = new FailingStore(inner);
  const wrapper = newWrapper();
  const { kms } = await openKms({ store, wrapper });
  await kms.ensureKeyring('k');
  const old = await Promise.all(Array.from({ length: 20 }, (_, i) => kms.encrypt('k', Buffer.from(String(i)), ctx)));
  // The crash point: the new version is written, `latestVersion` is not moved.
  store.failWhen = (op, ns) => op === 'put' && ns === NS.kmsKeyrings;
  assert.equal((await rejection(kms.rotate('k'))).code, 'PCL_ERR_STORE');
  store.failWhen = () => false;
  assert.ok(await inner.get(NS.kmsKeyVersions, 'k/2'), 'the new version record was written');
  assert.equal((await kms.getKeyring('k'))?.latestVersion, 1);
  for (const [i, c] of old.entries()) assert.equal((await kms.decrypt(c, ctx)).toString(), String(i));
  assert.match(await kms.encrypt('k', card), /^pcl:k:v1:/);
  // A process started now sees version 1 as the latest, and everything still decrypts.
  const after = await openKms({ store: inner, wrapper });
  assert.equal((await after.kms.getKeyring('k'))?.latestVersion, 1);
  for (const [i, c] of old.entries()) assert.equal((await after.kms.decrypt(c, ctx)).toString(), String(i));
  // The next rotation adopts the version already written instead of failing on it.
  const v2 = (await inner.get<{ wrapped: string }>(NS.kmsKeyVersions, 'k/2'))?.wrapped;
  assert.equal((await after.kms.rotate('k')).latestVersion, 2);
  assert.equal((await inner.get<{ wrapped: string }>(NS.kmsKeyVersions, 'k/2'))?.wrapped, v2);
  const c2 = await after.kms.encrypt('k', card);
  assert.deepEqual(await (await openKms({ store: inner, wrapper })).kms.decrypt(c2), card);
});

test('two processes on one store: versions and keyrings made by one are found by the other', async () => {
  const store = new MemoryStore();
  const wrapper = newWrapper();
  const a = await openKms({ store, wrapper });
  const b = await openKms({ store, wrapper });
  await a.kms.ensureKeyring('k');
  const fromB = await b.kms.encrypt('k', card);
  await a.kms.rotate('k');
  const fromA = await a.kms.encrypt('k', card, ctx);
  assert.deepEqual(await b.kms.decrypt(fromA, ctx), card, 'b loads version 2 on first sight');
  assert.deepEqual(await a.kms.decrypt(fromB), card);
  assert.equal((await b.kms.getKeyring('k'))?.latestVersion, 2);
  assert.equal((await rejection(b.kms.decrypt(fromA.replace(':v2:', ':v3:'), ctx))).code, 'PCL_ERR_KMS_CIPHERTEXT_INVALID');
});

test('generateDataKey: 32 random bytes, and the same key wrapped under the keyring with its context', async () => {
  const { kms } = await openKms();
  await kms.ensureKeyring('k');
  const dk = await kms.generateDataKey('k', { use: 'field-key' });
  assert.equal(dk.plaintext.length, 32);
  assert.match(dk.ciphertext, /^pcl:k:v1:/);
  assert.deepEqual(await kms.decrypt(dk.ciphertext, { use: 'field-key' }), dk.plaintext);
  assert.equal((await rejection(kms.decrypt(dk.ciphertext))).code, 'PCL_ERR_KMS_CIPHERTEXT_INVALID');
  const other = await kms.generateDataKey('k');
  assert.notDeepEqual(other.plaintext, dk.plaintext);
});

test('hmac: round trip, refusals, rotation, retirement; equals HMAC-SHA256 under the stored key', async () => {
  const { kms, store, wrapper } = await openKms();
  await kms.ensureKeyring('mac', { type: 'hmac-sha256' });
  await kms.ensureKeyring('mac2', { type: 'hmac-sha256' });
  const data = Buffer.from('order=42&amount=100');
  const mac = await kms.hmac('mac', data);
  assert.match(mac, /^pcl:mac:v1:[A-Za-z0-9_-]{43}$/);
  const key = await rawKey(store, wrapper, 'mac', 1, 'hmac-sha256');
  assert.equal(mac, formatCiphertext('mac', 1, createHmac('sha256', key).update(data).digest()));
  assert.equal(await kms.verifyHmac('mac', data, mac), true);
  assert.equal(await kms.hmac('mac', data), mac, 'deterministic');
  assert.equal(await kms.verifyHmac('mac', Buffer.from('order=42&amount=1000'), mac), false);
  const raw = parseCiphertext(mac).payload;
  raw[0] = (raw[0] ?? 0) ^ 1;
  for (const bad of [formatCiphertext('mac', 1, raw), mac.slice(0, -1), mac + 'A', 'nonsense', '', mac.replace(':v1:', ':v7:'), mac.replace('pcl:mac:', 'pcl:mac2:'), formatCiphertext('mac', 1, Buffer.alloc(0))]) {
    assert.equal(await kms.verifyHmac('mac', data, bad), false, bad);
  }
  assert.equal(await kms.verifyHmac('mac2', data, mac), false, 'a MAC of another keyring');
  await kms.rotate('mac');
  const mac2 = await kms.hmac('mac', data);
  assert.match(mac2, /^pcl:mac:v2:/);
  assert.equal(await kms.verifyHmac('mac', data, mac), true, 'old version still verifies');
  await kms.setMinDecryptionVersion('mac', 2);
  assert.equal((await rejection(kms.verifyHmac('mac', data, mac))).code, 'PCL_ERR_KMS_VERSION_RETIRED');
  assert.equal(await kms.verifyHmac('mac', data, mac2), true);
});

for (const type of ['ecdsa-p256', 'ed25519'] as const) {
  test(`sign/verify with ${type}: round trip, refusals, rotation, public keys that verify outside the KMS`, async () => {
    const { createPublicKey, verify } = await import('node:crypto');
    const { kms } = await openKms();
    await kms.ensureKeyring('sig', { type });
    const data = Buffer.from('release v1.2.3');
    const sig = await kms.sign('sig', data);
    const p = parseCiphertext(sig);
    assert.equal(p.payload.length, 64, 'P1363 r‖s for ECDSA, and Ed25519 signatures, are 64 bytes');
    assert.equal(await kms.verify('sig', data, sig), true);
    assert.equal(await kms.verify('sig', Buffer.from('release v1.2.4'), sig), false);
    const bent = Buffer.from(p.payload);
    bent[10] = (bent[10] ?? 0) ^ 1;
    for (const bad of [formatCiphertext('sig', 1, bent), sig.slice(0, -2), 'x', sig.replace(':v1:', ':v2:'), sig.replace('pcl:sig:', 'pcl:sag:')]) {
      assert.equal(await kms.verify('sig', data, bad), false, bad);
    }
    const [pub] = await kms.publicKeys('sig');
    assert.ok(pub);
    assert.match(pub.pem, /^-----BEGIN PUBLIC KEY-----/);
    const key = createPublicKey(pub.pem);
    const ok = type === 'ed25519' ? verify(null, data, key, p.payload) : verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, p.payload);
    assert.equal(ok, true, 'verifies with node:crypto and the published key');
    await kms.rotate('sig');
    const sig2 = await kms.sign('sig', data);
    assert.match(sig2, /^pcl:sig:v2:/);
    assert.equal(await kms.verify('sig', data, sig), true);
    assert.deepEqual((await kms.publicKeys('sig')).map((k) => k.version), [1, 2]);
    await kms.setMinDecryptionVersion('sig', 2);
    assert.deepEqual((await kms.publicKeys('sig')).map((k) => k.version), [2]);
    assert.equal((await rejection(kms.verify('sig', data, sig))).code, 'PCL_ERR_KMS_VERSION_RETIRED');
    assert.equal((await rejection(kms.sign('sig', 'text' as unknown as Buffer))).code, 'PCL_ERR_INVALID_ARGUMENT'); // deliberately ill-typed
  });
}

test('audit events of the KMS never carry key material or plaintext', async () => {
  const log = auditLog();
  const { kms, store, wrapper } = await openKms({ usageLimit: 2 });
  await kms.ensureKeyring('k', { rotationPeriodMs: DAY });
  for (let i = 0; i < 5; i++) await kms.encrypt('k', card);
  await kms.setMinDecryptionVersion('k', 2);
  log.stop();
  assert.ok(log.events.length >= 4);
  const text = JSON.stringify(log.events);
  assert.ok(!text.includes('4111'));
  for (let v = 1; v <= 3; v++) {
    const key = await rawKey(store, wrapper, 'k', v);
    for (const enc of ['hex', 'base64', 'base64url'] as const) assert.ok(!text.includes(key.toString(enc)));
  }
});

test('options are validated at open', async () => {
  for (const o of [{ usageLimit: 0 }, { usageLimit: 2 ** 32 + 1 }, { usageLimit: 1.5 }, { usageReserveBlock: 0 }]) {
    assert.equal((await rejection(KeyManager.open({ store: new MemoryStore(), wrapper: newWrapper(), ...o }))).code, 'PCL_ERR_INVALID_ARGUMENT');
  }
});

test('the embedded PostgreSQL store round-trips the records (JSON columns, insert-only versions)', async () => {
  const { PgliteStore } = await import('../../src/store/pglite.js');
  const store = await PgliteStore.open();
  try {
    const wrapper = newWrapper();
    const a = await openKms({ store, wrapper, usageReserveBlock: 3 });
    await a.kms.ensureKeyring('k', { rotationPeriodMs: DAY });
    const cts = [];
    for (let i = 0; i < 5; i++) cts.push(await a.kms.encrypt('k', card, ctx));
    await a.kms.rotate('k');
    cts.push(await a.kms.encrypt('k', card, ctx));
    await a.kms.idle();
    const b = await openKms({ store, wrapper });
    const info = await b.kms.getKeyring('k');
    assert.equal(info?.latestVersion, 2);
    assert.ok((info?.versions[0]?.usage ?? 0) >= 5);
    for (const c of cts) assert.deepEqual(await b.kms.decrypt(c, ctx), card);
  } finally {
    await store.close();
  }
});
