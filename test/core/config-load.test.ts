import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, isAbsolute } from 'node:path';
import { execFileSync } from 'node:child_process';
import { checkConfig, loadConfig, MAX_CONFIG_BYTES, parseConfig } from '../../src/core/config/load.js';
import { ConfigError } from '../../src/core/errors.js';
import { repoRoot } from '../helpers/paths.js';

const shopFile = join(repoRoot, 'examples', 'shop', 'portcullis.yaml');

const SERVICE = `services:
  - name: users
    spiffeId: spiffe://demo/users
    upstream: http://127.0.0.1:9101
    sidecar: { listen: 127.0.0.1:15101, outbound: 127.0.0.1:16101 }
`;

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError');
}

test('the shop example validates', () => {
  const config = loadConfig(shopFile);
  assert.equal(config.trustDomain, 'demo');
  assert.deepEqual(config.services.map((s) => s.name), ['users', 'orders', 'payments']);
  assert.equal(config.routes.length, 5);
  assert.deepEqual(config.calls[0], { from: 'orders', to: 'payments', operations: ['POST /payments/charge', 'GET /payments/charges/{id}'] });
  assert.equal(config.source, shopFile);
  // dataDir is relative to the file: examples/shop/../../.portcullis is the repository's .portcullis.
  assert.equal(config.control.dataDir, join(repoRoot, '.portcullis'));
});

test('defaults are filled, derived ones from the values they derive from', () => {
  const c = parseConfig(`trustDomain: demo\n${SERVICE}`, '/etc/portcullis/portcullis.yaml');
  assert.deepEqual(c.control, { listen: '127.0.0.1:8444', url: 'https://127.0.0.1:8444', dataDir: '/etc/portcullis/.portcullis', snapshotRefreshSeconds: 30 });
  assert.deepEqual(c.gateway, { listen: '127.0.0.1:8443', spiffeId: 'spiffe://demo/gateway', serverNames: ['localhost', '127.0.0.1'], upstreamTimeout: 15000, keepAliveTimeout: 5000, maxBodyBytes: 1048576, hsts: true, http2: true });
  assert.deepEqual(c.limits, { store: 'memory', onStoreDown: 'local', rules: [] });
  assert.deepEqual(c.services[0]?.retries, { attempts: 1, backoffMs: 25 });
  assert.equal(c.services[0]?.balance, 'least-request');
  assert.deepEqual(c.tokens, { issuer: 'https://127.0.0.1:8444', audience: 'https://127.0.0.1:8443', accessTokenTtl: 900, clockSkew: 30, signingAlg: 'ES256', algorithms: ['ES256'], clients: [] });
  assert.deepEqual(c.routes, []);
  assert.deepEqual(c.calls, []);

  const d = parseConfig(
    `trustDomain: demo\ncontrol: { listen: 127.0.0.1:9000 }\ngateway: { listen: "0.0.0.0:443" }\n${SERVICE}routes:\n  - { id: r, method: GET, path: /u, service: users }\n`,
    'rel/portcullis.yaml',
  );
  assert.equal(d.control.url, 'https://127.0.0.1:9000');
  assert.equal(d.tokens.issuer, 'https://127.0.0.1:9000', 'issuer follows control.url');
  assert.equal(d.tokens.audience, 'https://0.0.0.0:443', 'audience follows gateway.listen');
  assert.deepEqual(d.routes[0], { id: 'r', method: 'GET', path: '/u', service: 'users', auth: ['jwt'], roles: [], pathRules: { allowEncodedSlash: false, allowSemicolon: false, caseSensitive: true, trailingSlash: 'strict' } });
  assert.ok(isAbsolute(d.control.dataDir));
  assert.equal(d.control.dataDir, join(process.cwd(), 'rel', '.portcullis'));
  assert.equal(d.source, 'rel/portcullis.yaml');
});

test('an absolute dataDir is kept', () => {
  const c = parseConfig(`trustDomain: demo\ncontrol: { dataDir: /var/lib/portcullis }\n${SERVICE}`, 'x/portcullis.yaml');
  assert.equal(c.control.dataDir, '/var/lib/portcullis');
});

test('the result is deeply frozen', () => {
  const c = loadConfig(shopFile);
  assert.ok(Object.isFrozen(c));
  for (const part of [c.control, c.tokens, c.gateway, c.gateway.serverNames, c.services, c.services[0], c.services[0]?.sidecar, c.routes, c.routes[0], c.routes[0]?.roles, c.calls, c.calls[0]?.operations]) {
    assert.ok(Object.isFrozen(part));
  }
  assert.throws(() => {
    (c.gateway as { listen: string }).listen = '0.0.0.0:1'; // deliberately bypassing readonly-ness to prove the freeze
  }, TypeError);
});

