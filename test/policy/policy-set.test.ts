// The config's short forms compiled to Cedar and decided by the engine: route roles at the gateway,
// allowed calls at the sidecars, deny by default, and the generated policy ids as reasons.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/core/config/load.js';
import type { PortcullisConfig } from '../../src/core/config/types.js';
import { PolicySet, readPolicyBundle } from '../../src/policy/policy-set.js';
import { shortFormPolicies } from '../../src/policy/short-forms.js';
import type { PortcullisError } from '../../src/core/errors.js';
import { repoRoot } from '../helpers/paths.js';

const config = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));
/** The shop's short forms alone: the generated rules, without the shop's own Cedar files. */
const shortOnly: PortcullisConfig = { ...config, policies: { ...config.policies, files: [], links: [] } };
delete (shortOnly.policies as { schema?: string }).schema;
const set = PolicySet.fromConfig(shortOnly);
const now = Date.parse('2026-11-25T10:00:00Z');
const route = (id: string, sub: string, roles: string[]) => {
  const r = config.routes.find((x) => x.id === id);
  assert.ok(r, id);
  return set.decideRoute({ route: r, principal: { sub, roles }, method: r.method, path: r.path, params: {}, sourceIp: '127.0.0.1', nowMs: now }).live;
};
const call = (service: string, caller: string, method: string, path: string) => set.decideCall({ service, caller, method, path }).live;

test('a role listed on the route allows, naming the generated policy as the reason', () => {
  assert.deepEqual(route('shop.orders.refund', 'mia', ['merchant']), { decision: 'allow', reasons: ['route:shop.orders.refund'], errors: [] });
});

test('no listed role denies by default with no reasons', () => {
  assert.deepEqual(route('shop.orders.refund', 'alice', ['customer']), { decision: 'deny', reasons: [], errors: [] });
  assert.equal(route('shop.orders.refund', 'x', []).decision, 'deny');
});

test('the entities of a decision are kept per principal object and route: never another token\'s roles, never another route', () => {
  const byId = (id: string) => { const r = config.routes.find((x) => x.id === id); assert.ok(r, id); return r; };
  const decide = (principal: { sub: string; roles: string[] }, id: string) => {
    const r = byId(id);
    return set.decideRoute({ route: r, principal, method: r.method, path: r.path, params: {}, sourceIp: '127.0.0.1', nowMs: now }).live.decision;
  };
  const merchant = { sub: 'mia', roles: ['merchant'] };
  assert.equal(decide(merchant, 'shop.orders.refund'), 'allow');
  assert.equal(decide(merchant, 'shop.orders.refund'), 'allow'); // the kept entities
  assert.equal(decide(merchant, 'shop.orders.create'), 'deny', 'the same user on a route for customers only');
  assert.equal(decide({ sub: 'mia', roles: ['customer'] }, 'shop.orders.refund'), 'deny', 'the same user with a new token and other roles');
  assert.equal(decide({ sub: 'mia', roles: ['customer'] }, 'shop.orders.create'), 'allow');
  assert.equal(decide(merchant, 'shop.orders.refund'), 'allow');
});

test('payments may be called by orders for the charge only', () => {
  assert.deepEqual(call('payments', 'spiffe://demo/shop/orders', 'POST', '/payments/charge').reasons, ['call:orders->payments:POST /payments/charge']);
  assert.equal(call('payments', 'spiffe://demo/shop/orders', 'GET', '/payments/charge').decision, 'deny');
  assert.equal(call('payments', 'spiffe://demo/shop/orders', 'POST', '/payments/refund').decision, 'deny');
  assert.equal(call('payments', 'spiffe://demo/shop/users', 'POST', '/payments/charge').decision, 'deny');
  assert.equal(call('payments', 'spiffe://demo/gateway', 'POST', '/payments/charge').decision, 'deny', 'no route reaches payments');
});

test('the gateway may call exactly the operations its routes expose', () => {
  assert.deepEqual(call('orders', 'spiffe://demo/gateway', 'GET', '/shop/orders/o-1').reasons, ['route:shop.orders.get:forward']);
  assert.equal(call('orders', 'spiffe://demo/gateway', 'DELETE', '/shop/orders/o-1').decision, 'deny');
  assert.equal(call('orders', 'spiffe://demo/gateway', 'GET', '/__seen').decision, 'deny');
  assert.equal(call('orders', 'spiffe://other/gateway', 'GET', '/shop/orders').decision, 'deny');
});

test('the short forms are plain Cedar with one @id per rule', () => {
  const text = shortFormPolicies(config);
  assert.match(text, /@id\("route:shop\.orders\.refund"\)\npermit\(principal, action == Action::"shop\.orders\.refund", resource == Route::"shop\.orders\.refund"\) when \{ principal in Role::"merchant" \|\| principal in Role::"admin" \};/);
  assert.equal((text.match(/@id\(/g) ?? []).length, config.routes.filter((r) => r.roles.length > 0).length + config.routes.length + config.calls.reduce((n, c) => n + c.operations.length, 0));
});

test('a policy file that does not parse is refused with its file, line and column', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-pol-'));
  writeFileSync(join(dir, 'bad.cedar'), '@id("ok")\npermit(principal, action, resource);\n\npermit(principal, action, resource) when { 1 + };\n');
  const bad: PortcullisConfig = { ...shortOnly, source: join(dir, 'portcullis.yaml'), policies: { ...shortOnly.policies, files: [join(dir, 'bad.cedar')] } };
  assert.throws(() => PolicySet.fromConfig(bad), (err: unknown) => {
    assert.equal((err as PortcullisError).code, 'PCL_ERR_POLICY_INVALID');
    assert.match((err as Error).message, /bad\.cedar:4:\d+/);
    return true;
  });
});

test('equal files give equal versions; a change gives a new one', () => {
  assert.equal(readPolicyBundle(shortOnly).version, readPolicyBundle(shortOnly).version);
  const other: PortcullisConfig = { ...shortOnly, calls: [] };
  assert.notEqual(readPolicyBundle(other).version, readPolicyBundle(shortOnly).version);
});

test('a compiled bundle carries its parse: a data plane compiles it, every policy, without loading cedar-wasm', async () => {
  const clinic = loadConfig(join(repoRoot, 'examples', 'clinic', 'portcullis.yaml'));
  const first = PolicySet.fromConfig(clinic);
  assert.ok(first.bundle.parsed && first.bundle.parsed.live.length > 0);
  assert.equal(first.bundle.version, readPolicyBundle(clinic).version, 'the parse is not part of the version');
  const file = join(mkdtempSync(join(tmpdir(), 'pcl-parsed-')), 'bundle.json');
  writeFileSync(file, JSON.stringify(first.bundle));
  // A fresh process, as a data plane: the parser must stay unloaded.
  const { execFileSync } = await import('node:child_process');
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', `
    import { readFileSync } from 'node:fs';
    const { PolicySet } = await import(${JSON.stringify(join(repoRoot, 'dist', 'src', 'policy', 'policy-set.js'))});
    const { cedarWasmLoaded } = await import(${JSON.stringify(join(repoRoot, 'dist', 'src', 'policy', 'cedar', 'parse.js'))});
    const set = PolicySet.compile(JSON.parse(readFileSync(${JSON.stringify(file)}, 'utf8')), { validated: true });
    console.log(JSON.stringify({ loaded: cedarWasmLoaded(), policies: set.engine.policies.length }));
  `], { encoding: 'utf8' });
  const r = JSON.parse(out) as { loaded: boolean; policies: number };
  assert.equal(r.loaded, false, 'cedar-wasm was never loaded');
  assert.equal(r.policies, first.engine.policies.length);
});
