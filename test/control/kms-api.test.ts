// The KMS API over a real HTTP server with the real handler, KeyManager and SecretStore: allowed
// and refused per operation, refusals that never reach the Kms, one audit event per call with no
// plaintext in it, batches, strict input, secrets with long polling on a fake clock.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock } from '../../src/core/clock.js';
import { parseConfig } from '../../src/core/config/load.js';
import { subscribeAudit, type AdminEvent, type AuditEvent } from '../../src/core/events.js';
import { AdminToken } from '../../src/control/admin-token.js';
import { createKmsApi, MAX_BATCH_ITEMS } from '../../src/control/kms-api.js';
import { SecretStore } from '../../src/kms/secrets.js';
import type { Kms } from '../../src/kms/types.js';
import { MemoryStore } from '../../src/store/memory.js';
import { newKeyManager, spyKms, type KmsMethod } from '../kms/kms-fixtures.js';

const config = parseConfig(`
trustDomain: demo
services:
  - { name: orders, spiffeId: spiffe://demo/orders, upstream: http://127.0.0.1:1, sidecar: { listen: 127.0.0.1:2, outbound: 127.0.0.1:3 } }
  - { name: payments, spiffeId: spiffe://demo/payments, upstream: http://127.0.0.1:4, sidecar: { listen: 127.0.0.1:5, outbound: 127.0.0.1:6 } }
kms:
  keyrings:
    - name: cards
      allow:
        - { service: payments, operations: [encrypt, decrypt, rewrap, datakey] }
        - { service: orders, operations: [encrypt] }
    - { name: tokens, allow: [{ service: payments, operations: [encrypt, decrypt] }] }
    - { name: webhooks, type: hmac-sha256, allow: [{ service: orders, operations: [hmac, verify] }] }
    - { name: receipts, type: ed25519, allow: [{ service: payments, operations: [sign, verify] }] }
  secrets:
    - { prefix: payments/, read: [payments], write: [payments] }
    - { prefix: shared/, read: [orders, payments] }
`, 'kms-api.yaml');

const PAYMENTS = 'spiffe://demo/payments';
const ORDERS = 'spiffe://demo/orders';
const CARD = '4242424242424242';
const CARD_B64 = Buffer.from(CARD).toString('base64');

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; text: string; json: Record<string, unknown> }
type Who = { peer: string } | { token: string } | 'anonymous';

let server: Server;
let base: string;
let port: number;
let adminToken: string;
let dataDir: string;
let calls: KmsMethod[];
let events: AuditEvent[] = [];
let unsubscribe: () => void;
let clock: FakeClock;
let secrets: SecretStore;
let kms: Kms;