test('an unknown key is reported at the key, with a did-you-mean hint', () => {
  const text = `trustDomain: demo\nservices:\n  - name: users\n    spiffeId: spiffe://demo/users\n    upstreem: http://127.0.0.1:9101\n    sidecar: { listen: 127.0.0.1:15101, outbound: 127.0.0.1:16101 }\n`;
  const e = configError(() => parseConfig(text, 'p.yaml'));
  assert.equal(e.code, 'PCL_ERR_CONFIG_INVALID');
  assert.equal(e.file, 'p.yaml');
  assert.equal(e.line, 5);
  assert.equal(e.column, 5);
  assert.equal(e.hint, 'did you mean `upstream`?');
  assert.match(e.message, /^p\.yaml:5:5: unknown key `upstreem` in `services\[0\]`/);
  // One typo, one error: the "missing upstream" it implies is not reported separately.
  assert.equal(checkConfig(text, 'p.yaml').errors.length, 1);
});

test('an unknown key with nothing close lists the allowed keys', () => {
  const e = configError(() => parseConfig(`trustDomain: demo\n${SERVICE}tokens:\n  lifetime: 5\n`, 'p.yaml'));
  assert.equal(e.line, 8);
  assert.equal(e.column, 3);
  assert.match(e.hint ?? '', /allowed keys: `issuer`, `audience`, `accessTokenTtl`, `clockSkew`/);
});

test('a wrong type is reported at the value', () => {
  const e = configError(() => parseConfig(`trustDomain: demo\ngateway:\n  upstreamTimeout: "15000"\n${SERVICE}`, 'p.yaml'));
  assert.equal(e.code, 'PCL_ERR_CONFIG_INVALID');
  assert.deepEqual([e.line, e.column], [3, 20]);
  assert.match(e.message, /`gateway\.upstreamTimeout` must be an integer, not a string/);
});

test('a bad reference names the unknown service and suggests a close one', () => {
  const e = configError(() => parseConfig(`trustDomain: demo\n${SERVICE}routes:\n  - { id: r, method: GET, path: /u, service: user }\n`, 'p.yaml'));
  assert.equal(e.code, 'PCL_ERR_CONFIG_REFERENCE');
  assert.deepEqual([e.line, e.column], [8, 46]);
  assert.equal(e.hint, 'did you mean `users`?');
});

test('a duplicate YAML key is a reference error at the second key', () => {
  const e = configError(() => parseConfig(`trustDomain: demo\nroutes: []\n${SERVICE}routes: []\n`, 'p.yaml'));
  assert.equal(e.code, 'PCL_ERR_CONFIG_REFERENCE');
  assert.deepEqual([e.line, e.column], [8, 1]);
  assert.match(e.message, /duplicate key `routes`/);
});

test('a YAML syntax error is PCL_ERR_CONFIG_SYNTAX with its position', () => {
  const e = configError(() => parseConfig('trustDomain: demo\nservices: {a: 1}}\n', 'p.yaml'));
  assert.equal(e.code, 'PCL_ERR_CONFIG_SYNTAX');
  assert.deepEqual([e.line, e.column], [2, 17]);
  // Nothing beyond the syntax errors is reported: schema checks on a broken document are noise.
  const codes = checkConfig('trustDomain: demo\nservices: {a: 1}}\nunknown: 1\n', 'p.yaml').errors.map((x) => x.code);
  assert.deepEqual([...new Set(codes)], ['PCL_ERR_CONFIG_SYNTAX']);
});

test('an unquoted {name} in a flow mapping gets a quoting hint, one error per line', () => {
  const { errors } = checkConfig(`trustDomain: demo\n${SERVICE}routes:\n  - { id: r, method: GET, path: /u/{id}, service: users }\n`, 'p.yaml');
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.code, 'PCL_ERR_CONFIG_SYNTAX');
  assert.match(errors[0]?.hint ?? '', /quote path patterns/);
});

