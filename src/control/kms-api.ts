// The control plane's key-management API: Vault-style transit operations, keyring administration
// and the secrets store, as one function the server calls for every request. It answers the paths
// it owns (true) and leaves everything else to the caller (false).
//
// Every call passes the same fixed steps (STYLE.md habit 3): route (strict path, known method) →
// authenticate (admin token if an Authorization header is sent, else the verified workload
// certificate) → authorize (pure policy, deny by default) → read and validate the body → act.
// Nothing reaches the Kms or the secrets store before authorization allowed it. Each call
// publishes exactly one AdminEvent, allowed or refused, naming sizes and versions but never a
// plaintext, ciphertext, key or secret value.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { systemClock, type Clock } from '../core/clock.js';
import type { KmsOperation, PortcullisConfig } from '../core/config/types.js';
import { asPortcullisError, PortcullisError } from '../core/errors.js';
import { publishAudit, type AdminEvent } from '../core/events.js';
import { silentLogger, type Logger } from '../core/log.js';
import { canonicalContext, isKeyringName, parseCiphertext } from '../kms/ciphertext.js';
import { isSecretPath, type SecretStore } from '../kms/secrets.js';
import type { Kms, KmsContext } from '../kms/types.js';
import type { Decision } from '../policy/decision.js';
import { authorizeKms, authorizeSecret, type SecretAccess } from '../policy/kms-policy.js';
import type { AdminToken } from './admin-token.js';
import { readJsonObject, sendJson } from './http.js';

/** Transit bodies: a batch of 1000 items of a few KiB each. */
export const TRANSIT_BODY_LIMIT = 4 * 1024 * 1024;
export const MAX_BATCH_ITEMS = 1000;
/** Secret bodies: one version's data (64 KiB) as JSON, with room for escaping. */
export const SECRET_BODY_LIMIT = 256 * 1024;
/** The longest a `?wait=` long poll is held open; `&timeout=` (seconds) may shorten it. */
export const LONG_POLL_MAX_MS = 30_000;

export interface KmsApiDeps {
  config: PortcullisConfig;
  kms: Kms;
  secrets: SecretStore;
  admin: AdminToken;
  clock?: Clock;
  logger?: Logger;
}

export interface KmsApiContext {
  /** SPIFFE ID of the TLS client certificate, set only after the server verified it against our CA. */
  peerSpiffeId?: string;
  requestId: string;
  sourceAddress?: string;
}

export type KmsApi = (req: IncomingMessage, res: ServerResponse, ctx: KmsApiContext) => Promise<boolean>;

type Caller = { admin: true } | { admin: false; spiffeId: string };
type Detail = AdminEvent['detail'];

/** What a route needs the caller to be allowed. */
type Need =
  | { kind: 'admin' }
  | { kind: 'transit'; keyring: string; operation: KmsOperation }
  | { kind: 'secret'; path: string; access: SecretAccess }
  /** Listing: any authenticated caller; a workload sees only the paths it may read or write. */
  | { kind: 'authenticated' };

interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  caller: Caller;
  query: URLSearchParams;
  /** Filled by the handler; published in the call's one audit event. */
  detail: Detail;
}

interface Route {
  action: string;
  methods: readonly string[];
  need: Need;
  run: (call: Call) => Promise<void>;
}

