// The error reference (docs/errors.md) lists exactly the codes of ERROR_CODES, with their statuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES } from '../../src/core/errors.js';
import { repoRoot } from '../helpers/paths.js';

const doc = readFileSync(join(repoRoot, 'docs', 'errors.md'), 'utf8');
/** Table rows: | `PCL_ERR_X` | status | when | what to do | */
const rows = [...doc.matchAll(/^\|\s*`(PCL_ERR_[A-Z0-9_]+)`\s*\|\s*(\d{3})\s*\|([^|\n]*)\|([^|\n]*)\|\s*$/gm)].map((m) => ({
  code: m[1] ?? '',
  status: Number(m[2]),
  when: (m[3] ?? '').trim(),
  what: (m[4] ?? '').trim(),
}));

test('every code in ERROR_CODES is documented in docs/errors.md', () => {
  const documented = new Set(rows.map((r) => r.code));
  const missing = Object.keys(ERROR_CODES).filter((c) => !documented.has(c));
  assert.deepEqual(missing, [], `add a row to docs/errors.md for: ${missing.join(', ')}`);
});

test('docs/errors.md documents no code that does not exist', () => {
  const mentioned = new Set(doc.match(/PCL_ERR_[A-Z0-9_]+/g) ?? []);
  const unknown = [...mentioned].filter((c) => !(c in ERROR_CODES));
  assert.deepEqual(unknown, [], `remove from docs/errors.md (not in ERROR_CODES): ${unknown.join(', ')}`);
});

test('each code has one row with its HTTP status, when it happens and what to do', () => {
  const seen = new Set<string>();
  for (const row of rows) {
    assert.ok(!seen.has(row.code), `${row.code} is listed twice`);
    seen.add(row.code);
    const entry = (ERROR_CODES as Record<string, { status: number } | undefined>)[row.code]; // widened for lookup by string
    assert.equal(row.status, entry?.status, `${row.code}: status in the doc differs from ERROR_CODES`);
    assert.ok(row.when.length > 10, `${row.code}: say when it happens`);
    assert.ok(row.what.length > 10, `${row.code}: say what to do`);
  }
});
