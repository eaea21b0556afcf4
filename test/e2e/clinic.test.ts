// The clinic (SCENARIOS.md §2) as real processes over real TLS, from examples/clinic/: for
// each rule, the allowed call succeeds and a forbidden one is refused — at the gateway (role,
// shift, network) without reaching the service, inside the service (the patient's department,
// SDK) without giving anything away, and between services (sidecars) without reaching the called
// service. The time rule runs against the real clock with two extra doctors whose shifts do and
// do not cover the current hour; the network rule with a client bound to 127.0.0.2.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startSystem, type RunningSystem } from '../../src/cli/system.js';
import { demoUsers } from '../../src/cli/demo.js';
import { CLI_CLIENT_ID } from '../../src/control/server.js';
import { loginWithPkce } from '../../src/tokens/client/pkce-login.js';
import { ControlClient } from '../../src/dataplane/control-client.js';
import { WorkloadIdentity } from '../../src/dataplane/workload-identity.js';
import { AdminClient, readAdminToken } from '../../src/cli/admin-client.js';
import { loadConfig } from '../../src/core/config/load.js';
import { timeOfDay } from '../../src/policy/request-model.js';
import { repoRoot } from '../helpers/paths.js';
import { auditEvents } from '../helpers/audit.js';
import { call, codeOf, freePortBlock, freePorts, type Reply } from '../helpers/net.js';

const template = join(repoRoot, 'examples', 'clinic', 'portcullis.yaml');
const SPIFFE = {
  lab: 'spiffe://demo/clinic/lab',
  medication: 'spiffe://demo/clinic/medication',
  diagnosis: 'spiffe://demo/clinic/diagnosis',
};

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
/** Asks a service to call another through its own sidecar (the example's test hook), as a compromised service would. */
async function callAs(from: string, to: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const r = await call(`${svc(from).upstream}/__call`, { method: 'POST', body: { service: to, method, path, ...(body === undefined ? {} : { body }) } });
  assert.equal(r.status, 200, r.text);
  return r.json as { status: number; body: unknown }; // the hook's answer: the status and body the call got
}
const as = (user: string): Record<string, string> => ({ authorization: `Bearer ${tokens[user]}` });

/**
 * A request to the gateway from a chosen local address. The clinic network is 127.0.0.1/32 here
 * (and 10.20.0.0/16); Linux routes all of 127/8 to loopback, so binding 127.0.0.2 is a client
 * from outside it. (test/helpers/net.ts `call` has no local-address option.)
 */
async function gwFrom(localAddress: string, path: string, o: { method?: string; headers?: Record<string, string>; body?: unknown } = {}): Promise<Reply> {
  const dispatcher = new Agent({ localAddress, connect: { ca } });
  try {
    const res = await request(sys.gatewayUrl + path, {
      method: (o.method ?? 'GET') as 'GET', // any method string is fine for undici
      dispatcher,
      headers: { ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...o.headers },
      ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
    });
    const text = await res.body.text();
    let json: unknown;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.statusCode, headers: res.headers, text, json };
  } finally {
    await dispatcher.close();
  }
}
/** From the clinic network (this machine's 127.0.0.1). */
const gw = (path: string, o: Parameters<typeof gwFrom>[2] = {}) => gwFrom('127.0.0.1', path, o);

/** A real workload certificate for one of the config's identities. */
async function workload(spiffeId: string): Promise<{ key: string; cert: string }> {
  const admin = new AdminClient(sys.controlUrl, ca, readAdminToken(dir) ?? '');
  const token = await admin.joinToken(spiffeId).finally(() => admin.close());
  const id = await WorkloadIdentity.obtain({ spiffeId, control: new ControlClient(sys.controlUrl, ca), stateDir: mkdtempSync(join(dir, 'wl-')), joinToken: token });
  return { key: id.current().keyPem, cert: id.current().chainPem };
}

