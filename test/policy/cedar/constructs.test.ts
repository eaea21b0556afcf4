// Every construct of the language, one `when` expression at a time, against cedar-wasm on a fixed
// store: the engine must give the same decision, reasons and erring policies, and must compile
// the policy (no cedar-wasm fallback) for everything but `unknown`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthzRequest, EntityJson } from '../../../src/policy/cedar/types.js';
import { U, assertAgree, pair } from './oracle.js';

const entities: EntityJson[] = [
  {
    uid: U('User', 'alice'),
    attrs: {
      n: 1, s: 'abc', r: { a: 1, b: { c: true } }, set: [1, 2, 3], owner: { __entity: U('User', 'bob') },
      ip: { __extn: { fn: 'ip', arg: '10.1.2.3' } }, big: 2 ** 60, dec: { __extn: { fn: 'decimal', arg: '1.5' } },
      when: { __extn: { fn: 'datetime', arg: '2024-06-01T12:00:00Z' } }, ttl: { __extn: { fn: 'duration', arg: '90m' } },
    },
    parents: [U('Group', 'g1')],
    tags: { t: 1, u: 'x' },
  },
  { uid: U('Group', 'g1'), attrs: {}, parents: [U('Group', 'g2')] },
  { uid: U('Group', 'g2'), attrs: { name: 'top' }, parents: [] },
  { uid: U('Doc', 'd1'), attrs: { owner: { __entity: U('User', 'alice') }, tags: ['a', 'b'] }, parents: [U('Folder', 'f')] },
  { uid: U('Action', 'view'), attrs: {}, parents: [U('Action', 'read')] },
];
const request: AuthzRequest = {
  principal: U('User', 'alice'),
  action: U('Action', 'view'),
  resource: U('Doc', 'd1'),
  context: { hour: 10, ip: { __extn: { fn: 'ip', arg: '203.0.113.5' } }, s: 'x', rec: { a: [1, { b: 2 }] } },
};

