// DPoP proofs (RFC 9449): the RFC's own examples, then jose-made proofs broken one claim at a time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { FakeClock } from '../../../src/core/clock.js';
import { PortcullisError } from '../../../src/core/errors.js';
import { accessTokenHash, canonicalUrl, DpopVerifier, MemoryReplayCache, requestHtu, type DpopRequest } from '../../../src/dataplane/auth/dpop.js';

// RFC 9449 §4.1 (Figure 4, token endpoint) and §7.1 (Figures 13-14, protected resource), one key.
const RFC_JWK = { kty: 'EC', x: 'l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs', y: '9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA', crv: 'P-256' };
const RFC_JKT = '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I';
const RFC_TOKEN = 'Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU';
const RFC_HEADER = 'eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19';
const RFC_RESOURCE_PROOF = `${RFC_HEADER}.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA`;
const RFC_TOKEN_ENDPOINT_PROOF = `${RFC_HEADER}.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg`;

const code = (c: string) => (err: unknown): boolean => {
  assert.ok(err instanceof PortcullisError, String(err));
  assert.equal(err.code, c, err.message);
  return true;
};

test('RFC 9449 examples: the thumbprint and ath of the RFC', async () => {
  assert.equal(await calculateJwkThumbprint(RFC_JWK, 'sha256'), RFC_JKT);
  assert.equal(accessTokenHash(RFC_TOKEN), 'fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo');
});

test('RFC 9449 §7.1: the protected-resource proof verifies at its time, once', async () => {
  const clock = new FakeClock(1562262618_000);
  const v = new DpopVerifier({ clock });
  const req: DpopRequest = { proof: RFC_RESOURCE_PROOF, method: 'GET', url: 'https://resource.example.org/protectedresource', accessToken: RFC_TOKEN, jkt: RFC_JKT };
  assert.deepEqual(await v.verify(req), { jkt: RFC_JKT, jti: 'e1j3V_bKic8-LAEB', iat: 1562262618 });
  await assert.rejects(v.verify(req), code('PCL_ERR_DPOP_INVALID')); // replayed jti
  // Another verifier (fresh replay cache), later than 60 s: stale.
  await assert.rejects(new DpopVerifier({ clock: new FakeClock(1562262679_000) }).verify(req), code('PCL_ERR_DPOP_INVALID'));
});

test('RFC 9449 §4.1: a token-endpoint proof is no proof for a resource (no ath, other htm/htu)', async () => {
  const v = new DpopVerifier({ clock: new FakeClock(1562262616_000) });
  await assert.rejects(v.verify({ proof: RFC_TOKEN_ENDPOINT_PROOF, method: 'POST', url: 'https://server.example.com/token', accessToken: RFC_TOKEN, jkt: RFC_JKT }), code('PCL_ERR_DPOP_INVALID'));
});

// ---- jose-made proofs ----

const NOW = Date.UTC(2030, 0, 1);
const URL_ = 'https://gw.example.test/orders/42';
const TOKEN = 'at-' + 'x'.repeat(40);

