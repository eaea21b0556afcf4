// The index (by action, and by the principal/resource types a scope fixes) only narrows the
// policies a request evaluates: over every scope form and requests of known and unknown types,
// with and without action groups, the answers are cedar-wasm's.
import { test } from 'node:test';
import type { EntityJson, EntityUid } from '../../../src/policy/cedar/types.js';
import { U, assertAgree, pair, type Policies } from './oracle.js';

const PRINCIPAL = ['principal', 'principal == User::"a"', 'principal in Group::"g"', 'principal is User', 'principal is Bot', 'principal is User in Group::"g"'];
const ACTION = ['action', 'action == Action::"read"', 'action == Action::"write"', 'action in [Action::"read", Action::"all"]', 'action in Action::"all"', 'action in []'];
const RESOURCE = ['resource', 'resource == Doc::"d"', 'resource in Folder::"f"', 'resource is Doc', 'resource is Folder in Folder::"f"'];

const policies: Policies = {};
let n = 0;
for (const p of PRINCIPAL) {
  for (const a of ACTION) {
    for (const r of RESOURCE) {
      // Each policy also says who it is, so an extra or a missing one changes the answer.
      policies[`s${n++}`] = `${n % 7 === 0 ? 'forbid' : 'permit'}(${p}, ${a}, ${r}) when { context.k != ${n} };`;
    }
  }
}

const PRINCIPALS: EntityUid[] = [U('User', 'a'), U('User', 'b'), U('Bot', 'a'), U('Nobody', 'x')];
const ACTIONS: EntityUid[] = [U('Action', 'read'), U('Action', 'write'), U('Action', 'all'), U('Action', 'other'), U('Other::Action', 'read')];
const RESOURCES: EntityUid[] = [U('Doc', 'd'), U('Doc', 'e'), U('Folder', 'f'), U('Folder', 'g'), U('Thing', 'd')];

const flat: EntityJson[] = [
  { uid: U('User', 'a'), attrs: {}, parents: [U('Group', 'g')] },
  { uid: U('Doc', 'd'), attrs: {}, parents: [U('Folder', 'f')] },
];
const grouped: EntityJson[] = [...flat, { uid: U('Action', 'write'), attrs: {}, parents: [U('Action', 'all')] }, { uid: U('Action', 'other'), attrs: {}, parents: [U('Action', 'read')] }];

test('the index never changes an answer', () => {
  const p = pair(policies);
  for (const entities of [flat, grouped]) {
    for (const principal of PRINCIPALS) {
      for (const action of ACTIONS) {
        for (const resource of RESOURCES) {
          for (const k of [0, 3, 14]) {
            assertAgree(p, { principal, action, resource, context: { k } }, entities, `${principal.type}::${principal.id} ${action.type}::${action.id} ${resource.type}::${resource.id} k=${k} ${entities === grouped ? 'grouped' : 'flat'}`);
          }
        }
      }
    }
  }
});
