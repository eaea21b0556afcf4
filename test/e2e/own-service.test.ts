// README's second path, with the real CLI as separate processes: `portcullis init` for one's own
// service, then control, sidecar and gateway protect it; state survives a restart; SIGINT stops
// each process cleanly.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseDocument } from 'yaml';
import { cliPath } from '../helpers/paths.js';
import { call, codeOf, freePorts } from '../helpers/net.js';

const exec = promisify(execFile);
let dir: string;
let configFile: string;
let service: Server;
const seen: { path: string; principal?: string }[] = [];
const running: ChildProcess[] = [];
let gatewayUrl: string;

// `login` keeps a session file: under the test's directory, not the real ~/.config.
const cli = (args: string[], env: Record<string, string> = {}) => exec(process.execPath, [cliPath, ...args], { cwd: dir, env: { ...process.env, XDG_CONFIG_HOME: join(dir, 'config-home'), ...env } });

/** Starts a long-running role and resolves when it reports ready. */
function start(args: string[], env: Record<string, string> = {}): Promise<ChildProcess> {
  const child = fork(cliPath, args, { cwd: dir, env: { ...process.env, PORTCULLIS_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  running.push(child);
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`${args[0]} exited ${code}: ${stderr}`)));
  });
}

/** SIGINT, as Ctrl-C would send; resolves to the exit code. */
function interrupt(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.kill('SIGINT');
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-own-'));
  const [svcPort, control, gateway, inbound, outbound] = await freePorts(5);
  service = createServer((req, res) => {
    const p = req.headers['x-portcullis-principal'];
    // A service without the SDK: the gateway's signed assertion is a JWS; only its payload is read here.
    seen.push({ path: req.url ?? '', ...(typeof p === 'string' ? { principal: JSON.parse(Buffer.from(p.split('.')[1] ?? '', 'base64url').toString()).sub as string } : {}) });
    res.end(JSON.stringify({ hello: 'from my service' }));
  });
  await new Promise<void>((r) => service.listen(svcPort, '127.0.0.1', () => r()));

  const init = await cli(['init', '--service', 'api', '--upstream', `http://127.0.0.1:${svcPort}`]);
  assert.match(init.stdout, /wrote portcullis\.yaml/);
  configFile = join(dir, 'portcullis.yaml');
  // The starter uses the standard ports; move them out of the way of anything else running.
  const doc = parseDocument(readFileSync(configFile, 'utf8'));
  doc.setIn(['control', 'listen'], `127.0.0.1:${control}`);
  doc.setIn(['control', 'url'], `https://127.0.0.1:${control}`);
  doc.setIn(['gateway', 'listen'], `127.0.0.1:${gateway}`);
  doc.setIn(['services', 0, 'sidecar', 'listen'], `127.0.0.1:${inbound}`);
  doc.setIn(['services', 0, 'sidecar', 'outbound'], `127.0.0.1:${outbound}`);
  writeFileSync(configFile, doc.toString());
  gatewayUrl = `https://127.0.0.1:${gateway}`;
  assert.match((await cli(['config', 'check', configFile])).stdout, /ok \(1 services, 1 routes/);
});

after(async () => {
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await new Promise((r) => service.close(r));
  rmSync(dir, { recursive: true, force: true });
});

test('init, control, sidecar and gateway protect my service; restart keeps CA, users and keys; SIGINT stops cleanly', async () => {
  let control = await start(['control']);
  const ca1 = readFileSync(join(dir, '.portcullis', 'ca.pem'), 'utf8');
  const added = await cli(['user', 'add', 'alice', '--role', 'reader']);
  const password = /password \(shown once\): (\S+)/.exec(added.stdout)?.[1] ?? '';
  assert.ok(password.length > 16);
  const joinToken = (await cli(['join-token', 'create', '--service', 'api'])).stdout.trim();
  assert.match(joinToken, /^pjt_/);
  let sidecar = await start(['sidecar', '--service', 'api', '--join-token', joinToken]);
  let gateway = await start(['gateway']); // development mode: mints its own join token with the local admin token

  const token = (await cli(['login', 'alice'], { PORTCULLIS_PASSWORD: password })).stdout.trim();
  assert.equal(token.split('.').length, 3);
  const wrong = await cli(['login', 'alice'], { PORTCULLIS_PASSWORD: 'wrong-password' }).catch((e: { code: number; stderr: string }) => e);
  assert.ok('code' in wrong && wrong.code !== 0);
  assert.ok(!String((wrong as { stderr: string }).stderr).includes('wrong-password'), 'the password is never echoed');

  const ca = ca1;
  const ok = await call(`${gatewayUrl}/api`, { ca, headers: { authorization: `Bearer ${token}` } });
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.json, { hello: 'from my service' });
  assert.equal(seen.at(-1)?.principal, 'alice');
  const before = seen.length;
  const refused = await call(`${gatewayUrl}/api`, { ca });
  assert.equal(refused.status, 401);
  assert.equal(codeOf(refused), 'PCL_ERR_TOKEN_MISSING');
  assert.equal(seen.length, before, 'the refused request never reached the service');

  // Ctrl-C: every role exits 0.
  assert.equal(await interrupt(gateway), 0);
  assert.equal(await interrupt(sidecar), 0);
  assert.equal(await interrupt(control), 0);

  // Restart: same CA, same signing key (the old token still works), no new join token needed.
  control = await start(['control']);
  assert.equal(readFileSync(join(dir, '.portcullis', 'ca.pem'), 'utf8'), ca1, 'the CA survived the restart');
  sidecar = await start(['sidecar', '--service', 'api']);
  gateway = await start(['gateway']);
  const again = await call(`${gatewayUrl}/api`, { ca, headers: { authorization: `Bearer ${token}` } });
  assert.equal(again.status, 200, 'a token issued before the restart is still valid');
  const relogin = await cli(['login', 'alice'], { PORTCULLIS_PASSWORD: password });
  assert.equal(relogin.stdout.trim().split('.').length, 3, 'the user survived the restart');
  for (const c of [gateway, sidecar, control]) assert.equal(await interrupt(c), 0);
});
