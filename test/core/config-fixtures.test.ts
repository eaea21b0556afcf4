// Good and bad config fixtures (the SPIRE habit): every good file loads; every bad file fails with
// exactly the codes and positions its `# expect: CODE line:column` header lines announce.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkConfig, loadConfig } from '../../src/core/config/load.js';
import { ConfigError } from '../../src/core/errors.js';
import { fixture } from '../helpers/paths.js';

const goodDir = fixture('config', 'good');
const badDir = fixture('config', 'bad');
const yamlFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();

test('there are fixtures', () => {
  assert.ok(yamlFiles(goodDir).length >= 3);
  assert.ok(yamlFiles(badDir).length >= 20);
});

for (const name of yamlFiles(goodDir)) {
  test(`good/${name} loads`, () => {
    const config = loadConfig(join(goodDir, name));
    assert.ok(Object.isFrozen(config));
  });
}

for (const name of yamlFiles(badDir)) {
  test(`bad/${name} fails as announced`, () => {
    const file = join(badDir, name);
    const text = readFileSync(file, 'utf8');
    const expected = [...text.matchAll(/^# expect: (PCL_ERR_[A-Z_]+) (\d+):(\d+)$/gm)].map((m) => `${m[1]} ${m[2]}:${m[3]}`);
    assert.ok(expected.length > 0, `${name} needs a "# expect: CODE line:column" header`);

    const { config, errors } = checkConfig(text, file);
    assert.equal(config, undefined);
    assert.deepEqual(errors.map((e) => `${e.code} ${e.line}:${e.column}`), expected, errors.map((e) => e.message).join('\n'));
    for (const e of errors) {
      assert.ok(e.message.startsWith(`${file}:${e.line}:${e.column}: `), e.message);
      assert.ok(!e.message.includes('\n'), 'one line per error');
    }
    // loadConfig throws the first of them.
    assert.throws(() => loadConfig(file), (err: unknown) => err instanceof ConfigError && `${err.code} ${err.line}:${err.column}` === expected[0]);
  });
}
