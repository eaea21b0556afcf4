// Key management from the command line, against a real control plane process: a root key sealed
// under a passphrase, unseal/seal through the local socket, transit encryption with a context,
// rotation and rewrap, secrets — and nothing in clear on disk.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { cliPath } from '../helpers/paths.js';
import { freePorts } from '../helpers/net.js';

let dir: string;
let control: ChildProcess | undefined;
const PASS = 'correct horse battery staple';

function cli(args: string[], input = '', env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, ...args], { cwd: dir, input, env: { ...process.env, ...env }, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function allFiles(root: string): string[] {
  return readdirSync(root, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? allFiles(join(root, e.name)) : e.isFile() ? [join(root, e.name)] : []));
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-kms-'));
  const [c, g, i, o] = await freePorts(4);
  assert.equal(cli(['init']).code, 0);
  const file = join(dir, 'portcullis.yaml');
  const doc = parseDocument(readFileSync(file, 'utf8'));
  doc.setIn(['control', 'listen'], `127.0.0.1:${c}`);
  doc.setIn(['control', 'url'], `https://127.0.0.1:${c}`);
  doc.setIn(['gateway', 'listen'], `127.0.0.1:${g}`);
  doc.setIn(['services', 0, 'sidecar', 'listen'], `127.0.0.1:${i}`);
  doc.setIn(['services', 0, 'sidecar', 'outbound'], `127.0.0.1:${o}`);
  doc.set('kms', doc.createNode({ keyrings: [{ name: 'docs', allow: [{ service: 'api', operations: ['encrypt', 'decrypt'] }] }], secrets: [{ prefix: 'api/', read: ['api'] }] }));
  writeFileSync(file, doc.toString());
});

