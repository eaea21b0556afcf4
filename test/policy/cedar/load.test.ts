// Loading a policy set: every refusal is PCL_ERR_POLICY_INVALID located as file:line:col, ids
// follow the documented rule, and a schema means strict validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortcullisError } from '../../../src/core/errors.js';
import { CedarEngine } from '../../../src/policy/cedar/engine.js';
import type { LoadOptions } from '../../../src/policy/cedar/types.js';

function refusal(opts: LoadOptions): string {
  try {
    CedarEngine.load(opts);
  } catch (e) {
    assert.ok(e instanceof PortcullisError);
    assert.equal(e.code, 'PCL_ERR_POLICY_INVALID');
    return e.message;
  }
  assert.fail('the set should be refused');
}

test('a parse error is located at its file, line and column', () => {
  const text = 'permit(principal, action, resource);\n\npermit(principal, action, resource)\n  when { 1 + };';
  assert.match(refusal({ sources: [{ text, file: 'a.cedar' }] }), /^a\.cedar:4:14: unexpected token `}`/);
  // cedar-wasm reports UTF-8 byte offsets; the column counts characters.
  const unicode = '// é😀\npermit(principal, action, resource) when { "é😀" == @ };';
  assert.match(refusal({ sources: [{ text: unicode, file: 'u.cedar' }] }), /^u\.cedar:2:52: /);
  // The second source is located in its own file.
  const two = [{ text: 'permit(principal, action, resource);', file: 'ok.cedar' }, { text: '\n\n  forbid(principal action, resource);', file: 'bad.cedar' }];
  assert.match(refusal({ sources: two }), /^bad\.cedar:3:/);
});

test('policy ids: @id when present, else policy<N> counting every policy and template across sources', () => {
  const engine = CedarEngine.load({
    sources: [
      { text: 'permit(principal, action, resource);', file: 'a' },
      { text: '@id("x") permit(principal, action, resource);\npermit(principal == ?principal, action, resource);\n// note\nforbid(principal, action, resource);', file: 'b' },
    ],
  });
  assert.deepEqual(engine.policies.map((p) => [p.id, p.effect, p.file, p.line, p.compiled]), [
    ['policy0', 'permit', 'a', 1, true],
    ['x', 'permit', 'b', 1, true],
    ['policy3', 'forbid', 'b', 4, true],
  ]);
  assert.deepEqual(engine.policies[1]?.annotations, { id: 'x' });
});

test('duplicate and empty ids are refused where the second one is', () => {
  assert.match(refusal({ sources: [{ text: '@id("x") permit(principal, action, resource);', file: 'a' }, { text: '\n@id("x") permit(principal, action, resource);', file: 'b' }] }), /^b:2:1: duplicate policy id "x" \(first at a:1:1\)/);
  assert.match(refusal({ sources: [{ text: 'permit(principal, action, resource);\n@id("policy0") permit(principal, action, resource);', file: 'a' }] }), /^a:2:1: duplicate policy id "policy0"/);
  assert.match(refusal({ sources: [{ text: '@id("") permit(principal, action, resource);', file: 'a' }] }), /^a:1:1: @id needs a non-empty value/);
  assert.match(refusal({ sources: [{ text: '@id("a") @id("b") permit(principal, action, resource);', file: 'a' }] }), /^a:1:10: duplicate annotation/);
});

const schema = {
  text: 'entity User { department: String };\nentity Doc;\naction view appliesTo { principal: [User], resource: [Doc] };',
  file: 'model.cedarschema',
};

test('with a schema the set is validated strictly and refused on any validation error', () => {
  const bad = 'permit(principal, action == Action::"view", resource);\npermit(principal, action == Action::"view", resource)\n  when { principal.department == 1 };';
  const message = refusal({ schema, sources: [{ text: bad, file: 'p.cedar' }] });
  assert.match(message, /^p\.cedar:3:10: the types Long and String are not compatible/);
  assert.match(refusal({ schema, sources: [{ text: 'permit(principal, action == Action::"edit", resource);', file: 'p.cedar' }] }), /^p\.cedar:1:29: .*unrecognized action/);
  // Strict mode: extension constructors need literals.
  const strict = 'permit(principal, action == Action::"view", resource) when { ip(principal.department).isIpv4() };';
  assert.match(refusal({ schema, sources: [{ text: strict, file: 'p.cedar' }] }), /^p\.cedar:1:62: .*non-literal/);
  // A valid set loads.
  assert.equal(CedarEngine.load({ schema, sources: [{ text: 'permit(principal, action == Action::"view", resource) when { principal.department == "x" };' }] }).policies.length, 1);
});

test('a schema that does not parse is located in the schema file', () => {
  assert.match(refusal({ schema: { text: 'entity User {\n  x: Strin\n};', file: 's.cedarschema' }, sources: [{ text: 'permit(principal, action, resource);' }] }), /^s\.cedarschema:2:6: failed to resolve type: Strin/);
  assert.match(refusal({ schema: { text: 'entity User {', file: 's.cedarschema' }, sources: [{ text: 'permit(principal, action, resource);' }] }), /^s\.cedarschema:1:14: /);
});

test('an empty set loads and denies everything', () => {
  const engine = CedarEngine.load({ sources: [{ text: '// nothing yet\n' }] });
  assert.deepEqual(engine.policies, []);
  assert.deepEqual(engine.isAuthorized({ principal: { type: 'U', id: 'a' }, action: { type: 'A', id: 'b' }, resource: { type: 'R', id: 'c' } }, []), { decision: 'deny', reasons: [], errors: [] });
});

test('a policy text with `;` and `//` inside strings is split where cedar-wasm splits it', () => {
  const text = '@id("a;//b") permit(principal, action, resource) when { "x;y" == "x;y" } // c ; d\n;\n@id("c") forbid(principal, action, resource) when { "//" like "*;*" };';
  const engine = CedarEngine.load({ sources: [{ text, file: 'odd.cedar' }] });
  assert.deepEqual(engine.policies.map((p) => [p.id, p.line]), [['a;//b', 1], ['c', 3]]);
  assert.equal(engine.isAuthorized({ principal: { type: 'U', id: 'a' }, action: { type: 'A', id: 'b' }, resource: { type: 'R', id: 'c' } }, []).decision, 'allow');
});

test('policies are found wherever Cedar finds them: any Unicode blank, CR line ends, comments', () => {
  for (const text of [
    '\u00a0permit(principal, action, resource);\u2028forbid(principal, action, resource) when { false };',
    '\tpermit(principal,\taction, resource)\t;\f\vforbid(principal, action, resource) when { false };',
    '// one\rpermit(principal, action, resource);\r// two\r\nforbid(principal, action, resource) when { false };',
  ]) {
    const engine = CedarEngine.load({ sources: [{ text, file: 'blank.cedar' }] });
    assert.deepEqual(engine.policies.map((p) => p.id), ['policy0', 'policy1'], JSON.stringify(text));
  }
});
