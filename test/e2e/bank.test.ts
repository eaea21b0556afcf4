// The bank (SCENARIOS.md §3) as real processes over real mutual TLS: for each rule, the allowed call
// succeeds, the forbidden one is refused without reaching the service, and the audit log names the
// policy that decided (examples/bank/policies.cedar).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { loadDemoUsers, startSystem, type RunningSystem } from '../../src/cli/system.js';
import { CLI_CLIENT_ID } from '../../src/control/server.js';
import { loginWithPkce } from '../../src/tokens/client/pkce-login.js';
import { ControlClient } from '../../src/dataplane/control-client.js';
import { WorkloadIdentity } from '../../src/dataplane/workload-identity.js';
import { AdminClient, readAdminToken } from '../../src/cli/admin-client.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { repoRoot } from '../helpers/paths.js';
import { auditEvents } from '../helpers/audit.js';
import { call, codeOf, freePortBlock, freePorts, type Reply } from '../helpers/net.js';

const TRANSFERS = 'spiffe://demo/bank/transfers';
const ACCOUNTS = 'spiffe://demo/bank/accounts';
const LEDGER = 'spiffe://demo/bank/ledger';
const IBAN = 'DE89370400440532013000';

let sys: RunningSystem;
let dir: string;
let ca: string;
const tokens: Record<string, string> = {};

const svc = (name: string) => {
  const s = sys.config.services.find((x) => x.name === name);
  assert.ok(s, name);
  return s;
};
type Seen = { method: string; path: string; peer?: string; sub?: string };
/** What reached a service, read from its own loopback port (never routed through Portcullis). */
async function seen(service: string): Promise<Seen[]> {
  return (await call(`${svc(service).upstream}/__seen`)).json as Seen[]; // the example service's own list
}
const gw = (path: string, o: Parameters<typeof call>[1] = {}) => call(sys.gatewayUrl + path, { ca, ...o });
const as = (user: string): Record<string, string> => ({ authorization: `Bearer ${tokens[user]}` });
const transfer = (user: string, body: unknown) => gw('/bank/transfers', { method: 'POST', headers: as(user), body });

/** Makes a service attempt a call through its own sidecar (the example services' test hook). */
async function attempt(from: string, method: string, path: string, to = 'ledger', body?: unknown): Promise<{ status: number; body: unknown; requestId?: string }> {
  const r = await call(`${svc(from).upstream}/__call`, { method: 'POST', body: { to, method, path, ...(body === undefined ? {} : { body }) } });
  assert.equal(r.status, 200, r.text);
  return r.json as { status: number; body: unknown; requestId?: string }; // the hook's own answer
}

type AuditEvent = Record<string, unknown> & { reasons?: string[]; requestId?: string; component?: string; decision?: string };
/** The first event of a component's audit log that matches, polled while group commit catches up. */
async function auditEvent(component: string, match: (e: AuditEvent) => boolean): Promise<AuditEvent> {
  for (let i = 0; i < 60; i++) {
    const e = (auditEvents(dir, component) as AuditEvent[]).find(match);
    if (e) return e;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`no matching audit event in ${component}`);
}
const requestIdOf = (r: Reply): string => String(r.headers['x-request-id'] ?? '');
/** The SDK decision the service reported for this gateway request (recorded by its sidecar). */
const serviceDecision = (service: string, r: Reply) =>
  auditEvent(`sidecar-${service}`, (e) => e.component === `service:${service}` && e.requestId === requestIdOf(r));

