// The school's two services (SCENARIOS.md §4) — exam and grades — tiny and in-memory, one
// of them per process, chosen by the first argument. They listen on loopback only and trust the
// identity headers their sidecar sets; every call to them goes through Portcullis. grades decides
// with the SDK's Authorizer who records a grade (the course's own teacher: it loads the Course)
// and which grades a student sees (their own); exam reads a student's grades from grades through
// its sidecar, and may never write them (a forbid in policies.cedar, enforced by the sidecars).
//   node dist/examples/school/service.js <exam|grades>   (PORT, PORTCULLIS_OUTBOUND, DATA_FILE from env)
// Two test hooks answer on the service's own loopback port only (no route or call rule reaches
// them): GET /__seen lists what reached the service, POST /__call makes the service call another
// one through its own sidecar ({ service, method, path, body?, headers? }), as a buggy or
// compromised exam service would, so that the end-to-end tests exercise refused writes.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { request } from 'undici';
import { Authorizer, peerOf, principalOf, type EntityJson } from '../../src/sdk/index.js';

type Decision = ReturnType<Authorizer['authorize']>;
/** Status and body of the answer, and the SDK decision behind it, which the sidecar records. */
type Reply = [number, unknown] | [number, unknown, Decision];
type Handler = (req: IncomingMessage, params: string[], body: unknown) => Promise<Reply> | Reply;

const name = process.argv[2] ?? '';
const port = Number(process.env.PORT);
const outbound = process.env.PORTCULLIS_OUTBOUND ?? '';
/** grades keeps the grades recorded through it here (DATA_FILE, JSON lines). */
const dataFile = process.env.DATA_FILE ?? '';

/** What reached this service, for the end-to-end tests' "never reached the service" checks. */
const seen: { method: string; path: string; peer?: string; sub?: string }[] = [];

// ---- The school's data (grades owns it) ----

interface Course { id: string; teacher: string; students: string[] }
const courses = new Map<string, Course>([
  ['c1', { id: 'c1', teacher: 'tom', students: ['sam', 'sue'] }],
  ['c2', { id: 'c2', teacher: 'tina', students: ['sue'] }],
]);

interface Grade { id: string; course: string; student: string; item: string; grade: string; by: string }
const grades = new Map<string, Grade>([
  ['g-1', { id: 'g-1', course: 'c1', student: 'sam', item: 'homework 1', grade: 'B', by: 'tom' }],
  ['g-2', { id: 'g-2', course: 'c1', student: 'sue', item: 'homework 1', grade: 'A', by: 'tom' }],
  ['g-3', { id: 'g-3', course: 'c2', student: 'sue', item: 'essay', grade: 'C', by: 'tina' }],
]);
if (name === 'grades' && dataFile && existsSync(dataFile)) {
  for (const line of readFileSync(dataFile, 'utf8').split('\n')) {
    if (!line) continue;
    const g = JSON.parse(line) as Grade; // written by this service
    grades.set(g.id, g);
  }
}

// ---- Authorization inside grades ----

let authorizer: Promise<Authorizer> | undefined;
/** The policy set, loaded through our sidecar on first use (the sidecar starts after us) and kept fresh. */
function authz(): Promise<Authorizer> {
  authorizer ??= Authorizer.connect({ outbound }).catch((err: unknown) => {
    authorizer = undefined; // try again on the next request
    throw err;
  });
  return authorizer;
}

const user = (id: string) => ({ __entity: { type: 'User', id } });
const courseEntity = (c: Course): EntityJson => ({ uid: { type: 'Course', id: c.id }, attrs: { teacher: user(c.teacher), students: c.students.map(user) }, parents: [] });
const gradeEntity = (g: Grade): EntityJson => ({ uid: { type: 'Grade', id: g.id }, attrs: { student: user(g.student) }, parents: [] });

const forbidden: [number, unknown] = [403, { error: 'forbidden' }];
const notFound: [number, unknown] = [404, { error: 'not found' }];
const GRADE = /^[A-F][+-]?$/;

// ---- Calls to other services, always through our own sidecar ----

/** The W3C trace context of the request being served, passed on so the call joins its trace. */
function traceOf(req: IncomingMessage): Record<string, string> {
  const { traceparent, tracestate } = req.headers;
  return { ...(typeof traceparent === 'string' ? { traceparent } : {}), ...(typeof tracestate === 'string' ? { tracestate } : {}) };
}

