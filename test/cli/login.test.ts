// `portcullis login | token | logout` as separate processes against a real control plane (HTTPS,
// its own CA): the password login keeps a 0600 session and never prints the refresh token; `token`
// refreshes an expired access token; a reused refresh token means signing in again; a privileged
// user signs in with the TOTP code; `login --device` prints a URL and a code, waits for the
// person to allow it on the verification page, and prints the token.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { parseDocument } from 'yaml';
import { base32Decode, totp } from '../../src/identity/totp.js';
import { cliPath } from '../helpers/paths.js';
import { program } from '../../src/cli/main.js';
import { freePorts } from '../helpers/net.js';

const exec = promisify(execFile);
let dir: string;
let controlUrl: string;
let control: ChildProcess | undefined;
let agent: Agent;
const passwords: Record<string, string> = {};

type Result = { code: number; stdout: string; stderr: string };
async function cli(args: string[], env: Record<string, string> = {}, input?: string): Promise<Result> {
  const child = execFile(process.execPath, [cliPath, ...args], { cwd: dir, env: { ...process.env, XDG_CONFIG_HOME: join(dir, 'config-home'), ...env } });
  if (input !== undefined) child.stdin?.end(input);
  else child.stdin?.end();
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
  return { code, stdout, stderr };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-login-'));
  const [port] = await freePorts(1);
  await exec(process.execPath, [cliPath, 'init', '--service', 'api', '--upstream', 'http://127.0.0.1:3000'], { cwd: dir });
  const configFile = join(dir, 'portcullis.yaml');
  const doc = parseDocument(readFileSync(configFile, 'utf8'));
  controlUrl = `https://127.0.0.1:${port}`;
  doc.setIn(['control', 'listen'], `127.0.0.1:${port}`);
  doc.setIn(['control', 'url'], controlUrl);
  doc.setIn(['users', 'privilegedRoles'], ['admin']);
  writeFileSync(configFile, doc.toString());
  control = fork(cliPath, ['control'], { cwd: dir, env: { ...process.env, PORTCULLIS_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  control.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  await new Promise<void>((resolve, reject) => {
    control?.once('message', () => resolve());
    control?.once('exit', (code) => reject(new Error(`control exited ${code}: ${stderr}`)));
  });
  agent = new Agent({ connect: { ca: readFileSync(join(dir, '.portcullis', 'ca.pem'), 'utf8') } });
  for (const [name, role] of [['alice', 'reader'], ['root', 'admin']] as const) {
    const added = await cli(['user', 'add', name, '--role', role]);
    passwords[name] = /password \(shown once\): (\S+)/.exec(added.stdout)?.[1] ?? '';
  }
});

after(async () => {
  await agent?.close();
  if (control && control.exitCode === null) {
    const exited = new Promise((r) => control?.once('exit', r));
    control.kill('SIGINT');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

const jwtSub = (token: string): unknown => (JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { sub?: unknown }).sub;

test('login keeps a 0600 session and prints only the access token; token refreshes it when expired; a reused refresh token means signing in again', async () => {
  const session = join(dir, 'alice.json');
  const login = await cli(['login', 'alice', '--password-stdin', '--session-file', session], {}, `${passwords.alice}\n`);
  assert.equal(login.code, 0, login.stderr);
  const token = login.stdout.trim();
  assert.equal(jwtSub(token), 'alice');
  assert.equal(statSync(session).mode & 0o777, 0o600);
  const saved = JSON.parse(readFileSync(session, 'utf8')) as { refreshToken: string; expiresAt: number };
  assert.ok(saved.refreshToken, 'the CLI asked for offline_access');
  assert.ok(!login.stdout.includes(saved.refreshToken) && !login.stderr.includes(saved.refreshToken), 'the refresh token is never printed');
  assert.ok(!login.stderr.includes(passwords.alice ?? '-'));

  const same = await cli(['token', '--session-file', session]);
  assert.equal(same.code, 0, same.stderr);
  assert.equal(same.stdout.trim(), token, 'still valid: the same token');

  // As if the access token had expired: `token` refreshes first, and keeps the rotated refresh token.
  const old = readFileSync(session, 'utf8');
  writeFileSync(session, JSON.stringify({ ...saved, expiresAt: 0 }));
  const fresh = await cli(['token', '--session-file', session]);
  assert.equal(fresh.code, 0, fresh.stderr);
  assert.notEqual(fresh.stdout.trim(), token);
  assert.equal(jwtSub(fresh.stdout.trim()), 'alice');
  assert.notEqual((JSON.parse(readFileSync(session, 'utf8')) as { refreshToken: string }).refreshToken, saved.refreshToken);

  // The spent refresh token again: the server revokes the family, the CLI says to sign in again.
  writeFileSync(session, JSON.stringify({ ...(JSON.parse(old) as object), expiresAt: 0 }));
  const reused = await cli(['token', '--session-file', session]);
  assert.equal(reused.code, 1);
  assert.match(reused.stderr, /PCL_ERR_SESSION_EXPIRED.*sign in again/);
  assert.ok(!reused.stderr.includes(saved.refreshToken));

  // The default session file (per control plane, under XDG_CONFIG_HOME); logout revokes and deletes it.
  const again = await cli(['login', 'alice'], { PORTCULLIS_PASSWORD: passwords.alice ?? '' });
  assert.equal(again.code, 0, again.stderr);
  const out = await cli(['logout']);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stderr, /signed out/);
  const after = await cli(['token']);
  assert.equal(after.code, 1);
  assert.match(after.stderr, /PCL_ERR_SESSION_EXPIRED.*portcullis login/);
});

test('a privileged user signs in with the TOTP code (environment, or the second stdin line); without one the login is refused', async () => {
  const enrolled = await cli(['user', 'totp-enroll', 'root']);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  const key = base32Decode(enrolled.stdout.split('\n')[0] ?? '');
  const env = { PORTCULLIS_PASSWORD: passwords.root ?? '' };
  const without = await cli(['login', 'root', '--no-session'], env);
  assert.equal(without.code, 1);
  assert.match(without.stderr, /PCL_ERR_TOTP_INVALID.*PORTCULLIS_TOTP_CODE/);
  const wrong = await cli(['login', 'root', '--no-session'], { ...env, PORTCULLIS_TOTP_CODE: '000000' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /PCL_ERR_TOTP_INVALID/);
  const ok = await cli(['login', 'root', '--no-session'], { ...env, PORTCULLIS_TOTP_CODE: totp(key, Date.now()) });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(jwtSub(ok.stdout.trim()), 'root');
  // The next time step's code (the current one is spent), as the second line of stdin.
  const piped = await cli(['login', 'root', '--no-session', '--password-stdin'], {}, `${passwords.root}\n${totp(key, Date.now() + 30_000)}\n`);
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal(jwtSub(piped.stdout.trim()), 'root');
  assert.deepEqual(readdirSync(join(dir, 'config-home', 'portcullis', 'sessions')), [], '--no-session keeps nothing');
});

test('login --device prints where to go and the code, waits for the person, then prints the token', async () => {
  const session = join(dir, 'device.json');
  const child = spawn(process.execPath, [cliPath, 'login', '--device', '--session-file', session], { cwd: dir, env: { ...process.env, XDG_CONFIG_HOME: join(dir, 'config-home') } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  const exited = new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
  const userCode = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /open (\S+) and enter the code ([A-Z]{4}-[A-Z]{4})/.exec(stderr);
      if (m && stderr.includes('Waiting')) resolve(m[2] ?? '');
    });
    child.once('close', () => reject(new Error(`login --device ended early: ${stderr}`)));
  });
  assert.match(stderr, new RegExp(`open ${controlUrl}/device and enter the code`));
  assert.match(stderr, /device\?user_code=/);

  const post = async (fields: Record<string, string>): Promise<{ status: number; text: string }> => {
    const r = await request(`${controlUrl}/device`, { dispatcher: agent, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
    return { status: r.statusCode, text: await r.body.text() };
  };
  const signedIn = await post({ user_code: userCode.toLowerCase(), username: 'alice', password: passwords.alice ?? '' });
  assert.equal(signedIn.status, 200, signedIn.text);
  assert.match(signedIn.text, /portcullis-cli/);
  const ticket = /name="consent_ticket" value="([^"]+)"/.exec(signedIn.text)?.[1] ?? '';
  assert.equal((await post({ consent_ticket: ticket, decision: 'approve' })).status, 200);

  assert.equal(await exited, 0, stderr);
  assert.equal(jwtSub(stdout.trim()), 'alice');
  assert.equal(statSync(session).mode & 0o777, 0o600);
  const token = await cli(['token', '--session-file', session]);
  assert.equal(token.stdout.trim(), stdout.trim());
});

test('--help names every new flag', () => {
  // In process (cli.test.ts runs the binary's --help): the help text of each command.
  const help = (name: string): string => {
    let out = '';
    const cmd = program().commands.find((c) => c.name() === name);
    cmd?.configureOutput({ writeOut: (t) => { out += t; } }).outputHelp(); // with the text added after the options
    return out;
  };
  for (const flag of ['--device', '--session-file', '--no-session', '--password-stdin', 'PORTCULLIS_TOTP_CODE']) assert.ok(help('login').includes(flag), flag);
  for (const cmd of ['token', 'logout']) assert.match(help(cmd), /--session-file/, cmd);
});
