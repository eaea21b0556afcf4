import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeTarget } from '../../src/dataplane/normalize.js';
import { PortcullisError } from '../../src/core/errors.js';

const refused = (target: string): void => {
  assert.throws(() => normalizeTarget(target), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_PATH_INVALID', target);
};

test('canonical paths pass unchanged, query kept apart', () => {
  assert.deepEqual(normalizeTarget('/shop/orders/o-1'), { path: '/shop/orders/o-1', query: '' });
  assert.deepEqual(normalizeTarget('/shop/orders?limit=5&x=%2F'), { path: '/shop/orders', query: 'limit=5&x=%2F' });
  assert.deepEqual(normalizeTarget('/'), { path: '/', query: '' });
});

test('percent-encoded unreserved characters are decoded; other escapes upper-cased', () => {
  assert.equal(normalizeTarget('/shop/%6Frders/o%2D1').path, '/shop/orders/o-1');
  assert.equal(normalizeTarget('/a/b%3ac').path, '/a/b%3Ac');
});

test('ambiguous paths are refused, not guessed', () => {
  for (const t of [
    '/shop/../payments/charge', '/shop/./orders', '/shop/%2e%2e/payments', '/shop/%2E/orders',
    '/shop//orders', '/shop/orders%2fo-1', '/shop/orders%5Co-1', '/shop/orders\\o-1', '/a%00b', '/a%0ab',
    '/a;jsessionid=1', '/a%3bb', '/a%25b', '/a%zz', '/a%2', 'shop/orders', 'http://evil/shop', '/a b', '/é',
    '/a#frag', '/' + 'a'.repeat(9000),
  ]) refused(t);
});

test('a trailing slash is kept: routes decide whether it matches', () => {
  assert.equal(normalizeTarget('/shop/orders/').path, '/shop/orders/');
});
