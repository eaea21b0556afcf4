import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadConfig } from '../../src/core/config/load.js';
import { authorizeRoute, CallPolicy } from '../../src/policy/route-policy.js';
import { repoRoot } from '../helpers/paths.js';

const config = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));
const route = (id: string) => {
  const r = config.routes.find((x) => x.id === id);
  assert.ok(r, id);
  return r;
};

test('a role listed on the route allows, naming the route as the reason', () => {
  assert.deepEqual(authorizeRoute(route('shop.orders.refund'), { sub: 'mia', roles: ['merchant'] }), { decision: 'allow', reasons: ['route:shop.orders.refund'], errors: [] });
});

test('no listed role denies by default with no reasons', () => {
  assert.deepEqual(authorizeRoute(route('shop.orders.refund'), { sub: 'alice', roles: ['customer'] }), { decision: 'deny', reasons: [], errors: [] });
  assert.equal(authorizeRoute(route('shop.orders.refund'), { sub: 'x', roles: [] }).decision, 'deny');
});

test('payments may be called by orders for the charge only', () => {
  const p = new CallPolicy(config, 'payments');
  assert.equal(p.authorize('spiffe://demo/shop/orders', 'POST', '/payments/charge').decision, 'allow');
  assert.equal(p.authorize('spiffe://demo/shop/orders', 'GET', '/payments/charge').decision, 'deny');
  assert.equal(p.authorize('spiffe://demo/shop/orders', 'POST', '/payments/refund').decision, 'deny');
  assert.equal(p.authorize('spiffe://demo/shop/users', 'POST', '/payments/charge').decision, 'deny');
  assert.equal(p.authorize('spiffe://demo/gateway', 'POST', '/payments/charge').decision, 'deny', 'no route reaches payments');
});

test('the gateway may call exactly the operations its routes expose', () => {
  const p = new CallPolicy(config, 'orders');
  assert.deepEqual(p.authorize('spiffe://demo/gateway', 'GET', '/shop/orders/o-1').reasons, ['route:shop.orders.get']);
  assert.equal(p.authorize('spiffe://demo/gateway', 'DELETE', '/shop/orders/o-1').decision, 'deny');
  assert.equal(p.authorize('spiffe://demo/gateway', 'GET', '/__seen').decision, 'deny');
  assert.equal(p.authorize('spiffe://other/gateway', 'GET', '/shop/orders').decision, 'deny');
});
