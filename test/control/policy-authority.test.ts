// The control plane's policy set: a reload that does not compile is refused with its location and
// the active version stays; a valid one becomes the new version; a dry-run (shadow) set is decided
// beside the live one and only recorded where it differs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/core/config/load.js';
import { FakeClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/log.js';
import { subscribeAudit, type AuditEvent, type DecisionEvent } from '../../src/core/events.js';
import { PolicyAuthority } from '../../src/control/policy-api.js';
import { NS } from '../../src/store/store.js';
import { MemoryStore } from '../../src/store/memory.js';
import { PolicySet } from '../../src/policy/policy-set.js';
import { recordDecision } from '../../src/dataplane/record-decision.js';
import { repoRoot } from '../helpers/paths.js';

function schoolCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-polauth-'));
  for (const f of ['portcullis.yaml', 'schema.cedarschema', 'policies.cedar', 'policies.test.yaml']) copyFileSync(join(repoRoot, 'examples', 'school', f), join(dir, f));
  return dir;
}

test('a reload that does not compile is refused with file:line:col and the active version stays; a valid one activates', async () => {
  const dir = schoolCopy();
  const config = loadConfig(join(dir, 'portcullis.yaml'));
  const store = new MemoryStore();
  const events: AuditEvent[] = [];
  const off = subscribeAudit((e) => events.push(e));
  try {
    const authority = await PolicyAuthority.open({ config, store, clock: new FakeClock(0), logger: silentLogger });
    const first = authority.current().version;
    assert.equal((await store.get<{ version: string }>(NS.policies, 'active'))?.version, first);
    writeFileSync(join(dir, 'policies.cedar'), '@id("broken")\npermit(principal, action, resource) when { principal.department == };\n');
    await assert.rejects(authority.reload(), (err: Error & { code?: string }) => err.code === 'PCL_ERR_POLICY_INVALID' && /policies\.cedar:2:\d+/.test(err.message));
    assert.equal(authority.current().version, first, 'the active set is unchanged');
    assert.ok(events.some((e) => e.type === 'admin' && e.action === 'policy.reload' && e.outcome === 'failure'));
    writeFileSync(join(dir, 'policies.cedar'), '@id("exam-reads-only")\nforbid(principal == Workload::"spiffe://demo/school/exam", action in Action::"write", resource);\n');
    const r = await authority.reload();
    assert.equal(r.changed, true);
    assert.notEqual(r.version, first);
    assert.equal(authority.current().version, r.version);
    assert.equal((await store.get<{ version: string }>(NS.policies, 'active'))?.version, r.version);
    assert.ok(await store.get(NS.policies, first), 'every activated version is kept');
    assert.deepEqual(await authority.reload(), { version: r.version, changed: false });
  } finally {
    off();
  }
});

test('dry run: the shadow set decides beside the live one, never acts, and is recorded only where it differs', () => {
  const dir = schoolCopy();
  // The candidate drops the exam forbid and adds nothing: exam's write would still be refused by
  // default, but with no deciding policy; a teacher's allowed call is unchanged.
  writeFileSync(join(dir, 'candidate.cedar'), '// candidate: no explicit forbid\n');
  const raw = loadConfig(join(dir, 'portcullis.yaml'));
  const config = { ...raw, policies: { ...raw.policies, shadow: { files: [join(dir, 'candidate.cedar')] } } };
  const set = PolicySet.fromConfig(config);
  const write = set.decideCall({ service: 'grades', caller: 'spiffe://demo/school/exam', method: 'POST', path: '/grades' });
  assert.equal(write.live.decision, 'deny');
  assert.deepEqual(write.shadow?.reasons, []);
  const event = { reasons: [] } as unknown as DecisionEvent;
  recordDecision(event, set.version, write);
  assert.deepEqual(event.shadow, { decision: 'deny', reasons: [] }, 'a different explanation is recorded');
  const read = set.decideCall({ service: 'grades', caller: 'spiffe://demo/school/exam', method: 'GET', path: '/grades/courses/c1/students/sam' });
  const same = { reasons: [] } as unknown as DecisionEvent;
  recordDecision(same, set.version, read);
  assert.equal(read.live.decision, 'allow');
  assert.equal(same.shadow, undefined, 'an identical decision is not recorded twice');
});
