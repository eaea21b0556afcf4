// Every example system's Cedar policies validate strictly against its schema, and every case of
// its policy test files passes: `portcullis policy test` for the four reference systems, in CI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadConfig } from '../../src/core/config/load.js';
import { PolicySet } from '../../src/policy/policy-set.js';
import { readPolicyTestFile, runPolicyTests } from '../../src/policy/policy-test.js';
import { repoRoot } from '../helpers/paths.js';

for (const system of ['shop', 'clinic', 'bank', 'school']) {
  test(`${system}: the policy set validates and its policy tests pass`, () => {
    const config = loadConfig(join(repoRoot, 'examples', system, 'portcullis.yaml'));
    assert.ok(config.policies.schema, 'each example is validated against its schema');
    const warnings: string[] = [];
    const set = PolicySet.fromConfig(config, (m) => warnings.push(m));
    assert.deepEqual(warnings, [], 'every policy compiles (none left to cedar-wasm)');
    assert.ok(config.policies.tests.length > 0);
    let cases = 0;
    for (const file of config.policies.tests) {
      for (const r of runPolicyTests(set, readPolicyTestFile(file))) {
        cases++;
        assert.ok(r.passed, `${r.name}: expected ${r.expected.decision} ${JSON.stringify(r.expected.reasons ?? [])}, got ${r.actual.decision} ${JSON.stringify(r.actual.reasons)} ${JSON.stringify(r.actual.errors)}`);
      }
    }
    assert.ok(cases >= 10, `${cases} cases`);
  });
}

test('a failing expectation is reported as failed, not passed', () => {
  const config = loadConfig(join(repoRoot, 'examples', 'school', 'portcullis.yaml'));
  const set = PolicySet.fromConfig(config);
  const [r] = runPolicyTests(set, { users: {}, entities: [], cases: [{ name: 'exam writes', call: { from: 'exam', to: 'grades', method: 'POST', path: '/grades' }, expect: 'allow' }] });
  assert.equal(r?.passed, false);
  assert.equal(r?.actual.decision, 'deny');
});
