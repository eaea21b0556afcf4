// The control plane's policy set: a reload that does not compile is refused with its location and
// the active version stays; a valid one is staged and becomes active at one instant everywhere; a dry-run (shadow) set is decided
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
import { EventEmitter } from 'node:events';
import { POLICY_ACTIVATION_DELAY_MS, PolicyAuthority } from '../../src/control/policy-api.js';
import { ActivePolicies } from '../../src/dataplane/policies.js';
import type { SnapshotSource } from '../../src/dataplane/snapshot.js';
import { NS } from '../../src/store/store.js';
import { MemoryStore } from '../../src/store/memory.js';
import { PolicySet, readPolicyBundle } from '../../src/policy/policy-set.js';
import { recordDecision } from '../../src/dataplane/record-decision.js';
import { repoRoot } from '../helpers/paths.js';

function schoolCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-polauth-'));
  for (const f of ['portcullis.yaml', 'schema.cedarschema', 'policies.cedar', 'policies.test.yaml']) copyFileSync(join(repoRoot, 'examples', 'school', f), join(dir, f));
  return dir;
}

test('a reload that does not compile is refused with file:line:col and the active version stays; a valid one is staged, then active', async () => {
  const dir = schoolCopy();
  const config = loadConfig(join(dir, 'portcullis.yaml'));
  const store = new MemoryStore();
  const clock = new FakeClock(Date.parse('2026-11-25T10:00:00Z'));
  const events: AuditEvent[] = [];
  const off = subscribeAudit((e) => events.push(e));
  try {
    const authority = await PolicyAuthority.open({ config, store, clock, logger: silentLogger });
    const first = authority.current().version;
    assert.equal((await store.get<{ version: string }>(NS.policies, 'active'))?.version, first);
    writeFileSync(join(dir, 'policies.cedar'), '@id("broken")\npermit(principal, action, resource) when { principal.department == };\n');
    await assert.rejects(authority.reload(), (err: Error & { code?: string }) => err.code === 'PCL_ERR_POLICY_INVALID' && /policies\.cedar:2:\d+/.test(err.message));
    assert.equal(authority.current().version, first, 'the active set is unchanged');
    assert.equal(authority.pendingBundle(), undefined, 'nothing is staged');
    assert.ok(events.some((e) => e.type === 'admin' && e.action === 'policy.reload' && e.outcome === 'failure'));
    writeFileSync(join(dir, 'policies.cedar'), '@id("exam-reads-only")\nforbid(principal == Workload::"spiffe://demo/school/exam", action in Action::"write", resource);\n');
    const r = await authority.reload();
    assert.equal(r.changed, true);
    assert.notEqual(r.version, first);
    assert.equal(r.activateAt, new Date(clock.now() + POLICY_ACTIVATION_DELAY_MS).toISOString());
    // Staged: data planes get it now in the snapshot, and everyone switches at activateAt.
    assert.equal(authority.current().version, first);
    assert.equal(authority.pendingBundle()?.bundle.version, r.version);
    assert.deepEqual(await authority.reload(), { version: r.version, changed: false, activateAt: r.activateAt });
    await clock.advance(POLICY_ACTIVATION_DELAY_MS);
    assert.equal(authority.current().version, r.version);
    assert.equal(authority.pendingBundle(), undefined);
    await new Promise((res) => setImmediate(res));
    assert.equal((await store.get<{ version: string }>(NS.policies, 'active'))?.version, r.version);
    assert.ok(await store.get(NS.policies, first), 'every activated version is kept');
  } finally {
    off();
  }
});

test('a data plane compiles a staged set on arrival and switches at its activation time, not before', async () => {
  const dir = schoolCopy();
  const config = loadConfig(join(dir, 'portcullis.yaml'));
  const clock = new FakeClock(Date.parse('2026-11-25T10:00:00Z'));
  const live = readPolicyBundle(config);
  writeFileSync(join(dir, 'policies.cedar'), '// candidate\n');
  const next = readPolicyBundle(config);
  const snapshot = Object.assign(new EventEmitter(), { current: () => ({ policies: live }) });
  const active = new ActivePolicies(snapshot as unknown as SnapshotSource, silentLogger, clock);
  assert.equal(active.current().version, live.version);
  snapshot.emit('updated', { policies: live, pendingPolicies: { bundle: next, activateAt: new Date(clock.now() + 60_000).toISOString() } });
  assert.equal(active.current().version, live.version, 'staged, not active');
  await clock.advance(59_999);
  assert.equal(active.current().version, live.version);
  await clock.advance(1);
  assert.equal(active.current().version, next.version);
  // A bundle that does not compile is refused; the active set stays.
  const broken = { ...next, version: 'broken', files: [{ name: 'x.cedar', text: 'permit(' }] };
  snapshot.emit('updated', { policies: broken });
  assert.equal(active.current().version, next.version);
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