const TRANSIT_OPERATIONS: readonly KmsOperation[] = ['encrypt', 'decrypt', 'rewrap', 'datakey', 'hmac', 'sign', 'verify'];
const ACCESSES: readonly SecretAccess[] = ['read', 'write'];
const isTransitOperation = (v: string): v is KmsOperation => TRANSIT_OPERATIONS.some((o) => o === v);
/** Canonical standard base64 (RFC 4648 §4, padded); Node's decoder alone would accept almost anything. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const COUNT = /^(?:0|[1-9][0-9]{0,8})$/;

const invalid = (message: string): PortcullisError => new PortcullisError('PCL_ERR_INVALID_ARGUMENT', message);

export function createKmsApi(deps: KmsApiDeps): KmsApi {
  const { config, kms, secrets, admin } = deps;
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? silentLogger;

  // ---- transit ----------------------------------------------------------------------------

  const transit = (operation: KmsOperation, keyring: string): Route => ({
    action: `transit.${operation}`,
    methods: ['POST'],
    need: { kind: 'transit', keyring, operation },
    run: async ({ req, res, detail }) => {
      detail.keyring = keyring;
      const body = await readJsonObject(req, TRANSIT_BODY_LIMIT);
      if (body.items !== undefined && (operation === 'encrypt' || operation === 'decrypt' || operation === 'rewrap')) {
        onlyFields(body, ['items']);
        const items = batchItems(body.items);
        detail.items = items.length;
        const results = await Promise.all(items.map(async (item) => {
          try {
            return await single(operation, keyring, item, detail);
          } catch (err) {
            const e = asPortcullisError(err);
            if (e.code === 'PCL_ERR_INTERNAL') logger.error({ action: `transit.${operation}`, err: e.message }, 'transit batch item failed');
            return { error: { code: e.code, message: e.publicMessage } };
          }
        }));
        detail.failed = results.filter((r) => 'error' in r).length;
        return sendJson(res, 200, { items: results });
      }
      sendJson(res, 200, await single(operation, keyring, body, detail));
    },
  });

  /** One transit operation on one validated body (or batch item); adds its bytes to the detail. */
  async function single(operation: KmsOperation, keyring: string, body: Record<string, unknown>, detail: Detail): Promise<Record<string, unknown>> {
    const addBytes = (bytes: number): void => {
      detail.bytes = (typeof detail.bytes === 'number' ? detail.bytes : 0) + bytes;
    };
    switch (operation) {
      case 'encrypt': {
        onlyFields(body, ['plaintext', 'context']);
        const plaintext = base64Field(body, 'plaintext');
        const context = contextField(body);
        addBytes(plaintext.length);
        const ciphertext = await kms.encrypt(keyring, plaintext, context);
        detail.version = versionOf(ciphertext);
        return { ciphertext };
      }
      case 'decrypt':
      case 'rewrap': {
        onlyFields(body, ['ciphertext', 'context']);
        const ciphertext = ciphertextField(body, 'ciphertext', keyring);
        const context = contextField(body);
        addBytes(ciphertext.length);
        if (operation === 'rewrap') {
          detail.fromVersion = versionOf(ciphertext);
          const rewrapped = await kms.rewrap(ciphertext, context, keyring);
          detail.version = versionOf(rewrapped);
          return { ciphertext: rewrapped };
        }
        detail.version = versionOf(ciphertext);
        const plaintext = await kms.decrypt(ciphertext, context, keyring);
        try {
          return { plaintext: plaintext.toString('base64') };
        } finally {
          plaintext.fill(0);
        }
      }
      case 'datakey': {
        onlyFields(body, ['context']);
        const key = await kms.generateDataKey(keyring, contextField(body));
        detail.version = versionOf(key.ciphertext);
        try {
          return { plaintext: key.plaintext.toString('base64'), ciphertext: key.ciphertext };
        } finally {
          key.plaintext.fill(0);
        }
      }
      case 'hmac': {
        onlyFields(body, ['input']);
        const input = base64Field(body, 'input');
        addBytes(input.length);
        const hmac = await kms.hmac(keyring, input);
        detail.version = versionOf(hmac);
        return { hmac };
      }
      case 'sign': {
        onlyFields(body, ['input']);
        const input = base64Field(body, 'input');
        addBytes(input.length);
        const signature = await kms.sign(keyring, input);
        detail.version = versionOf(signature);
        return { signature };
      }
      case 'verify': {
        onlyFields(body, ['input', 'signature', 'hmac']);
        const input = base64Field(body, 'input');
        if ((body.signature === undefined) === (body.hmac === undefined)) throw invalid('verify takes exactly one of "signature" and "hmac"');
        addBytes(input.length);
        const isMac = body.hmac !== undefined;
        const proof = ciphertextField(body, isMac ? 'hmac' : 'signature', keyring);
        detail.version = versionOf(proof);
        const valid = isMac ? await kms.verifyHmac(keyring, input, proof) : await kms.verify(keyring, input, proof);
        detail.valid = valid;
        return { valid };
      }
    }
  }

  // ---- keyring administration -------------------------------------------------------------

  const listKeyrings: Route = {
    action: 'kms.keyrings.list',
    methods: ['GET'],
    need: { kind: 'admin' },
    run: async ({ res, detail }) => {
      const keyrings = await kms.listKeyrings();
      detail.count = keyrings.length;
      sendJson(res, 200, { keyrings });
    },
  };

  const rotate = (name: string): Route => ({
    action: 'kms.keyring.rotate',
    methods: ['POST'],
    need: { kind: 'admin' },
    run: async ({ res, detail }) => {
      detail.keyring = name;
      const keyring = await kms.rotate(name);
      detail.version = keyring.latestVersion;
      sendJson(res, 200, { keyring });
    },
  });

  const configure = (name: string): Route => ({
    action: 'kms.keyring.config',
    methods: ['POST'],
    need: { kind: 'admin' },
    run: async ({ req, res, detail }) => {
      detail.keyring = name;
      const body = await readJsonObject(req);
      onlyFields(body, ['minDecryptionVersion']);
      const min = body.minDecryptionVersion;
      if (typeof min !== 'number' || !Number.isSafeInteger(min) || min < 1) throw invalid('"minDecryptionVersion" must be a positive integer');
      detail.minDecryptionVersion = min;
      sendJson(res, 200, { keyring: await kms.setMinDecryptionVersion(name, min) });
    },
  });

  // ---- secrets ----------------------------------------------------------------------------

  const listSecrets: Route = {
    action: 'secret.list',
    methods: ['GET'],
    need: { kind: 'authenticated' },
    run: async ({ res, caller, query, detail }) => {
      onlyParams(query, ['prefix']);
      const prefix = query.get('prefix') ?? '';
      detail.prefix = prefix;
      const all = await secrets.list(prefix);
      const visible = caller.admin
        ? all
        : all.filter((s) => ACCESSES.some((a) => authorizeSecret(config, caller.spiffeId, s.path, a).decision === 'allow'));
      detail.count = visible.length;
      sendJson(res, 200, { secrets: visible });
    },
  };

  const secretRoute = (method: string, path: string, query: URLSearchParams): Route => {
    const at = (action: string, access: SecretAccess, run: Route['run']): Route => ({
      action, methods: ['GET', 'PUT', 'DELETE'], need: { kind: 'secret', path, access }, run,
    });
    switch (method) {
      case 'PUT':
        return at('secret.put', 'write', async ({ req, res, query: q, detail }) => {
          onlyParams(q, []);
          detail.path = path;
          const body = await readJsonObject(req, SECRET_BODY_LIMIT);
          onlyFields(body, ['data', 'cas']);
          const cas = body.cas;
          if (cas !== undefined && (typeof cas !== 'number' || !Number.isSafeInteger(cas) || cas < 0)) throw invalid('"cas" must be a non-negative integer');
          // Shape and limits of `data` are the store's to check (one rule for every caller).
          const { version } = await secrets.put(path, body.data as Record<string, string>, cas === undefined ? {} : { cas }); // validated by put()
          detail.version = version;
          sendJson(res, 200, { version });
        });
      case 'DELETE':
        return at('secret.delete', 'write', async ({ res, query: q, detail }) => {
          onlyParams(q, ['versions']);
          detail.path = path;
          const list = q.get('versions');
          const versions = list === null ? undefined : versionList(list);
          if (versions) detail.versions = versions.join(',');
          await secrets.delete(path, versions);
          sendNoContent(res);
        });
      default:
        // GET, and any other method (refused with 405 before this route runs).
        return at(query.has('wait') ? 'secret.wait' : 'secret.get', 'read', async (call) => (query.has('wait') ? waitSecret(call, path) : getSecret(call, path)));
    }
  };

  async function getSecret({ res, query, detail }: Call, path: string): Promise<void> {
    onlyParams(query, ['version']);
    detail.path = path;
    const v = query.get('version');
    const secret = await secrets.get(path, v === null ? undefined : count(v, 'version'));
    detail.version = secret.version;
    sendJson(res, 200, secret);
  }

  async function waitSecret({ res, query, detail }: Call, path: string): Promise<void> {
    onlyParams(query, ['wait', 'timeout']);
    detail.path = path;
    const after = count(query.get('wait') ?? '', 'wait');
    const t = query.get('timeout');
    const timeoutMs = t === null ? LONG_POLL_MAX_MS : Math.min(count(t, 'timeout') * 1000, LONG_POLL_MAX_MS);
    detail.after = after;
    // A client that hangs up stops the wait at once; its listener and timer go with it.
    const gone = new AbortController();
    const onClose = (): void => gone.abort();
    res.on('close', onClose);
    let version: number | undefined;
    try {
      version = await secrets.waitForChange(path, after, timeoutMs, gone.signal);
    } finally {
      res.off('close', onClose);
    }
    detail.changed = version !== undefined;
    if (gone.signal.aborted) return;
    if (version === undefined) {
      res.writeHead(304, { 'cache-control': 'no-store' });
      return void res.end();
    }
    const secret = await secrets.get(path);
    detail.version = secret.version;
    sendJson(res, 200, secret);
  }

  const versionsAction = (action: 'destroy' | 'undelete', path: string): Route => ({
    action: `secret.${action}`,
    methods: ['POST'],
    need: { kind: 'secret', path, access: 'write' },
    run: async ({ req, res, query, detail }) => {
      onlyParams(query, []);
      detail.path = path;
      const body = await readJsonObject(req);
      onlyFields(body, ['versions']);
      const versions = body.versions;
      if (!Array.isArray(versions) || !versions.every((v) => typeof v === 'number')) throw invalid('"versions" must be a list of version numbers');
      detail.versions = versions.join(',');
      // Each number's range is the store's to check.
      await (action === 'destroy' ? secrets.destroy(path, versions as number[]) : secrets.undelete(path, versions as number[])); // numbers, checked above
      sendNoContent(res);
    },
  });

  // ---- routing ----------------------------------------------------------------------------

  /** The route for a path we own; undefined for paths that are not ours. Throws for malformed ones. */
  function route(method: string, rawPath: string, query: URLSearchParams): Route | undefined {
    const ours = rawPath.startsWith('/v1/transit/') || rawPath === '/v1/kms/keyrings' || rawPath.startsWith('/v1/kms/keyrings/') || rawPath === '/v1/secrets' || rawPath.startsWith('/v1/secrets/');
    if (!ours) return undefined;
    const segments = rawPath.split('/').slice(1);
    // No percent-encoding, empty or dot segments: the path we authorize is the path as sent.
    if (segments.some((s) => s === '' || s === '.' || s === '..' || s.includes('%') || s.includes('\\'))) {
      throw new PortcullisError('PCL_ERR_PATH_INVALID', 'KMS API paths take no percent-encoding, empty or dot segments');
    }
    const [, area, a, b, c] = segments; // segments[0] is "v1"
    if (area === 'transit') {
      if (a === undefined || !isTransitOperation(a) || b === undefined || !isKeyringName(b) || segments.length !== 4) return undefined;
      return transit(a, b);
    }
    if (area === 'kms') {
      if (segments.length === 3) return listKeyrings;
      if (segments.length !== 5 || b === undefined || !isKeyringName(b)) return undefined;
      if (c === 'rotate') return rotate(b);
      if (c === 'config') return configure(b);
      return undefined;
    }
    // area === 'secrets'
    if (segments.length === 2) return listSecrets;
    const rest = segments.slice(2);
    const last = rest[rest.length - 1];
    if (method === 'POST' && rest.length > 1 && (last === 'destroy' || last === 'undelete')) {
      const path = rest.slice(0, -1).join('/');
      if (!isSecretPath(path)) throw invalid('malformed secret path');
      return versionsAction(last, path);
    }
    const path = rest.join('/');
    if (!isSecretPath(path)) throw invalid('malformed secret path');
    return secretRoute(method, path, query);
  }

  function authenticate(req: IncomingMessage, ctx: KmsApiContext): Caller {
    // A credential that is sent must be right: a wrong token never falls back to the certificate.
    if (req.headers.authorization !== undefined) {
      admin.check(req.headers.authorization);
      return { admin: true };
    }
    if (ctx.peerSpiffeId) return { admin: false, spiffeId: ctx.peerSpiffeId };
    throw new PortcullisError('PCL_ERR_PEER_CERT_REQUIRED', 'KMS API called without a workload certificate or the admin token');
  }

  function authorize(caller: Caller, need: Need): Decision {
    if (caller.admin) return { decision: 'allow', reasons: ['admin'], errors: [] };
    switch (need.kind) {
      case 'admin': throw new PortcullisError('PCL_ERR_ADMIN_AUTH', 'keyring administration needs the admin token');
      case 'transit': return authorizeKms(config, caller.spiffeId, need.keyring, need.operation);
      case 'secret': return authorizeSecret(config, caller.spiffeId, need.path, need.access);
      case 'authenticated': return { decision: 'allow', reasons: ['authenticated'], errors: [] };
    }
  }

  return async (req, res, ctx) => {
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const rawPath = q < 0 ? raw : raw.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
    const method = req.method ?? 'GET';
    const detail: Detail = {};
    const who: AdminEvent['who'] = ctx.sourceAddress ? { sourceAddress: ctx.sourceAddress } : {};
    let action = 'kms.request';
    try {
      const r = route(method, rawPath, query);
      if (r === undefined) return false;
      action = r.action;
      if (!r.methods.includes(method)) {
        res.setHeader('allow', r.methods.join(', '));
        throw new PortcullisError('PCL_ERR_METHOD_NOT_ALLOWED', `${method} is not allowed on ${action}`);
      }
      const caller = authenticate(req, ctx);
      if (caller.admin) who.sub = 'admin';
      else who.spiffeId = caller.spiffeId;
      const decision = authorize(caller, r.need);
      if (decision.reasons.length > 0) detail.rule = decision.reasons.join(',');
      if (decision.errors.length > 0) detail.errors = decision.errors.join(',');
      if (decision.decision !== 'allow') throw new PortcullisError('PCL_ERR_FORBIDDEN', `${action} denied by policy`);
      await r.run({ req, res, caller, query, detail });
      publish(action, 'success', who, detail, ctx.requestId);
    } catch (e) {
      const err = asPortcullisError(e);
      detail.code = err.code;
      publish(action, 'failure', who, detail, ctx.requestId);
      if (err.code === 'PCL_ERR_INTERNAL') logger.error({ requestId: ctx.requestId, action, err: err.message }, 'KMS API call failed');
      else logger.info({ requestId: ctx.requestId, action, code: err.code, err: err.message }, 'KMS API call refused');
      if (res.headersSent) res.destroy();
      else sendJson(res, err.status, err.toPublicJSON());
    }
    return true;
  };

  function publish(action: string, outcome: 'success' | 'failure', who: AdminEvent['who'], detail: Detail, requestId: string): void {
    publishAudit({ type: 'admin', time: new Date(clock.now()).toISOString(), requestId, component: 'control', action, outcome, who, detail });
  }
}

