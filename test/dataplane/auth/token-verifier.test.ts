// The gateway's token verifier takes its algorithms from tokens.algorithms: an EdDSA-signed token
// of the control plane is accepted when EdDSA is listed and refused (PCL_ERR_TOKEN_ALG, before the
// signature is checked) when it is not; with both listed, the ES256 tokens issued before a switch
// of tokens.signingAlg keep working; `none` and HMAC tokens are refused whatever is configured.
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { before, test } from 'node:test';
import { FakeClock } from '../../../src/core/clock.js';
import { parseConfig } from '../../../src/core/config/load.js';
import type { PortcullisConfig } from '../../../src/core/config/types.js';
import { createGatewayTokenVerifier } from '../../../src/dataplane/auth/token-verifier.js';
import { KeyWrapper } from '../../../src/kms/wrap.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { issueAccessToken } from '../../../src/tokens/issue.js';
import { SigningKeys } from '../../../src/tokens/signing-keys.js';

const clock = new FakeClock(Date.UTC(2030, 0, 1));

/** A config as the gateway loads it, with the given `tokens` lines. */
function config(tokens: string): PortcullisConfig {
  return parseConfig(`trustDomain: demo
tokens:
  issuer: https://control.demo
  audience: https://api.demo
${tokens}
services:
  - { name: users, spiffeId: "spiffe://demo/users", upstream: "http://127.0.0.1:9101", sidecar: { listen: "127.0.0.1:15101", outbound: "127.0.0.1:16101" } }
`, 'gateway.yaml');
}

let es256: SigningKeys;
let eddsa: SigningKeys;

before(async () => {
  es256 = await SigningKeys.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), clock });
  eddsa = await SigningKeys.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), clock, alg: 'EdDSA' });
});

const issue = async (keys: SigningKeys): Promise<string> =>
  (await issueAccessToken(keys, { issuer: 'https://control.demo', audience: 'https://api.demo', subject: 'alice', clientId: 'cli', ttlSec: 300, clock })).token;

/** The JWKS a data plane gets in its snapshot: both key sets, as during a switch of algorithm. */
const bothJwks = (): { keys: ReturnType<SigningKeys['jwks']>['keys'] } => ({ keys: [...es256.jwks().keys, ...eddsa.jwks().keys] });

test('the default (tokens.algorithms absent) accepts ES256 only: an EdDSA token is refused before its signature is checked', async () => {
  const c = config('');
  assert.deepEqual(c.tokens.algorithms, ['ES256']);
  assert.equal(c.tokens.signingAlg, 'ES256');
  const v = createGatewayTokenVerifier(c, bothJwks(), { clock });
  assert.equal((await v.verify(await issue(es256))).sub, 'alice');
  await assert.rejects(v.verify(await issue(eddsa)), { code: 'PCL_ERR_TOKEN_ALG' });
});

test('algorithms [EdDSA] with signingAlg EdDSA: EdDSA tokens accepted, ES256 refused', async () => {
  const c = config('  signingAlg: EdDSA\n  algorithms: [EdDSA]');
  const v = createGatewayTokenVerifier(c, bothJwks(), { clock });
  const claims = await v.verify(await issue(eddsa));
  assert.deepEqual([claims.sub, claims.iss, claims.aud], ['alice', 'https://control.demo', 'https://api.demo']);
  await assert.rejects(v.verify(await issue(es256)), { code: 'PCL_ERR_TOKEN_ALG' });
});

test('both listed while switching: tokens of either algorithm verify; a tampered EdDSA token does not', async () => {
  const v = createGatewayTokenVerifier(config('  signingAlg: EdDSA\n  algorithms: [ES256, EdDSA]'), bothJwks(), { clock });
  assert.equal((await v.verify(await issue(es256))).sub, 'alice');
  const token = await issue(eddsa);
  assert.equal((await v.verify(token)).sub, 'alice');
  const [h, p, s] = token.split('.') as [string, string, string];
  const forged = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: 'mallory' })).toString('base64url')}.${s}`;
  await assert.rejects(v.verify(forged), { code: 'PCL_ERR_TOKEN_SIGNATURE' });
});

test('none and HS256 are refused whatever is configured (and cannot be configured)', async () => {
  const v = createGatewayTokenVerifier(config('  algorithms: [ES256, EdDSA]'), bothJwks(), { clock });
  const payload = Buffer.from(JSON.stringify({ iss: 'https://control.demo', sub: 'mallory', aud: 'https://api.demo', exp: Math.floor(clock.now() / 1000) + 60, iat: Math.floor(clock.now() / 1000), jti: 'x', client_id: 'x' })).toString('base64url');
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${payload}.`;
  await assert.rejects(v.verify(none), { code: 'PCL_ERR_TOKEN_ALG' });
  const kid = eddsa.jwks().keys[0]?.kid;
  const hsHeader = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'at+jwt', kid })).toString('base64url');
  // The classic confusion: an HMAC keyed with the public key's bytes.
  const hs = `${hsHeader}.${payload}.${createHmac('sha256', JSON.stringify(eddsa.jwks().keys[0])).update(`${hsHeader}.${payload}`).digest('base64url')}`;
  await assert.rejects(v.verify(hs), { code: 'PCL_ERR_TOKEN_ALG' });
  assert.throws(() => config('  algorithms: [HS256]'), { code: 'PCL_ERR_CONFIG_INVALID' });
  assert.throws(() => config('  algorithms: [none]'), { code: 'PCL_ERR_CONFIG_INVALID' });
});
