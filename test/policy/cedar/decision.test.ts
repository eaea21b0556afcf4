// The decision rule and its failure modes: forbid beats permit, no permit means deny, an erring
// policy is never satisfied and is listed in errors, malformed input is a deny. And `explain`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CedarEngine, cedarWasmDecision } from '../../../src/policy/cedar/engine.js';
import type { AuthzRequest, EntityJson } from '../../../src/policy/cedar/types.js';
import { U, assertAgree, pair } from './oracle.js';

const req: AuthzRequest = { principal: U('User', 'alice'), action: U('Action', 'view'), resource: U('Doc', 'd'), context: { n: 1 } };
const entities: EntityJson[] = [{ uid: U('User', 'alice'), attrs: { role: 'admin' }, parents: [] }];

test('forbid beats permit; reasons are the satisfied policies of the winning effect', () => {
  const p = pair({
    p1: 'permit(principal, action, resource);',
    p2: 'permit(principal, action, resource) when { principal.role == "admin" };',
    f1: 'forbid(principal, action, resource) when { context.n == 1 };',
    f2: 'forbid(principal, action, resource) when { context.n == 2 };',
  });
  assert.deepEqual(assertAgree(p, req, entities, 'forbid'), { decision: 'deny', reasons: ['f1'], errors: [] });
  assert.deepEqual(assertAgree(p, { ...req, context: { n: 3 } }, entities, 'permit'), { decision: 'allow', reasons: ['p1', 'p2'], errors: [] });
});

test('no satisfied permit is deny by default, with no reason', () => {
  const p = pair({ p: 'permit(principal, action, resource) when { context.n == 2 };' });
  assert.deepEqual(assertAgree(p, req, entities, 'default'), { decision: 'deny', reasons: [], errors: [] });
});

test('an erring permit never allows; an erring forbid does not deny (Cedar skips it) but is reported', () => {
  const permitErr = pair({ p: 'permit(principal, action, resource) when { principal.missing == 1 };' });
  const d = assertAgree(permitErr, req, entities, 'permit error');
  assert.deepEqual(d, { decision: 'deny', reasons: [], errors: ['p: `User::"alice"` does not have the attribute `missing`'] });

  const forbidErr = pair({ ok: 'permit(principal, action, resource);', f: 'forbid(principal, action, resource) when { context.n + "x" == 1 };' });
  assert.deepEqual(assertAgree(forbidErr, req, entities, 'forbid error'), { decision: 'allow', reasons: ['ok'], errors: ['f: type error: expected long, got string'] });
});

test('every kind of evaluation error denies when it is the only permit', () => {
  const errors = [
    '1 + "a" == 2', '9223372036854775807 + 1 > 0', 'principal.missing', 'context.missing', 'User::"ghost".role == "x"', '1 && true',
    'if 1 then true else true', 'principal.getTag("x") == 1', 'principal in [1]', '1.contains(1)', '"a" like "a" && 1 like "1"',
    'ip("bad").isIpv4()', 'decimal("1").lessThan(decimal("2.0"))', 'datetime("2024-13-01") < datetime("2024-01-01")', 'duration("1x") < duration("1h")',
    'ip("1.2.3.4").isInRange(1)', 'principal < 1', '-"a" == 1', '!"a"', 'principal.role.foo',
  ];
  for (const e of errors) {
    const p = pair({ p: `permit(principal, action, resource) when { ${e} };` });
    const d = assertAgree(p, req, entities, e);
    assert.equal(d.decision, 'deny', e);
    assert.equal(d.errors.length, 1, e);
    assert.match(d.errors[0] ?? '', /^p: /, e);
  }
});

test('malformed input is a deny naming the request, whatever the policies say', () => {
  const engine = CedarEngine.load({ sources: [{ text: 'permit(principal, action, resource);' }] });
  const bad = { ...req, context: { n: 0.5 } };
  assert.deepEqual(engine.isAuthorized(bad, entities).decision, 'deny');
  assert.match(engine.isAuthorized(bad, entities).errors[0] ?? '', /^request: /);
  assert.equal(engine.isAuthorized(req, [...entities, { uid: U('User', 'alice'), attrs: { role: 'x' }, parents: [] }]).decision, 'deny');
});

test('explain lists the policies whose scope matched, with what they did', () => {
  const engine = CedarEngine.load({
    sources: [{
      file: 'e.cedar',
      text: [
        '@id("admins") permit(principal, action == Action::"view", resource) when { principal.role == "admin" };',
        '@id("others") permit(principal, action == Action::"edit", resource);',
        '@id("bad") forbid(principal, action, resource) when { principal.nope };',
        '@id("typed") permit(principal is Group, action, resource);',
        '@id("legacy") permit(principal, action, resource) when { context.n == 1 };',
      ].join('\n'),
    }],
  }, { forceFallback: (id) => id === 'legacy' });
  const { decision, policies } = engine.explain(req, entities);
  assert.deepEqual(decision, { decision: 'allow', reasons: ['admins', 'legacy'], errors: ['bad: `User::"alice"` does not have the attribute `nope`'] });
  assert.deepEqual(policies, [
    { id: 'admins', effect: 'permit', satisfied: true, file: 'e.cedar', line: 1 },
    { id: 'bad', effect: 'forbid', satisfied: false, error: '`User::"alice"` does not have the attribute `nope`', file: 'e.cedar', line: 3 },
    { id: 'legacy', effect: 'permit', satisfied: true, file: 'e.cedar', line: 5 },
  ]);
});

test('cedarWasmDecision: the reference in our shape, under our ids', () => {
  const policies = { mine: 'permit(principal, action, resource) when { principal.role == "admin" };', oops: 'forbid(principal, action, resource) when { principal.x };' };
  assert.deepEqual(cedarWasmDecision(policies, req, entities), { decision: 'allow', reasons: ['mine'], errors: ['oops: `User::"alice"` does not have the attribute `x`'] });
  // Templates and links.
  const linked = cedarWasmDecision({}, req, entities, {
    templates: { t: 'permit(principal == ?principal, action, resource);' },
    links: [{ template: 't', id: 'for-alice', principal: U('User', 'alice') }],
  });
  assert.deepEqual(linked, { decision: 'allow', reasons: ['for-alice'], errors: [] });
  // A refused request, and input cedar-wasm throws on, are a deny naming the request.
  assert.match(cedarWasmDecision(policies, { ...req, context: { n: 0.5 } }, entities).errors[0] ?? '', /^request: /);
  assert.match(cedarWasmDecision(policies, { ...req, context: { s: '\uD800' } }, entities).errors[0] ?? '', /^request: /);
  // attrs and parents may be left out, as our contract allows.
  assert.equal(cedarWasmDecision(policies, req, [{ uid: U('User', 'alice') }]).decision, 'deny');
});

test('input that throws while it is read is a deny, never an exception or an allow', () => {
  const engine = CedarEngine.load({ sources: [{ text: 'permit(principal, action, resource);' }] });
  const context = Object.defineProperty({}, 'x', { enumerable: true, get: () => { throw new Error('boom'); } });
  const d = engine.isAuthorized({ ...req, context }, entities);
  assert.equal(d.decision, 'deny');
  assert.match(d.errors[0] ?? '', /^request: .*boom/);
  const entity = Object.defineProperty({ uid: U('User', 'x') }, 'attrs', { enumerable: true, get: () => { throw new Error('bang'); } });
  assert.equal(engine.isAuthorized(req, [entity as EntityJson]).decision, 'deny'); // a getter standing in for attrs
  assert.equal(engine.explain(req, [entity as EntityJson]).decision.decision, 'deny');
});
