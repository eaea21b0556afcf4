// The school (SCENARIOS.md §4) as real processes over real TLS, from examples/school/: the
// course's teacher records grades (checked inside grades with the SDK), a student reads only their
// own, exam reads grades through its sidecar, and every write from exam to grades is refused —
// whichever user it claims to act for, on whichever path, and even with a `calls` entry that lists
// the write: the forbid beats the permit. Refused requests never reach grades.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSystem, type RunningSystem } from '../../src/cli/system.js';
import { demoUsers } from '../../src/cli/demo.js';
import { CLI_CLIENT_ID } from '../../src/control/server.js';
import { loginWithPkce } from '../../src/tokens/client/pkce-login.js';
import { ControlClient } from '../../src/dataplane/control-client.js';
import { WorkloadIdentity } from '../../src/dataplane/workload-identity.js';
import { AdminClient, readAdminToken } from '../../src/cli/admin-client.js';
import { unsignedAssertion } from '../helpers/principal-assertion.js';
import type { PortcullisConfig } from '../../src/core/config/types.js';
import { PolicySet } from '../../src/policy/policy-set.js';
import { repoRoot } from '../helpers/paths.js';
import { auditEvents } from '../helpers/audit.js';
import { call, codeOf, freePortBlock, freePorts } from '../helpers/net.js';

const exampleDir = join(repoRoot, 'examples', 'school');
const EXAM = 'spiffe://demo/school/exam';
const GRADES = 'spiffe://demo/school/grades';
const FORBID = 'school.exam-never-writes-grades';

let sys: RunningSystem;
let dir: string;
let ca: string;
const tokens: Record<string, string> = {};

type Seen = { method: string; path: string; peer?: string; sub?: string };
const svc = (name: string) => {
  const s = sys.config.services.find((x) => x.name === name);
  assert.ok(s, name);
  return s;
};
/** What reached a service, read from its own loopback port (never routed through Portcullis). */
async function seen(service: string): Promise<Seen[]> {
  return (await call(`${svc(service).upstream}/__seen`)).json as Seen[]; // the example service's own list
}
/** Asks a service to call another through its own sidecar (the example's test hook), as a compromised service would. */
async function callAs(from: string, to: string, method: string, path: string, o: { body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; body: unknown }> {
  const r = await call(`${svc(from).upstream}/__call`, {
    method: 'POST', body: { service: to, method, path, ...(o.body === undefined ? {} : { body: o.body }), ...(o.headers ? { headers: o.headers } : {}) },
  });
  assert.equal(r.status, 200, r.text);
  return r.json as { status: number; body: unknown }; // the hook's answer: the status and body the call got
}
const gw = (path: string, o: Parameters<typeof call>[1] = {}) => call(sys.gatewayUrl + path, { ca, ...o });
const as = (user: string): Record<string, string> => ({ authorization: `Bearer ${tokens[user]}` });
/** A principal header claiming to be tom, the teacher: what a compromised exam would forge. */
const asTom = { 'x-portcullis-principal': unsignedAssertion({ sub: 'tom', roles: ['teacher'] }) };
const grade = { course: 'c1', student: 'sam', item: 'quiz 2', grade: 'A-' };

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

const storedGrades = (): string[] => {
  const f = join(dir, 'services', 'grades.jsonl');
  return existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean) : [];
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-school-'));
  const [control, gateway] = await freePorts(2);
  sys = await startSystem({
    template: join(exampleDir, 'portcullis.yaml'), dataDir: dir,
    controlListen: `127.0.0.1:${control}`, gatewayListen: `127.0.0.1:${gateway}`,
    portBase: await freePortBlock(6), users: demoUsers('school'),
  });
  ca = readFileSync(sys.caFile, 'utf8');
  for (const user of ['tom', 'sam', 'sue']) {
    tokens[user] = (await loginWithPkce({ controlUrl: sys.controlUrl, caPem: ca, clientId: CLI_CLIENT_ID, username: user, password: sys.passwords[user] ?? '' })).accessToken;
  }
});

