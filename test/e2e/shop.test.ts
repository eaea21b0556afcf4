// The shop (SCENARIOS.md §1) as real processes over real TLS: for each rule, the allowed call
// succeeds and the forbidden one is refused without reaching the service.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { SignJWT, generateKeyPair, decodeProtectedHeader } from 'jose';
import { startSystem, type RunningSystem, type SystemOptions } from '../../src/cli/system.js';
import { demoUsers } from '../../src/cli/demo.js';
import { CLI_CLIENT_ID } from '../../src/control/server.js';
import { loginWithPkce } from '../../src/tokens/client/pkce-login.js';
import { ControlClient } from '../../src/dataplane/control-client.js';
import { WorkloadIdentity } from '../../src/dataplane/workload-identity.js';
import { AdminClient, readAdminToken } from '../../src/cli/admin-client.js';
import { KmsClient } from '../../src/sdk/kms-client.js';
import { PortcullisError } from '../../src/core/errors.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { assertionBy, unsignedAssertion } from '../helpers/principal-assertion.js';
import { cliPath, repoRoot } from '../helpers/paths.js';
import { auditEvents } from '../helpers/audit.js';
import { call, codeOf, freePortBlock, freePorts } from '../helpers/net.js';

let sys: RunningSystem;
let restartOptions: SystemOptions;
let dir: string;
let ca: string;
const tokens: Record<string, string> = {};
const USERS_ID = 'spiffe://demo/shop/users';

const svc = (name: string) => {
  const s = sys.config.services.find((x) => x.name === name);
  assert.ok(s, name);
  return s;
};
/** What reached a service, read from its own loopback port (never routed through Portcullis). */
async function seen(service: string): Promise<{ method: string; path: string; peer?: string; sub?: string }[]> {
  return (await call(`${svc(service).upstream}/__seen`)).json as { method: string; path: string; peer?: string; sub?: string }[]; // the example service's own list
}
const gw = (path: string, o: Parameters<typeof call>[1] = {}) => call(sys.gatewayUrl + path, { ca, ...o });
const as = (user: string): Record<string, string> => ({ authorization: `Bearer ${tokens[user]}` });

/** A real workload certificate for one of the config's identities. */
async function workload(spiffeId: string): Promise<{ key: string; cert: string }> {
  const admin = new AdminClient(sys.controlUrl, ca, readAdminToken(dir) ?? '');
  const token = await admin.joinToken(spiffeId).finally(() => admin.close());
  const id = await WorkloadIdentity.obtain({ spiffeId, control: new ControlClient(sys.controlUrl, ca), stateDir: mkdtempSync(join(dir, 'wl-')), joinToken: token });
  return { key: id.current().keyPem, cert: id.current().chainPem };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-shop-'));
  const [control, gateway] = await freePorts(2);
  restartOptions = {
    template: join(repoRoot, 'examples', 'shop', 'portcullis.yaml'),
    dataDir: dir, controlListen: `127.0.0.1:${control}`, gatewayListen: `127.0.0.1:${gateway}`,
    portBase: await freePortBlock(9), users: demoUsers('shop'),
  };
  sys = await startSystem(restartOptions);
  ca = readFileSync(sys.caFile, 'utf8');
  for (const user of ['alice', 'bob', 'mallory', 'mia', 'ada']) {
    tokens[user] = (await loginWithPkce({ controlUrl: sys.controlUrl, caPem: ca, clientId: CLI_CLIENT_ID, username: user, password: sys.passwords[user] ?? '' })).accessToken;
  }
});

