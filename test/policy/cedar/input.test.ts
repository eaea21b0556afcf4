// Requests and entity lists are read the way cedar-wasm reads them: what it refuses as a whole
// the engine refuses too (deny, one "request: ..." error, never a reason), and what it accepts
// means the same thing (escapes, numbers beyond 2^53, duplicates, hierarchies).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Entities, InputError } from '../../../src/policy/cedar/entities.js';
import type { AuthzRequest, EntityJson } from '../../../src/policy/cedar/types.js';
import { U, assertAgree, pair } from './oracle.js';

const policies = pair({
  any: 'permit(principal, action, resource);',
  ctx: 'permit(principal, action, resource) when { context has x && context.x == context.x };',
  attr: 'forbid(principal, action, resource) when { principal has a && principal.a == 0 };',
  grp: 'permit(principal in Group::"top", action, resource) when { context has x };',
});
const base: AuthzRequest = { principal: U('User', 'alice'), action: U('Action', 'view'), resource: U('Doc', 'd') };
const alice = (extra: Partial<EntityJson> = {}): EntityJson => ({ uid: U('User', 'alice'), attrs: {}, parents: [], ...extra });

// Built from JSON where the value is not expressible in our types (null, odd shapes).
const raw = (v: unknown) => v as never;

const REFUSED: Array<[string, AuthzRequest, EntityJson[]]> = [
  ['null in context', { ...base, context: raw({ x: null }) }, []],
  ['NaN in context', { ...base, context: { x: NaN } }, []],
  ['fraction in context', { ...base, context: { x: 1.5 } }, []],
  ['number beyond i64', { ...base, context: { x: 2 ** 63 } }, []],
  ['null inside a set', { ...base, context: raw({ x: [1, null] }) }, []],
  ['undefined inside a set', { ...base, context: raw({ x: [1, undefined] }) }, []],
  ['bad ip in an escape', { ...base, context: { x: { __extn: { fn: 'ip', arg: 'bad' } } } }, []],
  ['unknown extension function', { ...base, context: { x: { __extn: { fn: 'nope', arg: 'x' } } } }, []],
  ['extension arity', { ...base, context: raw({ x: { __extn: { fn: 'ip', args: ['1.2.3.4', '1.1.1.1'] } } }) }, []],
  ['extension argument type', { ...base, context: raw({ x: { __extn: { fn: 'ip', arg: 5 } } }) }, []],
  ['__expr escape', { ...base, context: raw({ x: { __expr: 'User::"a"' } }) }, []],
  ['bad entity type in an escape', { ...base, context: { x: { __entity: U('Us er', 'a') } } }, []],
  ['context not a record', { ...base, context: raw([1]) }, []],
  ['context an entity escape', { ...base, context: raw({ __entity: U('User', 'a') }) }, []],
  ['context an extension escape', { ...base, context: raw({ __extn: { fn: 'ip', arg: '1.2.3.4' } }) }, []],
  ['context a string', { ...base, context: raw('x') }, []],
  ['bad principal type', { ...base, principal: U('if', 'a') }, []],
  ['namespace component reserved', { ...base, principal: U('A::in', 'a') }, []],
  ['__cedar namespace', { ...base, principal: U('__cedar::X', 'a') }, []],
  ['whitespace in a type', { ...base, principal: U('A :: B', 'a') }, []],
  ['uid without id', { ...base, principal: raw({ type: 'User' }) }, []],
  ['conflicting duplicate entity', base, [alice({ attrs: { a: 1 } }), alice({ attrs: { a: 2 } })]],
  ['null attribute', base, [alice({ attrs: raw({ a: null }) })]],
  ['null tag', base, [alice({ tags: raw({ a: null }) })]],
  ['tags null', base, [alice({ tags: raw(null) })]],
  ['attrs not a map', base, [alice({ attrs: raw([1]) })]],
  ['parents not a list', base, [alice({ parents: raw({}) })]],
  ['parent not a uid', base, [alice({ parents: raw([1]) })]],
  ['entity is null', base, [raw(null)]],
  ['self parent', base, [alice({ parents: [U('User', 'alice')] })]],
  ['cycle', base, [alice({ parents: [U('Group', 'g')] }), { uid: U('Group', 'g'), attrs: {}, parents: [U('Group', 'h')] }, { uid: U('Group', 'h'), attrs: {}, parents: [U('User', 'alice')] }]],
  ['action with a non-action parent', base, [{ uid: U('Action', 'view'), attrs: {}, parents: [U('Group', 'g')] }]],
  ['namespaced action with a non-action parent', base, [{ uid: U('App::Action', 'view'), attrs: {}, parents: [U('App::Group', 'g')] }]],
];

