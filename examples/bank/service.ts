// The bank's three services (SCENARIOS.md §3), tiny and in-memory. They listen on loopback only and
// trust the identity headers their sidecar sets; every call to them, and every call they make, goes
// through a sidecar over mutual TLS.
//   node dist/examples/bank/service.js <accounts|transfers|ledger>   (PORT, PORTCULLIS_OUTBOUND, DATA_FILE from env)
//
// Two test hooks live on each service's own loopback port, never routed through Portcullis:
// `GET /__seen` lists what reached the service, and `POST /__call` { to, method, path, body? } makes
// the service attempt a call through its own sidecar (so refused internal calls are exercised from
// the real workload). Neither adds a capability: anything on loopback can already reach the
// sidecar's outbound port, which is why a service's port must never leave loopback.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { request } from 'undici';
import { sendFailure, verifiedSub } from '../lib/service-kit.js';
import { Authorizer, peerOf, type EntityJson, type Principal } from '../../src/sdk/index.js';

type Decision = ReturnType<Authorizer['authorize']>;
/** Status and body of the answer, and the SDK decision behind it, which the sidecar records. */
type Reply = [number, unknown] | [number, unknown, Decision];
type Handler = (req: IncomingMessage, params: string[], body: unknown) => Promise<Reply> | Reply;

const name = process.argv[2] ?? '';
const port = Number(process.env.PORT);
const outbound = process.env.PORTCULLIS_OUTBOUND ?? '';
/** The ledger keeps its entries here (JSON lines, append-only). */
const dataFile = process.env.DATA_FILE ?? '';

/** What reached this service, for the end-to-end tests' "never reached the service" checks. */
const seen: { method: string; path: string; peer?: string; sub?: string }[] = [];

const notFound: [number, unknown] = [404, { error: 'not found' }];

// ---------------------------------------------------------------------------------------------
// Validation of a transfer (in the service for now; gateway-side JSON Schema is a later step).

/** A positive amount with at most two decimals, as a string ("250", "250.5", "250.00"). */
const AMOUNT = /^(?:0|[1-9]\d{0,11})(?:\.\d{1,2})?$/;
/** An IBAN in its electronic form: country, check digits, 11 to 30 letters or digits. */
const IBAN = /^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/;
const ACCOUNT_ID = /^[A-Z]-\d{1,12}$/;

/** ISO 13616 check: the rearranged IBAN, letters as 10–35, is 1 modulo 97. */
function ibanChecksumOk(iban: string): boolean {
  let rest = 0;
  for (const ch of iban.slice(4) + iban.slice(0, 4)) {
    const digits = ch >= 'A' && ch <= 'Z' ? String(ch.charCodeAt(0) - 55) : ch;
    for (const d of digits) rest = (rest * 10 + Number(d)) % 97;
  }
  return rest === 1;
}

const isAmount = (a: unknown): a is string => typeof a === 'string' && AMOUNT.test(a);
const isPositiveAmount = (a: unknown): a is string => isAmount(a) && /[1-9]/.test(a);

interface TransferBody { from: string; to: string; amount: string; reference?: string }
const TRANSFER_FIELDS = new Set(['from', 'to', 'amount', 'reference']);

/** The transfer, or the list of what is wrong with it (unknown fields are refused: no mass assignment). */
function validateTransfer(b: unknown): TransferBody | string[] {
  if (typeof b !== 'object' || b === null || Array.isArray(b)) return ['the body must be a JSON object'];
  const o = b as Record<string, unknown>; // a plain JSON object, checked field by field below
  const problems = Object.keys(o).filter((k) => !TRANSFER_FIELDS.has(k)).map((k) => `unknown field ${JSON.stringify(k.slice(0, 64))}`);
  if (typeof o.from !== 'string' || !ACCOUNT_ID.test(o.from)) problems.push('from must be an account id such as "A-1"');
  if (typeof o.to !== 'string' || !IBAN.test(o.to)) problems.push('to must be an IBAN in electronic form (no spaces)');
  else if (!ibanChecksumOk(o.to)) problems.push('to fails the IBAN check digits');
  if (!isPositiveAmount(o.amount)) problems.push('amount must be a positive decimal string with at most two decimals, such as "250.00"');
  if (o.reference !== undefined && (typeof o.reference !== 'string' || o.reference.length > 140)) problems.push('reference must be a string of at most 140 characters');
  if (problems.length > 0) return problems;
  return { from: o.from as string, to: o.to as string, amount: o.amount as string, ...(typeof o.reference === 'string' ? { reference: o.reference } : {}) }; // each checked above
}

