// The workloads and CA admin endpoints over a real HTTPS server with the real handler, CA,
// WorkloadRevocations and AdminToken: the admin token first, strict input, revocation stopping
// issuance on every replica at once and reaching the data planes' deny list; then the CLI
// (`portcullis workload …`, `portcullis ca …`) as an operator runs it against the same server.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { FakeClock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import { subscribeAudit, type AdminEvent, type AuditEvent } from '../../src/core/events.js';
import { createWorkloadsApi } from '../../src/control/workloads-api.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { CaRotationScheduler } from '../../src/identity/ca-rotation.js';
import { RevokedWorkloads, WorkloadRevocations, ISSUANCE_RETENTION_MS } from '../../src/identity/workload-revocations.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { startAdminApi, type AdminApiServer, type Reply } from '../helpers/admin-api.js';
import { NS } from '../../src/store/store.js';
import { registerWorkloadCommands } from '../../src/cli/workload.js';
import { registerCaCommands } from '../../src/cli/ca.js';

const TD = 'demo';
const CONTROL = `spiffe://${TD}/control`;
const ORDERS = `spiffe://${TD}/orders`;
const PAYMENTS = `spiffe://${TD}/payments`;
const HOUR = 3_600_000;
const configYaml = (url: string, dataDir: string): string => `
trustDomain: ${TD}
control: { url: "${url}", dataDir: "${dataDir}" }
gateway: { spiffeId: spiffe://${TD}/gateway }
services:
  - { name: orders, spiffeId: ${ORDERS}, upstream: http://127.0.0.1:1, sidecar: { listen: 127.0.0.1:2, outbound: 127.0.0.1:3 } }
routes:
  - { id: orders.list, method: GET, path: /orders, service: orders, roles: [reader] }
`;

let harness: AdminApiServer;
let adminToken: string;
let configFile: string;
let store: MemoryStore;
let clock: FakeClock;
let ca: CertificateAuthority;
let workloads: WorkloadRevocations;
let events: AuditEvent[] = [];
let unsubscribe: () => void;
const wrapper = new KeyWrapper(randomBytes(32));

before(async () => {
  clock = new FakeClock(Date.UTC(2030, 0, 1));
  store = new MemoryStore();
  workloads = await WorkloadRevocations.open({ store, clock, trustDomain: TD, protectedWorkloads: [CONTROL] });
  ca = await CertificateAuthority.loadOrCreate({ store, wrapper, trustDomain: TD, clock, issuance: workloads });
  harness = await startAdminApi({
    name: 'workloads-api', trustDomain: TD, store, configYaml,
    api: (admin) => createWorkloadsApi({ workloads, ca, admin, scheduler: new CaRotationScheduler({ ca, clock }) }),
  });
  ({ adminToken, configFile } = harness);
  unsubscribe = subscribeAudit((e) => events.push(e));
});

after(async () => {
  unsubscribe();
  await harness.close();
});

beforeEach(() => {
  events = [];
});

function send(method: string, path: string, token: string | undefined, body?: unknown, o: { raw?: string; contentType?: string } = {}): Promise<Reply> {
  return harness.send(method, path, { ...(token ? { token } : {}), ...(body !== undefined ? { body } : {}), ...o });
}

const codeOf = (r: Reply): unknown => (r.json.error as { code?: string } | undefined)?.code;
function refused(r: Reply, status: number, code: string): void {
  assert.equal(r.status, status, r.text);
  assert.equal(codeOf(r), code, r.text);
}
const errCode = (c: string) => (err: unknown): boolean => err instanceof PortcullisError && err.code === c;
const stored = async (): Promise<string> => JSON.stringify([await store.list(NS.workloadRevocations), await store.list(NS.workloadCerts), await store.list(NS.ca)]);

async function issue(spiffeId: string, authority = ca): Promise<{ serial: string; notAfter: Date }> {
  const { csrPem } = await createWorkloadKeyAndCsr(spiffeId);
  return authority.issue({ csrPem, spiffeId });
}