test('input cedar-wasm refuses is refused: deny, no reason, one request error', () => {
  for (const [label, req, entities] of REFUSED) {
    const ref = policies.reference(req, entities);
    assert.equal(ref.errors[0]?.startsWith('request: '), true, `${label}: cedar-wasm should refuse (${JSON.stringify(ref)})`);
    const ours = policies.ours(req, entities);
    assert.equal(ours.decision, 'deny', label);
    assert.deepEqual(ours.reasons, [], label);
    assert.equal(ours.errors.length, 1, label);
    assert.match(ours.errors[0] ?? '', /^request: /, label);
  }
});

const nest = (depth: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
};

test('nesting deeper than cedar-wasm reads is refused, up to it is not', () => {
  // The reference throws "recursion limit exceeded" past 127 levels counted from the call object.
  const cases: Array<[number, AuthzRequest, EntityJson[]]> = [
    [125, { ...base, context: raw({ x: nest(125) }) }, []],
    [126, { ...base, context: raw({ x: nest(126) }) }, []],
    [123, base, [alice({ attrs: raw({ x: nest(123) }) })]],
    [124, base, [alice({ attrs: raw({ x: nest(124) }) })]],
    [123, base, [alice({ tags: raw({ x: nest(123) }) })]],
    [124, base, [alice({ tags: raw({ x: nest(124) }) })]],
  ];
  for (const [depth, req, entities] of cases) {
    const ref = policies.reference(req, entities);
    const ours = policies.ours(req, entities);
    assert.equal(ours.errors[0]?.startsWith('request: ') ?? false, ref.errors[0]?.startsWith('request: ') ?? false, `depth ${depth}: ${JSON.stringify(ref.errors)}`);
    assert.equal(ours.decision, ref.decision, `depth ${depth}`);
  }
});

test('a lone surrogate anywhere is refused (cedar-wasm cannot even read it)', () => {
  for (const req of [{ ...base, context: { x: 'a\uD800' } }, { ...base, principal: U('User', '\uDC00') }, { ...base, context: { ['k\uD800']: 1 } }]) {
    assert.equal(policies.reference(req, []).errors[0]?.startsWith('request: '), true);
    assert.equal(policies.ours(req, []).decision, 'deny');
  }
});

