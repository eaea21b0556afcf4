import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkPathRules, forwardTarget, normalizeTarget, MAX_TARGET } from '../../src/dataplane/normalize.js';
import { PortcullisError } from '../../src/core/errors.js';

const refused = (target: string, admit = {}): void => {
  assert.throws(() => normalizeTarget(target, admit), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_PATH_INVALID', target);
};
const none = { encodedSlash: false, semicolon: false, trailingSlash: false };

test('canonical paths pass unchanged, query kept apart', () => {
  assert.deepEqual(normalizeTarget('/shop/orders/o-1'), { path: '/shop/orders/o-1', query: '', flags: none });
  assert.deepEqual(normalizeTarget('/shop/orders?limit=5&x=%2F'), { path: '/shop/orders', query: 'limit=5&x=%2F', flags: none });
  assert.deepEqual(normalizeTarget('/'), { path: '/', query: '', flags: none });
});

test('percent-encoded unreserved characters are decoded; other escapes upper-cased', () => {
  assert.equal(normalizeTarget('/shop/%6Frders/o%2D1').path, '/shop/orders/o-1');
  assert.equal(normalizeTarget('/a/b%3ac').path, '/a/b%3Ac');
});

test('dot segments and duplicate slashes are resolved, not refused (changed: they used to be refused)', () => {
  assert.equal(normalizeTarget('/shop/../payments/charge').path, '/payments/charge');
  assert.equal(normalizeTarget('/shop/./orders').path, '/shop/orders');
  assert.equal(normalizeTarget('/shop/%2e%2e/payments').path, '/payments');
  assert.equal(normalizeTarget('/shop/%2E/orders').path, '/shop/orders');
  assert.equal(normalizeTarget('/shop//orders').path, '/shop/orders');
  assert.equal(normalizeTarget('//a///b').path, '/a/b');
  assert.equal(normalizeTarget('/a/b/../c').path, '/a/c');
  assert.equal(normalizeTarget('/a/b/..').path, '/a/');
  assert.equal(normalizeTarget('/a/..').path, '/');
  assert.equal(normalizeTarget('/a/.').path, '/a/');
});

test('what has no single reading is refused', () => {
  for (const t of [
    '/..', '/a/../..', '/a/%2e%2e/%2e%2e', // above the root
    '/shop/orders%2fo-1', '/shop/orders%5Co-1', '/shop/orders\\o-1', '/a%00b', '/a%0ab', '/a%7f',
    '/a;jsessionid=1', '/a%3bb', '/a%25b', '/a%252e', '/a%zz', '/a%2', 'shop/orders', 'http://evil/shop', '*', '/a b', '/é', '/a%c3%a9',
    '/a#frag', '/a?x#frag', '/a?x=\u0001', '/a?x=é', '/admin.', '/a/...', '/a/b%2e', '/' + 'a'.repeat(MAX_TARGET),
  ]) refused(t);
});

test('encoded slashes and ";" are admitted only when the caller says a route allows them, and flagged', () => {
  const enc = normalizeTarget('/files/a%2fb', { encodedSlash: true });
  assert.equal(enc.path, '/files/a%2Fb');
  assert.deepEqual(enc.flags, { encodedSlash: true, semicolon: false, trailingSlash: false });
  const semi = normalizeTarget('/files/a;v=1', { semicolon: true });
  assert.equal(semi.path, '/files/a;v=1');
  assert.equal(semi.flags.semicolon, true);
  assert.equal(normalizeTarget('/files/a%3bv', { semicolon: true }).flags.semicolon, true);
  refused('/files/a%2fb', { semicolon: true });
  refused('/files/a;v=1', { encodedSlash: true });
});

test('a dot segment hidden behind ";" or between encoded slashes is refused even when admitted', () => {
  refused('/public/..;/admin', { semicolon: true });
  refused('/public/%2e%2e;x/admin', { semicolon: true });
  refused('/files/a%2F..%2Fb', { encodedSlash: true });
  refused('/files/a%5C.', { encodedSlash: true });
});

test('a trailing slash is kept and flagged: routes decide whether it matches', () => {
  const t = normalizeTarget('/shop/orders/');
  assert.equal(t.path, '/shop/orders/');
  assert.equal(t.flags.trailingSlash, true);
  assert.equal(normalizeTarget('/shop/orders//').path, '/shop/orders/');
  assert.equal(normalizeTarget('/').flags.trailingSlash, false);
});

test('checkPathRules refuses a flag the route does not allow', () => {
  const enc = normalizeTarget('/files/a%2Fb', { encodedSlash: true, semicolon: true });
  const semi = normalizeTarget('/files/a;b', { encodedSlash: true, semicolon: true });
  const isPath = (e: unknown): boolean => e instanceof PortcullisError && e.code === 'PCL_ERR_PATH_INVALID';
  assert.throws(() => checkPathRules(enc, {}), isPath);
  assert.throws(() => checkPathRules(enc, { allowSemicolon: true }), isPath);
  assert.throws(() => checkPathRules(semi, { allowEncodedSlash: true }), isPath);
  assert.doesNotThrow(() => checkPathRules(enc, { allowEncodedSlash: true }));
  assert.doesNotThrow(() => checkPathRules(semi, { allowSemicolon: true }));
  assert.doesNotThrow(() => checkPathRules(normalizeTarget('/plain/'), {}));
});

test('the forwarded target is the canonical path and the raw query', () => {
  const t = normalizeTarget('/shop/./orders//o-1?limit=5');
  assert.equal(forwardTarget(t), '/shop/orders/o-1?limit=5');
  assert.equal(forwardTarget(t, '/Shop/orders/o-1'), '/Shop/orders/o-1?limit=5');
  assert.equal(forwardTarget(normalizeTarget('/a')), '/a');
});
