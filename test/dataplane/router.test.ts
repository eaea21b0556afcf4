import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalForRoute, Router, type RoutableRoute } from '../../src/dataplane/router.js';
import type { RouteConfig } from '../../src/core/config/types.js';
import type { PathRules } from '../../src/dataplane/normalize.js';

const route = (id: string, method: RouteConfig['method'], path: string, pathRules?: PathRules): RoutableRoute => ({ id, method, path, service: 's', auth: ['jwt'], roles: [], ...(pathRules ? { pathRules } : {}) });

test('a literal segment beats a parameter whatever the order in the file', () => {
  const r = new Router([route('byId', 'GET', '/a/{id}'), route('mine', 'GET', '/a/mine'), route('deep', 'GET', '/a/{id}/x')]);
  assert.equal(r.match('GET', '/a/mine')?.route.id, 'mine');
  assert.equal(r.match('GET', '/a/42')?.route.id, 'byId');
  assert.deepEqual({ ...r.match('GET', '/a/42')?.params }, { id: '42' });
  assert.equal(r.match('GET', '/a/42/x')?.route.id, 'deep');
});

test('method and path must both match; nothing else is routed', () => {
  const r = new Router([route('get', 'GET', '/a/{id}')]);
  assert.equal(r.match('POST', '/a/1'), undefined);
  assert.equal(r.match('GET', '/a'), undefined);
  assert.equal(r.match('GET', '/a/1/'), undefined);
  assert.equal(r.match('GET', '/b/1'), undefined);
});

test('strict routes (the default) match neither case nor trailing-slash variants, and forward the path as is', () => {
  const r = new Router([route('admin', 'GET', '/admin'), route('orders', 'GET', '/shop/orders/{id}')]);
  for (const p of ['/ADMIN', '/Admin', '/admin/', '/Shop/orders/1', '/shop/orders/1/']) assert.equal(r.match('GET', p), undefined, p);
  const m = r.match('GET', '/shop/orders/AbC');
  assert.equal(m?.canonicalPath, '/shop/orders/AbC');
  assert.deepEqual(m?.rules, { allowEncodedSlash: false, allowSemicolon: false, caseSensitive: true, trailingSlash: 'strict' });
});

test('a case-insensitive route matches any ASCII case and forwards the pattern\'s own spelling', () => {
  const r = new Router([route('orders', 'GET', '/Shop/orders/{id}', { caseSensitive: false }), route('root', 'GET', '/', { caseSensitive: false })]);
  const m = r.match('GET', '/SHOP/Orders/AbC');
  assert.equal(m?.route.id, 'orders');
  assert.equal(m?.canonicalPath, '/Shop/orders/AbC'); // literals as in the pattern, the parameter as sent
  assert.deepEqual({ ...m?.params }, { id: 'AbC' });
  assert.equal(r.match('GET', '/shop/orders/AbC/'), undefined, 'trailing slash still strict');
  assert.equal(r.match('GET', '/shop/orders'), undefined);
  assert.equal(r.match('GET', '/shop/orders/1/x'), undefined);
  assert.equal(r.match('GET', '/shop/orders/..'), undefined);
  assert.equal(r.match('GET', '/')?.canonicalPath, '/');
});

test('trailingSlash: ignore matches "/x/" as "/x" and forwards without the slash', () => {
  const r = new Router([route('orders', 'GET', '/orders', { trailingSlash: 'ignore' }), route('one', 'GET', '/orders/{id}', { trailingSlash: 'ignore', caseSensitive: false })]);
  assert.equal(r.match('GET', '/orders/')?.canonicalPath, '/orders');
  assert.equal(r.match('GET', '/orders')?.canonicalPath, '/orders');
  assert.equal(r.match('GET', '/orders/7/')?.route.id, 'one');
  assert.equal(r.match('GET', '/ORDERS/7/')?.canonicalPath, '/orders/7');
  assert.equal(r.match('GET', '/Orders/'), undefined, 'case still strict on /orders');
});

test('a relaxed route does not relax its neighbours', () => {
  const r = new Router([route('loose', 'GET', '/public', { caseSensitive: false, trailingSlash: 'ignore' }), route('admin', 'GET', '/admin')]);
  assert.equal(r.match('GET', '/PUBLIC/')?.route.id, 'loose');
  assert.equal(r.match('GET', '/ADMIN'), undefined);
  assert.equal(r.match('GET', '/admin/'), undefined);
});

test('admits is the union of the routes\' allowances', () => {
  assert.deepEqual({ ...new Router([route('a', 'GET', '/a')]).admits }, { encodedSlash: false, semicolon: false });
  assert.deepEqual({ ...new Router([route('a', 'GET', '/a'), route('f', 'GET', '/f/{name}', { allowEncodedSlash: true })]).admits }, { encodedSlash: true, semicolon: false });
  assert.deepEqual({ ...new Router([route('m', 'GET', '/m/{x}', { allowSemicolon: true })]).admits }, { encodedSlash: false, semicolon: true });
});

test('canonicalForRoute', () => {
  assert.equal(canonicalForRoute('/ADMIN/', route('a', 'GET', '/admin', { caseSensitive: false, trailingSlash: 'ignore' })), '/admin');
  assert.equal(canonicalForRoute('/ADMIN', route('a', 'GET', '/admin')), undefined);
});
