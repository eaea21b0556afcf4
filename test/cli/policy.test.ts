// `portcullis policy validate | test | explain` as a user runs them: exit codes, located errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath, repoRoot } from '../helpers/paths.js';

const run = (...args: string[]) => spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
const school = join(repoRoot, 'examples', 'school', 'portcullis.yaml');

test('policy validate: ok with counts; a policy that does not type-check is refused at its line and column, exit 1', () => {
  const ok = run('policy', 'validate', '-c', school);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^ok: \d+ policies \(\d+ compiled\), version [0-9a-f]{16}/);
  const dir = mkdtempSync(join(tmpdir(), 'pcl-polcli-'));
  for (const f of ['portcullis.yaml', 'schema.cedarschema', 'policies.test.yaml']) copyFileSync(join(repoRoot, 'examples', 'school', f), join(dir, f));
  writeFileSync(join(dir, 'policies.cedar'), '@id("typo")\npermit(principal, action, resource)\nwhen { principal.nosuchattribute == "x" };\n');
  const bad = run('policy', 'validate', '-c', join(dir, 'portcullis.yaml'));
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /PCL_ERR_POLICY_INVALID/);
  assert.match(bad.stderr, /policies\.cedar:3:\d+/);
});

test('policy test: every case of the example passes, exit 0; explain names the deciding forbid', () => {
  const t = run('policy', 'test', '-c', school);
  assert.equal(t.status, 0, t.stdout);
  assert.match(t.stdout, /\d+ passed, 0 failed/);
  const e = run('policy', 'explain', '-c', school, '--case', '{call: {from: exam, to: grades, method: POST, path: /grades}}');
  assert.equal(e.status, 0, e.stderr);
  assert.match(e.stdout, /decision: deny \(by school\.exam-never-writes-grades\)/);
  assert.match(e.stdout, /forbid +school\.exam-never-writes-grades +satisfied policies\.cedar:\d+/);
});

test('policy dry-run counts, from the audit logs, the decisions the candidate set would change', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-dryrun-'));
  const gw = join(dir, 'audit', 'gateway');
  mkdirSync(gw, { recursive: true });
  const decision = (i: number, shadow?: object) => JSON.stringify({ seq: i, event: {
    type: 'decision', time: '2026-11-25T10:00:00Z', requestId: `r${i}`, component: 'gateway', decision: 'allow', status: 200,
    who: { sub: 'alice' }, what: { method: 'GET', path: '/shop/orders', route: 'shop.orders.list' }, reasons: ['route:shop.orders.list'], why: '',
    ...(shadow ? { shadow } : {}),
  } });
  writeFileSync(join(gw, 'audit-000001.jsonl'), [decision(1), decision(2, { decision: 'deny', reasons: [] }), decision(3, { decision: 'deny', reasons: [] }), '{"torn'].join('\n'));
  const r = run('policy', 'dry-run', '-c', school, '--data-dir', dir);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^3 decisions read, 2 would change/);
  assert.match(r.stdout, /2 {2}gateway shop\.orders\.list: allow \(route:shop\.orders\.list\) {2}→ {2}deny/);
});