after(() => {
  if (control && control.exitCode === null) control.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('sealed root, unseal, transit with context, rotate and rewrap, secrets, seal again', async () => {
  const init = cli(['kms', 'init', '--passphrase-stdin'], PASS);
  assert.equal(init.code, 0, init.stderr);
  assert.equal(existsSync(join(dir, '.portcullis', 'master.key')), false, 'no root key in clear on disk');
  assert.equal(cli(['kms', 'init', '--passphrase-stdin'], PASS).code, 1, 'never overwrites a sealed root');

  control = fork(cliPath, ['control'], { cwd: dir, env: { ...process.env, PORTCULLIS_LOG_LEVEL: 'warn', PORTCULLIS_UNSEAL_PASSPHRASE: '' }, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  let ready = new Promise((r) => control?.once('message', r));
  // Wait for the socket: the sealed control plane serves nothing else.
  for (let n = 0; n < 100 && cli(['kms', 'status']).stdout.trim() !== 'sealed'; n++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(cli(['kms', 'status']).stdout.trim(), 'sealed');
  assert.equal(cli(['kms', 'keyrings']).code, 1, 'nothing is served while sealed');

  const wrong = cli(['kms', 'unseal', '--passphrase-stdin'], 'not the passphrase');
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /PCL_ERR_KMS_PASSPHRASE/);
  assert.equal(cli(['kms', 'unseal', '--passphrase-stdin'], PASS).code, 0);
  await ready;
  assert.equal(cli(['kms', 'status']).stdout.trim(), 'unsealed');

  const enc = cli(['kms', 'encrypt', '--keyring', 'docs', '--context', 'tenant=t1'], 'the plaintext');
  assert.equal(enc.code, 0, enc.stderr);
  const ct = enc.stdout.trim();
  assert.match(ct, /^pcl:docs:v1:[A-Za-z0-9_-]+$/);
  assert.equal(cli(['kms', 'decrypt', '--context', 'tenant=t1'], ct).stdout, 'the plaintext');
  const wrongCtx = cli(['kms', 'decrypt', '--context', 'tenant=t2'], ct);
  assert.equal(wrongCtx.code, 1);
  assert.match(wrongCtx.stderr, /PCL_ERR_KMS_CIPHERTEXT_INVALID/);
  assert.ok(!wrongCtx.stderr.includes('plaintext'), 'the refusal reveals nothing');
  const tampered = ct.slice(0, -2) + (ct.endsWith('A') ? 'BA' : 'AA');
  assert.match(cli(['kms', 'decrypt', '--context', 'tenant=t1'], tampered).stderr, /PCL_ERR_KMS_CIPHERTEXT_INVALID/);

  assert.match(cli(['kms', 'rotate', 'docs']).stdout, /docs: now v2/);
  const rewrapped = cli(['kms', 'rewrap', '--keyring', 'docs', '--context', 'tenant=t1'], ct + '\n');
  assert.equal(rewrapped.code, 0, rewrapped.stderr);
  assert.match(rewrapped.stdout.trim(), /^pcl:docs:v2:/);
  assert.equal(cli(['kms', 'decrypt', '--context', 'tenant=t1'], rewrapped.stdout.trim()).stdout, 'the plaintext');
  assert.match(cli(['kms', 'retire', 'docs', '--below', '2']).stdout, /decrypts from v2/);
  assert.match(cli(['kms', 'decrypt', '--context', 'tenant=t1'], ct).stderr, /PCL_ERR_KMS_VERSION_RETIRED/, 'a retired version no longer decrypts');
  const dk = JSON.parse(cli(['kms', 'datakey', '--keyring', 'docs']).stdout) as { plaintext: string; ciphertext: string };
  assert.equal(Buffer.from(dk.plaintext, 'base64').length, 32);

  assert.match(cli(['secret', 'put', 'api/db', 'password=hunter2-secret']).stdout, /version 1/);
  assert.match(cli(['secret', 'put', 'api/db', 'password=hunter3-secret']).stdout, /version 2/);
  assert.equal(cli(['secret', 'get', 'api/db', '--field', 'password']).stdout, 'hunter3-secret');
  assert.equal(cli(['secret', 'get', 'api/db', '--version', '1', '--field', 'password']).stdout, 'hunter2-secret');
  assert.match(cli(['secret', 'list']).stdout, /api\/db {2}latest v2 {2}live \[1, 2\]/);
  assert.equal(cli(['secret', 'destroy', 'api/db', '--versions', '1']).code, 0);
  assert.match(cli(['secret', 'get', 'api/db', '--version', '1']).stderr, /PCL_ERR_SECRET_NOT_FOUND/);

  // Seal: keys leave memory and nothing is served; unseal brings back the same keys.
  assert.equal(cli(['kms', 'seal']).code, 0);
  assert.equal(cli(['kms', 'status']).stdout.trim(), 'sealed');
  const v2 = rewrapped.stdout.trim();
  assert.equal(cli(['kms', 'decrypt', '--context', 'tenant=t1'], v2).code, 1);
  ready = new Promise((r) => control?.once('message', r));
  assert.equal(cli(['kms', 'unseal', '--passphrase-stdin'], PASS).code, 0);
  await ready;
  assert.equal(cli(['kms', 'decrypt', '--context', 'tenant=t1'], v2).stdout, 'the plaintext');

  // Stopped: --data-dir works on the embedded store directly.
  const exited = new Promise((r) => control?.once('exit', r));
  control.kill('SIGINT');
  assert.equal(await exited, 0);
  const local = cli(['kms', 'decrypt', '--data-dir', '.portcullis', '--context', 'tenant=t1'], v2, { PORTCULLIS_UNSEAL_PASSPHRASE: PASS });
  assert.equal(local.stdout, 'the plaintext', local.stderr);

  for (const file of allFiles(dir)) {
    const text = readFileSync(file).toString('latin1');
    assert.ok(!text.includes('the plaintext') && !text.includes('hunter3-secret') && !text.includes('hunter2-secret'), `clear text found in ${file}`);
  }
});