test('every endpoint needs the admin token, checked before method and body; nothing changes without it', async () => {
  const before = await stored();
  for (const token of [undefined, 'pat_wrong']) {
    refused(await send('GET', '/v1/admin/workloads', token), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('POST', '/v1/admin/workloads/revoke', token, { spiffeId: ORDERS }), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('POST', '/v1/admin/workloads/revoke', token, undefined, { raw: '{not json' }), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('DELETE', '/v1/admin/workloads', token), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('GET', '/v1/admin/ca', token), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('POST', '/v1/admin/ca/rotate', token), 401, 'PCL_ERR_ADMIN_AUTH');
  }
  assert.equal(await stored(), before);
});

test('list: each workload with its newest certificate from the issuance log; expired ones marked', async () => {
  await issue(ORDERS);
  await clock.advance(60_000);
  const newest = await issue(ORDERS);
  await issue(PAYMENTS);
  const r = await send('GET', '/v1/admin/workloads', adminToken);
  assert.equal(r.status, 200, r.text);
  const list = r.json.workloads as { spiffeId: string; serial: string; notAfter: string; status: string; liveCertificates: number }[];
  const orders = list.find((w) => w.spiffeId === ORDERS);
  assert.equal(orders?.serial, newest.serial);
  assert.equal(orders?.notAfter, newest.notAfter.toISOString());
  assert.equal(orders?.status, 'active');
  assert.equal(orders?.liveCertificates, 2);
  assert.deepEqual(list.map((w) => w.spiffeId), [ORDERS, PAYMENTS]);
  refused(await send('POST', '/v1/admin/workloads', adminToken, {}), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
});

test('revoke: renewal refused at once on every replica, nothing issued; the ID and its live serials reach the deny list', async () => {
  const a = await issue(ORDERS);
  const replicaRevocations = await WorkloadRevocations.open({ store, clock, trustDomain: TD });
  const replica = await CertificateAuthority.loadOrCreate({ store, wrapper, trustDomain: TD, clock, issuance: replicaRevocations });
  const r = await send('POST', '/v1/admin/workloads/revoke', adminToken, { spiffeId: ORDERS, reason: 'key leaked' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.revoked, true);
  assert.equal(r.json.alreadyRevoked, false);
  assert.ok((r.json.serials as string[]).includes(a.serial));

  const before = await stored();
  await assert.rejects(issue(ORDERS), errCode('PCL_ERR_WORKLOAD_REVOKED'));
  // The other replica has not reloaded its list, but issuance reads the store: refused there too.
  assert.equal(replicaRevocations.isRevoked(ORDERS), false);
  await assert.rejects(issue(ORDERS, replica), errCode('PCL_ERR_WORKLOAD_REVOKED'));
  assert.equal(await stored(), before, 'nothing was issued or logged');
  await issue(PAYMENTS, replica);

  // The deny list for the snapshot: this replica at once, the other one at its next reload.
  assert.deepEqual(workloads.denyList().revokedWorkloads, [ORDERS]);
  assert.ok(workloads.denyList().revokedCertificates.includes(a.serial));
  replicaRevocations.start(10_000);
  await clock.advance(10_000);
  await new Promise((res) => setImmediate(res));
  replicaRevocations.stop();
  assert.deepEqual(replicaRevocations.revokedWorkloads(), [ORDERS]);

  const audit = events.filter((e): e is AdminEvent => e.type === 'admin' && e.action === 'workload.revoke');
  assert.equal(audit.length, 1);
  assert.equal(audit[0]?.detail.spiffeId, ORDERS);
  assert.match(String(audit[0]?.requestId), /^req-\d+$/);

  const again = await send('POST', '/v1/admin/workloads/revoke', adminToken, { spiffeId: ORDERS });
  assert.equal(again.json.alreadyRevoked, true);
  assert.equal(again.json.at, r.json.at, 'the first revocation stands');
  const list = (await send('GET', '/v1/admin/workloads', adminToken)).json.workloads as { spiffeId: string; status: string; reason?: string }[];
  assert.deepEqual(list.find((w) => w.spiffeId === ORDERS)?.status, 'revoked');
  assert.equal(list.find((w) => w.spiffeId === ORDERS)?.reason, 'key leaked');

  // Serials leave the deny list when their certificates expire; the ID stays.
  await clock.advance(HOUR);
  assert.deepEqual(workloads.denyList(), { revokedWorkloads: [ORDERS], revokedCertificates: [] });
});

test('revoke input is strict; the control plane\'s own identity cannot be revoked; nothing stored on refusal', async () => {
  const before = await stored();
  const bad: [unknown, string][] = [
    [{ spiffeId: 'spiffe://other.test/x' }, 'PCL_ERR_SPIFFE_ID_INVALID'],
    [{ spiffeId: `spiffe://${TD}/a/../b` }, 'PCL_ERR_SPIFFE_ID_INVALID'],
    [{ spiffeId: CONTROL }, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ spiffeId: PAYMENTS, reason: 'line\nforged' }, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ spiffeId: PAYMENTS, reason: 7 }, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ spiffeId: PAYMENTS, force: true }, 'PCL_ERR_INVALID_ARGUMENT'],
    [{}, 'PCL_ERR_INVALID_ARGUMENT'],
    [[PAYMENTS], 'PCL_ERR_INVALID_ARGUMENT'],
  ];
  for (const [body, code] of bad) refused(await send('POST', '/v1/admin/workloads/revoke', adminToken, body), 400, code);
  refused(await send('POST', '/v1/admin/workloads/revoke', adminToken, undefined, { raw: `{"spiffeId":"${PAYMENTS}"}`, contentType: 'text/plain' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  refused(await send('GET', '/v1/admin/workloads/revoke', adminToken), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
  assert.equal(await stored(), before);
});

test('data plane: isWorkloadRevoked by SPIFFE ID, or by serial whatever its spelling; a new snapshot replaces the list', () => {
  const deny = new RevokedWorkloads();
  assert.equal(deny.isWorkloadRevoked(ORDERS), false, 'empty until the first snapshot');
  deny.update({ revokedWorkloads: [ORDERS], revokedCertificates: ['0a1b2c'] });
  assert.equal(deny.isWorkloadRevoked(ORDERS), true);
  assert.equal(deny.isWorkloadRevoked(PAYMENTS), false);
  assert.equal(deny.isWorkloadRevoked(PAYMENTS, '0A1B2C'), true, 'Node prints serials in upper case');
  assert.equal(deny.isWorkloadRevoked(PAYMENTS, '000a1b2c'), true);
  assert.equal(deny.isWorkloadRevoked(PAYMENTS, 'a1b2c0'), false);
  assert.equal(deny.isWorkloadRevoked(`${ORDERS}/x`), false, 'exact IDs only');
  deny.update({});
  assert.equal(deny.isWorkloadRevoked(ORDERS), false);
});

test('issuance log: expired records are pruned after the retention, each workload\'s newest is kept', async () => {
  const s = new MemoryStore();
  const c = new FakeClock(Date.UTC(2030, 0, 1));
  const w = await WorkloadRevocations.open({ store: s, clock: c });
  const authority = await CertificateAuthority.loadOrCreate({ store: s, wrapper, trustDomain: TD, clock: c, issuance: w });
  await issue(ORDERS, authority);
  await c.advance(30 * 60_000);
  const newest = await issue(ORDERS, authority);
  assert.equal(await w.prune(), 0);
  await c.advance(HOUR + ISSUANCE_RETENTION_MS);
  assert.equal(await w.prune(), 1);
  assert.deepEqual((await s.list(NS.workloadCerts)).map((r) => r.key), [newest.serial]);
  assert.equal((await w.list())[0]?.status, 'expired');
});

test('CA: status shows the roots; rotate publishes a successor once (201, then 200 while pending) and audits it', async () => {
  const status = await send('GET', '/v1/admin/ca', adminToken);
  assert.equal(status.status, 200, status.text);
  assert.deepEqual((status.json.generations as { state: string }[]).map((g) => g.state), ['signing']);
  const first = await send('POST', '/v1/admin/ca/rotate', adminToken);
  assert.equal(first.status, 201, first.text);
  assert.equal((first.json.successor as { generation: number }).generation, 1);
  const second = await send('POST', '/v1/admin/ca/rotate', adminToken);
  assert.equal(second.status, 200);
  assert.equal(second.json.created, false);
  const audit = events.filter((e): e is AdminEvent => e.type === 'admin' && e.action === 'ca.rotate');
  assert.equal(audit.length, 1);
  assert.equal(audit[0]?.who.sub, 'admin');
  refused(await send('GET', '/v1/admin/ca/rotate', adminToken), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
  assert.equal((await send('GET', '/v1/admin/ca/other', adminToken)).status, 404, 'paths it does not own are left to the caller');
});

// ---------------------------------------------------------------------------------------------
// The CLI, in process, against the same server.

async function cli(args: string[]): Promise<{ out: string[]; error?: PortcullisError; help: string }> {
  const out: string[] = [];
  let help = '';
  const program = new Command('portcullis').exitOverride().configureOutput({ writeOut: (s) => { help += s; }, writeErr: (s) => { help += s; } });
  registerWorkloadCommands(program, configFile);
  registerCaCommands(program, configFile);
  for (const c of [...program.commands, ...program.commands.flatMap((x) => x.commands)]) c.exitOverride().configureOutput({ writeOut: (s) => { help += s; }, writeErr: (s) => { help += s; } });
  const log = console.log;
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  try {
    await program.parseAsync(['node', 'portcullis', ...args]);
    return { out, help };
  } catch (e) {
    return { out, help, ...(e instanceof PortcullisError ? { error: e } : {}) };
  } finally {
    console.log = log;
  }
}

test('CLI: workload list | revoke, ca status | rotate, each with --help', async () => {
  for (const args of [['workload'], ['workload', 'list'], ['workload', 'revoke'], ['ca'], ['ca', 'status'], ['ca', 'rotate']]) {
    assert.match((await cli([...args, '--help'])).help, new RegExp(`^Usage: portcullis ${args.join(' ')}`), args.join(' '));
  }
  await issue(PAYMENTS);
  const listed = await cli(['workload', 'list']);
  assert.equal(listed.error, undefined, listed.error?.message);
  assert.ok(listed.out.some((l) => l.startsWith(`${PAYMENTS}  active  serial `)), listed.out.join('\n'));
  assert.ok(listed.out.some((l) => l.startsWith(`${ORDERS}  revoked`)), listed.out.join('\n'));

  const revoked = await cli(['workload', 'revoke', PAYMENTS, '--reason', 'decommissioned']);
  assert.equal(revoked.error, undefined, revoked.error?.message);
  assert.match(revoked.out[0] ?? '', new RegExp(`^revoked ${PAYMENTS} \\(\\d+ live certificate`));
  assert.match((await cli(['workload', 'revoke', PAYMENTS])).out[0] ?? '', /was already revoked/);
  assert.equal((await cli(['workload', 'revoke', 'spiffe://elsewhere/x'])).error?.code, 'PCL_ERR_SPIFFE_ID_INVALID');

  const status = await cli(['ca', 'status']);
  assert.equal(status.out[0], `trust domain ${TD}`);
  assert.match(status.out.join('\n'), /gen 0 {2}signing/);
  assert.match(status.out.join('\n'), /gen 1 {2}published .* signs from /);
  assert.match((await cli(['ca', 'rotate'])).out[0] ?? '', /^a rotation is already under way: gen 1 signs from /);
});