async function callService(service: string, method: string, path: string, o: { body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; json: unknown }> {
  // Plain HTTP to our sidecar on loopback; it leaves over mTLS with our identity, if allowed.
  const res = await request(outbound + path, {
    method: method as 'GET', // any method string is fine for undici
    headers: { ...o.headers, host: service, ...(o.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(o.body === undefined ? {} : { body: JSON.stringify(o.body) }),
  });
  const text = await res.body.text();
  let json: unknown = text;
  try { json = JSON.parse(text); } catch { /* not JSON: keep the text */ }
  return { status: res.statusCode, json };
}

// ---- Handlers ----

const routes: Record<string, [string, RegExp, Handler][]> = {
  grades: [
    // From the gateway (teachers): record a grade in a course for one of its students.
    ['POST', /^\/school\/grades$/, async (req, _params, body) => {
      const p = principalOf(req.headers);
      if (!p) return forbidden;
      const b = body as { course?: unknown; student?: unknown; item?: unknown; grade?: unknown } | undefined;
      // The decision needs to know which course and which student; nothing else is read before it.
      if (typeof b?.course !== 'string' || typeof b.student !== 'string') return [400, { error: 'course and student required' }];
      const course = courses.get(b.course);
      // A missing course is decided too, with no entity (so denied): the same answer as a foreign one.
      const d = (await authz()).authorize(p, 'school.grades.write-record', { type: 'Course', id: b.course }, {
        context: { student: user(b.student) }, entities: course ? [courseEntity(course)] : [],
      });
      if (!course || d.decision !== 'allow') return [...forbidden, d];
      if (typeof b.item !== 'string' || b.item.length < 1 || b.item.length > 100 || typeof b.grade !== 'string' || !GRADE.test(b.grade)) {
        return [400, { error: 'item (1-100 characters) and grade (A-F, optionally + or -) required' }, d];
      }
      const g: Grade = { id: `g-${randomUUID().slice(0, 8)}`, course: course.id, student: b.student, item: b.item, grade: b.grade, by: p.sub };
      if (dataFile) appendFileSync(dataFile, JSON.stringify(g) + '\n', { mode: 0o600 });
      grades.set(g.id, g);
      return [201, g, d];
    }],
    // From the gateway (students): the caller's own grades. Every grade is put to the policies and
    // only the ones they allow are answered, so the list is exactly what `read-record` permits.
    ['GET', /^\/school\/grades\/me$/, async (req) => {
      const p = principalOf(req.headers);
      if (!p) return forbidden;
      const a = await authz();
      const mine = [...grades.values()].filter((g) => a.authorize(p, 'school.grades.read-record', { type: 'Grade', id: g.id }, { entities: [gradeEntity(g)] }).decision === 'allow');
      return [200, { student: p.sub, grades: mine }];
    }],
    // From exam (the only caller the call rules let through, and only to read): one student's
    // grades in one course.
    ['GET', /^\/grades\/courses\/([\w-]+)\/students\/([\w.-]+)$/, (_req, [course = '', student = '']) => {
      if (!courses.has(course)) return notFound;
      return [200, { course, student, grades: [...grades.values()].filter((g) => g.course === course && g.student === student) }];
    }],
  ],
  exam: [
    // From the gateway (students): may I sit the exam of this course? Only with coursework graded
    // and none of it failed — which exam reads from grades through its sidecar.
    ['GET', /^\/school\/exams\/([\w-]+)\/admission$/, async (req, [course = '']) => {
      const p = principalOf(req.headers);
      if (!p) return forbidden;
      const r = await callService('grades', 'GET', `/grades/courses/${encodeURIComponent(course)}/students/${encodeURIComponent(p.sub)}`, { headers: traceOf(req) });
      if (r.status === 404) return notFound;
      if (r.status !== 200) return [502, { error: 'grades unavailable' }];
      const coursework = (r.json as { grades?: Grade[] }).grades ?? [];
      return [200, { course, student: p.sub, coursework: coursework.length, admitted: coursework.length > 0 && coursework.every((g) => !g.grade.startsWith('F')) }];
    }],
  ],
};

// ---- HTTP plumbing ----

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Test hook: this service calls another through its own sidecar, and answers what came back. */
async function testCall(body: unknown): Promise<[number, unknown]> {
  const b = body as { service?: unknown; method?: unknown; path?: unknown; body?: unknown; headers?: unknown } | undefined;
  if (typeof b?.service !== 'string' || typeof b.method !== 'string' || typeof b.path !== 'string' || !b.path.startsWith('/')) {
    return [400, { error: 'service, method and path required' }];
  }
  const headers = typeof b.headers === 'object' && b.headers !== null ? b.headers as Record<string, string> : {}; // test input, passed on as given
  const r = await callService(b.service, b.method, b.path, { body: b.body, headers });
  return [200, { status: r.status, body: r.json }];
}

const table = routes[name];
if (!table || !Number.isInteger(port)) {
  console.error('usage: PORT=n PORTCULLIS_OUTBOUND=url service.js <exam|grades>');
  process.exit(2);
}

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  if (req.method === 'GET' && path === '/__seen') return send(res, 200, seen);
  if (req.method === 'POST' && path === '/__call') {
    readJson(req).then(testCall).then(([status, body]) => send(res, status, body), (err: unknown) => send(res, 500, { error: String(err) }));
    return;
  }
  const peer = peerOf(req.headers);
  const sub = principalOf(req.headers)?.sub;
  seen.push({ method: req.method ?? '', path, ...(peer ? { peer } : {}), ...(sub ? { sub } : {}) });
  for (const [method, re, handler] of table) {
    const m = re.exec(path);
    if (req.method !== method || !m) continue;
    readJson(req)
      .then((body) => handler(req, m.slice(1), body))
      .then(async ([status, body, decision]) => {
        // The sidecar records the service's own decision in the audit event of this call.
        if (decision) (await authz()).report(res, decision);
        send(res, status, body);
      })
      .catch((err: unknown) => send(res, err instanceof SyntaxError ? 400 : 500, { error: err instanceof SyntaxError ? 'bad request' : 'internal error' }));
    return;
  }
  send(res, 404, { error: 'not found' });
});
server.listen(port, '127.0.0.1', () => {
  process.send?.({ type: 'ready', role: 'service', service: name, port });
});
const stop = (): void => { server.close(() => process.exit(0)); server.closeAllConnections(); };
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
process.on('disconnect', stop);
