// The tokens section's new keys: defaults as the schema documents them, each client default
// applied, and no message ever quoting a key or a secret that was put where it does not belong.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkConfig, parseConfig } from '../../src/core/config/load.js';
import { configSchema, schemaDefinition } from '../../src/core/config/schema.js';

const SERVICE = 'services:\n  - { name: a, spiffeId: "spiffe://demo/a", upstream: "http://127.0.0.1:1", sidecar: { listen: "127.0.0.1:2", outbound: "127.0.0.1:3" } }\n';

test('signingAlg, algorithms and clients: the schema defaults are the ones applied', () => {
  const tokens = configSchema().properties?.tokens?.properties ?? {};
  const client = schemaDefinition('oauthClient').properties ?? {};
  const c = parseConfig(`trustDomain: demo\ntokens:\n  clients:\n    - { clientId: w, authMethod: tls_client_auth, spiffeId: "spiffe://demo/w" }\n${SERVICE}`, 'p.yaml');
  assert.deepEqual([tokens.signingAlg?.default, tokens.algorithms?.default, tokens.clients?.default], [c.tokens.signingAlg, c.tokens.algorithms, []]);
  assert.deepEqual(c.tokens.clients, [{ clientId: 'w', authMethod: 'tls_client_auth', spiffeId: 'spiffe://demo/w', grantTypes: client.grantTypes?.default, scopes: client.scopes?.default }]);
  const k = parseConfig(`trustDomain: demo\ntokens:\n  clients:\n    - { clientId: k, jwks: { keys: [ { kty: OKP, crv: Ed25519, x: ONYPHXyyPAhcEaBg0f5HicZ0wrF75-H46x7OgFsCabo } ] } }\n${SERVICE}`, 'p.yaml');
  assert.equal(k.tokens.clients[0]?.authMethod, client.authMethod?.default);
  assert.ok(Object.isFrozen(k.tokens.clients[0]?.jwks?.keys[0]), 'deeply frozen like the rest');
});

test('EdDSA only is a valid choice; the gateway list must hold the signing algorithm', () => {
  assert.equal(parseConfig(`trustDomain: demo\ntokens:\n  signingAlg: EdDSA\n  algorithms: [EdDSA]\n${SERVICE}`, 'p.yaml').tokens.signingAlg, 'EdDSA');
  const { errors } = checkConfig(`trustDomain: demo\ntokens:\n  signingAlg: EdDSA\n${SERVICE}`, 'p.yaml');
  assert.deepEqual(errors.map((e) => [e.code, e.line]), [['PCL_ERR_CONFIG_REFERENCE', 3]], 'the default [ES256] does not hold EdDSA');
  assert.match(errors[0]?.hint ?? '', /\[ES256, EdDSA\]/);
});

test('a private key, a client secret or a key that does not load: refused, the value never quoted', () => {
  const d = '3EKoIHGMquTxEfprbfCIHyF91uOzcBgpcTCdaJ8-s1M';
  const secret = 'S3cr3t-Value-Never-Shown';
  const text = `trustDomain: demo
tokens:
  clients:
    - clientId: k
      jwks: { keys: [ { kty: EC, crv: P-256, x: mt2ry9xHMiZwoDjgZZsw6BZdvC2nO8K70HFlZErt7ko, y: cY63iMmI1NFbE-MYtweB7uxmpM6qBIb7rJ8FaQKra90, d: ${d} } ] }
    - clientId: s
      clientSecret: ${secret}
      jwks: { keys: [ { kty: OKP, crv: Ed25519, x: ONYPHXyyPAhcEaBg0f5HicZ0wrF75-H46x7OgFsCabo } ] }
    - clientId: r
      jwks: { keys: [ { kty: RSA, n: 1OCBTXej6a93IZ9AAle8SteXYyBgZzDECUIMetdK82cfzQEbIto1AkRM7za1x2yhMT8BIhFhEGxajwvzxE-3csQwr0d4llJ-PFAcJbWQw2pu3Vom9UsE3UJb7UgdYFIkwLhRaRrXcvBichOFX-gkIBkW6vb-7zERFDvHj9FDdtM, e: AQAB } ] }
${SERVICE}`;
  const { errors } = checkConfig(text, 'p.yaml');
  assert.deepEqual(errors.map((e) => [e.code, e.line]), [['PCL_ERR_CONFIG_INVALID', 5], ['PCL_ERR_CONFIG_INVALID', 7], ['PCL_ERR_CONFIG_INVALID', 10]]);
  assert.match(errors[2]?.message ?? '', /not a usable public key/, 'RSA below 2048 bits');
  for (const e of errors) {
    assert.ok(!e.message.includes(d) && !e.message.includes(secret) && !(e.hint ?? '').includes(secret), e.message);
  }
});