before(async () => {
  clock = new FakeClock(Date.UTC(2030, 0, 1));
  const store = new MemoryStore();
  const real = await newKeyManager({ store, clock });
  // What the control plane does at start: every configured keyring exists.
  for (const k of config.kms.keyrings) await real.ensureKeyring(k.name, { type: k.type });
  const spy = spyKms(real);
  kms = spy.kms;
  calls = spy.calls;
  secrets = new SecretStore({ store, kms: real, clock });
  dataDir = mkdtempSync(join(tmpdir(), 'pcl-kms-api-'));
  const { admin, createdFile } = await AdminToken.loadOrCreate(store, dataDir);
  adminToken = readFileSync(createdFile ?? '', 'utf8').trim();
  const api = createKmsApi({ config, kms, secrets, admin, clock });
  let n = 0;
  server = createServer((req, res) => {
    // Test harness only: the real server takes the peer from the verified TLS certificate.
    const peer = req.headers['x-test-peer'];
    const requestId = `req-${++n}`;
    res.setHeader('x-request-id', requestId);
    api(req, res, { requestId, sourceAddress: '127.0.0.1', ...(typeof peer === 'string' ? { peerSpiffeId: peer } : {}) }).then(
      (handled) => { if (!handled) { res.writeHead(404); res.end('not ours'); } },
      (err: unknown) => { res.writeHead(500); res.end(String(err)); },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  port = typeof addr === 'object' && addr ? addr.port : 0;
  base = `http://127.0.0.1:${port}`;
  unsubscribe = subscribeAudit((e) => events.push(e));
});

after(async () => {
  unsubscribe();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dataDir, { recursive: true, force: true });
});

beforeEach(() => {
  calls.length = 0;
  events = [];
});

function send(method: string, path: string, who: Who, body?: unknown, o: { raw?: string; contentType?: string } = {}): Promise<Reply> {
  const payload = o.raw ?? (body === undefined ? undefined : JSON.stringify(body));
  const headers: Record<string, string> = {};
  if (payload !== undefined) headers['content-type'] = o.contentType ?? 'application/json';
  if (who !== 'anonymous' && 'peer' in who) headers['x-test-peer'] = who.peer;
  if (who !== 'anonymous' && 'token' in who) headers.authorization = `Bearer ${who.token}`;
  return new Promise((resolve, reject) => {
    // host/port/path options, not a URL string: a URL would normalize the dot segments under test.
    const req = request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: Record<string, unknown> = {};
        try { json = JSON.parse(text) as Record<string, unknown>; } catch { /* empty or not JSON */ }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const payments: Who = { peer: PAYMENTS };
const orders: Who = { peer: ORDERS };
const admin = (): Who => ({ token: adminToken });
const codeOf = (r: Reply): unknown => (r.json.error as { code?: string } | undefined)?.code;
const str = (r: Reply, key: string): string => {
  const v = r.json[key];
  assert.equal(typeof v, 'string', `${key} in ${r.text}`);
  return String(v);
};

/** The API's audit events for one reply (KeyManager events have no request id). */
function eventsOf(r: Reply): AdminEvent[] {
  return events.filter((e): e is AdminEvent => e.type === 'admin' && e.requestId === r.headers['x-request-id']);
}

function assertRefused(r: Reply, status: number, code: string): void {
  assert.equal(r.status, status, r.text);
  assert.equal(codeOf(r), code, r.text);
  const [event, ...more] = eventsOf(r);
  assert.equal(more.length, 0, 'one event per call');
  assert.equal(event?.outcome, 'failure');
  assert.equal(event?.detail.code, code);
}

async function encrypt(plaintext: string, context?: Record<string, string>, keyring = 'cards'): Promise<string> {
  const r = await send('POST', `/v1/transit/encrypt/${keyring}`, payments, { plaintext: Buffer.from(plaintext).toString('base64'), ...(context ? { context } : {}) });
  assert.equal(r.status, 200, r.text);
  return str(r, 'ciphertext');
}

test('encrypt then decrypt: the plaintext comes back, the audit trail never holds it', async () => {
  const enc = await send('POST', '/v1/transit/encrypt/cards', payments, { plaintext: CARD_B64, context: { tenant: 't1', field: 'card' } });
  assert.equal(enc.status, 200, enc.text);
  const ciphertext = str(enc, 'ciphertext');
  assert.match(ciphertext, /^pcl:cards:v1:/);
  const dec = await send('POST', '/v1/transit/decrypt/cards', payments, { ciphertext, context: { field: 'card', tenant: 't1' } });
  assert.equal(dec.status, 200, dec.text);
  assert.equal(Buffer.from(str(dec, 'plaintext'), 'base64').toString(), CARD);
  assert.deepEqual(calls, ['encrypt', 'decrypt']);

  const [e1] = eventsOf(enc);
  const [e2] = eventsOf(dec);
  assert.deepEqual({ action: e1?.action, outcome: e1?.outcome, who: e1?.who, detail: e1?.detail }, {
    action: 'transit.encrypt', outcome: 'success', who: { sourceAddress: '127.0.0.1', spiffeId: PAYMENTS },
    detail: { rule: 'kms:cards:payments:encrypt', keyring: 'cards', bytes: 16, version: 1 },
  });
  assert.equal(e2?.action, 'transit.decrypt');
  assert.equal(e2?.detail.rule, 'kms:cards:payments:decrypt');
  const trail = JSON.stringify(events);
  for (const needle of [CARD, CARD_B64, Buffer.from(CARD).toString('base64url'), Buffer.from(CARD).toString('hex'), ciphertext, ciphertext.slice(13)]) {
    assert.ok(!trail.includes(needle), `audit trail contains ${needle.slice(0, 12)}…`);
  }
});

test('a wrong context or another keyring\'s path does not decrypt', async () => {
  const ciphertext = await encrypt(CARD, { tenant: 't1' });
  assertRefused(await send('POST', '/v1/transit/decrypt/cards', payments, { ciphertext, context: { tenant: 't2' } }), 400, 'PCL_ERR_KMS_CIPHERTEXT_INVALID');
  assertRefused(await send('POST', '/v1/transit/decrypt/cards', payments, { ciphertext }), 400, 'PCL_ERR_KMS_CIPHERTEXT_INVALID');
  calls.length = 0;
  // Allowed on `tokens` too, but the ciphertext names `cards`: refused before the Kms is asked.
  assertRefused(await send('POST', '/v1/transit/decrypt/tokens', payments, { ciphertext, context: { tenant: 't1' } }), 400, 'PCL_ERR_KMS_CIPHERTEXT_INVALID');
  assert.deepEqual(calls, []);
  const tampered = ciphertext.slice(0, -2) + (ciphertext.endsWith('A') ? 'BA' : 'AA');
  assertRefused(await send('POST', '/v1/transit/decrypt/cards', payments, { ciphertext: tampered, context: { tenant: 't1' } }), 400, 'PCL_ERR_KMS_CIPHERTEXT_INVALID');
});

test('every operation: allowed for the granted service, refused for others without touching the Kms', async () => {
  const ciphertext = await encrypt('x');
  const mac = str(await send('POST', '/v1/transit/hmac/webhooks', orders, { input: 'aGk=' }), 'hmac');
  const signature = str(await send('POST', '/v1/transit/sign/receipts', payments, { input: 'aGk=' }), 'signature');
  const cases: { path: string; body: unknown; allowed: Who; refused: Who[]; expect: (r: Reply) => void }[] = [
    { path: '/v1/transit/encrypt/cards', body: { plaintext: 'aGk=' }, allowed: orders, refused: [], expect: (r) => assert.match(str(r, 'ciphertext'), /^pcl:cards:v\d+:/) },
    { path: '/v1/transit/decrypt/cards', body: { ciphertext }, allowed: payments, refused: [orders], expect: (r) => assert.equal(str(r, 'plaintext'), 'eA==') },
    { path: '/v1/transit/rewrap/cards', body: { ciphertext }, allowed: payments, refused: [orders], expect: (r) => assert.match(str(r, 'ciphertext'), /^pcl:cards:/) },
    { path: '/v1/transit/datakey/cards', body: {}, allowed: payments, refused: [orders], expect: (r) => {
      assert.equal(Buffer.from(str(r, 'plaintext'), 'base64').length, 32);
      assert.match(str(r, 'ciphertext'), /^pcl:cards:/);
    } },
    { path: '/v1/transit/hmac/webhooks', body: { input: 'aGk=' }, allowed: orders, refused: [payments], expect: (r) => assert.equal(str(r, 'hmac'), mac) },
    { path: '/v1/transit/verify/webhooks', body: { input: 'aGk=', hmac: mac }, allowed: orders, refused: [payments], expect: (r) => assert.equal(r.json.valid, true) },
    { path: '/v1/transit/sign/receipts', body: { input: 'aGk=' }, allowed: payments, refused: [orders], expect: (r) => assert.match(str(r, 'signature'), /^pcl:receipts:v1:/) },
    { path: '/v1/transit/verify/receipts', body: { input: 'aGk=', signature }, allowed: payments, refused: [orders], expect: (r) => assert.equal(r.json.valid, true) },
  ];
  for (const c of cases) {
    for (const who of [...c.refused, { peer: 'spiffe://demo/gateway' }, { peer: 'spiffe://other/payments' }]) {
      calls.length = 0;
      assertRefused(await send('POST', c.path, who, c.body), 403, 'PCL_ERR_FORBIDDEN');
      assert.deepEqual(calls, [], `${c.path}: a refused call never reaches the Kms`);
    }
    const ok = await send('POST', c.path, c.allowed, c.body);
    assert.equal(ok.status, 200, `${c.path}: ${ok.text}`);
    c.expect(ok);
    const [event, ...more] = eventsOf(ok);
    assert.equal(more.length, 0);
    assert.equal(event?.outcome, 'success');
    assert.match(String(event?.detail.rule), /^kms:[a-z]+:(payments|orders):[a-z]+$/);
  }
  // A wrong signature or MAC is an answer, not an error.
  assert.equal((await send('POST', '/v1/transit/verify/webhooks', orders, { input: 'aG8=', hmac: mac })).json.valid, false);
  assert.equal((await send('POST', '/v1/transit/verify/receipts', payments, { input: 'aG8=', signature })).json.valid, false);
});

test('authentication: a certificate or the admin token; a wrong token never falls back to the certificate', async () => {
  assertRefused(await send('POST', '/v1/transit/encrypt/cards', 'anonymous', { plaintext: 'aGk=' }), 401, 'PCL_ERR_PEER_CERT_REQUIRED');
  assertRefused(await send('POST', '/v1/transit/encrypt/cards', { token: 'pat_wrong' }, { plaintext: 'aGk=' }), 401, 'PCL_ERR_ADMIN_AUTH');
  const both = await send('POST', '/v1/transit/decrypt/cards', { token: 'pat_wrong' }, { ciphertext: 'x' });
  assertRefused(both, 401, 'PCL_ERR_ADMIN_AUTH');
  assert.deepEqual(calls, []);
  // The admin token may do everything, including what no service is granted.
  const ciphertext = await encrypt(CARD);
  const dec = await send('POST', '/v1/transit/decrypt/cards', admin(), { ciphertext });
  assert.equal(dec.status, 200);
  assert.deepEqual(eventsOf(dec)[0]?.who, { sourceAddress: '127.0.0.1', sub: 'admin' });
  assert.equal(eventsOf(dec)[0]?.detail.rule, 'admin');
  assert.equal((await send('POST', '/v1/transit/sign/receipts', admin(), { input: 'aGk=' })).status, 200);
});

test('strict input: base64, fields, context and content type', async () => {
  const bad: unknown[] = [
    { plaintext: 'aGk' }, // unpadded
    { plaintext: 'aG k=' },
    { plaintext: 'aGk=\n' },
    { plaintext: '-_8=' }, // base64url alphabet
    { plaintext: 'aGl=' }, // non-zero padding bits
    { plaintext: 42 },
    {},
    { plaintext: 'aGk=', contxt: { a: 'b' } }, // a misspelt context must not silently drop the binding
    { plaintext: 'aGk=', context: 'tenant=t1' },
    { plaintext: 'aGk=', context: { n: 1 } },
    { plaintext: 'aGk=', context: null },
    { plaintext: 'aGk=', items: [] },
  ];
  for (const body of bad) {
    calls.length = 0;
    assertRefused(await send('POST', '/v1/transit/encrypt/cards', payments, body), 400, 'PCL_ERR_INVALID_ARGUMENT');
    assert.deepEqual(calls, [], JSON.stringify(body));
  }
  assertRefused(await send('POST', '/v1/transit/encrypt/cards', payments, undefined, { raw: '{"plaintext":', contentType: 'application/json' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assertRefused(await send('POST', '/v1/transit/encrypt/cards', payments, undefined, { raw: 'plaintext=aGk=', contentType: 'application/x-www-form-urlencoded' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assertRefused(await send('POST', '/v1/transit/verify/receipts', payments, { input: 'aGk=' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assertRefused(await send('POST', '/v1/transit/verify/receipts', payments, { input: 'aGk=', signature: 'pcl:receipts:v1:AA', hmac: 'pcl:receipts:v1:AA' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  // Empty plaintext is valid base64 of nothing.
  assert.equal((await send('POST', '/v1/transit/encrypt/cards', payments, { plaintext: '' })).status, 200);
});

test('operations that do not fit the keyring type are refused by policy and by the Kms', async () => {
  // No grant can exist (the config refuses it), so a workload is refused by policy…
  assertRefused(await send('POST', '/v1/transit/sign/cards', payments, { input: 'aGk=' }), 403, 'PCL_ERR_FORBIDDEN');
  // …and the admin by the Kms.
  assertRefused(await send('POST', '/v1/transit/sign/cards', admin(), { input: 'aGk=' }), 400, 'PCL_ERR_KMS_KEYRING_TYPE');
  assertRefused(await send('POST', '/v1/transit/encrypt/nope', admin(), { plaintext: 'aGk=' }), 404, 'PCL_ERR_KMS_KEYRING_NOT_FOUND');
});

test('batch encrypt, decrypt and rewrap: one result per item, errors per item, one audit event', async () => {
  const enc = await send('POST', '/v1/transit/encrypt/cards', payments, { items: [{ plaintext: CARD_B64, context: { i: '0' } }, { plaintext: 'not base64!' }, { plaintext: 'aGk=' }] });
  assert.equal(enc.status, 200, enc.text);
  const items = enc.json.items as { ciphertext?: string; error?: { code: string } }[];
  assert.equal(items.length, 3);
  assert.match(items[0]?.ciphertext ?? '', /^pcl:cards:v\d+:/);
  assert.deepEqual(items[1], { error: { code: 'PCL_ERR_INVALID_ARGUMENT', message: 'invalid argument' } });
  assert.match(items[2]?.ciphertext ?? '', /^pcl:cards:v\d+:/);
  const [event, ...more] = eventsOf(enc);
  assert.equal(more.length, 0);
  assert.equal(event?.detail.items, 3);
  assert.equal(event?.detail.failed, 1);
  assert.equal(event?.detail.bytes, 16 + 2);

  const dec = await send('POST', '/v1/transit/decrypt/cards', payments, { items: [
    { ciphertext: items[0]?.ciphertext, context: { i: '0' } },
    { ciphertext: items[2]?.ciphertext, context: { i: '0' } }, // wrong context
    { ciphertext: items[2]?.ciphertext },
  ] });
  assert.equal(dec.status, 200, dec.text);
  assert.deepEqual(dec.json.items, [{ plaintext: CARD_B64 }, { error: { code: 'PCL_ERR_KMS_CIPHERTEXT_INVALID', message: 'ciphertext cannot be decrypted' } }, { plaintext: 'aGk=' }]);
  assert.ok(!JSON.stringify(events).includes(CARD_B64));

  await send('POST', '/v1/kms/keyrings/cards/rotate', admin());
  const rewrap = await send('POST', '/v1/transit/rewrap/cards', payments, { items: [{ ciphertext: items[2]?.ciphertext }] });
  const [rewrapped] = rewrap.json.items as { ciphertext: string }[];
  assert.ok(rewrapped && rewrapped.ciphertext !== items[2]?.ciphertext);

  const many = Array.from({ length: MAX_BATCH_ITEMS + 1 }, () => ({ plaintext: 'aGk=' }));
  calls.length = 0;
  assertRefused(await send('POST', '/v1/transit/encrypt/cards', payments, { items: many }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assertRefused(await send('POST', '/v1/transit/encrypt/cards', payments, { items: [] }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assertRefused(await send('POST', '/v1/transit/encrypt/cards', payments, { items: ['aGk='] }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assertRefused(await send('POST', '/v1/transit/hmac/webhooks', orders, { items: [{ input: 'aGk=' }] }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assert.deepEqual(calls, []);
  const full = await send('POST', '/v1/transit/encrypt/cards', payments, { items: Array.from({ length: MAX_BATCH_ITEMS }, () => ({ plaintext: 'aGk=' })) });
  assert.equal((full.json.items as unknown[]).length, MAX_BATCH_ITEMS);
  // Over 4 MiB of body is refused while reading.
  assertRefused(await send('POST', '/v1/transit/encrypt/cards', payments, { items: [{ plaintext: 'A'.repeat(4 * 1024 * 1024) }] }), 400, 'PCL_ERR_INVALID_ARGUMENT');
});

test('keyring administration needs the admin token', async () => {
  for (const [method, path, body] of [['GET', '/v1/kms/keyrings', undefined], ['POST', '/v1/kms/keyrings/tokens/rotate', undefined], ['POST', '/v1/kms/keyrings/tokens/config', { minDecryptionVersion: 1 }]] as const) {
    calls.length = 0;
    assertRefused(await send(method, path, payments, body), 401, 'PCL_ERR_ADMIN_AUTH');
    assert.deepEqual(calls, []);
  }
  const list = await send('GET', '/v1/kms/keyrings', admin());
  assert.equal(list.status, 200);
  const names = (list.json.keyrings as { name: string }[]).map((k) => k.name);
  assert.deepEqual(names.filter((n) => n !== 'secrets').sort(), ['cards', 'receipts', 'tokens', 'webhooks']);
  assert.ok(!/"(key|wrapped|material)"/.test(list.text), 'metadata only');

  const old = await encrypt('old', undefined, 'tokens');
  const rotated = await send('POST', '/v1/kms/keyrings/tokens/rotate', admin());
  assert.equal(rotated.status, 200, rotated.text);
  const latest = (rotated.json.keyring as { latestVersion: number }).latestVersion;
  assert.equal(eventsOf(rotated)[0]?.detail.version, latest);
  assert.match(await encrypt('new', undefined, 'tokens'), new RegExp(`^pcl:tokens:v${latest}:`));
  const retire = await send('POST', '/v1/kms/keyrings/tokens/config', admin(), { minDecryptionVersion: latest });
  assert.equal(retire.status, 200, retire.text);
  assertRefused(await send('POST', '/v1/transit/decrypt/tokens', payments, { ciphertext: old }), 400, 'PCL_ERR_KMS_VERSION_RETIRED');
  assertRefused(await send('POST', '/v1/kms/keyrings/tokens/config', admin(), { minDecryptionVersion: 0 }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assertRefused(await send('POST', '/v1/kms/keyrings/tokens/config', admin(), { minDecryptionVersion: 1, extra: true }), 400, 'PCL_ERR_INVALID_ARGUMENT');
});

test('routing: strict paths, methods, and paths that are not ours', async () => {
  assertRefused(await send('GET', '/v1/transit/encrypt/cards', payments), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
  const r = await send('PATCH', '/v1/secrets/payments/x', payments, {});
  assertRefused(r, 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
  assert.equal(r.headers.allow, 'GET, PUT, DELETE');
  for (const path of ['/v1/secrets/payments/../shared/x', '/v1/secrets/payments/%2e%2e/shared/x', '/v1/secrets/payments//x', '/v1/transit/encrypt/%63ards', '/v1/secrets/payments/./x']) {
    assertRefused(await send('GET', path, payments), 400, 'PCL_ERR_PATH_INVALID');
  }
  assertRefused(await send('GET', '/v1/secrets/Payments/x', payments), 400, 'PCL_ERR_INVALID_ARGUMENT');
  for (const path of ['/v1/other', '/v1/transit/explode/cards', '/v1/transit/encrypt/Cards', '/v1/transit/encrypt/cards/x', '/v1/kms/keyrings/cards/delete', '/v1/secretsx']) {
    const notOurs = await send('POST', path, admin(), {});
    assert.equal(notOurs.text, 'not ours', path);
  }
  assert.deepEqual(calls, []);
});

test('secrets: write and read by rule, list filtered, delete, destroy, undelete', async () => {
  assert.deepEqual((await send('PUT', '/v1/secrets/payments/stripe', admin(), { data: { apiKey: CARD } })).json, { version: 1 });
  assert.equal((await send('PUT', '/v1/secrets/shared/db', admin(), { data: { password: 'pw' } })).status, 200);
  assertRefused(await send('GET', '/v1/secrets/payments/stripe', orders), 403, 'PCL_ERR_FORBIDDEN');
  assertRefused(await send('PUT', '/v1/secrets/payments/stripe', orders, { data: { apiKey: 'x' } }), 403, 'PCL_ERR_FORBIDDEN');
  assertRefused(await send('PUT', '/v1/secrets/shared/db', payments, { data: { password: 'x' } }), 403, 'PCL_ERR_FORBIDDEN');

  const got = await send('GET', '/v1/secrets/payments/stripe', payments);
  assert.equal(got.status, 200, got.text);
  assert.deepEqual(got.json.data, { apiKey: CARD });
  assert.equal(eventsOf(got)[0]?.detail.rule, 'secret:payments/:payments:read');
  assert.deepEqual((await send('PUT', '/v1/secrets/payments/stripe', payments, { data: { apiKey: 'v2' }, cas: 1 })).json, { version: 2 });
  assertRefused(await send('PUT', '/v1/secrets/payments/stripe', payments, { data: { apiKey: 'v3' }, cas: 1 }), 409, 'PCL_ERR_SECRET_CONFLICT');
  assertRefused(await send('PUT', '/v1/secrets/payments/stripe', payments, { data: { apiKey: 5 } }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assertRefused(await send('PUT', '/v1/secrets/payments/stripe', payments, { data: { apiKey: 'x' }, cas: '1' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assert.equal((await send('GET', '/v1/secrets/payments/stripe?version=1', payments)).json.version, 1);
  assertRefused(await send('GET', '/v1/secrets/payments/stripe?version=x', payments), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assertRefused(await send('GET', '/v1/secrets/payments/stripe?verison=1', payments), 400, 'PCL_ERR_INVALID_ARGUMENT');

  const listP = await send('GET', '/v1/secrets', payments);
  assert.deepEqual((listP.json.secrets as { path: string }[]).map((s) => s.path), ['payments/stripe', 'shared/db']);
  const listO = await send('GET', '/v1/secrets?prefix=payments/', orders);
  assert.deepEqual(listO.json.secrets, []);
  const listA = await send('GET', '/v1/secrets?prefix=shared/', admin());
  assert.deepEqual((listA.json.secrets as { path: string }[]).map((s) => s.path), ['shared/db']);
  assert.ok(!listP.text.includes(CARD) && !listP.text.includes('v2'));

  assert.equal((await send('DELETE', '/v1/secrets/payments/stripe', payments)).status, 204);
  assertRefused(await send('GET', '/v1/secrets/payments/stripe', payments), 404, 'PCL_ERR_SECRET_NOT_FOUND');
  assert.equal((await send('GET', '/v1/secrets/payments/stripe?version=1', payments)).status, 200);
  assert.equal((await send('POST', '/v1/secrets/payments/stripe/undelete', payments, { versions: [2] })).status, 204);
  assert.equal((await send('GET', '/v1/secrets/payments/stripe', payments)).json.version, 2);
  assert.equal((await send('DELETE', '/v1/secrets/payments/stripe?versions=1,2', payments)).status, 204);
  assert.equal((await send('POST', '/v1/secrets/payments/stripe/destroy', payments, { versions: [1] })).status, 204);
  assertRefused(await send('POST', '/v1/secrets/payments/stripe/destroy', orders, { versions: [2] }), 403, 'PCL_ERR_FORBIDDEN');
  assertRefused(await send('POST', '/v1/secrets/payments/stripe/destroy', payments, { versions: '1' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  const meta = (await send('GET', '/v1/secrets?prefix=payments/', payments)).json.secrets as { versions: { destroyed: boolean; deleted: boolean }[] }[];
  assert.deepEqual(meta[0]?.versions.map((v) => [v.deleted, v.destroyed]), [[true, true], [true, false]]);

  const trail = JSON.stringify(events);
  assert.ok(!trail.includes(CARD) && !trail.includes('"pw"') && !trail.includes('pcl:secrets:'), 'no secret value or ciphertext in the audit trail');
});

test('long poll: 200 with the new version as soon as it is written, 304 when nothing changed', async () => {
  await send('PUT', '/v1/secrets/payments/rotating', admin(), { data: { key: 'one' } });
  const pending = send('GET', '/v1/secrets/payments/rotating?wait=1', payments);
  await until(() => clock.pendingTimers() > 0);
  assert.deepEqual((await send('PUT', '/v1/secrets/payments/rotating', admin(), { data: { key: 'two' } })).json, { version: 2 });
  const changed = await pending;
  assert.equal(changed.status, 200, changed.text);
  assert.deepEqual({ version: changed.json.version, data: changed.json.data }, { version: 2, data: { key: 'two' } });
  assert.equal(eventsOf(changed)[0]?.action, 'secret.wait');

  // Already newer: at once.
  assert.equal((await send('GET', '/v1/secrets/payments/rotating?wait=0', payments)).json.version, 2);

  const quiet = send('GET', '/v1/secrets/payments/rotating?wait=2', payments);
  await until(() => clock.pendingTimers() > 0);
  await clock.advance(30_000);
  const unchanged = await quiet;
  assert.equal(unchanged.status, 304);
  assert.equal(unchanged.text, '');
  assert.equal(eventsOf(unchanged)[0]?.detail.changed, false);

  // A shorter timeout, and refusals before any waiting.
  const short = send('GET', '/v1/secrets/payments/rotating?wait=2&timeout=5', payments);
  await until(() => clock.pendingTimers() > 0);
  await clock.advance(5_000);
  assert.equal((await short).status, 304);
  assertRefused(await send('GET', '/v1/secrets/payments/rotating?wait=2', orders), 403, 'PCL_ERR_FORBIDDEN');
  assertRefused(await send('GET', '/v1/secrets/payments/rotating?wait=-1', payments), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assertRefused(await send('GET', '/v1/secrets/payments/rotating?wait=1&version=1', payments), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assert.equal(clock.pendingTimers(), 0);
});

test('a client that hangs up ends its long poll', async () => {
  await send('PUT', '/v1/secrets/payments/hangup', admin(), { data: { key: 'one' } });
  const req = request(`${base}/v1/secrets/payments/hangup?wait=1`, { headers: { 'x-test-peer': PAYMENTS } });
  req.on('error', () => undefined);
  req.end();
  await until(() => clock.pendingTimers() > 0);
  req.destroy();
  await until(() => clock.pendingTimers() === 0);
});

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(condition(), 'condition not reached in time');
}
