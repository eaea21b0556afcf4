// openStore picks PostgreSQL when a DATABASE_URL is given, else the embedded store in the data dir.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PortcullisError } from '../../src/core/errors.js';
import { openStore } from '../../src/store/open.js';
import { PgliteStore } from '../../src/store/pglite.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { DATABASE_URL, freshSchema } from './pg-fixture.js';

test('without a database URL (unset or empty): the embedded store at <dataDir>/store', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'pcl-open-'));
  try {
    for (const databaseUrl of [undefined, '']) {
      const s = await openStore({ dataDir, databaseUrl });
      assert.ok(s instanceof PgliteStore);
      await s.put('ns', 'k', databaseUrl ?? 'unset');
      await s.close();
    }
    assert.ok(existsSync(join(dataDir, 'store')));
    const again = await PgliteStore.open(join(dataDir, 'store'));
    assert.equal(await again.get('ns', 'k'), '', 'both opens used the same directory');
    await again.close();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('with a database URL: PostgreSQL, and nothing written to the data directory', async () => {
  const dataDir = join(tmpdir(), `pcl-open-none-${process.pid}`);
  const s = await openStore({ dataDir, databaseUrl: DATABASE_URL, postgres: { schema: freshSchema(), max: 2 } });
  try {
    assert.ok(s instanceof PostgresStore);
    await s.put('ns', 'k', 1);
    assert.equal(await s.get('ns', 'k'), 1);
    assert.equal(existsSync(dataDir), false);
  } finally {
    await s.close();
  }
});

test('a database URL that cannot be used fails closed: no fallback to the embedded store', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'pcl-open-'));
  try {
    await assert.rejects(openStore({ dataDir, databaseUrl: 'postgres://x:pw@127.0.0.1:1/test' }), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_STORE');
    assert.equal(existsSync(join(dataDir, 'store')), false);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
