// The shop's three services (SCENARIOS.md §1), tiny and in-memory. They listen on loopback only
// and trust the identity headers their sidecar sets; every call to them goes through Portcullis.
//   node dist/examples/shop/service.js <users|orders|payments>   (PORT, PORTCULLIS_OUTBOUND, DATA_FILE from env)
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { request } from 'undici';
import { sendFailure, verifiedSub } from '../lib/service-kit.js';
import { Authorizer, FieldEncryptor, KmsClient, maskCardNumber, peerOf, type EntityJson, type Principal } from '../../src/sdk/index.js';

type Decision = ReturnType<Authorizer['authorize']>;

/** Status and body of the answer, and the SDK decision behind it, which the sidecar records. */
type Reply = [number, unknown] | [number, unknown, Decision];
type Handler = (req: IncomingMessage, params: string[], body: unknown) => Promise<Reply> | Reply;

const name = process.argv[2] ?? '';
const port = Number(process.env.PORT);
const outbound = process.env.PORTCULLIS_OUTBOUND ?? '';
/** payments keeps its charges here, card numbers encrypted (DATA_FILE, JSON lines). */
const dataFile = process.env.DATA_FILE ?? '';

/** What reached this service, for the end-to-end tests' "never reached the service" checks. */
const seen: { method: string; path: string; peer?: string; sub?: string; traceparent?: string; credential?: true }[] = [];

interface Order { id: string; owner: string; store: string; items: { sku: string; qty: number }[]; status: string; card?: string }
const orders = new Map<string, Order>([
  ['o-1', { id: 'o-1', owner: 'alice', store: 's1', items: [{ sku: 'tea', qty: 2 }], status: 'paid' }],
  ['o-2', { id: 'o-2', owner: 'bob', store: 's1', items: [{ sku: 'mug', qty: 1 }], status: 'paid' }],
  ['o-3', { id: 'o-3', owner: 'mallory', store: 's2', items: [{ sku: 'pot', qty: 1 }], status: 'paid' }],
]);
/** The merchant who runs each store (max, of s2, is not a demo user: no one may act for s2 but an admin). */
const stores = new Map<string, { merchant: string }>([['s1', { merchant: 'mia' }], ['s2', { merchant: 'max' }]]);

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

const ref = (type: string, id: string) => ({ __entity: { type, id } });

/**
 * May this user do `action` (shop.order.read, shop.order.refund) to this order? The order and its
 * store are the entities the policies read (policies.cedar). A missing order is decided too, with
 * no entities (so denied): it gets the same answer and the same kind of audit record as a foreign one.
 */
async function decideOrder(p: Principal, action: string, id: string, o: Order | undefined): Promise<Decision> {
  const store = o ? stores.get(o.store) : undefined;
  const entities: EntityJson[] = o ? [
    { uid: { type: 'Order', id: o.id }, attrs: { owner: ref('User', o.owner), store: ref('Store', o.store) }, parents: [] },
    ...(store ? [{ uid: { type: 'Store', id: o.store }, attrs: { merchant: ref('User', store.merchant) }, parents: [] }] : []),
  ] : [];
  return (await authz()).authorize(p, action, { type: 'Order', id }, { entities });
}

const notFound: [number, unknown] = [404, { error: 'not found' }];

/** The W3C trace context of the request being served, passed on so the call joins its trace. */
function traceOf(req: IncomingMessage): Record<string, string> {
  const { traceparent, tracestate } = req.headers;
  return { ...(typeof traceparent === 'string' ? { traceparent } : {}), ...(typeof tracestate === 'string' ? { tracestate } : {}) };
}

