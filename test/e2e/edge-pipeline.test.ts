// The gateway's pipeline on the running shop (real processes, TLS, mTLS, Redis): request
// validation against the shop's OpenAPI document (mass assignment, hostile JSON, content types,
// sizes), injection screening, CORS, security headers, client address, and one rate limit shared
// by two gateway replicas through the real Redis, revocations (API keys, a disabled user's tokens).
// Each refusal is shown not to reach the service.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { parse } from 'yaml';
import { startSystem, type RunningSystem } from '../../src/cli/system.js';
import { demoUsers } from '../../src/cli/demo.js';
import { CLI_CLIENT_ID } from '../../src/control/server.js';
import { loginWithPkce } from '../../src/tokens/client/pkce-login.js';
import { AdminClient, readAdminToken } from '../../src/cli/admin-client.js';
import { repoRoot } from '../helpers/paths.js';
import { auditEvents } from '../helpers/audit.js';
import { call, codeOf, freePortBlock, freePorts, type Reply } from '../helpers/net.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const template = join(repoRoot, 'examples', 'shop', 'portcullis.yaml');
let sys: RunningSystem;
let dir: string;
let ca: string;
const tokens: Record<string, string> = {};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-edge-'));
  // The shop's own routes, with `shop.orders.list` screening its query in block mode.
  const routes = (parse(readFileSync(template, 'utf8')) as { routes: Record<string, unknown>[] }).routes.map((r) => r.id === 'shop.orders.list'
    ? { ...r, validate: { query: { type: 'object', properties: { q: { type: 'string', maxLength: 200 } } }, screen: 'block' } }
    : r);
  const [control, gateway, second] = await freePorts(3);
  sys = await startSystem({
    template, dataDir: dir, controlListen: `127.0.0.1:${control}`, gatewayListen: `127.0.0.1:${gateway}`,
    portBase: await freePortBlock(9), users: demoUsers('shop'), env: { REDIS_URL, PORTCULLIS_LOG_LEVEL: 'warn' },
    extraGateways: [{ instance: 'b', listen: `127.0.0.1:${second}` }],
    overrides: {
      routes,
      // Snapshots every second, so that revocations are seen here within seconds (default 30 s).
      control: { snapshotRefreshSeconds: 1 },
      // A unique rule id per run: the counters live in the shared Redis.
      limits: { store: 'redis', onStoreDown: 'deny', rules: [{ id: `me-${randomBytes(4).toString('hex')}`, key: 'principal', rate: 3, per: 'hour', burst: 3, routes: ['shop.users.me'] }] },
    },
  });
  ca = readFileSync(sys.caFile, 'utf8');
  for (const user of ['alice', 'bob', 'mia']) {
    tokens[user] = (await loginWithPkce({ controlUrl: sys.controlUrl, caPem: ca, clientId: CLI_CLIENT_ID, username: user, password: sys.passwords[user] ?? '' })).accessToken;
  }
});

