// Round-trip properties over random payloads (0 B to 64 KiB), random contexts and versions across
// rotations, with a seeded PRNG: a failure prints its seed, and PCL_TEST_SEED=<seed> replays it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCiphertext } from '../../src/kms/ciphertext.js';
import type { KmsContext } from '../../src/kms/types.js';
import { openKms, Prng, seedFromEnv } from './helpers.js';

const SIZES = [0, 1, 2, 11, 12, 15, 16, 17, 31, 32, 33, 255, 256, 1023, 1024, 4096, 65535, 65536];
const ALPHABET = ['a', 'b', '=', ',', ':', '\u0000', 'é', '\u{1F600}', 'z', '0'];

function randomString(r: Prng, max: number): string {
  let s = '';
  for (let n = r.int(max + 1); n > 0; n--) s += r.pick(ALPHABET);
  return s;
}

function randomContext(r: Prng): KmsContext | undefined {
  if (r.int(4) === 0) return undefined;
  const ctx: Record<string, string> = {};
  for (let n = r.int(5); n > 0; n--) ctx[randomString(r, 6) || 'k'] = randomString(r, 12);
  return ctx;
}

/** A different context: one value changed, one entry added, or one removed. */
function otherContext(r: Prng, ctx: KmsContext | undefined): KmsContext {
  const c: Record<string, string> = { ...ctx };
  const keys = Object.keys(c);
  const key = keys.length > 0 && r.int(2) === 0 ? r.pick(keys) : undefined;
  if (key === undefined) c[`extra${r.int(1000)}`] = randomString(r, 3);
  else if (r.int(2) === 0) delete c[key];
  else c[key] = (c[key] ?? '') + 'x';
  return c;
}

test('property: every ciphertext decrypts to its plaintext with its context, across rotations', async () => {
  const seed = seedFromEnv();
  const r = new Prng(seed);
  const { kms } = await openKms({ usageLimit: 40, usageReserveBlock: 7 });
  const rings = ['a', 'b.c', 'd-e_f'];
  for (const name of rings) await kms.ensureKeyring(name);
  const made: { ct: string; pt: Buffer; ctx: KmsContext | undefined; ring: string }[] = [];
  for (let i = 0; i < 400; i++) {
    const ring = r.pick(rings);
    if (r.int(25) === 0) await kms.rotate(ring);
    const size = r.int(3) === 0 ? r.pick(SIZES) : r.int(2048);
    const pt = r.bytes(size);
    const ctx = randomContext(r);
    const ct = await kms.encrypt(ring, pt, ctx);
    made.push({ ct, pt, ctx, ring });
  }
  const versions = new Set(made.map((m) => `${m.ring}:${parseCiphertext(m.ct).version}`));
  assert.ok(versions.size >= 9, `seed ${seed}: too few versions exercised (${versions.size})`);
  for (const m of made) {
    assert.deepEqual(await kms.decrypt(m.ct, m.ctx, m.ring), m.pt, `seed ${seed}`);
    const rewrapped = await kms.rewrap(m.ct, m.ctx);
    assert.deepEqual(await kms.decrypt(rewrapped, m.ctx), m.pt, `seed ${seed}: rewrap`);
  }
});

test('property: any changed byte, character, context or prefix is refused', async () => {
  const seed = seedFromEnv();
  const r = new Prng(seed);
  const { kms } = await openKms();
  await kms.ensureKeyring('k');
  await kms.ensureKeyring('j');
  await kms.rotate('k');
  const b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  for (let i = 0; i < 300; i++) {
    const pt = r.bytes(r.int(300));
    const ctx = randomContext(r);
    const ct = await kms.encrypt('k', pt, ctx);
    const p = parseCiphertext(ct);
    const kind = r.int(5);
    let bad: Promise<unknown>;
    if (kind === 0) {
      const raw = Buffer.from(p.payload);
      const at = r.int(raw.length);
      raw[at] = (raw[at] ?? 0) ^ (1 + r.int(255));
      bad = kms.decrypt(`pcl:k:v2:${raw.toString('base64url')}`, ctx);
    } else if (kind === 1) {
      const at = 'pcl:k:v2:'.length + r.int(ct.length - 'pcl:k:v2:'.length);
      const ch = ct[at] ?? 'A';
      bad = kms.decrypt(ct.slice(0, at) + b64[(b64.indexOf(ch) + 1 + r.int(63)) % 64] + ct.slice(at + 1), ctx);
    } else if (kind === 2) {
      bad = kms.decrypt(ct, otherContext(r, ctx));
    } else if (kind === 3) {
      bad = kms.decrypt(ct.replace(/^pcl:k:v2:/, r.int(2) === 0 ? 'pcl:k:v1:' : 'pcl:j:v1:'), ctx);
    } else {
      const cut = r.int(p.payload.length);
      bad = kms.decrypt(`pcl:k:v2:${r.int(2) === 0 ? p.payload.subarray(0, cut).toString('base64url') : Buffer.concat([p.payload, r.bytes(1 + r.int(20))]).toString('base64url')}`, ctx);
    }
    await assert.rejects(bad, { code: 'PCL_ERR_KMS_CIPHERTEXT_INVALID' }, `seed ${seed}, case ${i}, kind ${kind}`);
  }
});