/** A real workload certificate for one of the config's identities. */
async function workload(spiffeId: string): Promise<{ key: string; cert: string }> {
  const admin = new AdminClient(sys.controlUrl, ca, readAdminToken(dir) ?? '');
  const token = await admin.joinToken(spiffeId).finally(() => admin.close());
  const id = await WorkloadIdentity.obtain({ spiffeId, control: new ControlClient(sys.controlUrl, ca), stateDir: mkdtempSync(join(dir, 'wl-')), joinToken: token });
  return { key: id.current().keyPem, cert: id.current().chainPem };
}
const sidecarUrl = (name: string, path: string) => `https://${svc(name).sidecar.listen}${path}`;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-bank-'));
  const [control, gateway] = await freePorts(2);
  sys = await startSystem({
    template: join(repoRoot, 'examples', 'bank', 'portcullis.yaml'),
    dataDir: dir, controlListen: `127.0.0.1:${control}`, gatewayListen: `127.0.0.1:${gateway}`,
    portBase: await freePortBlock(9), users: loadDemoUsers(join(repoRoot, 'examples', 'bank', 'users.yaml')),
  });
  ca = readFileSync(sys.caFile, 'utf8');
  for (const user of ['alice', 'bob', 'tess']) {
    tokens[user] = (await loginWithPkce({ controlUrl: sys.controlUrl, caPem: ca, clientId: CLI_CLIENT_ID, username: user, password: sys.passwords[user] ?? '' })).accessToken;
  }
});