const CASES: Record<string, string[]> = {
  'literals and equality': [
    'true', 'false', '1 == 1', '1 == "1"', '"a" == "a"', 'User::"alice" == principal', 'principal == resource',
    '[1, 2] == [2, 1, 1]', '[1, [2]] == [[2], 1]', '{a: 1} == {a: 1}', '{a: 1} == {a: 1, b: 2}', '{a: [1, {b: 2}]} == context.rec',
    'ip("10.0.0.1") == ip("10.0.0.1/32")', 'ip("10.0.0.1/24") == ip("10.0.0.0/24")', 'decimal("1.0") == decimal("1.0000")',
    'duration("1h") == duration("60m")', 'datetime("2024-01-01") == datetime("2024-01-01T00:00:00Z")', 'principal != resource',
    '[] == []', '{} == {}', '"\\u{1F600}" == "😀"',
  ],
  'long arithmetic and overflow': [
    '1 + 2 * 3 == 7', '1 - 2 - 3 == -4', '-principal.n == -1', '-(-9223372036854775807 - 1) == 0',
    '9223372036854775807 + 1 == 0', '-9223372036854775807 - 2 == 0', '9223372036854775807 * 2 == 0', '4611686018427387904 * 2 == 0',
    '9223372036854775807 == 9223372036854775807', '-9223372036854775808 < -9223372036854775807', '9007199254740993 > 9007199254740992',
    '9007199254740991 + 1 > 9007199254740991', '9007199254740991 * 3 == 27021597764222973', 'principal.big + 1 > principal.big',
    'principal.big == 1152921504606847000', 'principal.n * 9223372036854775807 * 2 == 1', '1 + "a" == 2', '"a" - 1 == 0',
    '1 < 2', '2 <= 2', '3 > 2', '2 >= 3', '"a" < "b"', 'true < false', 'principal < 1',
  ],
  'boolean operators': [
    '1 && true', 'false && 1', 'true || 1', 'false || 1', 'true && principal.missing', 'false && principal.missing',
    'true || principal.missing', '!1', '!(1 == 1)', '!!true', 'if 1 then true else true', 'if true then 1 else true',
    'if principal.n == 1 then true else 1', 'if false then principal.missing else true', 'true && (false || true)',
  ],
  'hierarchy: in and is': [
    'principal in principal', 'principal in Group::"g1"', 'principal in Group::"g2"', 'principal in Group::"nope"',
    'principal in [Group::"nope", Group::"g2"]', 'principal in []', 'principal in [1]', 'principal in [principal, 1]', '1 in principal',
    'principal in 1', 'resource in Folder::"f"', 'action in Action::"read"', 'User::"ghost" in User::"ghost"', 'User::"ghost" in Group::"g1"',
    'principal is User', 'principal is Group', '1 is User', 'principal is User in Group::"g2"', 'principal is Group in Group::"g2"',
    'principal is User in [Group::"g1"]', 'principal is User in 1', 'resource is Doc in resource',
  ],
  'attributes, has, tags': [
    'principal.n == 1', 'principal.foo', 'principal has foo', 'principal has n', 'principal["s"] == "abc"', 'principal.r.b.c',
    'principal has r.b.c', 'principal has r.x.c', 'principal.r has b.c', 'principal has n.a', 'User::"ghost" has n', 'User::"ghost".n == 1',
    'context.x', 'context has x', 'context has rec.a', 'context.s.foo', 'context.s has foo', '{a: 1} has a', '{a: 1}.b == 1',
    'resource.owner == principal', 'resource.owner.n == 1', 'principal.owner.n == 1', 'principal.getTag("t") == 1',
    'principal.getTag("zz") == 1', 'principal.hasTag("t")', 'principal.hasTag("zz")', 'principal.hasTag(1)', 'principal.getTag(1) == 1',
    'User::"ghost".hasTag("t")', 'User::"ghost".getTag("t") == 1', '1.hasTag("t")', 'resource.hasTag("t")', '{a: principal}.a == principal',
  ],
  'sets and like': [
    '[1, 2].contains(1)', '[1, 2].contains("1")', '1.contains(1)', '[1, 2].containsAll([1])', '[1, 2].containsAll(1)', '1.containsAll([1])',
    '[1, 2].containsAny([3, 2])', '[1, 2].containsAny([])', '[].isEmpty()', '[1].isEmpty()', '1.isEmpty()', 'principal.set.contains(2)',
    'principal.set.containsAll([1, 1, 2])', '[principal, resource].contains(User::"alice")', 'context.rec.a.contains({b: 2})',
    '[{a: [1, 2]}].contains({a: [2, 1]})', 'principal.s like "a*"', 'principal.s like "*c"', 'principal.s like "a*c"', 'principal.s like "*b*"',
    'principal.s like "abc"', 'principal.s like "ab"', 'principal.s like "*"', '"" like ""', '"" like "*"', '"a*b" like "a\\*b"', '"axb" like "a\\*b"',
    '"aaa" like "a*a*a"', '"ab" like "a*a*b"', '"😀x" like "*x"', '1 like "1"',
  ],
  'ip extension': [
    'context.ip.isInRange(ip("203.0.113.0/24"))', 'context.ip.isInRange(ip("198.51.100.0/24"))', 'principal.ip.isIpv4()', 'principal.ip.isIpv6()',
    'ip("::1").isLoopback()', 'ip("127.0.0.1/7").isLoopback()', 'ip("127.0.0.1/8").isLoopback()', 'ip("224.0.0.1").isMulticast()',
    'ip("224.0.0.1/3").isMulticast()', 'ip("ff02::1").isMulticast()', 'ip("1.2.3.4").isInRange(ip("::/0"))', 'ip("::ffff:127.0.0.1").isIpv6()',
    'ip("01.2.3.4").isIpv4()', 'ip("1.2.3.4/33").isIpv4()', 'ip(principal.s).isIpv4()', 'ip(1).isIpv4()', 'ip("1.2.3.4").isInRange(1)',
    '"1.2.3.4".isIpv4()', 'ip("1.2.3.4").isInRange(1, 2)', 'ip("10.0.0.0/23").isInRange(ip("10.0.0.0/24"))',
  ],
  'decimal extension': [
    'principal.dec.lessThan(decimal("2.0"))', 'principal.dec.greaterThanOrEqual(decimal("1.5"))', 'decimal("1.0") < decimal("2.0")',
    'decimal("-0.5").lessThan(decimal("0.0"))', 'decimal("1.23456") == decimal("1.2346")', 'decimal("1") == decimal("1.0")',
    'decimal("922337203685477.5807").greaterThan(decimal("0.0"))', 'decimal("922337203685477.5808") == decimal("0.0")',
    'decimal("-922337203685477.5808").lessThanOrEqual(decimal("0.0"))', 'decimal("1.5").lessThan(1)',
  ],
  'datetime and duration extensions': [
    'datetime("2024-01-01") < datetime("2024-01-02")', 'duration("1h") < duration("2h")', 'datetime("2024-01-01") < duration("2h")',
    'datetime("2024-01-01") <= 1', 'principal.when.toTime() == duration("12h")', 'principal.when.toDate() == datetime("2024-06-01")',
    'datetime("1969-12-31T23:00:00Z").toDate() == datetime("1969-12-31")', 'datetime("1969-12-31T23:00:00Z").toTime() == duration("23h")',
    'datetime("2024-01-01").offset(duration("1d")) == datetime("2024-01-02")', 'datetime("2024-01-02").durationSince(datetime("2024-01-01")) == duration("1d")',
    'datetime("2024-01-02").durationSince(duration("1d")) == duration("1d")', 'principal.ttl.toHours() == 1', 'principal.ttl.toMinutes() == 90',
    'duration("-90m").toHours() == -1', 'duration("1d2h3m4s5ms").toMilliseconds() == 93784005', 'duration("1h").toDays() == 0',
    'duration("-9223372036854775808ms") < duration("0ms")', 'duration("106751991168d") == duration("1ms")', 'datetime("2024-02-30") == datetime("2024-03-01")',
    'datetime("2024-01-01T00:00:00+0100") == datetime("2023-12-31T23:00:00Z")', 'datetime("2024-01-01T24:00:00Z") < datetime("2024-01-02")',
    'datetime("1970-01-01").offset(duration("9223372036854775807ms")).offset(duration("1ms")) == datetime("1970-01-01")',
  ],
  'records and sets built from expressions': [
    '{"__proto__": 1} has __proto__', '{"__proto__": principal}["__proto__"] == principal', '{a: 1} has __proto__', '{} has toString',
    'context has __proto__', 'principal has constructor',
    '{a: principal.n, b: [resource]} == {b: [resource], a: 1}', '[principal.n, principal.missing].isEmpty()', '{a: principal.missing}.a == 1',
    '[context.hour, 10].containsAll([10])',
  ],
};

