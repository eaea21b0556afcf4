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
import type { IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { Authorizer, type EntityJson } from '../../src/sdk/index.js';
import { callService as callThroughSidecar, serveService, traceOf } from '../lib/service-kit.js';

type Decision = ReturnType<Authorizer['authorize']>;
/** Status and body of the answer, and the SDK decision behind it, which the sidecar records. */
type Reply = [number, unknown] | [number, unknown, Decision];
type Handler = (req: IncomingMessage, params: string[], body: unknown) => Promise<Reply> | Reply;

const name = process.argv[2] ?? '';
const port = Number(process.env.PORT);
const outbound = process.env.PORTCULLIS_OUTBOUND ?? '';
/** grades keeps the grades recorded through it here (DATA_FILE, JSON lines). */
const dataFile = process.env.DATA_FILE ?? '';

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

/** Plain HTTP to our sidecar on loopback; it leaves over mTLS with our identity, if allowed. */
const callService = (service: string, method: string, path: string, o: { body?: unknown; headers?: Record<string, string> } = {}) => callThroughSidecar(outbound, service, method, path, o);

// ---- Handlers ----

const routes: Record<string, [string, RegExp, Handler][]> = {
  grades: [
    // From the gateway (teachers): record a grade in a course for one of its students.
    ['POST', /^\/school\/grades$/, async (req, _params, body) => {
      const p = (await authz()).principalOf(req.headers);
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
      const p = (await authz()).principalOf(req.headers);
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
      const p = (await authz()).principalOf(req.headers);
      if (!p) return forbidden;
      const r = await callService('grades', 'GET', `/grades/courses/${encodeURIComponent(course)}/students/${encodeURIComponent(p.sub)}`, { headers: traceOf(req) });
      if (r.status === 404) return notFound;
      if (r.status !== 200) return [502, { error: 'grades unavailable' }];
      const coursework = (r.json as { grades?: Grade[] }).grades ?? [];
      return [200, { course, student: p.sub, coursework: coursework.length, admitted: coursework.length > 0 && coursework.every((g) => !g.grade.startsWith('F')) }];
    }],
  ],
};

serveService({ name, port, outbound, table: routes[name], usage: 'usage: PORT=n PORTCULLIS_OUTBOUND=url service.js <exam|grades>', authz });