/** Polls an audit log until `pred` holds for one of its events (the logs append with group commit). */
async function auditEvent(component: string, pred: (e: Record<string, unknown>) => boolean): Promise<Record<string, unknown> | undefined> {
  for (let i = 0; i < 50; i++) {
    const hit = auditEvents(dir, component).find(pred);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-clinic-'));
  const [control, gateway] = await freePorts(2);
  // Two cardiology doctors besides the demo's (who are on call around the clock): dora's shift
  // covers the current hour (from an hour ago to two hours ahead), dirk's starts three hours
  // ahead. Hours are in the policies' time zone; both hold for the two hours the test may take.
  const { hour } = timeOfDay(Date.now(), loadConfig(template).policies.timeZone);
  const at = (h: number): number => (hour + h + 24) % 24;
  sys = await startSystem({
    template, dataDir: dir, controlListen: `127.0.0.1:${control}`, gatewayListen: `127.0.0.1:${gateway}`,
    portBase: await freePortBlock(9),
    users: {
      ...demoUsers('clinic'),
      dora: { roles: ['doctor'], attrs: { department: 'cardiology', shiftStart: at(-1), shiftEnd: at(2) } },
      dirk: { roles: ['doctor'], attrs: { department: 'cardiology', shiftStart: at(3), shiftEnd: at(6) } },
    },
  });
  ca = readFileSync(sys.caFile, 'utf8');
  for (const user of ['dana', 'nick', 'olga', 'pat', 'dora', 'dirk']) {
    tokens[user] = (await loginWithPkce({ controlUrl: sys.controlUrl, caPem: ca, clientId: CLI_CLIENT_ID, username: user, password: sys.passwords[user] ?? '' })).accessToken;
  }
});

