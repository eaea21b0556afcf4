// The KMS and secrets authorizers: allow exactly what the config grants, name the rule, deny
// everything else by default, and never let a malformed path match a prefix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/core/config/load.js';
import type { KmsOperation } from '../../src/core/config/types.js';
import { authorizeKms, authorizeSecret } from '../../src/policy/kms-policy.js';

const config = parseConfig(`
trustDomain: demo
services:
  - { name: orders, spiffeId: spiffe://demo/orders, upstream: http://127.0.0.1:1, sidecar: { listen: 127.0.0.1:2, outbound: 127.0.0.1:3 } }
  - { name: payments, spiffeId: spiffe://demo/payments, upstream: http://127.0.0.1:4, sidecar: { listen: 127.0.0.1:5, outbound: 127.0.0.1:6 } }
kms:
  keyrings:
    - name: cards
      allow:
        - { service: payments, operations: [encrypt, decrypt, datakey] }
        - { service: orders, operations: [encrypt] }
    - { name: webhooks, type: hmac-sha256, allow: [{ service: orders, operations: [hmac, verify] }] }
    - { name: locked }
  secrets:
    - { prefix: payments/, read: [payments], write: [payments] }
    - { prefix: payments/shared/, read: [orders] }
    - { prefix: orders/, write: [orders] }
`, 'kms-policy.yaml');

const PAYMENTS = 'spiffe://demo/payments';
const ORDERS = 'spiffe://demo/orders';

test('a granted operation is allowed and names its rule', () => {
  assert.deepEqual(authorizeKms(config, PAYMENTS, 'cards', 'decrypt'), { decision: 'allow', reasons: ['kms:cards:payments:decrypt'], errors: [] });
  assert.deepEqual(authorizeKms(config, ORDERS, 'cards', 'encrypt').reasons, ['kms:cards:orders:encrypt']);
  assert.deepEqual(authorizeKms(config, ORDERS, 'webhooks', 'verify').reasons, ['kms:webhooks:orders:verify']);
});

test('everything not granted is denied by default', () => {
  const denied: [string, string, KmsOperation][] = [
    [ORDERS, 'cards', 'decrypt'], // another service's right
    [PAYMENTS, 'cards', 'rewrap'], // an operation of the type, not granted
    [PAYMENTS, 'webhooks', 'hmac'], // another keyring
    [PAYMENTS, 'locked', 'encrypt'], // a keyring with no grant
    [PAYMENTS, 'nope', 'encrypt'], // no such keyring
    [PAYMENTS, 'secrets', 'decrypt'], // the secrets store's keyring is never granted
    ['spiffe://demo/gateway', 'cards', 'encrypt'], // not a service
    ['spiffe://other/payments', 'cards', 'encrypt'], // another trust domain
    ['', 'cards', 'encrypt'],
    [PAYMENTS, 'cards\0payments', 'encrypt'],
  ];
  for (const [who, keyring, op] of denied) {
    assert.deepEqual(authorizeKms(config, who, keyring, op), { decision: 'deny', reasons: [], errors: [] }, `${who} ${keyring} ${op}`);
  }
});

test('secrets: read and write per prefix, most specific rule named', () => {
  assert.deepEqual(authorizeSecret(config, PAYMENTS, 'payments/stripe', 'read'), { decision: 'allow', reasons: ['secret:payments/:payments:read'], errors: [] });
  assert.deepEqual(authorizeSecret(config, PAYMENTS, 'payments/stripe', 'write').reasons, ['secret:payments/:payments:write']);
  assert.deepEqual(authorizeSecret(config, ORDERS, 'payments/shared/db', 'read').reasons, ['secret:payments/shared/:orders:read']);
  assert.deepEqual(authorizeSecret(config, PAYMENTS, 'payments/shared/db', 'read').reasons, ['secret:payments/:payments:read']);
  assert.equal(authorizeSecret(config, ORDERS, 'orders/x', 'write').decision, 'allow');
});

test('secrets: everything else is denied', () => {
  const denied: [string, string, 'read' | 'write'][] = [
    [ORDERS, 'payments/stripe', 'read'],
    [ORDERS, 'payments/shared/db', 'write'],
    [ORDERS, 'orders/x', 'read'], // write does not imply read
    [PAYMENTS, 'paymentsx/y', 'read'], // a prefix is a whole segment
    [PAYMENTS, 'payments', 'read'], // the prefix itself is no secret under it
    [PAYMENTS, 'other/x', 'read'],
    ['spiffe://demo/gateway', 'payments/stripe', 'read'],
  ];
  for (const [who, path, access] of denied) assert.equal(authorizeSecret(config, who, path, access).decision, 'deny', `${who} ${path} ${access}`);
});

test('secrets: a malformed path is denied with an error, even under a granted prefix', () => {
  for (const path of ['payments/../orders/x', 'payments//x', 'payments/./x', 'payments/', 'payments/X', 'payments/%2e%2e/x', '']) {
    const d = authorizeSecret(config, PAYMENTS, path, 'read');
    assert.equal(d.decision, 'deny', path);
    assert.deepEqual(d.errors, ['malformed secret path'], path);
  }
});

test('a config without kms denies everything', () => {
  const bare = parseConfig('trustDomain: demo\nservices:\n  - { name: a, spiffeId: spiffe://demo/a, upstream: http://127.0.0.1:1, sidecar: { listen: 127.0.0.1:2, outbound: 127.0.0.1:3 } }\n', 'bare.yaml');
  assert.equal(authorizeKms(bare, 'spiffe://demo/a', 'cards', 'encrypt').decision, 'deny');
  assert.equal(authorizeSecret(bare, 'spiffe://demo/a', 'a/b', 'read').decision, 'deny');
});
