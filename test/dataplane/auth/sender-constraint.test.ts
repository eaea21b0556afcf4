// Which token goes with which scheme and evidence: the decision table of checkSenderConstraint,
// the Authorization parser and the WWW-Authenticate challenges.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { FakeClock } from '../../../src/core/clock.js';
import { PortcullisError } from '../../../src/core/errors.js';
import type { PeerCertificateSource } from '../../../src/dataplane/auth/cnf-binding.js';
import { accessTokenHash, DpopVerifier } from '../../../src/dataplane/auth/dpop.js';
import { authChallenge, checkSenderConstraint, parseAuthorization, type SenderEvidence } from '../../../src/dataplane/auth/sender-constraint.js';

const NOW = Date.UTC(2030, 0, 1);
const URL_ = 'https://gw.example.test/a';
const TOKEN = 'token-value-0123456789';
// What Node's getPeerCertificate() returns without a client certificate: {} (the overloads cannot be written inline).
const noCert = { getPeerCertificate: () => ({}) } as unknown as PeerCertificateSource;

const code = (c: string) => (err: unknown): boolean => {
  assert.ok(err instanceof PortcullisError, String(err));
  assert.equal(err.code, c, err.message);
  return true;
};

test('parseAuthorization: Bearer and DPoP, case-insensitive scheme; anything else refused', () => {
  assert.deepEqual(parseAuthorization('Bearer abc.def'), { scheme: 'Bearer', token: 'abc.def' });
  assert.deepEqual(parseAuthorization('bearer abc'), { scheme: 'Bearer', token: 'abc' });
  assert.deepEqual(parseAuthorization('DPoP Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU'), { scheme: 'DPoP', token: 'Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU' });
  assert.deepEqual(parseAuthorization('dpop abc'), { scheme: 'DPoP', token: 'abc' });
  assert.throws(() => parseAuthorization(undefined), code('PCL_ERR_TOKEN_MISSING'));
  for (const h of ['Basic YWxhZGRpbjpvcGVuc2VzYW1l', 'Bearer', 'Bearer a b', 'Bearer a,b', 'DPoPabc', 'Token abc']) {
    assert.throws(() => parseAuthorization(h), code('PCL_ERR_TOKEN_MALFORMED'), h);
  }
  assert.throws(() => parseAuthorization(['Bearer a', 'Bearer b']), code('PCL_ERR_TOKEN_MALFORMED'));
});

test('checkSenderConstraint: the scheme must fit the binding, and the binding must be shown', async () => {
  const clock = new FakeClock(NOW);
  const dpop = new DpopVerifier({ clock });
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = await exportJWK(publicKey);
  const jkt = await calculateJwkThumbprint(jwk, 'sha256');
  const proof = (): Promise<string> => new SignJWT({ htm: 'GET', htu: URL_, iat: NOW / 1000, jti: randomUUID(), ath: accessTokenHash(TOKEN) })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk }).sign(privateKey);
  const ev = (scheme: 'Bearer' | 'DPoP', dpopProof?: string): SenderEvidence => ({ scheme, token: TOKEN, socket: noCert, dpopProof, method: 'GET', url: URL_ });

  await checkSenderConstraint({}, ev('Bearer'), dpop); // a bearer token
  await checkSenderConstraint({ cnf: { jkt } }, ev('DPoP', await proof()), dpop); // a DPoP token with its proof
  await assert.rejects(checkSenderConstraint({}, ev('DPoP', await proof()), dpop), code('PCL_ERR_DPOP_INVALID')); // DPoP scheme, unbound token
  await assert.rejects(checkSenderConstraint({ cnf: { jkt } }, ev('Bearer', await proof()), dpop), code('PCL_ERR_DPOP_INVALID')); // bound token as Bearer
  await assert.rejects(checkSenderConstraint({ cnf: { jkt } }, ev('DPoP'), dpop), code('PCL_ERR_DPOP_INVALID')); // bound token, no proof
  await assert.rejects(checkSenderConstraint({ cnf: {} }, ev('Bearer'), dpop), code('PCL_ERR_TOKEN_BINDING')); // a cnf we cannot check
  await assert.rejects(checkSenderConstraint({ cnf: { 'x5t#S256': 'A'.repeat(43) } }, ev('Bearer'), dpop), code('PCL_ERR_TOKEN_BINDING')); // no certificate
  // Bound both ways: the proof alone is not enough.
  await assert.rejects(checkSenderConstraint({ cnf: { jkt, 'x5t#S256': 'A'.repeat(43) } }, ev('DPoP', await proof()), dpop), code('PCL_ERR_TOKEN_BINDING'));
});

test('authChallenge: RFC 9449 §7.1 and RFC 6750 challenges, none for other refusals', () => {
  const algs = ['ES256', 'EdDSA'];
  const e = (c: 'PCL_ERR_DPOP_INVALID' | 'PCL_ERR_TOKEN_EXPIRED' | 'PCL_ERR_TOKEN_MISSING' | 'PCL_ERR_TOKEN_BINDING' | 'PCL_ERR_FORBIDDEN' | 'PCL_ERR_PEER_CERT_REQUIRED' | 'PCL_ERR_INTROSPECTION_UNAVAILABLE') => new PortcullisError(c, 'x');
  assert.equal(authChallenge(e('PCL_ERR_DPOP_INVALID'), 'Bearer', algs), 'DPoP error="invalid_dpop_proof", algs="ES256 EdDSA"');
  assert.equal(authChallenge(e('PCL_ERR_TOKEN_EXPIRED'), 'DPoP', algs), 'DPoP error="invalid_token", algs="ES256 EdDSA"');
  assert.equal(authChallenge(e('PCL_ERR_TOKEN_BINDING'), 'Bearer', algs), 'Bearer error="invalid_token"');
  assert.equal(authChallenge(e('PCL_ERR_TOKEN_MISSING'), undefined, algs), 'Bearer, DPoP algs="ES256 EdDSA"');
  for (const c of ['PCL_ERR_FORBIDDEN', 'PCL_ERR_PEER_CERT_REQUIRED', 'PCL_ERR_INTROSPECTION_UNAVAILABLE'] as const) assert.equal(authChallenge(e(c), 'Bearer', algs), undefined);
});