interface Holder { privateKey: CryptoKey; jwk: JWK; jkt: string; alg: 'ES256' | 'EdDSA' }
async function holder(alg: 'ES256' | 'EdDSA' = 'ES256'): Promise<Holder> {
  const { privateKey, publicKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256'), alg };
}

interface ProofParts { htm?: string; htu?: string; iat?: number; jti?: string | undefined; ath?: string; typ?: string; jwk?: JWK }
function proof(h: Holder, p: ProofParts = {}): Promise<string> {
  const claims: Record<string, unknown> = {
    htm: p.htm ?? 'GET', htu: p.htu ?? URL_, iat: p.iat ?? NOW / 1000, ath: p.ath ?? accessTokenHash(TOKEN),
    ...('jti' in p ? (p.jti === undefined ? {} : { jti: p.jti }) : { jti: randomUUID() }),
  };
  return new SignJWT(claims).setProtectedHeader({ typ: p.typ ?? 'dpop+jwt', alg: h.alg, jwk: p.jwk ?? h.jwk }).sign(h.privateKey);
}

const setup = (clock = new FakeClock(NOW)) => ({ clock, v: new DpopVerifier({ clock }) });
const check = (h: Holder, prf: string | string[] | undefined, over: Partial<DpopRequest> = {}): DpopRequest =>
  ({ proof: prf, method: 'GET', url: URL_, accessToken: TOKEN, jkt: h.jkt, ...over });

test('a fresh proof by the bound key verifies (ES256 and EdDSA)', async () => {
  const { v } = setup();
  for (const alg of ['ES256', 'EdDSA'] as const) {
    const h = await holder(alg);
    const r = await v.verify(check(h, await proof(h)));
    assert.equal(r.jkt, h.jkt);
  }
});

test('each broken claim is refused PCL_ERR_DPOP_INVALID', async () => {
  const { v } = setup();
  const h = await holder();
  const other = await holder();
  const cases: [string, Promise<DpopRequest>][] = [
    ['wrong htm', proof(h, { htm: 'POST' }).then((p) => check(h, p))],
    ['lower-case htm', proof(h, { htm: 'get' }).then((p) => check(h, p))],
    ['wrong htu path', proof(h, { htu: 'https://gw.example.test/orders/43' }).then((p) => check(h, p))],
    ['wrong htu host', proof(h, { htu: 'https://other.example.test/orders/42' }).then((p) => check(h, p))],
    ['http htu', proof(h, { htu: 'http://gw.example.test/orders/42' }).then((p) => check(h, p))],
    ['stale iat', proof(h, { iat: NOW / 1000 - 61 }).then((p) => check(h, p))],
    ['future iat', proof(h, { iat: NOW / 1000 + 61 }).then((p) => check(h, p))],
    ['wrong ath', proof(h, { ath: accessTokenHash('another token') }).then((p) => check(h, p))],
    ['no jti', proof(h, { jti: undefined }).then((p) => check(h, p))],
    ['wrong typ', proof(h, { typ: 'jwt' }).then((p) => check(h, p))],
    ['wrong key (token bound to another)', proof(other).then((p) => check(h, p))],
    ['jwk header not the signing key', proof(h, { jwk: other.jwk }).then((p) => check(h, p))],
    ['missing proof', Promise.resolve(check(h, undefined))],
    ['two DPoP headers', proof(h).then((p) => check(h, [p, p]))],
    ['two proofs joined', proof(h).then((p) => check(h, `${p}, ${p}`))],
    ['not a JWS', Promise.resolve(check(h, 'not-a-jws'))],
  ];
  for (const [name, req] of cases) await assert.rejects(v.verify(await req), code('PCL_ERR_DPOP_INVALID'), name);
});

test('symmetric or unsigned proofs and private keys in the header are refused', async () => {
  const { v } = setup();
  const h = await holder();
  const secret = new Uint8Array(32).fill(7);
  const octJwk: JWK = { kty: 'oct', k: Buffer.from(secret).toString('base64url') }; // a symmetric "public key": the attack under test
  const hs = await new SignJWT({ htm: 'GET', htu: URL_, iat: NOW / 1000, jti: 'a', ath: accessTokenHash(TOKEN) })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: 'HS256', jwk: octJwk }).sign(secret);
  await assert.rejects(v.verify(check(h, hs)), code('PCL_ERR_DPOP_INVALID'));
  const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const none = `${b64({ typ: 'dpop+jwt', alg: 'none', jwk: h.jwk })}.${b64({ htm: 'GET', htu: URL_, iat: NOW / 1000, jti: 'b', ath: accessTokenHash(TOKEN) })}.`;
  await assert.rejects(v.verify(check(h, none)), code('PCL_ERR_DPOP_INVALID'));
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const privateJwk = await exportJWK(privateKey);
  const withPrivate = await new SignJWT({ htm: 'GET', htu: URL_, iat: NOW / 1000, jti: 'c', ath: accessTokenHash(TOKEN) })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: privateJwk }).sign(privateKey);
  const publicPart: JWK = { ...privateJwk };
  delete publicPart.d;
  await assert.rejects(v.verify(check(h, withPrivate, { jkt: await calculateJwkThumbprint(publicPart, 'sha256') })), code('PCL_ERR_DPOP_INVALID'));
});