async function callService(from: IncomingMessage, service: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  // Outbound calls go to our own sidecar on loopback; it adds mTLS and our identity.
  const res = await request(outbound + path, {
    method,
    headers: { host: service, ...traceOf(from), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.statusCode, json: await res.body.json() };
}

const routes: Record<string, [string, RegExp, Handler][]> = {
  users: [
    ['GET', /^\/shop\/users\/me$/, async (req) => {
      const p = (await authz()).principalOf(req.headers);
      return p ? [200, { username: p.sub, roles: p.roles }] : [401, { error: 'no principal' }];
    }],
    ['GET', /^\/internal\/users\/([\w-]+)$/, (_req, [id]) => [200, { id, displayName: id }]],
  ],
  orders: [
    ['GET', /^\/shop\/orders$/, async (req) => {
      const p = (await authz()).principalOf(req.headers);
      if (!p) return [401, { error: 'no principal' }];
      return [200, { orders: [...orders.values()].filter((o) => o.owner === p.sub) }];
    }],
    ['GET', /^\/shop\/orders\/([\w-]+)$/, async (req, [id = '']) => {
      const p = (await authz()).principalOf(req.headers);
      if (!p) return notFound;
      const o = orders.get(id);
      const d = await decideOrder(p, 'shop.order.read', id, o);
      // A foreign order and a missing one get the same answer: no enumeration.
      return o && d.decision === 'allow' ? [200, o, d] : [...notFound, d];
    }],
    ['POST', /^\/shop\/orders$/, async (req, _params, body) => {
      const p = (await authz()).principalOf(req.headers);
      if (!p) return [401, { error: 'no principal' }];
      const b = body as { items?: { sku: string; qty: number }[]; card?: string } | undefined;
      if (!b || !Array.isArray(b.items) || typeof b.card !== 'string') return [400, { error: 'items and card required' }];
      const id = `o-${randomUUID().slice(0, 8)}`;
      const charge = await callService(req, 'payments', 'POST', '/payments/charge', { orderId: id, card: b.card, amount: '10.00' });
      if (charge.status !== 200) return [502, { error: 'payment refused' }];
      const order: Order = { id, owner: p.sub, store: 's1', items: b.items, status: 'paid', card: maskCardNumber(b.card) };
      orders.set(id, order);
      return [201, order];
    }],
    ['POST', /^\/shop\/orders\/([\w-]+)\/refund$/, async (req, [id = '']) => {
      const p = (await authz()).principalOf(req.headers);
      if (!p) return notFound;
      const o = orders.get(id);
      const d = await decideOrder(p, 'shop.order.refund', id, o);
      if (!o || d.decision !== 'allow') return [...notFound, d];
      o.status = 'refunded';
      return [200, o, d];
    }],
  ],
  payments: [
    ['POST', /^\/payments\/charge$/, async (_req, _params, body) => {
      const b = body as { orderId?: string; card?: string; amount?: string } | undefined;
      if (typeof b?.card !== 'string' || !/^[\d ]{12,23}$/.test(b.card)) return [400, { error: 'card required' }];
      const charge: Charge = { chargeId: `ch-${randomUUID().slice(0, 8)}`, orderId: String(b.orderId ?? ''), amount: String(b.amount ?? '') , card: '' };
      // The card number is stored only encrypted, bound to this charge, and only ever answered masked.
      charge.card = await cards().encryptField(b.card, { field: 'card', charge: charge.chargeId });
      appendFileSync(dataFile, JSON.stringify(charge) + '\n', { mode: 0o600 });
      charges.set(charge.chargeId, charge);
      return [200, { chargeId: charge.chargeId, orderId: charge.orderId, card: maskCardNumber(b.card) }];
    }],
    ['GET', /^\/payments\/charges\/([\w-]+)$/, async (_req, [id]) => {
      const charge = charges.get(id ?? '');
      if (!charge) return notFound;
      const card = await cards().decryptFieldToString(charge.card, { field: 'card', charge: charge.chargeId });
      return [200, { chargeId: charge.chargeId, orderId: charge.orderId, amount: charge.amount, card: maskCardNumber(card) }];
    }],
  ],
};

interface Charge { chargeId: string; orderId: string; amount: string; card: string }
/** Charges by id, reloaded from the data file at start (card numbers stay encrypted in memory too). */
const charges = new Map<string, Charge>();
if (name === 'payments' && dataFile && existsSync(dataFile)) {
  for (const line of readFileSync(dataFile, 'utf8').split('\n')) if (line) { const c = JSON.parse(line) as Charge; charges.set(c.chargeId, c); }
}
let cardEncryptor: FieldEncryptor | undefined;
/** Data keys come from the `cards` keyring of the control plane's KMS, through our sidecar. */
function cards(): FieldEncryptor {
  cardEncryptor ??= new FieldEncryptor({ kms: new KmsClient({ outbound }), keyring: 'cards' });
  return cardEncryptor;
}

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

const table = routes[name];
if (!table || !Number.isInteger(port)) {
  console.error('usage: PORT=n PORTCULLIS_OUTBOUND=url service.js <users|orders|payments>');
  process.exit(2);
}

const server = createServer((req, res) => void serve(req, res));
const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  if (req.method === 'GET' && path === '/__seen') return send(res, 200, seen);
  const sub = await verifiedSub(authz, req);
  seen.push({
    method: req.method ?? '', path,
    ...(peerOf(req.headers) ? { peer: peerOf(req.headers) } : {}),
    ...(sub ? { sub } : {}),
    ...(typeof req.headers.traceparent === 'string' ? { traceparent: req.headers.traceparent } : {}),
    // A client's credential must end at the gateway: tests check that none ever arrives here.
    ...(req.headers.authorization !== undefined || req.headers['x-api-key'] !== undefined ? { credential: true } : {}),
  });
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
  if (name === 'orders') warmUp();
});
const stop = (): void => { server.close(() => process.exit(0)); server.closeAllConnections(); };
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
process.on('disconnect', stop);