after(async () => {
  await sys?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const as = (user: string): Record<string, string> => ({ authorization: `Bearer ${tokens[user]}` });
const gw = (path: string, o: Parameters<typeof call>[1] = {}): Promise<Reply> => call(sys.gatewayUrl + path, { ca, ...o });
const svc = (name: string) => sys.config.services.find((s) => s.name === name);
const seenOrders = async (): Promise<{ method: string; path: string; sub?: string }[]> => (await call(`${svc('orders')?.upstream ?? ''}/__seen`)).json as { method: string; path: string; sub?: string }[];
const creates = async (): Promise<number> => (await seenOrders()).filter((s) => s.method === 'POST' && s.path === '/shop/orders').length;

/** A request with a body sent exactly as given (no JSON.stringify), and its answer. */
async function raw(path: string, headers: Record<string, string>, body: string | Buffer): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; code?: string }> {
  const dispatcher = new Agent({ connect: { ca } });
  try {
    const r = await request(sys.gatewayUrl + path, { method: 'POST', dispatcher, headers, body });
    const text = await r.body.text();
    let code: string | undefined;
    try { code = (JSON.parse(text) as { error?: { code?: string } }).error?.code; } catch { /* not JSON */ }
    return { status: r.statusCode, headers: r.headers, ...(code ? { code } : {}) };
  } finally {
    await dispatcher.close();
  }
}

const ORDER = { items: [{ sku: 'tea', qty: 1 }], card: '4111111111111111' };

test('the OpenAPI operation admits a good order, and refuses mass assignment before orders sees it', async () => {
  assert.equal((await gw('/shop/orders', { method: 'POST', headers: as('bob'), body: ORDER })).status, 201);
  const before = await creates();
  const r = await gw('/shop/orders', { method: 'POST', headers: as('bob'), body: { ...ORDER, owner: 'alice', status: 'refunded' } });
  assert.equal(r.status, 400);
  assert.equal(codeOf(r), 'PCL_ERR_VALIDATION');
  const wrongType = await gw('/shop/orders', { method: 'POST', headers: as('bob'), body: { ...ORDER, items: [{ sku: 'tea', qty: '1e3' }] } });
  assert.equal(codeOf(wrongType), 'PCL_ERR_VALIDATION');
  assert.equal(await creates(), before, 'no refused order reached the orders service');
  const event = auditEvents(dir, 'gateway').find((e) => e.code === 'PCL_ERR_VALIDATION' && /additionalProperties/.test(String(e.why)));
  assert.ok(event, 'the refusal names the rule that failed');
  assert.ok(!JSON.stringify(event).includes('4111111111111111'), 'the audit event names where, never the values');
});

test('hostile JSON is refused: prototype keys, duplicate keys, deep nesting, unrepresentable numbers, bad UTF-8', async () => {
  const before = await creates();
  const json = { ...as('bob'), 'content-type': 'application/json' };
  const cases: [string, string | Buffer][] = [
    ['__proto__', '{"__proto__":{"admin":true},"items":[{"sku":"tea","qty":1}],"card":"4111111111111111"}'],
    ['constructor', '{"constructor":{"prototype":{"x":1}},"items":[],"card":"1"}'],
    ['duplicate key', '{"card":"4111111111111111","items":[{"sku":"tea","qty":1}],"card":"5500000000000004"}'],
    ['deep nesting', '{"items":' + '['.repeat(5000) + ']'.repeat(5000) + ',"card":"4111111111111111"}'],
    ['big integer', '{"items":[{"sku":"tea","qty":9007199254740993}],"card":"4111111111111111"}'],
    ['not UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])],
  ];
  for (const [what, body] of cases) {
    const r = await raw('/shop/orders', json, body);
    assert.equal(r.status, 400, what);
    assert.equal(r.code, 'PCL_ERR_JSON_INVALID', what);
  }
  assert.equal((await raw('/shop/orders', { ...as('bob'), 'content-type': 'text/plain' }, JSON.stringify(ORDER))).code, 'PCL_ERR_CONTENT_TYPE');
  const big = await raw('/shop/orders', json, JSON.stringify({ ...ORDER, pad: 'x'.repeat(1_100_000) }));
  assert.equal(big.status, 413);
  assert.equal(await creates(), before, 'none of it reached the orders service');
});

test('an injection probe in a screened query is refused (block), and recorded by its signature name', async () => {
  const before = (await seenOrders()).length;
  const r = await gw(`/shop/orders?q=${encodeURIComponent("1' UNION SELECT card FROM orders--")}`, { headers: as('alice') });
  assert.equal(r.status, 400);
  assert.equal(codeOf(r), 'PCL_ERR_INJECTION');
  assert.equal((await seenOrders()).length, before);
  assert.equal((await gw('/shop/orders?q=earl%20grey', { headers: as('alice') })).status, 200, 'an ordinary search passes');
  const event = auditEvents(dir, 'gateway').reverse().find((e) => e.code === 'PCL_ERR_INJECTION');
  assert.ok(((event?.what as { signatures?: string[] }).signatures ?? []).some((s) => s.startsWith('sqli')));
  assert.ok(!JSON.stringify(event).includes('UNION'));
});

test('CORS: a preflight from the shop origin is answered at the edge; another origin is refused', async () => {
  const before = (await seenOrders()).length;
  const ok = await gw('/shop/orders', { method: 'OPTIONS', headers: { origin: 'https://shop.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
  assert.equal(ok.status, 204);
  assert.equal(ok.headers['access-control-allow-origin'], 'https://shop.example');
  const evil = await gw('/shop/orders', { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
  assert.equal(evil.status, 403);
  assert.equal(codeOf(evil), 'PCL_ERR_CORS');
  const post = await gw('/shop/orders', { method: 'POST', headers: { ...as('bob'), origin: 'https://evil.example' }, body: ORDER });
  assert.equal(codeOf(post), 'PCL_ERR_CORS', 'a state-changing request from a page the operator never allowed');
  assert.equal((await seenOrders()).length, before, 'no preflight and no refused request reached orders');
});

test('answers carry the security headers and no server banner; the client address is the socket, whatever the client claims', async () => {
  const r = await gw('/shop/orders/o-1', { headers: { ...as('alice'), 'x-forwarded-for': '6.6.6.6', 'x-real-ip': '6.6.6.6' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  assert.equal(r.headers['x-frame-options'], 'DENY');
  assert.equal(r.headers.server, undefined);
  assert.equal(r.headers['x-powered-by'], undefined);
  const refused = await gw('/shop/nothing-here', { headers: as('alice') });
  assert.equal(refused.status, 404);
  assert.equal(refused.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains', 'refusals too');
  const event = auditEvents(dir, 'gateway').reverse().find((e) => (e.what as { path?: string }).path === '/shop/orders/o-1');
  assert.equal((event?.who as { sourceAddress?: string }).sourceAddress, '127.0.0.1');
});

test('an encoded slash is refused at the edge, never forwarded', async () => {
  const before = (await seenOrders()).length;
  const r = await gw('/shop/orders/o-1%2f..%2fo-2', { headers: as('alice') });
  assert.equal(r.status, 400);
  assert.equal(codeOf(r), 'PCL_ERR_PATH_INVALID');
  assert.equal((await seenOrders()).length, before);
});

test('two gateway replicas share one rate limit through Redis: the fourth call is refused at either, with Retry-After', async () => {
  const [a, b] = [sys.gatewayUrl, sys.extraGatewayUrls[0] ?? ''];
  const me = (base: string) => call(`${base}/shop/users/me`, { ca, headers: as('mia') });
  const answers = [await me(a), await me(b), await me(a)];
  assert.deepEqual(answers.map((r) => r.status), [200, 200, 200]);
  assert.match(String(answers[2]?.headers.ratelimit), /r=0/);
  const refused = await me(b);
  assert.equal(refused.status, 429);
  assert.equal(codeOf(refused), 'PCL_ERR_RATE_LIMITED');
  assert.ok(Number(refused.headers['retry-after']) > 1000, `Retry-After ${String(refused.headers['retry-after'])} s: about 20 minutes at 3 per hour`);
  assert.match(String(refused.headers['ratelimit-policy']), /q=3;w=3600/);
  assert.equal((await me(a)).status, 429, 'and at the other replica');
  assert.equal((await call(`${a}/shop/users/me`, { ca, headers: as('alice') })).status, 200, 'another user has her own budget');
});

test('HTTP/2 at the edge: the same pipeline, a body without Content-Length arrives whole, no pseudo-header is forwarded', async () => {
  const { connect } = await import('node:http2');
  const session = connect(sys.gatewayUrl, { ca });
  const ask = (headers: Record<string, string>, body?: string) => new Promise<{ status: number; text: string; hsts?: string }>((resolve, reject) => {
    const stream = session.request(headers, body === undefined ? { endStream: true } : {});
    let text = '';
    let status = 0;
    let hsts: string | undefined;
    stream.on('response', (h) => { status = Number(h[':status']); hsts = h['strict-transport-security'] as string | undefined; });
    stream.setEncoding('utf8');
    stream.on('data', (c: string) => { text += c; });
    stream.on('end', () => resolve({ status, text, ...(hsts ? { hsts } : {}) }));
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
  try {
    const got = await ask({ ':method': 'GET', ':path': '/shop/orders/o-1', authorization: `Bearer ${tokens.alice}` });
    assert.equal(got.status, 200, got.text);
    assert.equal(got.hsts, 'max-age=31536000; includeSubDomains');
    const before = await creates();
    const created = await ask({ ':method': 'POST', ':path': '/shop/orders', authorization: `Bearer ${tokens.bob}`, 'content-type': 'application/json' }, JSON.stringify(ORDER));
    assert.equal(created.status, 201, created.text);
    assert.equal(await creates(), before + 1);
    const refused = await ask({ ':method': 'POST', ':path': '/shop/orders', authorization: `Bearer ${tokens.bob}`, 'content-type': 'application/json' }, JSON.stringify({ ...ORDER, owner: 'alice' }));
    assert.equal(refused.status, 400, 'validation holds over HTTP/2 too');
    assert.equal((await ask({ ':method': 'GET', ':path': '/shop/orders/o-1' })).status, 401);
  } finally {
    session.close();
  }
});

test('API keys: a merchant key lists orders on its route only, never reaches the service, and stops within seconds of revocation', async () => {
  const admin = new AdminClient(sys.controlUrl, ca, readAdminToken(dir) ?? '');
  try {
    const { id, key } = await admin.call<{ id: string; key: string }>('POST', '/v1/admin/apikeys', { name: 'back office', owner: 'mia', roles: ['merchant'], routes: ['shop.orders.list'] });
    assert.match(key, /^pcl_[0-9A-Za-z]{38}$/);
    // A new key reaches the gateway with the next snapshot (30 s at most): poll until it is accepted.
    let r = await gw('/shop/orders', { headers: { 'x-api-key': key } });
    for (let i = 0; i < 80 && r.status !== 200; i++) {
      await new Promise((res) => setTimeout(res, 500));
      r = await gw('/shop/orders', { headers: { 'x-api-key': key } });
    }
    assert.equal(r.status, 200, r.text);
    assert.ok((await seenOrders()).every((s) => !(s as { credential?: true }).credential), 'no credential ever reached the orders service');
    const otherRoute = await gw('/shop/orders/o-1', { headers: { 'x-api-key': key } });
    assert.equal(otherRoute.status, 401, 'shop.orders.get takes no API key');
    const typo = await gw('/shop/orders', { headers: { 'x-api-key': key.slice(0, -1) + (key.endsWith('a') ? 'b' : 'a') } });
    assert.equal(codeOf(typo), 'PCL_ERR_APIKEY_INVALID');
    assert.ok(!typo.text.includes(key.slice(4, 20)), 'the key is never echoed');
    await admin.call('DELETE', `/v1/admin/apikeys/${id}`);
    const revokedAt = Date.now();
    let after = await gw('/shop/orders', { headers: { 'x-api-key': key } });
    while (after.status === 200 && Date.now() - revokedAt < 10_000) {
      await new Promise((res) => setTimeout(res, 200));
      after = await gw('/shop/orders', { headers: { 'x-api-key': key } });
    }
    assert.equal(after.status, 401);
    assert.ok(Date.now() - revokedAt < 5_000, `refused ${Date.now() - revokedAt} ms after revocation`);
    assert.ok(!JSON.stringify(auditEvents(dir, 'gateway')).includes(key), 'no key in the audit log');
  } finally {
    await admin.close();
  }
});

test('disabling a user stops the access tokens already issued to them at the gateway within seconds; enabled again, a new login works', async () => {
  const admin = new AdminClient(sys.controlUrl, ca, readAdminToken(dir) ?? '');
  const login = async (): Promise<string> => (await loginWithPkce({ controlUrl: sys.controlUrl, caPem: ca, clientId: CLI_CLIENT_ID, username: 'mallory', password: sys.passwords.mallory ?? '' })).accessToken;
  try {
    const token = await login();
    const asMallory = { authorization: `Bearer ${token}` };
    assert.equal((await gw('/shop/orders', { headers: asMallory })).status, 200);
    await admin.call('POST', '/v1/admin/users/mallory/disable');
    const disabledAt = Date.now();
    let after = await gw('/shop/orders', { headers: asMallory });
    while (after.status === 200 && Date.now() - disabledAt < 10_000) {
      await new Promise((res) => setTimeout(res, 200));
      after = await gw('/shop/orders', { headers: asMallory });
    }
    assert.equal(after.status, 401, after.text);
    assert.equal(codeOf(after), 'PCL_ERR_TOKEN_REVOKED');
    assert.ok(Date.now() - disabledAt < 5_000, `refused ${Date.now() - disabledAt} ms after the account was disabled`);
    const seenBefore = (await seenOrders()).filter((x) => x.sub === 'mallory').length;
    assert.ok(seenBefore > 0, 'her calls before were seen, so the count below can show one more');
    assert.equal((await gw('/shop/orders', { headers: asMallory })).status, 401);
    assert.equal((await seenOrders()).filter((x) => x.sub === 'mallory').length, seenBefore, 'the refused call never reached orders');
    assert.equal((await gw('/shop/orders', { headers: as('alice') })).status, 200, 'other users are not affected');
    await admin.call('POST', '/v1/admin/users/mallory/enable');
    await new Promise((res) => setTimeout(res, 1100)); // a token of a later second than the revocation (iat has whole seconds)
    assert.equal((await gw('/shop/orders', { headers: { authorization: `Bearer ${await login()}` } })).status, 200);
  } finally {
    await admin.close();
  }
});