after(async () => {
  await sys?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('edge: authentication', () => {
  test('no token: 401 with a coded error, and the service never sees the request', async () => {
    const r = await gw('/shop/orders?probe=no-token');
    assert.equal(r.status, 401);
    assert.equal(codeOf(r), 'PCL_ERR_TOKEN_MISSING');
    assert.equal(r.headers['www-authenticate'], 'Bearer, DPoP algs="ES256 EdDSA"', 'RFC 6750 and RFC 9449 challenges, no error for a request without credentials');
    assert.ok(!(await seen('orders')).some((s) => s.sub === undefined && s.path === '/shop/orders'));
  });

  test('malformed, alg:none, foreign-signed and tampered tokens are refused with their codes', async () => {
    const real = tokens.alice ?? '';
    const [h, p] = real.split('.');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${p}.`;
    const { privateKey } = await generateKeyPair('ES256');
    const kid = decodeProtectedHeader(real).kid ?? '';
    const claims = JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) as Record<string, unknown>;
    const forged = await new SignJWT({ ...claims, roles: ['admin'] }).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid }).sign(privateKey);
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, roles: ['admin'] })).toString('base64url')}.${real.split('.')[2]}`;
    const cases: [string, string][] = [
      ['not-a-jwt', 'PCL_ERR_TOKEN_MALFORMED'],
      [none, 'PCL_ERR_TOKEN_ALG'],
      [forged, 'PCL_ERR_TOKEN_SIGNATURE'],
      [tampered, 'PCL_ERR_TOKEN_SIGNATURE'],
    ];
    for (const [token, code] of cases) {
      const r = await gw('/shop/orders/o-1/refund', { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 401, code);
      assert.equal(codeOf(r), code);
      assert.ok(!r.text.includes(token.slice(0, 20)) || token === 'not-a-jwt', 'the token is never echoed');
    }
    assert.ok(!(await seen('orders')).some((s) => s.path.endsWith('/refund')), 'no refund reached orders');
  });

  test('two Authorization headers are refused', async () => {
    const r = await call(sys.gatewayUrl + '/shop/orders', { ca, headers: { authorization: `Bearer ${tokens.alice}`, Authorization: `Bearer ${tokens.ada}` } });
    assert.equal(r.status, 400, 'a header policy reads must come once: refused before authentication');
    assert.equal(codeOf(r), 'PCL_ERR_HEADER_INVALID');
  });

  test('a plaintext connection to the gateway TLS port gets no HTTP answer', async () => {
    const { port, hostname } = new URL(sys.gatewayUrl);
    const answer = await new Promise<string>((resolve) => {
      const s = netConnect(Number(port), hostname, () => s.write('GET /shop/orders HTTP/1.1\r\nHost: x\r\n\r\n'));
      let got = '';
      s.on('data', (d) => { got += d.toString('latin1'); });
      s.on('close', () => resolve(got));
      s.on('error', () => resolve(got));
    });
    assert.ok(!answer.startsWith('HTTP/'), 'no HTTP response over plaintext');
  });
});

describe('edge: roles per route', () => {
  test('a customer lists her own orders', async () => {
    const r = await gw('/shop/orders', { headers: as('alice') });
    assert.equal(r.status, 200);
    const ids = (r.json as { orders: { id: string; owner: string }[] }).orders.map((o) => o.owner);
    assert.ok(ids.length > 0 && ids.every((o) => o === 'alice'));
    assert.ok(r.headers['x-request-id']);
  });

  test('a customer may not refund: 403, and orders never sees it; the merchant may', async () => {
    const refused = await gw('/shop/orders/o-2/refund', { method: 'POST', headers: as('alice') });
    assert.equal(refused.status, 403);
    assert.equal(codeOf(refused), 'PCL_ERR_FORBIDDEN');
    assert.ok(!(await seen('orders')).some((s) => s.path === '/shop/orders/o-2/refund'));
    const ok = await gw('/shop/orders/o-2/refund', { method: 'POST', headers: as('mia') });
    assert.equal(ok.status, 200);
    assert.equal((ok.json as { status: string }).status, 'refunded');
    assert.ok((await seen('orders')).some((s) => s.path === '/shop/orders/o-2/refund' && s.sub === 'mia'));
  });

  test('only customers may place orders; the order is charged through payments over mTLS', async () => {
    const body = { items: [{ sku: 'tea', qty: 1 }], card: '4111 1111 1111 1111' };
    const refused = await gw('/shop/orders', { method: 'POST', headers: as('ada'), body });
    assert.equal(refused.status, 403);
    const r = await gw('/shop/orders', { method: 'POST', headers: as('bob'), body });
    assert.equal(r.status, 201);
    assert.ok(!r.text.includes('4111 1111 1111 1111'), 'card number masked in the response');
    const charges = (await seen('payments')).filter((s) => s.path === '/payments/charge');
    assert.ok(charges.length >= 1 && charges.every((c) => c.peer === 'spiffe://demo/shop/orders'));
  });

  test('unauthenticated beats forbidden (authentication runs before authorization)', async () => {
    const r = await gw('/shop/orders/o-1/refund', { method: 'POST' });
    assert.equal(r.status, 401);
  });

  test('an unknown route is 404 whoever asks, and the gateway has no route to payments', async () => {
    for (const path of ['/payments/charge', '/shop/../payments/charge', '/internal/users/alice']) {
      const r = await gw(path, { method: path === '/internal/users/alice' ? 'GET' : 'POST', headers: as('ada'), body: path === '/internal/users/alice' ? undefined : { card: '1' } });
      assert.ok(r.status === 404 || r.status === 400, `${path}: ${r.status}`);
    }
    assert.equal((await seen('payments')).filter((s) => s.peer === 'spiffe://demo/gateway').length, 0);
  });

  test('client-supplied identity headers are stripped: the service sees the verified principal', async () => {
    const r = await gw('/shop/users/me', {
      headers: { ...as('alice'), 'x-portcullis-principal': unsignedAssertion({ sub: 'ada', roles: ['admin'] }), 'x-portcullis-peer': 'spiffe://demo/shop/orders', 'x-forwarded-for': '6.6.6.6' },
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { username: 'alice', roles: ['customer'] });
  });

  test('foreign and missing orders look the same (no enumeration)', async () => {
    const foreign = await gw('/shop/orders/o-1', { headers: as('mallory') });
    const missing = await gw('/shop/orders/o-999', { headers: as('mallory') });
    assert.equal(foreign.status, 404);
    assert.equal(missing.status, 404);
    assert.equal(foreign.text, missing.text);
    assert.equal((await gw('/shop/orders/o-3', { headers: as('ada') })).status, 200);
  });
});

describe('inside: workload identity and call rules', () => {
  const sidecarUrl = (name: string, path: string) => `https://${svc(name).sidecar.listen}${path}`;

  test('payments is callable by orders only: users is refused at its own sidecar and at payments', async () => {
    const viaOwnSidecar = await call(`http://${svc('users').sidecar.outbound}/payments/charge`, { method: 'POST', headers: { host: 'payments' }, body: { card: '4111111111111111' } });
    assert.equal(viaOwnSidecar.status, 403);
    const users = await workload('spiffe://demo/shop/users');
    const direct = await call(sidecarUrl('payments', '/payments/charge'), { method: 'POST', ca, workload: { ...users, serverSpiffeId: 'spiffe://demo/shop/payments' }, body: { card: '4111111111111111' } });
    assert.equal(direct.status, 403);
    assert.equal(codeOf(direct), 'PCL_ERR_FORBIDDEN');
    assert.ok(!(await seen('payments')).some((s) => s.peer === 'spiffe://demo/shop/users'));
    const orders = await workload('spiffe://demo/shop/orders');
    const allowed = await call(sidecarUrl('payments', '/payments/charge'), { method: 'POST', ca, workload: { ...orders, serverSpiffeId: 'spiffe://demo/shop/payments' }, body: { card: '4111111111111111' } });
    const impostor = await call(sidecarUrl('payments', '/payments/charge'), { method: 'POST', ca, workload: { ...orders, serverSpiffeId: 'spiffe://demo/shop/users' }, body: { card: '1' } }).catch((e: Error) => e);
    assert.ok(impostor instanceof Error, 'a client refuses a server with another SPIFFE ID');
    assert.equal(allowed.status, 200);
  });

  test('no join token is ever issued for the control plane\'s own identity', async () => {
    const admin = new AdminClient(sys.controlUrl, ca, readAdminToken(dir) ?? '');
    try {
      await assert.rejects(admin.call('POST', '/v1/admin/join-tokens', { spiffeId: 'spiffe://demo/control' }), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_SPIFFE_ID_INVALID');
    } finally {
      await admin.close();
    }
  });

  test('the gateway\'s own identity with a forged user assertion: refused at the sidecar, never reaches the service', async () => {
    const [gateway, orders] = await Promise.all([workload('spiffe://demo/gateway'), workload('spiffe://demo/shop/orders')]);
    const asGateway = { ca, workload: { ...gateway, serverSpiffeId: USERS_ID } };
    const before = (await seen('users')).length;
    const forgeries = {
      unsigned: unsignedAssertion({ sub: 'ada', roles: ['admin'] }, USERS_ID),
      'signed by orders': assertionBy({ spiffeId: 'spiffe://demo/shop/orders', keyPem: orders.key, chainPem: orders.cert }, { sub: 'ada', roles: ['admin'] }, USERS_ID),
      'for another service': assertionBy({ spiffeId: 'spiffe://demo/gateway', keyPem: gateway.key, chainPem: gateway.cert }, { sub: 'ada', roles: ['admin'] }, 'spiffe://demo/shop/orders'),
    };
    for (const [what, assertion] of Object.entries(forgeries)) {
      const r = await call(sidecarUrl('users', '/shop/users/me'), { ...asGateway, headers: { 'x-portcullis-principal': assertion } });
      assert.equal(r.status, 401, what);
      assert.equal(codeOf(r), 'PCL_ERR_PRINCIPAL_ASSERTION', what);
    }
    assert.equal((await seen('users')).length, before, 'nothing reached the service');
    // The same hop with the gateway's key and the right audience is accepted: the key is what counts.
    const genuine = assertionBy({ spiffeId: 'spiffe://demo/gateway', keyPem: gateway.key, chainPem: gateway.cert }, { sub: 'ada', roles: ['admin'] }, USERS_ID);
    const ok = await call(sidecarUrl('users', '/shop/users/me'), { ...asGateway, headers: { 'x-portcullis-principal': genuine } });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json, { username: 'ada', roles: ['admin'] });
  });

  test('a process on the service\'s loopback port cannot name a user: the SDK checks the assertion again', async () => {
    const gateway = await workload('spiffe://demo/gateway');
    const direct = (assertion: string) => call(`${svc('users').upstream}/shop/users/me`, { headers: { 'x-portcullis-principal': assertion } });
    const unsigned = await direct(unsignedAssertion({ sub: 'ada', roles: ['admin'] }, USERS_ID));
    assert.equal(unsigned.status, 401);
    assert.equal(codeOf(unsigned), 'PCL_ERR_PRINCIPAL_ASSERTION');
    const misaddressed = await direct(assertionBy({ spiffeId: 'spiffe://demo/gateway', keyPem: gateway.key, chainPem: gateway.cert }, { sub: 'ada', roles: ['admin'] }, 'spiffe://demo/shop/orders'));
    assert.equal(misaddressed.status, 401);
    const genuine = await direct(assertionBy({ spiffeId: 'spiffe://demo/gateway', keyPem: gateway.key, chainPem: gateway.cert }, { sub: 'ada', roles: ['admin'] }, USERS_ID));
    assert.equal(genuine.status, 200);
  });

  test('a principal header from a workload that is not the gateway is dropped', async () => {
    const orders = await workload('spiffe://demo/shop/orders');
    const r = await call(sidecarUrl('users', '/internal/users/alice'), { ca, workload: { ...orders, serverSpiffeId: 'spiffe://demo/shop/users' }, headers: { 'x-portcullis-principal': unsignedAssertion({ sub: 'ada', roles: ['admin'] }) } });
    assert.equal(r.status, 200);
    const last = (await seen('users')).at(-1);
    assert.equal(last?.sub, undefined);
    assert.equal(last?.peer, 'spiffe://demo/shop/orders');
  });

  test('a sidecar refuses a connection without a client certificate, or with one of another CA', async () => {
    const { port, hostname } = new URL(`https://${svc('payments').sidecar.listen}`);
    const handshake = (opts: { key?: string; cert?: string }): Promise<string> => new Promise((resolve) => {
      const s = tlsConnect({ host: hostname, port: Number(port), ca, checkServerIdentity: () => undefined, ...opts }, () => {
        s.write('POST /payments/charge HTTP/1.1\r\nHost: payments\r\nContent-Length: 2\r\n\r\n{}');
      });
      let got = '';
      s.on('data', (d) => { got += d.toString(); });
      s.on('error', (e) => resolve(`error:${e.message}`));
      s.on('close', () => resolve(got || 'closed'));
    });
    const before = (await seen('payments')).length;
    const noCert = await handshake({});
    assert.ok(!noCert.startsWith('HTTP/'), noCert);
    const other = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(Buffer.alloc(32, 7)), trustDomain: 'demo' });
    const { keyPem, csrPem } = await createWorkloadKeyAndCsr('spiffe://demo/shop/orders');
    const foreign = await other.issue({ csrPem, spiffeId: 'spiffe://demo/shop/orders' });
    const otherCa = await handshake({ key: keyPem, cert: foreign.chainPem });
    assert.ok(!otherCa.startsWith('HTTP/'), otherCa);
    assert.equal((await seen('payments')).length, before, 'nothing reached payments');
  });

  test('a service reached directly on its sidecar without mTLS is refused (plaintext to the TLS port)', async () => {
    const r = await call(`http://${svc('orders').sidecar.listen}/shop/orders`).catch((e: Error) => e);
    assert.ok(r instanceof Error || r.status >= 400);
  });
});

describe('inside orders: the SDK decides which order, with the policy ids in the audit log', () => {
  type AuditEvent = Record<string, unknown> & { reasons?: string[]; requestId?: string; component?: string; decision?: string };
  /** The first matching event of a component's audit log, polled while group commit catches up. */
  async function auditEvent(component: string, match: (e: AuditEvent) => boolean): Promise<AuditEvent> {
    for (let i = 0; i < 60; i++) {
      const e = (auditEvents(dir, component) as AuditEvent[]).find(match);
      if (e) return e;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`no matching audit event in ${component}`);
  }
  /** The decision orders reported for this gateway request (its sidecar records it). */
  const orderDecision = (r: Awaited<ReturnType<typeof gw>>) =>
    auditEvent('sidecar-orders', (e) => e.component === 'service:orders' && e.requestId === r.headers['x-request-id']);

  test('owner, store merchant and admin read an order, each by its own policy', async () => {
    const cases: [string, string, string][] = [
      ['alice', 'o-1', 'shop.order.owner-reads'],
      ['mia', 'o-1', 'shop.order.store-merchant'],
      ['ada', 'o-3', 'shop.order.admin'],
    ];
    for (const [user, id, policy] of cases) {
      const r = await gw(`/shop/orders/${id}`, { headers: as(user) });
      assert.equal(r.status, 200, `${user} ${id}`);
      const d = await orderDecision(r);
      assert.equal(d.decision, 'allow');
      assert.deepEqual(d.reasons, [policy]);
      assert.deepEqual(d.resourceDecision, { action: 'shop.order.read', resource: `Order::"${id}"`, decision: 'allow', reasons: [policy] });
    }
  });

  test('a merchant sees no other store\'s order, answered as missing; both refusals are recorded', async () => {
    const foreign = await gw('/shop/orders/o-3', { headers: as('mia') });
    const missing = await gw('/shop/orders/o-999', { headers: as('mia') });
    assert.equal(foreign.status, 404);
    assert.equal(foreign.text, missing.text);
    assert.equal(foreign.headers['x-portcullis-decision'], undefined, 'the decision header never leaves the sidecar');
    for (const r of [foreign, missing]) {
      const d = await orderDecision(r);
      assert.equal(d.decision, 'deny');
      assert.deepEqual(d.reasons, []);
    }
  });

  test('the store\'s merchant refunds (shop.order.store-merchant); another store\'s order is not refunded', async () => {
    const ok = await gw('/shop/orders/o-1/refund', { method: 'POST', headers: as('mia') });
    assert.equal(ok.status, 200);
    assert.deepEqual((await orderDecision(ok)).resourceDecision, { action: 'shop.order.refund', resource: 'Order::"o-1"', decision: 'allow', reasons: ['shop.order.store-merchant'] });
    const refused = await gw('/shop/orders/o-3/refund', { method: 'POST', headers: as('mia') });
    assert.equal(refused.status, 404);
    assert.equal((await orderDecision(refused)).decision, 'deny');
    assert.equal(((await gw('/shop/orders/o-3', { headers: as('ada') })).json as { status: string }).status, 'paid', 'o-3 was not refunded');
    const admin = await gw('/shop/orders/o-3/refund', { method: 'POST', headers: as('ada') });
    assert.equal(admin.status, 200);
    assert.deepEqual((await orderDecision(admin)).reasons, ['shop.order.admin']);
  });

  test('payments refuses users by shop.payments.orders-only, at its own sidecar and at payments', async () => {
    const users = await workload('spiffe://demo/shop/users');
    const direct = await call(`https://${svc('payments').sidecar.listen}/payments/charge`, { method: 'POST', ca, workload: { ...users, serverSpiffeId: 'spiffe://demo/shop/payments' }, body: { card: '4111111111111111' } });
    assert.equal(direct.status, 403);
    assert.deepEqual((await auditEvent('sidecar-payments', (e) => e.requestId === direct.headers['x-request-id'])).reasons, ['shop.payments.orders-only']);
    const outbound = await call(`http://${svc('users').sidecar.outbound}/payments/charges/ch-1`, { headers: { host: 'payments' } });
    assert.equal(outbound.status, 403);
    assert.deepEqual((await auditEvent('sidecar-users', (e) => e.requestId === outbound.headers['x-request-id'])).reasons, ['shop.payments.orders-only']);
    assert.ok(!(await seen('payments')).some((s) => s.peer === 'spiffe://demo/shop/users'));
  });
});

describe('data protection: card numbers', () => {
  const CARD = '4929 3813 3266 4295';
  const digits = CARD.replace(/ /g, '');

  /** Every file under the data directory: the embedded store, logs, audit trail, service data. */
  function allFiles(root: string): string[] {
    return readdirSync(root, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? allFiles(join(root, e.name)) : e.isFile() ? [join(root, e.name)] : []));
  }

  test('a card is stored only encrypted, answered only masked, and appears in no file or log', async () => {
    const placed = await gw('/shop/orders', { method: 'POST', headers: as('alice'), body: { items: [{ sku: 'tea', qty: 3 }], card: CARD } });
    assert.equal(placed.status, 201);
    assert.ok(!placed.text.includes(digits.slice(0, 12)) && !placed.text.includes(CARD));
    const rows = readFileSync(join(dir, 'services', 'payments.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { chargeId: string; card: string });
    const row = rows.at(-1);
    assert.match(row?.card ?? '', /^pclf:v1:pcl:cards:v\d+:/, 'stored as a field ciphertext under the cards keyring');

    // payments can still read it back (decrypting through the KMS), and answers it masked.
    const orders = await workload('spiffe://demo/shop/orders');
    const back = await call(`https://${svc('payments').sidecar.listen}/payments/charges/${row?.chargeId}`, { ca, workload: { ...orders, serverSpiffeId: 'spiffe://demo/shop/payments' } });
    assert.equal(back.status, 200);
    assert.equal((back.json as { card: string }).card, '**** **** **** 4295');

    await sys.stop(); // flush every log and the store to disk before searching them
    for (const file of allFiles(dir)) {
      const text = readFileSync(file).toString('latin1');
      assert.ok(!text.includes(digits) && !text.includes(CARD), `card number found in ${file}`);
    }
    sys = await startSystem(restartOptions); // later tests still need the system
  });

  test('a service without a grant on the keyring is refused by the KMS', async () => {
    const r = await call(`http://${svc('users').sidecar.outbound}/v1/transit/datakey/cards`, { method: 'POST', headers: { host: 'portcullis.control' }, body: {} });
    assert.equal(r.status, 403);
    assert.equal(codeOf(r), 'PCL_ERR_FORBIDDEN');
    const other = await call(`http://${svc('users').sidecar.outbound}/oauth2/token`, { method: 'POST', headers: { host: 'portcullis.control' }, body: {} });
    assert.equal(other.status, 403, 'only the KMS APIs are reachable through a sidecar');
  });
});

describe('secrets: fetched by the service through its sidecar, on start and on change', () => {
  test('payments reads its secret and sees the next version; users is refused', async () => {
    const admin = new AdminClient(sys.controlUrl, ca, readAdminToken(dir) ?? '');
    await admin.call('PUT', '/v1/secrets/payments/provider', { data: { apiKey: 'prov-key-1' } });
    const payments = new KmsClient({ outbound: `http://${svc('payments').sidecar.outbound}` });
    const users = new KmsClient({ outbound: `http://${svc('users').sidecar.outbound}` });
    try {
      const first = await payments.getSecret('payments/provider');
      assert.equal(first.data.apiKey, 'prov-key-1');
      const changed = payments.waitForSecret('payments/provider', first.version);
      await admin.call('PUT', '/v1/secrets/payments/provider', { data: { apiKey: 'prov-key-2' } });
      assert.equal((await changed)?.data.apiKey, 'prov-key-2');
      await assert.rejects(users.getSecret('payments/provider'), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_FORBIDDEN');
    } finally {
      await Promise.all([payments.close(), users.close(), admin.close()]);
    }
  });
});

describe('audit', () => {
  test('every decision is an entry of the hash-chained log with who, what, which rule and why', async () => {
    await gw('/shop/orders/o-1/refund', { method: 'POST', headers: as('bob') });
    await gw('/shop/orders', { headers: as('bob') });
    // The gateway appends asynchronously (group commit); poll briefly for the entries to land.
    let events: Record<string, unknown>[] = [];
    for (let i = 0; i < 50; i++) {
      events = auditEvents(dir, 'gateway');
      if (events.some((e) => (e.who as { sub?: string }).sub === 'bob' && e.decision === 'allow')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const deny = events.find((e) => e.decision === 'deny' && (e.who as { sub?: string }).sub === 'bob' && (e.what as { route?: string }).route === 'shop.orders.refund');
    assert.ok(deny, 'deny recorded');
    assert.equal(deny.code, 'PCL_ERR_FORBIDDEN');
    assert.match(String(deny.why), /merchant, admin/);
    assert.ok(deny.requestId);
    const allow = events.find((e) => e.decision === 'allow' && (e.who as { sub?: string }).sub === 'bob' && (e.what as { route?: string }).route === 'shop.orders.list');
    assert.deepEqual(allow?.reasons, ['route:shop.orders.list']);
    const all = JSON.stringify(events);
    for (const t of Object.values(tokens)) assert.ok(!all.includes(t.split('.')[2] ?? 'x'), 'no token in the audit log');
  });

  test('audit verify passes on the live logs, and names the entry after one is edited', async () => {
    await sys.stop(); // writers close their logs with a final signed checkpoint
    const ok = spawnSync(process.execPath, [cliPath, 'audit', 'verify', '--data-dir', dir, '--require-closed'], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /gateway: ok, \d+ entries .* signed by spiffe:\/\/demo\/gateway/);
    assert.match(ok.stdout, /control: ok, \d+ entries .* signed by kms:audit/);
    assert.match(ok.stdout, /sidecar-payments: ok/);
    // Rewrite one decision of the gateway's log, as someone covering their tracks would.
    const seg = join(dir, 'audit', 'gateway', 'audit-000001.jsonl');
    const lines = readFileSync(seg, 'utf8').split('\n');
    const at = lines.findIndex((l) => l.includes('"decision":"deny"'));
    assert.ok(at >= 0);
    lines[at] = (lines[at] ?? '').replace('"decision":"deny"', '"decision":"allow"');
    writeFileSync(seg, lines.join('\n'));
    const bad = spawnSync(process.execPath, [cliPath, 'audit', 'verify', '--data-dir', dir], { encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, new RegExp(`gateway: TAMPERED at .*audit-000001\\.jsonl:${at + 1}`));
  });
});
