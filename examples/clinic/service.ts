// The clinic's three services (SCENARIOS.md §2) — lab, medication, diagnosis — tiny and
// in-memory, one of them per process, chosen by the first argument. They listen on loopback only
// and trust the identity headers their sidecar sets; every call to them goes through Portcullis.
// The gateway has already checked role, shift and network (policies.cedar); each service checks
// the patient's department itself with the SDK's Authorizer, because only it has the Patient
// entity. diagnosis reads lab results through its sidecar before it records a diagnosis.
//   node dist/examples/clinic/service.js <lab|medication|diagnosis>   (PORT, PORTCULLIS_OUTBOUND, DATA_FILE from env)
// Two test hooks answer on the service's own loopback port only (no route or call rule reaches
// them): GET /__seen lists what reached the service, POST /__call makes the service call another
// one through its own sidecar ({ service, method, path, body?, headers? }), as a buggy or
// compromised service would, so that the end-to-end tests exercise refused calls.
import type { IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { Authorizer, type EntityJson, type Principal } from '../../src/sdk/index.js';
import { callService as callThroughSidecar, serveService, traceOf } from '../lib/service-kit.js';

type Decision = ReturnType<Authorizer['authorize']>;
/** Status and body of the answer, and the SDK decision behind it, which the sidecar records. */
type Reply = [number, unknown] | [number, unknown, Decision];
type Handler = (req: IncomingMessage, params: string[], body: unknown) => Promise<Reply> | Reply;

const name = process.argv[2] ?? '';
const port = Number(process.env.PORT);
const outbound = process.env.PORTCULLIS_OUTBOUND ?? '';
/** diagnosis keeps the diagnoses it records here (DATA_FILE, JSON lines). */
const dataFile = process.env.DATA_FILE ?? '';

// ---- The clinic's data: every service knows the patients (their department decides who may
// see them) and keeps its own part of the record. ----

interface Patient { id: string; department: string }
const patients = new Map<string, Patient>([
  ['pat', { id: 'pat', department: 'cardiology' }],
  ['otto', { id: 'otto', department: 'oncology' }],
]);

interface LabResult { id: string; test: string; value: string; taken: string }
const labResults = new Map<string, LabResult[]>([
  ['pat', [{ id: 'l-1', test: 'troponin I', value: '0.02 ng/mL', taken: '2026-11-20' }, { id: 'l-2', test: 'LDL cholesterol', value: '3.1 mmol/L', taken: '2026-11-20' }]],
  ['otto', [{ id: 'l-3', test: 'white cell count', value: '3.2 x10^9/L', taken: '2026-11-21' }]],
]);

interface Medication { drug: string; dose: string }
const medication = new Map<string, Medication[]>([
  ['pat', [{ drug: 'bisoprolol', dose: '2.5 mg once daily' }, { drug: 'atorvastatin', dose: '20 mg at night' }]],
  ['otto', [{ drug: 'ondansetron', dose: '8 mg before treatment' }]],
]);

interface Diagnosis { id: string; pid: string; code: string; note: string; by: string; basedOn: string[]; at: string }
/** Diagnoses by patient, reloaded from the data file at start. */
const diagnoses = new Map<string, Diagnosis[]>();
if (name === 'diagnosis' && dataFile && existsSync(dataFile)) {
  for (const line of readFileSync(dataFile, 'utf8').split('\n')) {
    if (!line) continue;
    const d = JSON.parse(line) as Diagnosis; // written by this service
    diagnoses.set(d.pid, [...(diagnoses.get(d.pid) ?? []), d]);
  }
}

// ---- Authorization inside the service ----

let authorizer: Promise<Authorizer> | undefined;
/** The policy set, loaded through our sidecar on first use (the sidecar starts after us) and kept fresh. */
function authz(): Promise<Authorizer> {
  authorizer ??= Authorizer.connect({ outbound }).catch((err: unknown) => {
    authorizer = undefined; // try again on the next request
    throw err;
  });
  return authorizer;
}

/** The Patient entity the policies read: department, and the patient's own login. */
function patientEntity(p: Patient): EntityJson {
  return { uid: { type: 'Patient', id: p.id }, attrs: { department: p.department, user: { __entity: { type: 'User', id: p.id } } }, parents: [] };
}

/**
 * May this user do `action` (clinic.labs.read-record, …) to this patient's record? A missing
 * patient is decided too, with no entity (so denied): it gets the same answer and the same kind of
 * audit record as a patient of another department, so ids cannot be probed.
 */
async function decidePatient(p: Principal, action: string, pid: string): Promise<{ patient?: Patient; d: Decision }> {
  const patient = patients.get(pid);
  const d = (await authz()).authorize(p, action, { type: 'Patient', id: pid }, { entities: patient ? [patientEntity(patient)] : [] });
  return { ...(patient && d.decision === 'allow' ? { patient } : {}), d };
}

const notFound: [number, unknown] = [404, { error: 'not found' }];

// ---- Calls to other services, always through our own sidecar ----

/** Plain HTTP to our sidecar on loopback; it leaves over mTLS with our identity, if allowed. */
const callService = (service: string, method: string, path: string, o: { body?: unknown; headers?: Record<string, string> } = {}) => callThroughSidecar(outbound, service, method, path, o);

// ---- Handlers ----

const routes: Record<string, [string, RegExp, Handler][]> = {
  lab: [
    // From the gateway: a user reads a patient's results.
    ['GET', /^\/clinic\/patients\/([\w-]+)\/labs$/, async (req, [pid = '']) => {
      const p = (await authz()).principalOf(req.headers);
      if (!p) return notFound;
      const { patient, d } = await decidePatient(p, 'clinic.labs.read-record', pid);
      return patient ? [200, { pid, results: labResults.get(pid) ?? [] }, d] : [...notFound, d];
    }],
    // From diagnosis (the only caller the call rules let through): the results it bases a
    // diagnosis on. diagnosis has checked the user's department before it asks.
    ['GET', /^\/lab\/patients\/([\w-]+)\/results$/, (_req, [pid = '']) => {
      return patients.has(pid) ? [200, { pid, results: labResults.get(pid) ?? [] }] : notFound;
    }],
  ],
  medication: [
    ['GET', /^\/clinic\/patients\/([\w-]+)\/medication$/, async (req, [pid = '']) => {
      const p = (await authz()).principalOf(req.headers);
      if (!p) return notFound;
      const { patient, d } = await decidePatient(p, 'clinic.medication.read-record', pid);
      return patient ? [200, { pid, medication: medication.get(pid) ?? [] }, d] : [...notFound, d];
    }],
  ],
  diagnosis: [
    ['POST', /^\/clinic\/patients\/([\w-]+)\/diagnosis$/, async (req, [pid = ''], body) => {
      const p = (await authz()).principalOf(req.headers);
      if (!p) return notFound;
      // Authorization before validation: a refused caller learns nothing about the body's rules.
      const { patient, d } = await decidePatient(p, 'clinic.diagnosis.write-record', pid);
      if (!patient) return [...notFound, d];
      const b = body as { code?: unknown; note?: unknown } | undefined;
      if (typeof b?.code !== 'string' || !/^[A-Z]\d{2}(\.\d{1,2})?$/.test(b.code) || (b.note !== undefined && (typeof b.note !== 'string' || b.note.length > 2000))) {
        return [400, { error: 'code (ICD-10, e.g. I25.1) required; note at most 2000 characters' }, d];
      }
      // A diagnosis is based on the patient's lab results: read them from lab through our sidecar.
      const labs = await callService('lab', 'GET', `/lab/patients/${encodeURIComponent(pid)}/results`, { headers: traceOf(req) });
      if (labs.status !== 200) return [502, { error: 'lab results unavailable' }, d];
      const results = (labs.json as { results?: LabResult[] }).results ?? [];
      const diagnosis: Diagnosis = {
        id: `d-${randomUUID().slice(0, 8)}`, pid, code: b.code, note: typeof b.note === 'string' ? b.note : '', by: p.sub,
        basedOn: results.map((r) => r.id), at: new Date().toISOString(),
      };
      if (dataFile) appendFileSync(dataFile, JSON.stringify(diagnosis) + '\n', { mode: 0o600 });
      diagnoses.set(pid, [...(diagnoses.get(pid) ?? []), diagnosis]);
      return [201, diagnosis, d];
    }],
  ],
};

serveService({ name, port, outbound, table: routes[name], usage: 'usage: PORT=n PORTCULLIS_OUTBOUND=url service.js <lab|medication|diagnosis>', authz });