const ACCEPTED: Array<[string, AuthzRequest, EntityJson[]]> = [
  ['numbers are read back from their shortest text', { ...base, context: { x: 2 ** 60, y: 2 ** 53 + 2, z: -(2 ** 62) } }, []],
  ['-0 is 0', { ...base, context: { x: -0 } }, []],
  ['undefined in a record is dropped', { ...base, context: raw({ x: 1, y: undefined }) }, []],
  ['implicit {type, id} is a record, not an entity', { ...base, context: { x: { type: 'User', id: 'a' } } }, []],
  ['entity escape with extra outer key is a record', { ...base, context: raw({ x: { __entity: U('User', 'a'), z: 1 } }) }, []],
  ['entity escape with extra inner key', { ...base, context: raw({ x: { __entity: { type: 'User', id: 'a', z: 1 } } }) }, []],
  ['entity escape with a numeric id is a record', { ...base, context: raw({ x: { __entity: { type: 'User', id: 1 } } }) }, []],
  ['extn escape without arg is a record', { ...base, context: raw({ x: { __extn: { fn: 'ip' } } }) }, []],
  ['extn escape with args', { ...base, context: raw({ x: { __extn: { fn: 'ip', args: ['1.2.3.4'] } } }) }, []],
  ['extn escape calling a method', { ...base, context: raw({ x: { __extn: { fn: 'isInRange', args: [{ __extn: { fn: 'ip', arg: '1.2.3.4' } }, { __extn: { fn: 'ip', arg: '1.0.0.0/8' } }] } } }) }, []],
  ['__expr that is not a string is a record', { ...base, context: raw({ x: { __expr: 1 } }) }, []],
  ['a __proto__ key is an ordinary attribute', { ...base, context: raw(JSON.parse('{"x": 1, "__proto__": {"__entity": {"type": "User", "id": "a"}}}')) }, []],
  ['uid as __entity', { ...base, principal: raw({ __entity: U('User', 'alice') }) }, [alice({ attrs: { a: 0 } })]],
  ['uid as a pair', { ...base, principal: raw(['User', 'alice']) }, [alice({ attrs: { a: 0 } })]],
  ['identical duplicate entity', base, [alice({ attrs: { a: 1 } }), alice({ attrs: { a: 1 } })]],
  ['type names that are not keywords', { ...base, principal: U('principal', 'x'), resource: U('A::B::permit', 'y') }, []],
  ['transitive parents, dangling parent', { ...base, context: { x: 1 } }, [alice({ parents: [U('Group', 'mid'), U('Group', 'gone')] }), { uid: U('Group', 'mid'), attrs: {}, parents: [U('Group', 'top')] }]],
  ['action groups', base, [{ uid: U('Action', 'view'), attrs: {}, parents: [U('Action', 'read'), U('App::Action', 'all')] }]],
  ['attrs and parents may be absent (our contract)', base, [{ uid: U('User', 'alice') }]],
  ['same id, other types', { ...base, context: { x: 1 } }, [alice({ attrs: { a: 1 } }), { uid: U('Group', 'alice'), attrs: { a: 0 }, parents: [] }, { uid: U('Group', 'top'), attrs: {}, parents: [] }]],
];

test('input cedar-wasm accepts means the same', () => {
  for (const [label, req, entities] of ACCEPTED) {
    const d = assertAgree(policies, req, entities, label);
    assert.equal(d.errors.some((e) => e.startsWith('request: ')), false, label);
  }
});

test('a long entity list (indexed by a map) agrees as a short one does', () => {
  const entities: EntityJson[] = [];
  for (let i = 0; i < 40; i++) entities.push({ uid: U('Group', `g${i}`), attrs: { a: i }, parents: i ? [U('Group', `g${i - 1}`)] : [] });
  entities.push(alice({ parents: [U('Group', 'g39')] }), { uid: U('Group', 'top'), attrs: {}, parents: [] });
  entities[0] = { uid: U('Group', 'g0'), attrs: {}, parents: [U('Group', 'top')] };
  assertAgree(policies, { ...base, context: { x: 1 } }, entities, 'chain of 40');
  entities.push({ uid: U('Group', 'g5'), attrs: {}, parents: [] }); // conflicting duplicate
  assert.equal(policies.ours({ ...base, context: { x: 1 } }, entities).errors[0]?.startsWith('request: '), true);
});

test('Entities.fromJson refuses malformed lists with InputError, and can be reused', () => {
  assert.throws(() => Entities.fromJson([alice({ parents: [U('User', 'alice')] })]), InputError);
  const store = Entities.fromJson([alice({ parents: [U('Group', 'top')] })]);
  const req = { ...base, context: { x: 1 } };
  // `source` is the list given above, only typed readonly.
  assert.deepEqual(policies.engine.isAuthorized(req, store), policies.engine.isAuthorized(req, store.source as EntityJson[]));
  assert.equal(policies.engine.isAuthorized(req, store).decision, 'allow');
});