test('resource exhaustion is refused: deep nesting and alias bombs', () => {
  const deep = checkConfig(`trustDomain: ${'['.repeat(50_000)}`, 'p.yaml').errors;
  assert.ok(deep.length >= 1 && deep.length <= 5, String(deep.length));
  assert.ok(deep.every((e) => e.code === 'PCL_ERR_CONFIG_SYNTAX'));

  let bomb = 'trustDomain: demo\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n';
  for (let i = 1; i < 10; i++) bomb += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`;
  const t0 = Date.now();
  const e = configError(() => parseConfig(bomb, 'p.yaml'));
  assert.equal(e.code, 'PCL_ERR_CONFIG_SYNTAX');
  assert.match(e.message, /aliases expand to too much data/);
  assert.ok(Date.now() - t0 < 2000, 'refused quickly, not after expanding');
});

test('a file over 1 MiB is refused unparsed, as text and from disk', () => {
  const big = `trustDomain: demo\n${SERVICE}${'#'.repeat(MAX_CONFIG_BYTES)}\n`;
  const e = configError(() => parseConfig(big, 'big.yaml'));
  assert.equal(e.code, 'PCL_ERR_CONFIG_READ');
  assert.deepEqual([e.line, e.column], [1, 1]);

  // Multi-byte characters count as bytes, not characters.
  const wide = `trustDomain: demo\n${SERVICE}# ${'é'.repeat(MAX_CONFIG_BYTES / 2)}\n`;
  assert.ok(wide.length < MAX_CONFIG_BYTES + 200);
  assert.equal(configError(() => parseConfig(wide, 'wide.yaml')).code, 'PCL_ERR_CONFIG_READ');

  const dir = mkdtempSync(join(tmpdir(), 'pcl-config-'));
  try {
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(file, big);
    assert.equal(configError(() => loadConfig(file)).code, 'PCL_ERR_CONFIG_READ');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unreadable files are PCL_ERR_CONFIG_READ: missing, directory, FIFO, not UTF-8', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-config-'));
  try {
    assert.equal(configError(() => loadConfig(join(dir, 'nope.yaml'))).code, 'PCL_ERR_CONFIG_READ');
    mkdirSync(join(dir, 'adir'));
    assert.equal(configError(() => loadConfig(join(dir, 'adir'))).code, 'PCL_ERR_CONFIG_READ');
    const latin1 = join(dir, 'latin1.yaml');
    writeFileSync(latin1, Buffer.from('trustDomain: d\xe9mo\n', 'latin1'));
    assert.equal(configError(() => loadConfig(latin1)).code, 'PCL_ERR_CONFIG_READ');
    if (process.platform !== 'win32') {
      const fifo = join(dir, 'fifo.yaml');
      execFileSync('mkfifo', [fifo]);
      // Would hang forever if opening a FIFO blocked.
      assert.equal(configError(() => loadConfig(fifo)).code, 'PCL_ERR_CONFIG_READ');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('checkConfig collects every error, sorted by position', () => {
  const text = `trustDomain: demo
services:
  - name: users
    spiffeId: spiffe://other/users
    upstream: http://127.0.0.1:9101
    sidecar: { listen: 127.0.0.1:15101, outbound: 127.0.0.1:16101 }
routes:
  - { id: r, method: FETCH, path: /u, service: nobody }
tokens: { clockSkew: 301 }
`;
  const { config, errors } = checkConfig(text, 'p.yaml');
  assert.equal(config, undefined);
  assert.deepEqual(errors.map((e) => [e.code, e.line]), [
    ['PCL_ERR_CONFIG_REFERENCE', 4],
    ['PCL_ERR_CONFIG_INVALID', 8],
    ['PCL_ERR_CONFIG_REFERENCE', 8],
    ['PCL_ERR_CONFIG_INVALID', 9],
  ]);
  const valid = checkConfig(`trustDomain: demo\n${SERVICE}`, 'p.yaml');
  assert.deepEqual(valid.errors, []);
  assert.ok(valid.config);
});

test('messages escape what the file contains and do not echo free-form values', () => {
  // A control character inside an unknown key must not forge a new log line.
  const e = configError(() => parseConfig(`trustDomain: demo\n${SERVICE}"evil\\nINFO forged": 1\n`, 'p.yaml'));
  assert.ok(!e.message.includes('\n'), e.message);
  assert.match(e.message, /unknown key `evil\\nINFO forged`/);

  // A value of the wrong format is described, never quoted.
  const secretish = 'hunter2-not-a-url';
  const f = configError(() => parseConfig(`trustDomain: demo\ntokens: { issuer: ${secretish} }\n${SERVICE}`, 'p.yaml'));
  assert.ok(!f.message.includes(secretish), f.message);
});
