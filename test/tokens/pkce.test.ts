import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isValidCodeChallenge, isValidCodeVerifier, s256Challenge, verifyS256 } from '../../src/tokens/oauth/pkce.js';

// RFC 7636 Appendix B.
const VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
const CHALLENGE = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';

test('S256 matches the RFC 7636 Appendix B vector', () => {
  assert.equal(s256Challenge(VERIFIER), CHALLENGE);
  assert.equal(verifyS256(VERIFIER, CHALLENGE), true);
});

test('S256 refuses a different verifier, a malformed one, and the plain method (verifier = challenge)', () => {
  assert.equal(verifyS256(VERIFIER.replace('d', 'e'), CHALLENGE), false);
  assert.equal(verifyS256('short', CHALLENGE), false);
  assert.equal(verifyS256(CHALLENGE, CHALLENGE), false);
  assert.equal(verifyS256(VERIFIER, CHALLENGE.slice(1)), false);
});

test('verifier and challenge syntax: 43-128 unreserved characters', () => {
  assert.equal(isValidCodeVerifier('a'.repeat(42)), false);
  assert.equal(isValidCodeVerifier('a'.repeat(43)), true);
  assert.equal(isValidCodeVerifier('a'.repeat(128)), true);
  assert.equal(isValidCodeVerifier('a'.repeat(129)), false);
  assert.equal(isValidCodeVerifier(`${'a'.repeat(42)}+`), false);
  assert.equal(isValidCodeChallenge(CHALLENGE), true);
  assert.equal(isValidCodeChallenge(`${CHALLENGE}=`), false);
});