// ---- validation -----------------------------------------------------------------------------

/** Refuses unknown fields: a misspelt `contxt` must not silently encrypt without its binding. */
function onlyFields(body: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(body)) if (!allowed.includes(key)) throw invalid(`unknown field "${key.slice(0, 64)}"; allowed: ${allowed.join(', ') || 'none'}`);
}

function onlyParams(query: URLSearchParams, allowed: readonly string[]): void {
  const seen = new Set<string>();
  for (const key of query.keys()) {
    if (!allowed.includes(key)) throw invalid(`unknown query parameter "${key.slice(0, 64)}"`);
    if (seen.has(key)) throw invalid(`query parameter "${key}" given twice`);
    seen.add(key);
  }
}

function batchItems(value: unknown): Record<string, unknown>[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_BATCH_ITEMS) throw invalid(`"items" must be a list of 1 to ${MAX_BATCH_ITEMS} objects`);
  const items: Record<string, unknown>[] = [];
  for (const item of value) {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw invalid('each of "items" must be an object');
    items.push(item as Record<string, unknown>); // a non-null, non-array object from JSON.parse
  }
  return items;
}

function base64Field(body: Record<string, unknown>, name: string): Buffer {
  const v = body[name];
  if (typeof v !== 'string' || v.length > TRANSIT_BODY_LIMIT || !BASE64.test(v)) throw invalid(`"${name}" must be standard, padded base64`);
  const bytes = Buffer.from(v, 'base64');
  // The regex admits non-zero padding bits ("QR==" and "QQ==" decode alike): one spelling only.
  if (bytes.toString('base64') !== v) throw invalid(`"${name}" must be canonical base64`);
  return bytes;
}

