// Templates with ?principal/?resource slots become policies only through links; each link decides
// as cedar-wasm decides it, and a bad link refuses the whole set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortcullisError } from '../../../src/core/errors.js';
import { CedarEngine } from '../../../src/policy/cedar/engine.js';
import type { EntityJson, TemplateLink } from '../../../src/policy/cedar/types.js';
import { U, assertAgree, pair } from './oracle.js';

const templates = {
  viewer: 'permit(principal == ?principal, action == Action::"view", resource in ?resource);',
  group: 'permit(principal in ?principal, action, resource) when { context.hour < 18 };',
  typed: 'forbid(principal is User in ?principal, action, resource == ?resource) unless { principal has clearance };',
};
const links: TemplateLink[] = [
  { template: 'viewer', id: 'alice-views-folder', principal: U('User', 'alice'), resource: U('Folder', 'f') },
  { template: 'viewer', id: 'bob-views-doc', principal: U('User', 'bob'), resource: U('Doc', 'd1') },
  { template: 'group', id: 'staff-daytime', principal: U('Group', 'staff') },
  { template: 'typed', id: 'no-secret', principal: U('Group', 'staff'), resource: U('Doc', 'secret') },
];
const entities: EntityJson[] = [
  { uid: U('User', 'alice'), attrs: {}, parents: [U('Group', 'staff')] },
  { uid: U('User', 'bob'), attrs: { clearance: 1 }, parents: [U('Group', 'staff')] },
  { uid: U('Doc', 'd1'), attrs: {}, parents: [U('Folder', 'f')] },
  { uid: U('Doc', 'secret'), attrs: {}, parents: [U('Folder', 'f')] },
];

test('template links decide as cedar-wasm decides them', () => {
  const p = pair({ base: 'permit(principal, action == Action::"list", resource);' }, { templates, links });
  assert.deepEqual(p.engine.policies.map((x) => x.id), ['base', 'alice-views-folder', 'bob-views-doc', 'staff-daytime', 'no-secret']);
  for (const principal of [U('User', 'alice'), U('User', 'bob'), U('User', 'carol'), U('Group', 'staff')]) {
    for (const resource of [U('Doc', 'd1'), U('Doc', 'secret'), U('Folder', 'f')]) {
      for (const action of [U('Action', 'view'), U('Action', 'list')]) {
        for (const hour of [9, 20]) {
          assertAgree(p, { principal, action, resource, context: { hour } }, entities, `${principal.id} ${action.id} ${resource.id} ${hour}h`);
        }
      }
    }
  }
  const d = p.ours({ principal: U('User', 'alice'), action: U('Action', 'view'), resource: U('Doc', 'd1'), context: { hour: 9 } }, entities);
  assert.deepEqual(d, { decision: 'allow', reasons: ['alice-views-folder', 'staff-daytime'], errors: [] });
});

function refusal(links: TemplateLink[]): string {
  try {
    CedarEngine.load({ sources: [{ text: `@id("viewer") ${templates.viewer}\n@id("plain") permit(principal, action, resource);`, file: 't.cedar' }], links });
  } catch (e) {
    assert.ok(e instanceof PortcullisError);
    assert.equal(e.code, 'PCL_ERR_POLICY_INVALID');
    return e.message;
  }
  assert.fail('the links should be refused');
}

test('a bad link refuses the set, located at its template', () => {
  const both = { principal: U('User', 'a'), resource: U('Doc', 'b') };
  assert.match(refusal([{ template: 'nope', id: 'l', ...both }]), /^<links>:1:1: template link "l": no template with id "nope"/);
  assert.match(refusal([{ template: 'plain', id: 'l', ...both }]), /^t\.cedar:2:1: .*"plain" is a static policy, not a template/);
  assert.match(refusal([{ template: 'viewer', id: 'l', principal: U('User', 'a') }]), /^t\.cedar:1:1: .*slot \?resource needs a value/);
  assert.match(refusal([{ template: 'viewer', id: 'plain', ...both }]), /id "plain" is already in use/);
  assert.match(refusal([{ template: 'viewer', id: 'viewer', ...both }]), /id "viewer" is already in use/);
  assert.match(refusal([{ template: 'viewer', id: 'l', ...both }, { template: 'viewer', id: 'l', ...both }]), /id "l" is already in use/);
  assert.match(refusal([{ template: 'viewer', id: 'l', principal: U('Us er', 'a'), resource: U('Doc', 'b') }]), /slot \?principal is not a valid entity uid/);
  const noResourceSlot = '@id("t") permit(principal == ?principal, action, resource);';
  assert.throws(() => CedarEngine.load({ sources: [{ text: noResourceSlot }], links: [{ template: 't', id: 'l', ...both }] }), /the template has no slot \?resource/);
});

test('a template without links decides nothing', () => {
  const engine = CedarEngine.load({ sources: [{ text: templates.group }] });
  assert.deepEqual(engine.policies, []);
  assert.equal(engine.isAuthorized({ principal: U('Group', 'staff'), action: U('Action', 'x'), resource: U('Doc', 'd'), context: { hour: 1 } }, []).decision, 'deny');
});