after(async () => {
  await sys?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('POST /bank/transfers: a customer, from an account they own, within their limit', () => {
  test('alice moves money out of A-1: loaded from accounts, booked in the ledger by transfers, each hop over mTLS', async () => {
    const r = await transfer('alice', { from: 'A-1', to: IBAN, amount: '250.00', reference: 'rent' });
    assert.equal(r.status, 201, r.text);
    const booked = r.json as { id: string; status: string; entry: string };
    assert.equal(booked.status, 'booked');
    assert.ok((await seen('accounts')).some((s) => s.path === '/internal/accounts/A-1' && s.peer === TRANSFERS));
    assert.ok((await seen('ledger')).some((s) => s.method === 'POST' && s.path === '/ledger/entries' && s.peer === TRANSFERS));
    const d = await serviceDecision('transfers', r);
    assert.equal(d.decision, 'allow');
    assert.deepEqual(d.reasons, ['bank.transfer.from-own-account']);
    assert.deepEqual(d.resourceDecision, { action: 'bank.account.transfer-from', resource: 'Account::"A-1"', decision: 'allow', reasons: ['bank.transfer.from-own-account'] });
    const edge = await auditEvent('gateway', (e) => e.requestId === requestIdOf(r));
    assert.deepEqual(edge.reasons, ['route:bank.transfers.create']);
    const booking = await auditEvent('sidecar-ledger', (e) => e.decision === 'allow' && (e.what as { path?: string }).path === '/ledger/entries');
    assert.deepEqual(booking.reasons, ['call:transfers->ledger:POST /ledger/entries']);
    assert.equal((booking.who as { spiffeId?: string }).spiffeId, TRANSFERS);
    // The entry is in the ledger, as alice sees it through accounts.
    const account = await gw('/bank/accounts/A-1', { headers: as('alice') });
    const view = account.json as { balance: string; entries: { id: string; amount: string; counterparty?: string }[] };
    assert.ok(view.entries.some((e) => e.id === booked.entry && e.amount === '-250.00' && e.counterparty === IBAN));
    assert.equal(view.balance, '4750.00');
  });

  test('exactly the limit is allowed; one cent over it is refused with the deciding policy named, and nothing is booked', async () => {
    const ok = await transfer('alice', { from: 'A-1', to: IBAN, amount: '1000.00' });
    assert.equal(ok.status, 201, ok.text);
    const bookings = (await seen('ledger')).filter((s) => s.method === 'POST').length;
    const over = await transfer('alice', { from: 'A-1', to: IBAN, amount: '1000.01' });
    assert.equal(over.status, 403);
    assert.deepEqual((over.json as { reasons: string[] }).reasons, ['bank.transfer.within-limit']);
    assert.match((over.json as { error: string }).error, /limit/);
    const d = await serviceDecision('transfers', over);
    assert.equal(d.decision, 'deny');
    assert.deepEqual(d.reasons, ['bank.transfer.within-limit']);
    // bob's limit is his own (500.00).
    const bob = await transfer('bob', { from: 'B-1', to: IBAN, amount: '600' });
    assert.equal(bob.status, 403);
    assert.deepEqual((bob.json as { reasons: string[] }).reasons, ['bank.transfer.within-limit']);
    assert.equal((await seen('ledger')).filter((s) => s.method === 'POST').length, bookings, 'no refused transfer reached the ledger');
  });

  test('from someone else\'s account, or a missing one: the same refusal, and nothing is booked', async () => {
    const bookings = (await seen('ledger')).filter((s) => s.method === 'POST').length;
    const foreign = await transfer('bob', { from: 'A-1', to: IBAN, amount: '10.00' });
    const missing = await transfer('bob', { from: 'Z-9', to: IBAN, amount: '10.00' });
    assert.equal(foreign.status, 403);
    assert.equal(missing.status, 403);
    assert.equal(foreign.text, missing.text, 'a foreign account looks like a missing one');
    const d = await serviceDecision('transfers', foreign);
    assert.equal(d.decision, 'deny');
    assert.deepEqual(d.reasons, [], 'no policy permits it (deny by default)');
    assert.equal((await seen('ledger')).filter((s) => s.method === 'POST').length, bookings);
  });

  test('a teller never moves money: refused at the gateway by bank.teller.never-transfers, transfers never sees it', async () => {
    const r = await transfer('tess', { from: 'A-1', to: IBAN, amount: '10.00' });
    assert.equal(r.status, 403);
    assert.equal(codeOf(r), 'PCL_ERR_FORBIDDEN');
    assert.ok(!(await seen('transfers')).some((s) => s.sub === 'tess'));
    const e = await auditEvent('gateway', (x) => x.requestId === requestIdOf(r));
    assert.equal(e.decision, 'deny');
    assert.deepEqual(e.reasons, ['bank.teller.never-transfers']);
  });

  test('the body is validated: a positive decimal string, a well-formed IBAN, no unknown fields', async () => {
    const before = { accounts: (await seen('accounts')).length, ledger: (await seen('ledger')).length };
    const good = { from: 'A-1', to: IBAN, amount: '10.00' };
    const bad: [string, unknown][] = [
      ['amount as a number', { ...good, amount: 10 }],
      ['negative amount', { ...good, amount: '-10.00' }],
      ['zero amount', { ...good, amount: '0.00' }],
      ['three decimals', { ...good, amount: '10.001' }],
      ['exponent', { ...good, amount: '1e3' }],
      ['IBAN check digits wrong', { ...good, to: 'DE89370400440532013001' }],
      ['IBAN with spaces', { ...good, to: 'DE89 3704 0044 0532 0130 00' }],
      ['not an IBAN', { ...good, to: 'alice' }],
      ['unknown field (mass assignment)', { ...good, limit: '1000000.00' }],
      ['missing destination', { from: 'A-1', amount: '10.00' }],
      ['not an object', ['A-1', IBAN, '10.00']],
    ];
    for (const [why, body] of bad) {
      const r = await transfer('alice', body);
      assert.equal(r.status, 400, why);
      assert.ok(Array.isArray((r.json as { problems?: unknown }).problems), why);
    }
    const unknown = await transfer('alice', { ...good, status: 'approved' });
    assert.ok((unknown.json as { problems: string[] }).problems.includes('unknown field "status"'), unknown.text);
    assert.equal((await seen('accounts')).length, before.accounts, 'an invalid transfer loads no account');
    assert.equal((await seen('ledger')).length, before.ledger, 'an invalid transfer books nothing');
    // Another IBAN format and a whole-number amount are fine.
    assert.equal((await transfer('alice', { ...good, to: 'GB82WEST12345698765432', amount: '5' })).status, 201);
  });
});

describe('GET /bank/accounts/{id}: the owner, or a teller', () => {
  test('alice reads A-1 with its entries (accounts reads the ledger over mTLS); bob cannot tell it from a missing one', async () => {
    const r = await gw('/bank/accounts/A-1', { headers: as('alice') });
    assert.equal(r.status, 200);
    assert.ok((r.json as { entries: { id: string }[] }).entries.some((e) => e.id === 'e-open-A-1'));
    assert.deepEqual((await serviceDecision('accounts', r)).reasons, ['bank.account.owner-reads']);
    assert.ok((await seen('ledger')).some((s) => s.method === 'GET' && s.path === '/ledger/accounts/A-1/entries' && s.peer === ACCOUNTS));
    const read = await auditEvent('sidecar-ledger', (e) => e.decision === 'allow' && (e.what as { method?: string }).method === 'GET');
    assert.deepEqual(read.reasons, ['call:accounts->ledger:GET /ledger/accounts/{id}/entries']);

    const reads = (await seen('ledger')).filter((s) => s.method === 'GET').length;
    const foreign = await gw('/bank/accounts/A-1', { headers: as('bob') });
    const missing = await gw('/bank/accounts/Z-9', { headers: as('bob') });
    assert.equal(foreign.status, 404);
    assert.equal(missing.status, 404);
    assert.equal(foreign.text, missing.text);
    const d = await serviceDecision('accounts', foreign);
    assert.equal(d.decision, 'deny');
    assert.deepEqual(d.reasons, []);
    assert.equal((await seen('ledger')).filter((s) => s.method === 'GET').length, reads, 'a refused read reads no ledger entry');
  });

  test('tess the teller reads any account (bank.account.teller-reads)', async () => {
    for (const id of ['A-1', 'B-1']) {
      const r = await gw(`/bank/accounts/${id}`, { headers: as('tess') });
      assert.equal(r.status, 200, id);
      assert.deepEqual((await serviceDecision('accounts', r)).reasons, ['bank.account.teller-reads']);
    }
  });
});

describe('the ledger: only transfers books, accounts reads, nothing deletes', () => {
  test('accounts may not book an entry: refused at its own sidecar and at the ledger\'s by bank.ledger.entries-only-from-transfers', async () => {
    const a = await attempt('accounts', 'POST', '/ledger/entries', 'ledger', { account: 'A-1', amount: '1000000.00' });
    assert.equal(a.status, 403);
    const out = await auditEvent('sidecar-accounts', (e) => e.requestId === a.requestId);
    assert.equal(out.decision, 'deny');
    assert.deepEqual(out.reasons, ['bank.ledger.entries-only-from-transfers']);
    // With its real certificate, straight at the ledger's sidecar: refused there too.
    const accounts = await workload(ACCOUNTS);
    const direct = await call(sidecarUrl('ledger', '/ledger/entries'), { method: 'POST', ca, workload: { ...accounts, serverSpiffeId: LEDGER }, body: { account: 'A-1', amount: '1000000.00' } });
    assert.equal(direct.status, 403);
    assert.equal(codeOf(direct), 'PCL_ERR_FORBIDDEN');
    const inbound = await auditEvent('sidecar-ledger', (e) => e.requestId === requestIdOf(direct));
    assert.deepEqual(inbound.reasons, ['bank.ledger.entries-only-from-transfers']);
    assert.ok(!(await seen('ledger')).some((s) => s.method === 'POST' && s.peer !== TRANSFERS), 'only transfers ever booked');
  });

  test('nothing deletes from the ledger, not even transfers: bank.ledger.no-deletes, and the entry stays', async () => {
    for (const [from, path] of [['transfers', '/ledger/entries/e-open-A-1'], ['accounts', '/ledger/entries/e-open-A-1'], ['accounts', '/ledger/accounts/A-1/entries']] as const) {
      const a = await attempt(from, 'DELETE', path);
      assert.equal(a.status, 403, `${from} DELETE ${path}`);
      const e = await auditEvent(`sidecar-${from}`, (x) => x.requestId === a.requestId);
      assert.deepEqual(e.reasons, ['bank.ledger.no-deletes']);
    }
    const transfers = await workload(TRANSFERS);
    const direct = await call(sidecarUrl('ledger', '/ledger/entries/e-open-A-1'), { method: 'DELETE', ca, workload: { ...transfers, serverSpiffeId: LEDGER } });
    assert.equal(direct.status, 403);
    assert.deepEqual((await auditEvent('sidecar-ledger', (e) => e.requestId === requestIdOf(direct))).reasons, ['bank.ledger.no-deletes']);
    assert.ok(!(await seen('ledger')).some((s) => s.method === 'DELETE'), 'no delete reached the ledger');
    const view = await gw('/bank/accounts/A-1', { headers: as('tess') });
    assert.ok((view.json as { entries: { id: string }[] }).entries.some((e) => e.id === 'e-open-A-1'), 'the entry is still there');
  });

  test('only accounts reads the ledger: transfers is refused (deny by default)', async () => {
    const a = await attempt('transfers', 'GET', '/ledger/accounts/A-1/entries');
    assert.equal(a.status, 403);
    const e = await auditEvent('sidecar-transfers', (x) => x.requestId === a.requestId);
    assert.equal(e.decision, 'deny');
    assert.deepEqual(e.reasons, []);
    assert.ok(!(await seen('ledger')).some((s) => s.method === 'GET' && s.peer === TRANSFERS));
  });

  test('the gateway has no route to the ledger, and the ledger may not read accounts', async () => {
    for (const [method, path] of [['GET', '/ledger/accounts/A-1/entries'], ['POST', '/ledger/entries'], ['DELETE', '/ledger/entries/e-open-A-1']] as const) {
      const r = await gw(path, { method, headers: as('tess'), ...(method === 'POST' ? { body: { account: 'A-1', amount: '1.00' } } : {}) });
      assert.equal(r.status, 404, `${method} ${path}`);
    }
    assert.ok(!(await seen('ledger')).some((s) => s.peer === 'spiffe://demo/gateway'));
    const ledger = await workload(LEDGER);
    const r = await call(sidecarUrl('accounts', '/internal/accounts/A-1'), { ca, workload: { ...ledger, serverSpiffeId: ACCOUNTS } });
    assert.equal(r.status, 403);
    assert.ok(!(await seen('accounts')).some((s) => s.peer === LEDGER));
  });
});

describe('every hop is mutual TLS', () => {
  /** What a raw connection to a sidecar's TLS port gets back (never an HTTP answer, we expect). */
  const plaintext = (listen: string): Promise<string> => new Promise((resolve) => {
    const { port, hostname } = new URL(`https://${listen}`);
    const s = netConnect(Number(port), hostname, () => s.write('POST /ledger/entries HTTP/1.1\r\nHost: ledger\r\nContent-Length: 2\r\n\r\n{}'));
    let got = '';
    s.on('data', (d) => { got += d.toString('latin1'); });
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
  });
  const handshake = (listen: string, opts: { key?: string; cert?: string }): Promise<string> => new Promise((resolve) => {
    const { port, hostname } = new URL(`https://${listen}`);
    const s = tlsConnect({ host: hostname, port: Number(port), ca, checkServerIdentity: () => undefined, ...opts }, () => {
      s.write('POST /ledger/entries HTTP/1.1\r\nHost: ledger\r\nContent-Length: 2\r\n\r\n{}');
    });
    let got = '';
    s.on('data', (d) => { got += d.toString(); });
    s.on('error', (e) => resolve(`error:${e.message}`));
    s.on('close', () => resolve(got || 'closed'));
  });

  for (const name of ['accounts', 'transfers', 'ledger']) {
    test(`${name}: a plaintext connection and a TLS connection without a client certificate are refused and never reach it`, async () => {
      const before = (await seen(name)).length;
      const plain = await plaintext(svc(name).sidecar.listen);
      assert.ok(!plain.startsWith('HTTP/'), `plaintext got an HTTP answer: ${plain.slice(0, 40)}`);
      const viaHttp = await call(`http://${svc(name).sidecar.listen}/ledger/entries`, { method: 'POST', body: {} }).catch((e: Error) => e);
      assert.ok(viaHttp instanceof Error || viaHttp.status >= 400);
      const noCert = await handshake(svc(name).sidecar.listen, {});
      assert.ok(!noCert.startsWith('HTTP/'), noCert);
      assert.equal((await seen(name)).length, before, `nothing reached ${name}`);
    });
  }

  test('a certificate of another CA, even with the transfers identity, is refused by the ledger', async () => {
    const before = (await seen('ledger')).length;
    const other = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(Buffer.alloc(32, 9)), trustDomain: 'demo' });
    const { keyPem, csrPem } = await createWorkloadKeyAndCsr(TRANSFERS);
    const foreign = await other.issue({ csrPem, spiffeId: TRANSFERS });
    const r = await handshake(svc('ledger').sidecar.listen, { key: keyPem, cert: foreign.chainPem });
    assert.ok(!r.startsWith('HTTP/'), r);
    assert.equal((await seen('ledger')).length, before);
  });
});