after(async () => {
  await sys?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('POST /school/grades: the course\'s teacher', () => {
  test('tom records a grade in his course c1 for a student of it', async () => {
    const r = await gw('/school/grades', { method: 'POST', headers: as('tom'), body: grade });
    assert.equal(r.status, 201, r.text);
    assert.equal((r.json as { by: string }).by, 'tom');
    assert.equal(storedGrades().length, 1);
  });

  test('a student may not: refused at the gateway, and grades never sees it', async () => {
    const r = await gw('/school/grades', { method: 'POST', headers: as('sam'), body: { ...grade, grade: 'A+' } });
    assert.equal(r.status, 403);
    assert.equal(codeOf(r), 'PCL_ERR_FORBIDDEN');
    assert.ok(!(await seen('grades')).some((s) => s.sub === 'sam' && s.method === 'POST'));
  });

  test('not in another teacher\'s course, nor for a student not enrolled: refused inside grades, nothing stored', async () => {
    const before = storedGrades().length;
    const otherCourse = await gw('/school/grades', { method: 'POST', headers: as('tom'), body: { course: 'c2', student: 'sue', item: 'essay', grade: 'A' } });
    assert.equal(otherCourse.status, 403);
    const notEnrolled = await gw('/school/grades', { method: 'POST', headers: as('tom'), body: { course: 'c1', student: 'zoe', item: 'quiz 2', grade: 'A' } });
    assert.equal(notEnrolled.status, 403);
    const missing = await gw('/school/grades', { method: 'POST', headers: as('tom'), body: { course: 'c9', student: 'sam', item: 'quiz 2', grade: 'A' } });
    assert.equal(missing.status, 403);
    assert.equal(missing.text, otherCourse.text, 'a missing course answers as a foreign one');
    assert.equal(storedGrades().length, before);
  });

  test('authorization comes before validation: a bad grade is 400 for the course\'s teacher', async () => {
    const r = await gw('/school/grades', { method: 'POST', headers: as('tom'), body: { ...grade, grade: 'excellent' } });
    assert.equal(r.status, 400);
  });
});

describe('GET /school/grades/me: a student\'s own grades only', () => {
  test('sam sees his grades, the new one included, and none of sue\'s', async () => {
    const r = await gw('/school/grades/me', { headers: as('sam') });
    assert.equal(r.status, 200, r.text);
    const list = (r.json as { grades: { student: string; item: string }[] }).grades;
    assert.ok(list.length >= 2);
    assert.ok(list.every((g) => g.student === 'sam'));
    assert.ok(list.some((g) => g.item === 'quiz 2'));
  });

  test('sue sees hers, in both her courses', async () => {
    const r = await gw('/school/grades/me', { headers: as('sue') });
    const list = (r.json as { grades: { student: string; course: string }[] }).grades;
    assert.ok(list.every((g) => g.student === 'sue'));
    assert.deepEqual([...new Set(list.map((g) => g.course))].sort(), ['c1', 'c2']);
  });

  test('a teacher has no "me" grades: refused at the gateway', async () => {
    const r = await gw('/school/grades/me', { headers: as('tom') });
    assert.equal(r.status, 403);
    assert.ok(!(await seen('grades')).some((s) => s.sub === 'tom' && s.path === '/school/grades/me'));
  });
});

describe('exam may read grades, and never write them', () => {
  test('exam reads a student\'s grades through its sidecar (exam admission)', async () => {
    const r = await gw('/school/exams/c1/admission', { headers: as('sam') });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { course: 'c1', student: 'sam', coursework: 2, admitted: true });
    assert.ok((await seen('grades')).some((s) => s.method === 'GET' && s.path === '/grades/courses/c1/students/sam' && s.peer === EXAM));
  });

  test('a write from exam through its sidecar is refused by the forbid, whoever the user, on any path', async () => {
    const attempts: [string, string, unknown][] = [
      ['POST', '/grades/courses/c1/students/sam', { item: 'final', grade: 'A+' }], // the path exam may read
      ['POST', '/school/grades', { ...grade, grade: 'A+' }], // the teachers' route, claiming to be tom
      ['PUT', '/grades/courses/c1/students/sam', { grade: 'A+' }],
      ['DELETE', '/grades/g-1', undefined],
    ];
    for (const [method, path, body] of attempts) {
      const r = await callAs('exam', 'grades', method, path, { body, headers: asTom });
      assert.equal(r.status, 403, `${method} ${path}`);
      assert.equal((r.body as { error?: { code?: string } }).error?.code, 'PCL_ERR_FORBIDDEN');
    }
    assert.ok(!(await seen('grades')).some((s) => s.peer === EXAM && s.method !== 'GET'), 'no write from exam reached grades');
    const refused = await auditEvent('sidecar-exam', (e) => e.decision === 'deny' && (e.what as { path?: string }).path === '/school/grades');
    assert.deepEqual(refused?.reasons, [FORBID]);
    // Detection (default rules): a refused call between services is an alert at once, raised once per window.
    const isAlert = (e: Record<string, unknown>): boolean => e.type === 'admin' && e.action === 'detect.alert' && (e.detail as { rule?: string }).rule === 'workload-refused';
    const alert = await auditEvent('sidecar-exam', isAlert);
    assert.equal((alert?.detail as { workload?: string } | undefined)?.workload, EXAM, JSON.stringify(alert));
    assert.equal(auditEvents(dir, 'sidecar-exam').filter(isAlert).length, 1, 'four refused writes, one alert');
  });

  test('exam\'s identity straight to grades\' sidecar, with a teacher\'s principal header: refused there too', async () => {
    const exam = await workload(EXAM);
    const r = await call(`https://${svc('grades').sidecar.listen}/school/grades`, {
      method: 'POST', ca, workload: { ...exam, serverSpiffeId: GRADES }, headers: asTom, body: { ...grade, grade: 'A+' },
    });
    assert.equal(r.status, 403);
    assert.equal(codeOf(r), 'PCL_ERR_FORBIDDEN');
    assert.ok(!(await seen('grades')).some((s) => s.peer === EXAM && s.method !== 'GET'));
    const refused = await auditEvent('sidecar-grades', (e) => e.decision === 'deny' && (e.who as { spiffeId?: string }).spiffeId === EXAM);
    assert.deepEqual(refused?.reasons, [FORBID]);
  });

  test('exam reads only what its calls entry lists', async () => {
    const r = await callAs('exam', 'grades', 'GET', '/school/grades/me', { headers: asTom });
    assert.equal(r.status, 403);
    assert.ok(!(await seen('grades')).some((s) => s.peer === EXAM && s.path === '/school/grades/me'));
  });

  test('even with a calls entry that lists the write, the forbid wins', () => {
    // The running system's config with exam -> grades "POST /grades/courses/{course}/students/{student}"
    // added to `calls`, compiled into the policy set every sidecar runs (short forms included).
    const write = 'POST /grades/courses/{course}/students/{student}';
    const widened: PortcullisConfig = {
      ...sys.config,
      calls: sys.config.calls.map((c) => (c.from === 'exam' && c.to === 'grades' ? { ...c, operations: [...c.operations, write] } : c)),
    };
    const ask = (set: PolicySet) => set.decideCall({ service: 'grades', caller: EXAM, method: 'POST', path: '/grades/courses/c1/students/sam' }).live;
    // Without the forbid, the widened calls entry really would allow the write ...
    const noForbid = join(dir, 'no-forbid.cedar');
    writeFileSync(noForbid, readFileSync(join(exampleDir, 'policies.cedar'), 'utf8').replace(/@id\("school\.exam-never-writes-grades"\)[^;]*;/, ''));
    const permitted = ask(PolicySet.fromConfig({ ...widened, policies: { ...widened.policies, files: [noForbid] } }));
    assert.equal(permitted.decision, 'allow');
    assert.deepEqual(permitted.reasons, [`call:exam->grades:${write}`]);
    // ... and with it, the write is refused by the forbid alone.
    const decided = ask(PolicySet.fromConfig(widened));
    assert.equal(decided.decision, 'deny');
    assert.deepEqual(decided.reasons, [FORBID]);
  });
});

describe('audit: who, what, which rule and why', () => {
  test('the gateway and grades\' own decisions are recorded', async () => {
    const deny = await auditEvent('gateway', (e) => e.decision === 'deny' && (e.who as { sub?: string }).sub === 'sam' && (e.what as { route?: string }).route === 'school.grades.record');
    assert.equal(deny?.code, 'PCL_ERR_FORBIDDEN');
    const allow = await auditEvent('gateway', (e) => e.decision === 'allow' && (e.who as { sub?: string }).sub === 'tom' && (e.what as { route?: string }).route === 'school.grades.record');
    assert.deepEqual(allow?.reasons, ['route:school.grades.record']);
    const teacher = await auditEvent('sidecar-grades', (e) => {
      const d = e.resourceDecision as { action?: string; resource?: string; decision?: string } | undefined;
      return d?.action === 'school.grades.write-record' && d.resource === 'Course::"c1"' && d.decision === 'allow';
    });
    assert.deepEqual(teacher?.reasons, ['school.grades.course-teacher-records']);
    const otherCourse = await auditEvent('sidecar-grades', (e) => {
      const d = e.resourceDecision as { resource?: string; decision?: string } | undefined;
      return d?.resource === 'Course::"c2"' && d.decision === 'deny';
    });
    assert.ok(otherCourse, 'tom\'s refused grade in c2 is recorded');
  });
});
