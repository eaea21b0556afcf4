// TOTP against RFC 6238 Appendix B (SHA1, 8 digits) and RFC 4226 Appendix D, then the 6-digit use
// the sign-in makes of it: the ±1 step window, replay refusal, input shape, base32 and otpauth.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { base32Decode, base32Encode, generateTotpSecret, hotp, otpauthUrl, totp, totpStep, verifyTotp } from '../../src/identity/totp.js';

/** The RFC's SHA1 seed: the ASCII string "12345678901234567890". */
const SEED = Buffer.from('12345678901234567890', 'ascii');

test('RFC 6238 Appendix B: the SHA1 test vectors, 8 digits', () => {
  const vectors: [number, string][] = [
    [59, '94287082'],
    [1111111109, '07081804'],
    [1111111111, '14050471'],
    [1234567890, '89005924'],
    [2000000000, '69279037'],
    [20000000000, '65353130'],
  ];
  for (const [seconds, code] of vectors) {
    assert.equal(totp(SEED, seconds * 1000, { digits: 8 }), code, `T=${seconds}`);
  }
});

test('RFC 4226 Appendix D: HOTP values for counters 0-9, 6 digits', () => {
  const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
  expected.forEach((code, counter) => assert.equal(hotp(SEED, counter), code, `counter ${counter}`));
});

test('verifyTotp: the current step and one either side match; two steps away does not', () => {
  const t = 1_700_000_000_000;
  const step = totpStep(t);
  for (const d of [-1, 0, 1]) assert.equal(verifyTotp(SEED, hotp(SEED, step + d), t), step + d, `offset ${d}`);
  for (const d of [-2, 2]) assert.equal(verifyTotp(SEED, hotp(SEED, step + d), t), undefined, `offset ${d}`);
});

test('verifyTotp: a step at or before afterStep is refused (replay), a later one accepted', () => {
  const t = 1_700_000_000_000;
  const step = totpStep(t);
  const code = hotp(SEED, step);
  assert.equal(verifyTotp(SEED, code, t, { afterStep: step }), undefined);
  assert.equal(verifyTotp(SEED, code, t, { afterStep: step - 1 }), step);
  // The previous step's code, once the current one was used, is refused too.
  assert.equal(verifyTotp(SEED, hotp(SEED, step - 1), t, { afterStep: step }), undefined);
  assert.equal(verifyTotp(SEED, hotp(SEED, step + 1), t, { afterStep: step }), step + 1);
});

test('verifyTotp: wrong length, non-digits and another key are refused', () => {
  const t = 1_700_000_000_000;
  const code = totp(SEED, t);
  for (const bad of ['', code.slice(1), `${code}0`, 'abcdef', ` ${code.slice(1)}`, '-12345']) {
    assert.equal(verifyTotp(SEED, bad, t), undefined, JSON.stringify(bad));
  }
  assert.equal(verifyTotp(generateTotpSecret(), code, t), undefined);
  assert.equal(verifyTotp(SEED, totp(SEED, t, { digits: 8 }), t, { digits: 8 }), totpStep(t));
});

test('base32 (RFC 4648 test vectors, no padding) round-trips and refuses other characters', () => {
  const vectors: [string, string][] = [['', ''], ['f', 'MY'], ['fo', 'MZXQ'], ['foo', 'MZXW6'], ['foob', 'MZXW6YQ'], ['fooba', 'MZXW6YTB'], ['foobar', 'MZXW6YTBOI']];
  for (const [plain, encoded] of vectors) {
    assert.equal(base32Encode(Buffer.from(plain)), encoded);
    assert.equal(base32Decode(encoded).toString(), plain);
    assert.equal(base32Decode(`${encoded.toLowerCase()}===`).toString(), plain);
  }
  const secret = generateTotpSecret();
  assert.equal(secret.length, 20);
  assert.deepEqual(base32Decode(base32Encode(secret)), secret);
  assert.throws(() => base32Decode('MZXW1'), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});

test('otpauthUrl: the Key Uri Format with issuer, SHA1, 6 digits, 30 s', () => {
  const url = new URL(otpauthUrl({ issuer: 'Portcullis', account: 'alice', secretBase32: 'MZXW6YTBOI' }));
  assert.equal(url.protocol, 'otpauth:');
  assert.equal(url.host, 'totp');
  assert.equal(decodeURIComponent(url.pathname), '/Portcullis:alice');
  assert.deepEqual(Object.fromEntries(url.searchParams), { secret: 'MZXW6YTBOI', issuer: 'Portcullis', algorithm: 'SHA1', digits: '6', period: '30' });
});

test('hotp refuses a bad counter or digit count', () => {
  assert.throws(() => hotp(SEED, -1), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => hotp(SEED, 1.5), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => hotp(SEED, 0, 9), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});
