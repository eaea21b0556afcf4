// The `kms` section: defaults filled and documented in the schema, the shop's keyring and secret
// rule, and the operation table agreeing with the schema's enum.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { configSchema, schemaDefinition } from '../../src/core/config/schema.js';
import { DEFAULTS } from '../../src/core/config/defaults.js';
import { loadConfig, parseConfig } from '../../src/core/config/load.js';
import { KEYRING_OPERATIONS } from '../../src/core/config/references.js';
import { fixture, repoRoot } from '../helpers/paths.js';

const BASE = 'trustDomain: demo\nservices:\n  - { name: a, spiffeId: "spiffe://demo/a", upstream: "http://127.0.0.1:1", sidecar: { listen: "127.0.0.1:2", outbound: "127.0.0.1:3" } }\n';

test('without a kms section there is no keyring and no secret rule', () => {
  const c = parseConfig(BASE, 'p.yaml');
  assert.deepEqual(c.kms, { keyrings: [], secrets: [] });
  assert.ok(Object.isFrozen(c.kms.keyrings));
});

test('keyring and secret rule defaults are filled and match the schema', () => {
  const c = parseConfig(`${BASE}kms:\n  keyrings: [{ name: k }]\n  secrets: [{ prefix: a/ }]\n`, 'p.yaml');
  assert.deepEqual(c.kms.keyrings, [{ name: 'k', type: 'aes256-gcm', allow: [] }]);
  assert.deepEqual(c.kms.secrets, [{ prefix: 'a/', read: [], write: [] }]);
  const kms = configSchema().properties?.kms?.properties ?? {};
  const keyring = schemaDefinition('keyring').properties ?? {};
  const rule = schemaDefinition('secretRule').properties ?? {};
  const pairs: [unknown, unknown][] = [
    [kms.keyrings?.default, DEFAULTS.kmsKeyrings],
    [kms.secrets?.default, DEFAULTS.kmsSecrets],
    [keyring.type?.default, c.kms.keyrings[0]?.type],
    [keyring.allow?.default, c.kms.keyrings[0]?.allow],
    [rule.read?.default, c.kms.secrets[0]?.read],
    [rule.write?.default, c.kms.secrets[0]?.write],
  ];
  for (const [fromSchema, applied] of pairs) assert.deepEqual(fromSchema, applied);
});

test('rotationPeriod is kept only when written', () => {
  const c = parseConfig(`${BASE}kms:\n  keyrings: [{ name: k, rotationPeriod: 7200 }, { name: m, type: ed25519 }]\n`, 'p.yaml');
  assert.equal(c.kms.keyrings[0]?.rotationPeriod, 7200);
  assert.ok(!('rotationPeriod' in (c.kms.keyrings[1] ?? {})));
});

test('the operation table covers exactly the schema enums', () => {
  assert.deepEqual(Object.keys(KEYRING_OPERATIONS).sort(), [...(schemaDefinition('keyType').enum ?? [])].map(String).sort());
  const all = new Set(Object.values(KEYRING_OPERATIONS).flat());
  assert.deepEqual([...all].sort(), [...(schemaDefinition('kmsOperation').enum ?? [])].map(String).sort());
});

test('the secret prefix pattern refuses empty, dot and unterminated segments', () => {
  const re = new RegExp(schemaDefinition('secretPrefix').pattern ?? '', 'u');
  for (const ok of ['a/', 'payments/', 'payments/stripe.v1/', 'a-b_c/d/']) assert.ok(re.test(ok), ok);
  for (const bad of ['', '/', 'a', '/a/', 'a//', 'a/./', 'a/../', '.a/', 'A/', 'a b/', 'a/b']) assert.ok(!re.test(bad), bad);
});

test('the shop example grants payments the cards keyring and its secrets', () => {
  const c = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));
  assert.deepEqual(c.kms.keyrings, [{ name: 'cards', type: 'aes256-gcm', allow: [{ service: 'payments', operations: ['encrypt', 'decrypt', 'datakey'] }] }]);
  assert.deepEqual(c.kms.secrets, [{ prefix: 'payments/', read: ['payments'], write: [] }]);
});

test('the good kms fixture loads every key type', () => {
  const c = loadConfig(fixture('config', 'good', 'kms.yaml'));
  assert.deepEqual(c.kms.keyrings.map((k) => k.type), ['aes256-gcm', 'hmac-sha256', 'ecdsa-p256', 'ed25519', 'aes256-gcm']);
});

test('the schema\'s keyring name is the KMS\'s keyring name', async () => {
  const { KEYRING_NAME } = await import('../../src/kms/ciphertext.js');
  assert.equal(schemaDefinition('keyringName').pattern, KEYRING_NAME.source);
});