/** A `pcl:<keyring>:v<N>:…` string naming the keyring of the path, checked before the Kms sees it. */
function ciphertextField(body: Record<string, unknown>, name: string, keyring: string): string {
  const v = body[name];
  if (typeof v !== 'string' || v.length === 0) throw invalid(`"${name}" must be a non-empty string`);
  if (parseCiphertext(v).keyring !== keyring) throw new PortcullisError('PCL_ERR_KMS_CIPHERTEXT_INVALID', `"${name}" belongs to another keyring than the path's`);
  return v;
}

function contextField(body: Record<string, unknown>): KmsContext | undefined {
  const v = body.context;
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid('"context" must be an object of strings');
  const context = v as KmsContext; // an object; canonicalContext checks every value is a string
  canonicalContext(context);
  return context;
}

/** The key version a KMS string names (not secret: it is in the clear in the prefix). */
function versionOf(text: string): number {
  const m = /^pcl:[^:]+:v([0-9]+):/.exec(text);
  return m?.[1] ? Number(m[1]) : 0;
}

function count(text: string, name: string): number {
  if (!COUNT.test(text)) throw invalid(`"${name}" must be a non-negative integer`);
  return Number(text);
}

function versionList(text: string): number[] {
  const parts = text.split(',');
  if (parts.length > 100) throw invalid('"versions" lists at most 100 versions');
  return parts.map((p) => count(p, 'versions'));
}

function sendNoContent(res: ServerResponse): void {
  res.writeHead(204, { 'cache-control': 'no-store' });
  res.end();
}