for (const [name, exprs] of Object.entries(CASES)) {
  test(`constructs agree with cedar-wasm: ${name}`, () => {
    for (const expr of exprs) {
      const p = pair({ p: `permit(principal, action, resource) when { ${expr} };` });
      assert.deepEqual(p.warnings, [], `${expr} should compile`);
      assertAgree(p, request, entities, expr);
    }
  });
}

test('unless and several clauses evaluate in order, as one conjunction', () => {
  const p = pair({
    a: 'permit(principal, action, resource) when { true } unless { principal.missing };',
    b: 'permit(principal, action, resource) when { false } unless { principal.missing };',
    c: 'forbid(principal, action, resource) unless { principal.n == 2 } when { context.hour < 12 };',
    d: 'permit(principal, action, resource) unless { 1 };',
  });
  assertAgree(p, request, entities, 'clauses');
});

test('scope constraints agree with cedar-wasm', () => {
  const p = pair({
    eq: 'permit(principal == User::"alice", action == Action::"view", resource == Doc::"d1");',
    neq: 'permit(principal == User::"bob", action, resource);',
    pin: 'permit(principal in Group::"g2", action, resource);',
    is: 'permit(principal is User, action, resource is Doc);',
    isin: 'permit(principal is User in Group::"g1", action, resource);',
    isnot: 'permit(principal is Group, action, resource);',
    ain: 'permit(principal, action in [Action::"read", Action::"write"], resource);',
    aeq: 'permit(principal, action == Action::"read", resource);',
    rin: 'forbid(principal, action, resource in Folder::"f") when { context.hour > 20 };',
  });
  assertAgree(p, request, entities, 'scopes');
  // The same request, the action now without its group: `action in` must no longer match.
  assertAgree(p, request, entities.filter((e) => e.uid.type !== 'Action'), 'scopes, flat actions');
  for (const principal of [U('User', 'bob'), U('Group', 'g1'), U('Other', 'x')]) {
    assertAgree(p, { ...request, principal }, entities, `scopes for ${principal.type}::${principal.id}`);
  }
});

test('integer literals beyond 2^53 keep their exact value', () => {
  // Both round to 2^63 as JS numbers: recovered by position from the policy text.
  for (const expr of ['9223372036854775806 + 1 == 9223372036854775807', '9223372036854775807 - 9223372036854775806 == 1', '[9007199254740993, 9007199254740992].contains(9007199254740992 + 1)']) {
    const p = pair({ p: `permit(principal, action, resource) when { ${expr} };` });
    assert.deepEqual(p.warnings, [], expr);
    assert.equal(assertAgree(p, request, entities, expr).decision, 'allow', expr);
  }
  // Record fields come back sorted, so two such literals in one record cannot be placed: cedar-wasm
  // evaluates that policy, with the same answer.
  const p = pair({ p: 'permit(principal, action, resource) when { {b: 9007199254740993, a: 9007199254740992}.b - 9007199254740992 == 1 };' });
  assert.equal(p.warnings.length, 1);
  assert.equal(assertAgree(p, request, entities, 'record').decision, 'allow');
});

test('unknown() is evaluated by cedar-wasm, with the same answer', () => {
  const p = pair({ p: 'permit(principal, action, resource) when { unknown("x") == 1 };', q: 'permit(principal, action, resource);' });
  assert.equal(p.warnings.length, 1);
  assert.match(p.warnings[0] ?? '', /^test\.cedar:1:1: policy "p" is evaluated by cedar-wasm/);
  assertAgree(p, request, entities, 'unknown');
});

test('error messages are worded like cedar-wasm for the common errors', () => {
  const exprs = ['1 + "a" == 2', '9223372036854775807 + 1 == 0', 'principal.foo', 'context.x', 'User::"ghost".n == 1', 'principal.getTag("zz") == 1', '1 && true', 'principal in [1]', '1.foo'];
  for (const expr of exprs) {
    const p = pair({ p: `permit(principal, action, resource) when { ${expr} };` });
    assert.deepEqual(p.ours(request, entities).errors, p.reference(request, entities).errors, expr);
  }
});
