// The fallback: a policy the compiler does not compile is evaluated by cedar-wasm, with a warning
// at load and the same answers. Forced here on every policy, and on some, over a grid of requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthzRequest, EntityJson, TemplateLink } from '../../../src/policy/cedar/types.js';
import { U, pair, shape, type Policies } from './oracle.js';

const policies: Policies = {
  owner: 'permit(principal, action == Action::"read", resource) when { resource.owner == principal };',
  staff: 'permit(principal in Group::"staff", action in [Action::"read", Action::"write"], resource is Doc);',
  big: 'permit(principal, action, resource) when { context.n * 2 > 9223372036854775000 };',
  night: 'forbid(principal, action == Action::"write", resource) when { context.hour < 6 || context.hour > 22 };',
  broken: 'forbid(principal, action, resource) when { principal.clearance < 2 };',
  net: 'forbid(principal, action, resource) unless { context.ip.isInRange(ip("10.0.0.0/8")) };',
};
const templates: Policies = { share: 'permit(principal == ?principal, action, resource in ?resource);' };
const links: TemplateLink[] = [{ template: 'share', id: 'share-f', principal: U('User', 'carol'), resource: U('Folder', 'f') }];
const entities: EntityJson[] = [
  { uid: U('User', 'alice'), attrs: { clearance: 3 }, parents: [U('Group', 'staff')] },
  { uid: U('User', 'bob'), attrs: {}, parents: [] },
  { uid: U('Doc', 'd1'), attrs: { owner: { __entity: U('User', 'bob') } }, parents: [U('Folder', 'f')] },
];

function* requests(): Generator<AuthzRequest> {
  for (const principal of [U('User', 'alice'), U('User', 'bob'), U('User', 'carol')]) {
    for (const action of [U('Action', 'read'), U('Action', 'write')]) {
      for (const [hour, ip, n] of [[3, '10.1.1.1', 1], [12, '192.168.1.1', 4611686018427387000], [12, '10.0.0.5', 7]] as const) {
        yield { principal, action, resource: U('Doc', 'd1'), context: { hour, ip: { __extn: { fn: 'ip', arg: ip } }, n } };
      }
    }
  }
}

test('every policy through cedar-wasm gives the same answers as the compiled engine', () => {
  const compiled = pair(policies, { templates, links });
  const forced = pair(policies, { templates, links, internals: { forceFallback: true } });
  assert.deepEqual(compiled.warnings, []);
  assert.equal(forced.warnings.length, Object.keys(policies).length + links.length);
  assert.ok(forced.engine.policies.every((p) => !p.compiled));
  for (const req of requests()) {
    const a = compiled.ours(req, entities);
    const b = forced.ours(req, entities);
    assert.deepEqual(b, a, JSON.stringify(req)); // same order too: answers list policies in load order
    assert.deepEqual(shape(a), shape(compiled.reference(req, entities)));
  }
});

test('a mix of compiled and fallback policies merges into one answer', () => {
  const compiled = pair(policies, { templates, links });
  for (const pick of [['owner', 'night'], ['broken'], ['big', 'share-f'], ['staff', 'net']]) {
    const mixed = pair(policies, { templates, links, internals: { forceFallback: (id) => pick.includes(id) } });
    assert.deepEqual(mixed.engine.policies.filter((p) => !p.compiled).map((p) => p.id).sort(), [...pick].sort());
    for (const req of requests()) assert.deepEqual(mixed.ours(req, entities), compiled.ours(req, entities), `${pick} ${JSON.stringify(req)}`);
  }
});

test('a fallback policy sees malformed input refused like everything else', () => {
  const forced = pair(policies, { internals: { forceFallback: true } });
  const d = forced.ours({ principal: U('User', 'alice'), action: U('Action', 'read'), resource: U('Doc', 'd1'), context: { hour: 1.5 } }, entities);
  assert.equal(d.decision, 'deny');
  assert.match(d.errors[0] ?? '', /^request: /);
});

test('context escapes that only cedar-wasm evaluates send the whole request to it', () => {
  const p = pair(policies);
  const req: AuthzRequest = { principal: U('User', 'alice'), action: U('Action', 'read'), resource: U('Doc', 'd1'), context: { hour: 12, ip: { __extn: { fn: 'unknown', arg: 'ip' } } } };
  assert.deepEqual(shape(p.ours(req, entities)), shape(p.reference(req, entities)));
});