after(async () => {
  await sys?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('GET /clinic/patients/{pid}/labs: a doctor of the department, on shift, from the clinic network; the patient', () => {
  test('a doctor on shift, from the clinic network, reads a patient of her department', async () => {
    for (const user of ['dana', 'dora']) {
      const r = await gw('/clinic/patients/pat/labs', { headers: as(user) });
      assert.equal(r.status, 200, `${user}: ${r.text}`);
      assert.deepEqual((r.json as { results: { id: string }[] }).results.map((x) => x.id), ['l-1', 'l-2']);
      assert.ok((await seen('lab')).some((s) => s.sub === user && s.path === '/clinic/patients/pat/labs'));
    }
  });

  test('a doctor whose shift does not cover this hour is refused, and lab never sees it', async () => {
    const r = await gw('/clinic/patients/pat/labs', { headers: as('dirk') });
    assert.equal(r.status, 403);
    assert.equal(codeOf(r), 'PCL_ERR_FORBIDDEN');
    assert.ok(!(await seen('lab')).some((s) => s.sub === 'dirk'));
  });

  test('the same doctor from outside the clinic network (127.0.0.2) is refused, and lab never sees it', async () => {
    const before = (await seen('lab')).filter((s) => s.sub === 'dana').length;
    const r = await gwFrom('127.0.0.2', '/clinic/patients/pat/labs', { headers: as('dana') });
    assert.equal(r.status, 403);
    assert.equal(codeOf(r), 'PCL_ERR_FORBIDDEN');
    assert.equal((await seen('lab')).filter((s) => s.sub === 'dana').length, before);
  });

  test('nurses are refused, even on site', async () => {
    const r = await gw('/clinic/patients/pat/labs', { headers: as('nick') });
    assert.equal(r.status, 403);
    assert.equal(codeOf(r), 'PCL_ERR_FORBIDDEN');
    assert.ok(!(await seen('lab')).some((s) => s.sub === 'nick'));
  });

  test('a doctor of another department passes the gateway, and lab answers as for a missing patient', async () => {
    const foreign = await gw('/clinic/patients/pat/labs', { headers: as('olga') });
    const missing = await gw('/clinic/patients/nobody/labs', { headers: as('olga') });
    assert.equal(foreign.status, 404);
    assert.equal(missing.status, 404);
    assert.equal(foreign.text, missing.text, 'no difference between a foreign and a missing patient');
    assert.ok(!foreign.text.includes('troponin'));
    assert.ok((await seen('lab')).some((s) => s.sub === 'olga' && s.path === '/clinic/patients/pat/labs'), 'the department is checked inside lab');
    // Her own department's patient she reads.
    const own = await gw('/clinic/patients/otto/labs', { headers: as('olga') });
    assert.equal(own.status, 200);
    assert.deepEqual((own.json as { results: { id: string }[] }).results.map((x) => x.id), ['l-3']);
  });

  test('the patient reads their own results, from any network; not another patient\'s', async () => {
    const own = await gwFrom('127.0.0.2', '/clinic/patients/pat/labs', { headers: as('pat') });
    assert.equal(own.status, 200, own.text);
    const other = await gw('/clinic/patients/otto/labs', { headers: as('pat') });
    assert.equal(other.status, 403);
    assert.ok(!(await seen('lab')).some((s) => s.sub === 'pat' && s.path === '/clinic/patients/otto/labs'));
  });

  test('no token: 401, and lab never sees it', async () => {
    const before = (await seen('lab')).length;
    const r = await gw('/clinic/patients/pat/labs');
    assert.equal(r.status, 401);
    assert.equal((await seen('lab')).length, before);
  });
});

describe('GET /clinic/patients/{pid}/medication: doctors and nurses of the department; the patient', () => {
  test('a nurse and a doctor of the department read it (no shift or network condition)', async () => {
    const nurse = await gwFrom('127.0.0.2', '/clinic/patients/pat/medication', { headers: as('nick') });
    assert.equal(nurse.status, 200, nurse.text);
    assert.deepEqual((nurse.json as { medication: { drug: string }[] }).medication.map((m) => m.drug), ['bisoprolol', 'atorvastatin']);
    assert.equal((await gw('/clinic/patients/pat/medication', { headers: as('dirk') })).status, 200, 'off shift is fine for medication');
  });

  test('staff of another department are answered as for a missing patient', async () => {
    const olga = await gw('/clinic/patients/pat/medication', { headers: as('olga') });
    const nick = await gw('/clinic/patients/otto/medication', { headers: as('nick') });
    const missing = await gw('/clinic/patients/nobody/medication', { headers: as('nick') });
    assert.equal(olga.status, 404);
    assert.equal(nick.status, 404);
    assert.equal(olga.text, missing.text);
    assert.ok(!olga.text.includes('bisoprolol') && !nick.text.includes('ondansetron'));
  });

  test('the patient reads their own; another patient\'s is refused before medication sees it', async () => {
    assert.equal((await gw('/clinic/patients/pat/medication', { headers: as('pat') })).status, 200);
    const other = await gw('/clinic/patients/otto/medication', { headers: as('pat') });
    assert.equal(other.status, 403);
    assert.ok(!(await seen('medication')).some((s) => s.sub === 'pat' && s.path === '/clinic/patients/otto/medication'));
  });
});

describe('POST /clinic/patients/{pid}/diagnosis: doctors of the department', () => {
  const dataFile = () => join(dir, 'services', 'diagnosis.jsonl');
  const stored = (): string[] => (existsSync(dataFile()) ? readFileSync(dataFile(), 'utf8').split('\n').filter(Boolean) : []);

  test('a doctor of the department records one, based on lab results read by diagnosis through its sidecar', async () => {
    const r = await gw('/clinic/patients/pat/diagnosis', { method: 'POST', headers: as('dana'), body: { code: 'I25.1', note: 'stable angina' } });
    assert.equal(r.status, 201, r.text);
    const d = r.json as { pid: string; by: string; basedOn: string[] };
    assert.equal(d.by, 'dana');
    assert.deepEqual(d.basedOn, ['l-1', 'l-2']);
    assert.ok((await seen('lab')).some((s) => s.path === '/lab/patients/pat/results' && s.peer === SPIFFE.diagnosis));
    assert.equal(stored().length, 1);
  });

  test('a nurse and a patient are refused at the gateway; diagnosis never sees them', async () => {
    for (const user of ['nick', 'pat']) {
      const r = await gw('/clinic/patients/pat/diagnosis', { method: 'POST', headers: as(user), body: { code: 'I10' } });
      assert.equal(r.status, 403, user);
      assert.ok(!(await seen('diagnosis')).some((s) => s.sub === user));
    }
  });

  test('a doctor of another department is refused inside diagnosis: nothing stored, lab not asked', async () => {
    const labCalls = (await seen('lab')).filter((s) => s.peer === SPIFFE.diagnosis).length;
    const before = stored().length;
    const r = await gw('/clinic/patients/pat/diagnosis', { method: 'POST', headers: as('olga'), body: { code: 'C50.9' } });
    assert.equal(r.status, 404);
    assert.equal(stored().length, before);
    assert.equal((await seen('lab')).filter((s) => s.peer === SPIFFE.diagnosis).length, labCalls);
  });

  test('authorization comes before validation: a bad body is 400 for the right doctor only', async () => {
    const bad = await gw('/clinic/patients/pat/diagnosis', { method: 'POST', headers: as('dana'), body: { code: 'not a code' } });
    assert.equal(bad.status, 400);
    const foreign = await gw('/clinic/patients/pat/diagnosis', { method: 'POST', headers: as('olga'), body: { code: 'not a code' } });
    assert.equal(foreign.status, 404);
  });
});

describe('service to service: diagnosis may read lab; lab may not call diagnosis; medication calls neither', () => {
  test('diagnosis reads lab results through its sidecar', async () => {
    const r = await callAs('diagnosis', 'lab', 'GET', '/lab/patients/otto/results');
    assert.equal(r.status, 200);
    assert.ok((await seen('lab')).some((s) => s.path === '/lab/patients/otto/results' && s.peer === SPIFFE.diagnosis));
  });

  test('diagnosis may only read: other operations on lab are refused and never reach it', async () => {
    for (const [method, path] of [['POST', '/lab/patients/pat/results'], ['GET', '/clinic/patients/pat/labs']] as const) {
      const r = await callAs('diagnosis', 'lab', method, path, method === 'POST' ? {} : undefined);
      assert.equal(r.status, 403, `${method} ${path}`);
    }
    assert.ok(!(await seen('lab')).some((s) => s.peer === SPIFFE.diagnosis && (s.method === 'POST' || s.path === '/clinic/patients/pat/labs')));
  });

  test('lab may not call diagnosis: refused at its own sidecar and at diagnosis\'s, never reaching it', async () => {
    const viaOwnSidecar = await callAs('lab', 'diagnosis', 'POST', '/clinic/patients/pat/diagnosis', { code: 'I10' });
    assert.equal(viaOwnSidecar.status, 403);
    const lab = await workload(SPIFFE.lab);
    const direct = await call(`https://${svc('diagnosis').sidecar.listen}/clinic/patients/pat/diagnosis`, {
      method: 'POST', ca, workload: { ...lab, serverSpiffeId: SPIFFE.diagnosis }, body: { code: 'I10' },
    });
    assert.equal(direct.status, 403);
    assert.equal(codeOf(direct), 'PCL_ERR_FORBIDDEN');
    assert.ok(!(await seen('diagnosis')).some((s) => s.peer === SPIFFE.lab));
  });

  test('medication may call neither lab nor diagnosis; neither ever sees it', async () => {
    assert.equal((await callAs('medication', 'lab', 'GET', '/lab/patients/pat/results')).status, 403);
    assert.equal((await callAs('medication', 'diagnosis', 'POST', '/clinic/patients/pat/diagnosis', { code: 'I10' })).status, 403);
    const medication = await workload(SPIFFE.medication);
    const direct = await call(`https://${svc('lab').sidecar.listen}/lab/patients/pat/results`, { ca, workload: { ...medication, serverSpiffeId: SPIFFE.lab } });
    assert.equal(direct.status, 403);
    assert.ok(!(await seen('lab')).some((s) => s.peer === SPIFFE.medication));
    assert.ok(!(await seen('diagnosis')).some((s) => s.peer === SPIFFE.medication));
  });
});

describe('audit: who, what, which rule and why', () => {
  test('the gateway records the time-and-network rule that allowed, and the refusals', async () => {
    const allow = await auditEvent('gateway', (e) => e.decision === 'allow' && (e.who as { sub?: string }).sub === 'dora' && (e.what as { route?: string }).route === 'clinic.labs.read');
    assert.deepEqual(allow?.reasons, ['clinic.labs.doctor-on-shift-on-site']);
    const offShift = await auditEvent('gateway', (e) => e.decision === 'deny' && (e.who as { sub?: string }).sub === 'dirk');
    assert.equal(offShift?.code, 'PCL_ERR_FORBIDDEN');
    const outside = await auditEvent('gateway', (e) => e.decision === 'deny' && (e.who as { sub?: string; sourceAddress?: string }).sub === 'dana'
      && (e.who as { sourceAddress?: string }).sourceAddress === '127.0.0.2');
    assert.ok(outside, 'the refusal from outside the clinic network names the source address');
    assert.ok(outside.requestId);
  });

  test('lab\'s sidecar records the service\'s own department decisions', async () => {
    const deny = await auditEvent('sidecar-lab', (e) => {
      const d = e.resourceDecision as { action?: string; resource?: string; decision?: string } | undefined;
      return d?.action === 'clinic.labs.read-record' && d.resource === 'Patient::"pat"' && d.decision === 'deny';
    });
    assert.ok(deny, 'olga\'s refused read of pat is recorded');
    const allow = await auditEvent('sidecar-lab', (e) => (e.resourceDecision as { decision?: string } | undefined)?.decision === 'allow'
      && (e.reasons as string[]).includes('clinic.records.labs.doctor-of-department'));
    assert.ok(allow);
  });

  test('refused calls between services are recorded with the forbid that refused them', async () => {
    const lab = await auditEvent('sidecar-lab', (e) => e.decision === 'deny' && (e.what as { service?: string }).service === 'diagnosis');
    assert.deepEqual(lab?.reasons, ['clinic.lab-never-calls-diagnosis']);
    const medication = await auditEvent('sidecar-medication', (e) => e.decision === 'deny' && (e.what as { service?: string }).service === 'lab');
    assert.deepEqual(medication?.reasons, ['clinic.medication-calls-no-one']);
  });
});