/** A Cedar decimal (which needs a decimal point: "250" is written "250.0"). */
const decimal = (a: string) => ({ __extn: { fn: 'decimal', arg: a.includes('.') ? a : `${a}.0` } });

/** Cents of a validated amount ("-12.5" → -1250n), for the ledger's balance. */
function cents(a: string): bigint {
  const neg = a.startsWith('-');
  const [whole = '0', frac = ''] = (neg ? a.slice(1) : a).split('.');
  const v = BigInt(whole) * 100n + BigInt((frac + '00').slice(0, 2));
  return neg ? -v : v;
}
const fromCents = (c: bigint): string => `${c < 0n ? '-' : ''}${(c < 0n ? -c : c) / 100n}.${String((c < 0n ? -c : c) % 100n).padStart(2, '0')}`;

// ---------------------------------------------------------------------------------------------
// Calls through our own sidecar, and the policy set it serves.

/** The W3C trace context of the request being served, passed on so the call joins its trace. */
function traceOf(req: IncomingMessage): Record<string, string> {
  const { traceparent, tracestate } = req.headers;
  return { ...(typeof traceparent === 'string' ? { traceparent } : {}), ...(typeof tracestate === 'string' ? { tracestate } : {}) };
}

async function callService(from: IncomingMessage, service: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; requestId?: string }> {
  // Outbound calls go to our own sidecar on loopback; it adds mTLS and our identity.
  const res = await request(outbound + path, {
    method: method as 'GET', // any method string is fine for undici; the refused ones (DELETE) are the point
    headers: { host: service, ...traceOf(from), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  let json: unknown;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = text; }
  const requestId = res.headers['x-request-id'];
  return { status: res.statusCode, json, ...(typeof requestId === 'string' ? { requestId } : {}) };
}

let authorizer: Promise<Authorizer> | undefined;
/** The policy set, loaded through our sidecar on first use (the sidecar starts after us) and kept fresh. */
function authz(): Promise<Authorizer> {
  authorizer ??= Authorizer.connect({ outbound }).catch((err: unknown) => {
    authorizer = undefined; // try again on the next request
    throw err;
  });
  return authorizer;
}

/** Loads the policy set as soon as our sidecar answers (it starts after us), so no request waits for it. */
function warmUp(attempt = 0): void {
  authz().catch(() => { if (attempt < 240) setTimeout(() => warmUp(attempt + 1), 500).unref(); });
}

/** Account entities as the policies read them (schema.cedarschema); none for a missing account. */
const accountEntities = (a: Account | undefined): EntityJson[] =>
  a ? [{ uid: { type: 'Account', id: a.id }, attrs: { owner: { __entity: { type: 'User', id: a.owner } } }, parents: [] }] : [];

// ---------------------------------------------------------------------------------------------
// Data.

interface Account { id: string; owner: string; iban: string }
const accounts = new Map<string, Account>([
  ['A-1', { id: 'A-1', owner: 'alice', iban: 'DE89370400440532013000' }],
  ['B-1', { id: 'B-1', owner: 'bob', iban: 'GB82WEST12345698765432' }],
]);

interface Entry { id: string; account: string; amount: string; counterparty?: string; reference?: string; transfer?: string; by: string; at: string }
const entries = new Map<string, Entry>();
const opening = (account: string, amount: string): Entry => ({ id: `e-open-${account}`, account, amount, by: 'opening balance', at: '2026-01-01T00:00:00.000Z' });
if (name === 'ledger') {
  for (const e of [opening('A-1', '5000.00'), opening('B-1', '800.00')]) entries.set(e.id, e);
  if (dataFile && existsSync(dataFile)) {
    for (const line of readFileSync(dataFile, 'utf8').split('\n')) {
      if (!line) continue;
      const rec = JSON.parse(line) as Entry | { deleted: string }; // our own file
      if ('deleted' in rec) entries.delete(rec.deleted);
      else entries.set(rec.id, rec);
    }
  }
}
const record = (rec: Entry | { deleted: string }): void => {
  if (dataFile) appendFileSync(dataFile, JSON.stringify(rec) + '\n', { mode: 0o600 });
};

// ---------------------------------------------------------------------------------------------
// Handlers.

/** The test hook: attempt a call through our own sidecar and say how it was answered. */
const attempt: Handler = async (req, _params, body) => {
  const b = body as { to?: unknown; method?: unknown; path?: unknown; body?: unknown } | undefined;
  if (typeof b?.to !== 'string' || typeof b.method !== 'string' || typeof b.path !== 'string' || !b.path.startsWith('/')) return [400, { error: 'to, method and path required' }];
  const r = await callService(req, b.to, b.method, b.path, b.body);
  // The sidecar's request id names the audit event of the attempt.
  return [200, { status: r.status, body: r.json, ...(r.requestId ? { requestId: r.requestId } : {}) }];
};

const routes: Record<string, [string, RegExp, Handler][]> = {
  accounts: [
    // An account with its ledger entries, for its owner or a teller (bank.account.*).
    ['GET', /^\/bank\/accounts\/([\w-]+)$/, async (req, [id = '']) => {
      const p = (await authz()).principalOf(req.headers);
      if (!p) return [401, { error: 'no principal' }];
      const a = accounts.get(id);
      const d = (await authz()).authorize(p, 'bank.account.read', { type: 'Account', id }, { entities: accountEntities(a) });
      // Someone else's account and a missing one get the same answer: no enumeration.
      if (!a || d.decision !== 'allow') return [...notFound, d];
      const ledger = await callService(req, 'ledger', 'GET', `/ledger/accounts/${encodeURIComponent(a.id)}/entries`);
      if (ledger.status !== 200) return [502, { error: 'ledger unavailable' }, d];
      const l = ledger.json as { entries: Entry[]; balance: string }; // the ledger's own answer
      return [200, { id: a.id, owner: a.owner, iban: a.iban, balance: l.balance, entries: l.entries }, d];
    }],
    // transfers loads the account it decides on.
    ['GET', /^\/internal\/accounts\/([\w-]+)$/, (_req, [id = '']) => {
      const a = accounts.get(id);
      return a ? [200, a] : notFound;
    }],
    ['POST', /^\/__call$/, attempt],
  ],
  transfers: [
    ['POST', /^\/bank\/transfers$/, async (req, _params, body) => {
      const p = (await authz()).principalOf(req.headers);
      if (!p) return [401, { error: 'no principal' }];
      const t = validateTransfer(body);
      if (Array.isArray(t)) return [400, { error: 'invalid transfer', problems: t }];
      const loaded = await callService(req, 'accounts', 'GET', `/internal/accounts/${encodeURIComponent(t.from)}`);
      if (loaded.status !== 200 && loaded.status !== 404) return [502, { error: 'accounts unavailable' }];
      const account = loaded.status === 200 ? loaded.json as Account : undefined; // accounts' own answer
      const d = await decideTransfer(p, t, account);
      if (d.decision !== 'allow') {
        // The refusal names the deciding policies; a foreign account and a missing one look alike.
        const overLimit = d.reasons.includes('bank.transfer.within-limit');
        return [403, { error: overLimit ? 'the amount is over your transfer limit' : 'transfer refused', reasons: d.reasons }, d];
      }
      const id = `t-${randomUUID().slice(0, 8)}`;
      const booked = await callService(req, 'ledger', 'POST', '/ledger/entries', {
        account: t.from, amount: `-${t.amount}`, counterparty: t.to, transfer: id, ...(t.reference ? { reference: t.reference } : {}),
      });
      if (booked.status !== 201) return [502, { error: 'ledger refused the entry' }, d];
      return [201, { id, from: t.from, to: t.to, amount: t.amount, status: 'booked', entry: (booked.json as Entry).id }, d];
    }],
    ['POST', /^\/__call$/, attempt],
  ],
  ledger: [
    // Booked by transfers only (bank.ledger.entries-only-from-transfers).
    ['POST', /^\/ledger\/entries$/, (req, _params, body) => {
      const b = body as Partial<Entry> | undefined;
      if (typeof b?.account !== 'string' || typeof b.amount !== 'string' || !/^-?(?:0|[1-9]\d{0,11})(?:\.\d{1,2})?$/.test(b.amount)) return [400, { error: 'account and amount required' }];
      const e: Entry = {
        id: `e-${randomUUID().slice(0, 8)}`, account: b.account, amount: b.amount, by: peerOf(req.headers) ?? 'unknown', at: new Date().toISOString(),
        ...(typeof b.counterparty === 'string' ? { counterparty: b.counterparty } : {}),
        ...(typeof b.reference === 'string' ? { reference: b.reference } : {}),
        ...(typeof b.transfer === 'string' ? { transfer: b.transfer } : {}),
      };
      entries.set(e.id, e);
      record(e);
      return [201, e];
    }],
    // Read by accounts.
    ['GET', /^\/ledger\/accounts\/([\w-]+)\/entries$/, (_req, [id = '']) => {
      const list = [...entries.values()].filter((e) => e.account === id);
      return [200, { account: id, entries: list, balance: fromCents(list.reduce((s, e) => s + cents(e.amount), 0n)) }];
    }],
    // The handler exists, so that only the policy (bank.ledger.no-deletes) keeps entries from being deleted.
    ['DELETE', /^\/ledger\/entries\/([\w-]+)$/, (_req, [id = '']) => {
      if (!entries.delete(id)) return notFound;
      record({ deleted: id });
      return [204, undefined];
    }],
  ],
};

/** May this customer move this amount out of this account? (bank.transfer.*, in policies.cedar) */
async function decideTransfer(p: Principal, t: TransferBody, account: Account | undefined): Promise<Decision> {
  // The limit travels in the token as a decimal string; Cedar reads it as context.limit. A user
  // without a well-formed limit gets none, and bank.transfer.within-limit refuses every amount.
  const limit = p.attrs?.limit;
  const context = { amount: decimal(t.amount), ...(isAmount(limit) ? { limit: decimal(limit) } : {}) };
  return (await authz()).authorize(p, 'bank.account.transfer-from', { type: 'Account', id: t.from }, { context, entities: accountEntities(account) });
}

// ---------------------------------------------------------------------------------------------
// Serving.

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 64 * 1024) throw new SyntaxError('body too large');
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (body === undefined) {
    res.writeHead(status);
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const table = routes[name];
if (!table || !Number.isInteger(port)) {
  console.error('usage: PORT=n PORTCULLIS_OUTBOUND=url service.js <accounts|transfers|ledger>');
  process.exit(2);
}

const server = createServer((req, res) => void serve(req, res));
const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  if (req.method === 'GET' && path === '/__seen') return send(res, 200, seen);
  if (path !== '/__call') {
    const peer = peerOf(req.headers);
    const sub = await verifiedSub(authz, req);
    seen.push({ method: req.method ?? '', path, ...(peer ? { peer } : {}), ...(sub ? { sub } : {}) });
  }
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
      .catch((err: unknown) => sendFailure(res, err));
    return;
  }
  send(res, 404, { error: 'not found' });
};
server.listen(port, '127.0.0.1', () => {
  process.send?.({ type: 'ready', role: 'service', service: name, port });
  if (name === 'accounts' || name === 'transfers') warmUp();
});
const stop = (): void => { server.close(() => process.exit(0)); server.closeAllConnections(); };
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
process.on('disconnect', stop);
