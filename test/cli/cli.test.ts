// The command line as a user meets it: --help everywhere, coded errors with file:line:column,
// and a broken config refused before anything is created.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createServer } from 'node:net';
import { cliPath, fixture } from '../helpers/paths.js';
import type { Command } from 'commander';
import { program } from '../../src/cli/main.js';

const exec = promisify(execFile);
type Result = { code: number; stdout: string; stderr: string };
async function cli(args: string[], cwd?: string): Promise<Result> {
  try {
    const r = await exec(process.execPath, [cliPath, ...args], { ...(cwd ? { cwd } : {}) });
    return { code: 0, ...r };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

test('every command answers --help', async () => {
  // Every command of the tree, in process: a description, and help that names it.
  const all: Command[] = [];
  const walk = (c: Command): void => { all.push(c); c.commands.forEach(walk); };
  walk(program());
  assert.ok(all.length > 60, `${all.length} commands`);
  for (const c of all) {
    const path: string[] = [];
    for (let x: Command | null = c; x; x = x.parent) path.unshift(x.name());
    assert.ok(c.description().length > 0, `${path.join(' ')} has no description`);
    assert.match(c.helpInformation(), new RegExp(`^Usage: ${path.join(' ')}`), path.join(' '));
  }
  // And the real binary, at the root, a noun and a verb: exit 0, help on stdout.
  for (const args of [[], ['client'], ['login'], ['user', 'totp-enroll']]) {
    const r = await cli([...args, '--help']);
    assert.equal(r.code, 0, args.join(' '));
    assert.match(r.stdout, /^Usage: portcullis/, args.join(' '));
  }
});

test('an unknown command or option is a usage error (exit 2)', async () => {
  assert.equal((await cli(['frobnicate'])).code, 2);
  assert.equal((await cli(['gateway', '--no-such-flag'])).code, 2);
});

test('config check names file, line and column of each error, with the code', async () => {
  const file = fixture('config', 'bad', 'unknown-key.yaml');
  const r = await cli(['config', 'check', file]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /unknown-key\.yaml:\d+:\d+: .*\[PCL_ERR_CONFIG_INVALID\]/);
});

test('a role started on a broken config refuses to start and creates nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-cli-'));
  try {
    writeFileSync(join(dir, 'portcullis.yaml'), 'trustDomain: demo\ncontrol:\n  dataDir: state\n  lisen: 127.0.0.1:1\nservices: []\n');
    for (const role of [['control'], ['gateway'], ['sidecar', '--service', 'x']]) {
      const r = await cli(role, dir);
      assert.equal(r.code, 1, role[0]);
      assert.match(r.stderr, /error \[PCL_ERR_CONFIG_INVALID\]: .*portcullis\.yaml:4:3: unknown key `lisen`.*did you mean `listen`/, role[0]);
    }
    assert.equal(existsSync(join(dir, 'state')), false, 'no data directory was created');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('init writes a valid starter config and will not overwrite one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-init-'));
  try {
    assert.equal((await cli(['init', '--service', 'billing', '--upstream', 'http://127.0.0.1:4000'], dir)).code, 0);
    const check = await cli(['config', 'check'], dir);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /ok \(1 services, 1 routes/);
    const again = await cli(['init'], dir);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /PCL_ERR_INVALID_ARGUMENT.*exists/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a control plane that cannot listen exits with an error instead of lingering', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-busy-'));
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  const addr = busy.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  try {
    writeFileSync(join(dir, 'portcullis.yaml'), `trustDomain: demo\ncontrol:\n  listen: 127.0.0.1:${port}\n  url: https://127.0.0.1:${port}\nservices:\n  - name: api\n    spiffeId: spiffe://demo/api\n    upstream: http://127.0.0.1:3000\n    sidecar: { listen: 127.0.0.1:15001, outbound: 127.0.0.1:16001 }\n`);
    const r = await cli(['control'], dir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /EADDRINUSE/);
  } finally {
    busy.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