test('a replayed jti is refused; a refused proof does not use up its jti', async () => {
  const { v } = setup();
  const h = await holder();
  const p = await proof(h, { jti: 'once' });
  await assert.rejects(v.verify(check(h, p, { method: 'POST' })), code('PCL_ERR_DPOP_INVALID')); // refused: wrong method
  await v.verify(check(h, p)); // still fresh
  await assert.rejects(v.verify(check(h, p)), code('PCL_ERR_DPOP_INVALID'));
});

test('htu is compared after normalization, without query or fragment', async () => {
  const { v } = setup();
  const h = await holder();
  for (const htu of ['https://GW.example.test:443/orders/42', 'https://gw.example.test/orders/%34%32', 'https://gw.example.test/orders/42?x=1#f', 'https://gw.example.test/a/../orders/42']) {
    await v.verify(check(h, await proof(h, { htu })));
  }
  await v.verify(check(h, await proof(h), { url: 'https://gw.example.test/orders/42?page=2' }));
  assert.equal(canonicalUrl('https://a.test/x%2fy%7e'), 'https://a.test/x%2Fy~');
  assert.equal(canonicalUrl('https://user@a.test/'), undefined);
  assert.equal(canonicalUrl('ftp://a.test/'), undefined);
});

test('requestHtu: the Host (or :authority) and the raw path; with origins, only those hosts', () => {
  assert.equal(requestHtu({ host: 'GW.example.test' }, '/orders/42?q=secret'), 'https://gw.example.test/orders/42');
  assert.equal(requestHtu({ ':authority': 'gw.example.test:8443' }, '/a'), 'https://gw.example.test:8443/a');
  assert.equal(requestHtu({ host: 'gw.example.test' }, '/a', ['https://gw.example.test']), 'https://gw.example.test/a');
  assert.throws(() => requestHtu({ host: 'evil.test' }, '/a', ['https://gw.example.test']), code('PCL_ERR_DPOP_INVALID'));
  for (const host of [undefined, '', 'a.test/b', 'u@a.test']) assert.throws(() => requestHtu({ host }, '/a'), code('PCL_ERR_DPOP_INVALID'));
});

test('the replay cache is bounded: full of live ids it refuses, expired ids make room', async () => {
  const clock = new FakeClock(NOW);
  const cache = new MemoryReplayCache({ maxEntries: 2, clock });
  assert.equal(cache.claim('a', NOW + 60_000), true);
  assert.equal(cache.claim('a', NOW + 60_000), false);
  assert.equal(cache.claim('b', NOW + 60_000), true);
  assert.throws(() => cache.claim('c', NOW + 60_000), code('PCL_ERR_DPOP_INVALID'));
  await clock.advance(60_000);
  assert.equal(cache.claim('c', NOW + 120_000), true);
  assert.equal(cache.size(), 1);
  // Through the verifier: a proof's id is kept until its iat window ends, then forgotten.
  const v = new DpopVerifier({ clock, replay: new MemoryReplayCache({ maxEntries: 1, clock }) });
  const h = await holder();
  await v.verify(check(h, await proof(h, { iat: clock.now() / 1000 })));
  await assert.rejects(async () => v.verify(check(h, await proof(h, { iat: clock.now() / 1000 }))), code('PCL_ERR_DPOP_INVALID'));
});

test('options: only asymmetric algorithms, a sane iat window', () => {
  assert.throws(() => new DpopVerifier({ algorithms: ['HS256'] }), code('PCL_ERR_INVALID_ARGUMENT'));
  assert.throws(() => new DpopVerifier({ algorithms: [] }), code('PCL_ERR_INVALID_ARGUMENT'));
  assert.throws(() => new DpopVerifier({ iatWindowSec: 0 }), code('PCL_ERR_INVALID_ARGUMENT'));
});
