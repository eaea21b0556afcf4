// Checks the schema cannot express: names that must refer to defined things, values that must be
// unique across sections, routes that would shadow each other. They run on the raw data even when
// the schema found problems (so `config check` lists everything at once), hence every read is guarded.
import { PortcullisError } from '../errors.js';
import { compilePathPattern, parseOperation } from '../path-pattern.js';
import { DEFAULTS, derived, SECRETS_KEYRING } from './defaults.js';
import { quote, suggest } from './hint.js';
import { matchesDefinition } from './schema.js';
import { checkTokens } from './tokens-check.js';
import type { KeyringType, KmsOperation } from './types.js';

export type ConfigPath = readonly (string | number)[];

/** The operations each key type supports; a grant of any other is a config error, not a runtime surprise. */
export const KEYRING_OPERATIONS: Readonly<Record<KeyringType, readonly KmsOperation[]>> = Object.freeze({
  'aes256-gcm': ['encrypt', 'decrypt', 'rewrap', 'datakey'],
  'hmac-sha256': ['hmac', 'verify'],
  'ecdsa-p256': ['sign', 'verify'],
  ed25519: ['sign', 'verify'],
});
const isKeyringType = (v: string): v is KeyringType => Object.hasOwn(KEYRING_OPERATIONS, v);

/** A problem found in the data, located by its path; the loader turns it into a ConfigError. */
export interface ConfigIssue {
  code: 'PCL_ERR_CONFIG_INVALID' | 'PCL_ERR_CONFIG_REFERENCE';
  path: ConfigPath;
  /** Point at the key itself (unknown key) or at its value (everything else). */
  at: 'key' | 'value';
  message: string;
  hint?: string;
  /** An earlier place the message refers to ("first defined at line N"). */
  related?: ConfigPath;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});

/** "services[1].sidecar.listen" */
export function displayPath(path: ConfigPath): string {
  if (path.length === 0) return 'the top level';
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out;
}

/** One value that must be unique, where it is, and whether the file wrote it or a default did. */
interface Occurrence {
  value: string;
  path: ConfigPath;
  explicit: boolean;
  label: string;
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '[::]', '::']);

function splitHostPort(hostPort: string): { host: string; port: string } {
  const colon = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, colon).toLowerCase(), port: hostPort.slice(colon + 1) };
}

/** Two listeners conflict on one port when the hosts are equal or either is a wildcard address. */
function listenersConflict(a: string, b: string): boolean {
  const x = splitHostPort(a);
  const y = splitHostPort(b);
  return x.port === y.port && (x.host === y.host || WILDCARD_HOSTS.has(x.host) || WILDCARD_HOSTS.has(y.host));
}

/**
 * Reports later occurrences equal (per `same`) to an earlier one; defaulted values count as
 * earliest. Only values in one bucket are compared, so thousands of entries stay cheap.
 */
function duplicates(
  occurrences: Occurrence[],
  what: string,
  issues: ConfigIssue[],
  bucket: (value: string) => string = (v) => v,
  same: (a: string, b: string) => boolean = (a, b) => a === b,
): void {
  const ordered = [...occurrences.filter((o) => !o.explicit), ...occurrences.filter((o) => o.explicit)];
  const seen = new Map<string, Occurrence[]>();
  for (const o of ordered) {
    const group = seen.get(bucket(o.value)) ?? [];
    const first = group.find((s) => same(s.value, o.value));
    if (first === undefined) {
      group.push(o);
      seen.set(bucket(o.value), group);
      continue;
    }
    if (!o.explicit) continue; // two defaults never collide (they are distinct by construction)
    issues.push({
      code: 'PCL_ERR_CONFIG_REFERENCE',
      path: o.path,
      at: 'value',
      message: `${what} ${quote(o.value)} of ${o.label} is already used by ${first.label}${first.explicit ? '' : ' (its default)'}`,
      hint: `each ${what} must be unique`,
      ...(first.explicit ? { related: first.path } : {}),
    });
  }
}

export function checkReferences(data: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const root = obj(data);
  const trustDomain = str(root.trustDomain);
  const control = obj(root.control);
  const gateway = obj(root.gateway);
  const services = list(root.services);
  const routes = list(root.routes);
  const calls = list(root.calls);

  // Service names.
  const names: Occurrence[] = [];
  services.forEach((s, i) => {
    const name = str(obj(s).name);
    if (name !== undefined) names.push({ value: name, path: ['services', i, 'name'], explicit: true, label: `services[${i}]` });
  });
  duplicates(names, 'service name', issues);
  const serviceNames = [...new Set(names.map((n) => n.value))];
  const defined = new Set(serviceNames);

  // SPIFFE IDs: inside the trust domain, and unique including the gateway's.
  const spiffeIds: Occurrence[] = [];
  const gatewayId = str(gateway.spiffeId);
  if (gatewayId !== undefined) spiffeIds.push({ value: gatewayId, path: ['gateway', 'spiffeId'], explicit: true, label: 'the gateway' });
  else if (trustDomain !== undefined) spiffeIds.push({ value: derived.gatewaySpiffeId(trustDomain), path: ['gateway'], explicit: false, label: 'the gateway' });
  services.forEach((s, i) => {
    const id = str(obj(s).spiffeId);
    if (id !== undefined) spiffeIds.push({ value: id, path: ['services', i, 'spiffeId'], explicit: true, label: `services[${i}]` });
  });
  // An invalid trust domain is the schema's to report; comparing against it would only add noise.
  if (trustDomain !== undefined && matchesDefinition('trustDomain', trustDomain)) {
    const prefix = `spiffe://${trustDomain}/`;
    for (const o of spiffeIds) {
      if (o.explicit && !o.value.startsWith(prefix)) {
        issues.push({
          code: 'PCL_ERR_CONFIG_REFERENCE',
          path: o.path,
          at: 'value',
          message: `SPIFFE ID ${quote(o.value)} of ${o.label} is outside the trust domain ${quote(trustDomain)}`,
          hint: `it must start with ${quote(prefix)}`,
        });
      }
    }
  }
  duplicates(spiffeIds, 'SPIFFE ID', issues);

  // Listen addresses of every process this file describes.
  const listeners: Occurrence[] = [];
  const listener = (section: Obj, key: string, fallback: string, path: ConfigPath, label: string): void => {
    const value = str(section[key]);
    listeners.push(value !== undefined ? { value, path, explicit: true, label } : { value: fallback, path, explicit: false, label });
  };
  listener(control, 'listen', DEFAULTS.controlListen, ['control', 'listen'], 'control.listen');
  listener(gateway, 'listen', DEFAULTS.gatewayListen, ['gateway', 'listen'], 'gateway.listen');
  // Metrics listeners have no default: only those the file writes take a port.
  for (const [section, name] of [[control, 'control'], [gateway, 'gateway']] as const) {
    const value = str(section.metricsListen);
    if (value !== undefined) listeners.push({ value, path: [name, 'metricsListen'], explicit: true, label: `${name}.metricsListen` });
  }
  services.forEach((s, i) => {
    const sidecar = obj(obj(s).sidecar);
    for (const key of ['listen', 'outbound', 'metricsListen']) {
      const value = str(sidecar[key]);
      if (value !== undefined) listeners.push({ value, path: ['services', i, 'sidecar', key], explicit: true, label: `services[${i}].sidecar.${key}` });
    }
  });
  duplicates(listeners.filter((l) => l.value.includes(':')), 'listen address', issues, (v) => splitHostPort(v).port, listenersConflict);

  // Routes: unique ids, defined services, no two routes answering the same requests.
  const routeIds: Occurrence[] = [];
  const shapes = new Map<string, { index: number; id: string }>();
  routes.forEach((r, i) => {
    const route = obj(r);
    const id = str(route.id);
    if (id !== undefined) routeIds.push({ value: id, path: ['routes', i, 'id'], explicit: true, label: `routes[${i}]` });
    const service = str(route.service);
    if (service !== undefined && !defined.has(service)) {
      issues.push({
        code: 'PCL_ERR_CONFIG_REFERENCE',
        path: ['routes', i, 'service'],
        at: 'value',
        message: `route ${quote(id ?? `#${i}`)} forwards to service ${quote(service)}, which is not defined in \`services\``,
        hint: suggest(service, serviceNames, 'defined services'),
      });
    }
    const validate = obj(route.validate);
    if (validate.openapi !== undefined) {
      for (const k of ['body', 'params', 'query']) {
        if (validate[k] !== undefined) issues.push({ code: 'PCL_ERR_CONFIG_REFERENCE', path: ['routes', i, 'validate', k], at: 'key', message: `route ${quote(id ?? `#${i}`)} takes its schemas from \`openapi\` and also gives \`${k}\``, hint: 'keep one source of truth: the OpenAPI operation, or inline schemas' });
      }
    }
    const method = str(route.method);
    const path = str(route.path);
    if (method === undefined || path === undefined || !path.startsWith('/')) return;
    let shape: string;
    try {
      shape = compilePathPattern(path).shape;
    } catch (err) {
      // The schema reports most malformed patterns; this catches what a regex cannot (repeated names).
      if (!(err instanceof PortcullisError)) throw err;
      issues.push({ code: 'PCL_ERR_CONFIG_INVALID', path: ['routes', i, 'path'], at: 'value', message: `\`routes[${i}].path\`: ${err.message}` });
      return;
    }
    const key = `${method} ${shape}`;
    const first = shapes.get(key);
    if (first === undefined) {
      shapes.set(key, { index: i, id: id ?? `#${i}` });
      return;
    }
    issues.push({
      code: 'PCL_ERR_CONFIG_REFERENCE',
      path: ['routes', i, 'path'],
      at: 'value',
      message: `route ${quote(id ?? `#${i}`)} (${method} ${quote(path)}) matches exactly the same requests as route ${quote(first.id)}`,
      hint: 'two routes with one method and one path shape (parameter names aside) are ambiguous; merge them',
      related: ['routes', first.index, 'path'],
    });
  });
  duplicates(routeIds, 'route id', issues);

  // Call rules: both ends defined, operations well formed.
  calls.forEach((c, i) => {
    const call = obj(c);
    for (const end of ['from', 'to'] as const) {
      const name = str(call[end]);
      if (name !== undefined && !defined.has(name)) {
        issues.push({
          code: 'PCL_ERR_CONFIG_REFERENCE',
          path: ['calls', i, end],
          at: 'value',
          message: `\`calls[${i}].${end}\` names service ${quote(name)}, which is not defined in \`services\``,
          hint: suggest(name, serviceNames, 'defined services'),
        });
      }
    }
    list(call.operations).forEach((op, j) => {
      if (typeof op !== 'string') return; // the schema reports the type
      try {
        parseOperation(op);
      } catch (err) {
        if (!(err instanceof PortcullisError)) throw err;
        issues.push({
          code: 'PCL_ERR_CONFIG_REFERENCE',
          path: ['calls', i, 'operations', j],
          at: 'value',
          message: `operation ${quote(op)} of \`calls[${i}]\` is not "METHOD /path/pattern"`,
          hint: 'e.g. "POST /payments/charge"; METHOD is one of GET, HEAD, POST, PUT, PATCH, DELETE and segments are literal or {name}',
        });
      }
    });
  });

  checkKms(obj(root.kms), defined, serviceNames, issues);
  checkTokens(obj(root.tokens), trustDomain, issues);
  // Detection rules: unique ids; nothing to block for an expiry alert.
  const ruleIds: Occurrence[] = [];
  list(obj(root.detection).rules).forEach((r, i) => {
    const rule = obj(r);
    const id = str(rule.id);
    if (id !== undefined) ruleIds.push({ value: id, path: ['detection', 'rules', i, 'id'], explicit: true, label: `detection.rules[${i}]` });
    if (rule.kind === 'expiry' && rule.block !== undefined) {
      issues.push({ code: 'PCL_ERR_CONFIG_REFERENCE', path: ['detection', 'rules', i, 'block'], at: 'key', message: 'an expiry rule has nothing to block', hint: 'remove `block`, or use it on a rule about principals, addresses or workloads' });
    }
  });
  duplicates(ruleIds, 'rule id', issues);
  // Rate limits: unique ids, and only routes that exist.
  const limitIds: Occurrence[] = [];
  const knownRoutes = routeIds.map((r) => r.value);
  list(obj(root.limits).rules).forEach((r, i) => {
    const rule = obj(r);
    const id = str(rule.id);
    if (id !== undefined) limitIds.push({ value: id, path: ['limits', 'rules', i, 'id'], explicit: true, label: `limits.rules[${i}]` });
    list(rule.routes).forEach((route, j) => {
      if (typeof route === 'string' && !knownRoutes.includes(route)) {
        issues.push({ code: 'PCL_ERR_CONFIG_REFERENCE', path: ['limits', 'rules', i, 'routes', j], at: 'value', message: `rate limit ${quote(id ?? `#${i}`)} names route ${quote(route)}, which is not defined in \`routes\``, hint: suggest(route, knownRoutes, 'defined routes') });
      }
    });
  });
  duplicates(limitIds, 'rate limit id', issues);
  const timeZone = str(obj(root.policies).timeZone);
  if (timeZone !== undefined && !validTimeZone(timeZone)) {
    issues.push({ code: 'PCL_ERR_CONFIG_REFERENCE', path: ['policies', 'timeZone'], at: 'value', message: `unknown time zone ${quote(timeZone)}`, hint: 'an IANA zone name such as UTC or Europe/Berlin' });
  }
  return issues;
}

function validTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** Keyrings the control plane keeps for itself: a config grant on them would hand out its keys. */
const RESERVED_KEYRINGS: Record<string, string> = {
  [SECRETS_KEYRING]: 'the secrets store',
  control: "the control plane's own private keys",
  audit: "the control plane's audit checkpoints",
  'audit-ids': 'keyed hashes of identifiers in audit events',
};

/** Keyrings: unique and not reserved names, granted services defined, operations fitting the type; secret rules likewise. */
function checkKms(kms: Obj, defined: Set<string>, serviceNames: string[], issues: ConfigIssue[]): void {
  const undefinedService = (path: ConfigPath, name: string, what: string): void => {
    issues.push({
      code: 'PCL_ERR_CONFIG_REFERENCE',
      path,
      at: 'value',
      message: `${what} names service ${quote(name)}, which is not defined in \`services\``,
      hint: suggest(name, serviceNames, 'defined services'),
    });
  };

  const keyringNames: Occurrence[] = [];
  list(kms.keyrings).forEach((k, i) => {
    const keyring = obj(k);
    const name = str(keyring.name);
    if (name !== undefined) keyringNames.push({ value: name, path: ['kms', 'keyrings', i, 'name'], explicit: true, label: `kms.keyrings[${i}]` });
    const reservedFor = name === undefined ? undefined : RESERVED_KEYRINGS[name];
    if (name !== undefined && reservedFor !== undefined) {
      issues.push({
        code: 'PCL_ERR_CONFIG_REFERENCE',
        path: ['kms', 'keyrings', i, 'name'],
        at: 'value',
        message: `keyring name ${quote(name)} is reserved for ${reservedFor}`,
        hint: name === SECRETS_KEYRING ? 'grant access to secrets with `kms.secrets` rules, and choose another name for this keyring' : 'choose another name for this keyring',
      });
    }
    const typeValue = keyring.type === undefined ? DEFAULTS.keyringType : str(keyring.type);
    // An unknown type is the schema's to report; without a type the operations cannot be judged.
    const type = typeValue !== undefined && isKeyringType(typeValue) ? typeValue : undefined;
    list(keyring.allow).forEach((g, j) => {
      const grant = obj(g);
      const service = str(grant.service);
      if (service !== undefined && !defined.has(service)) undefinedService(['kms', 'keyrings', i, 'allow', j, 'service'], service, `\`kms.keyrings[${i}].allow[${j}]\``);
      if (type === undefined) return;
      const fitting = KEYRING_OPERATIONS[type];
      list(grant.operations).forEach((op, n) => {
        if (typeof op !== 'string' || fitting.some((f) => f === op)) return;
        if (!Object.values(KEYRING_OPERATIONS).some((ops) => ops.some((o) => o === op))) return; // not an operation at all: the schema reports it
        issues.push({
          code: 'PCL_ERR_CONFIG_REFERENCE',
          path: ['kms', 'keyrings', i, 'allow', j, 'operations', n],
          at: 'value',
          message: `operation ${quote(op)} does not fit keyring ${quote(name ?? `#${i}`)} of type ${type}`,
          hint: `keyring type ${type} supports ${fitting.join(', ')}`,
        });
      });
    });
  });
  duplicates(keyringNames, 'keyring name', issues);

  const prefixes: Occurrence[] = [];
  list(kms.secrets).forEach((r, i) => {
    const rule = obj(r);
    const prefix = str(rule.prefix);
    if (prefix !== undefined) prefixes.push({ value: prefix, path: ['kms', 'secrets', i, 'prefix'], explicit: true, label: `kms.secrets[${i}]` });
    for (const access of ['read', 'write'] as const) {
      list(rule[access]).forEach((s, j) => {
        if (typeof s === 'string' && !defined.has(s)) undefinedService(['kms', 'secrets', i, access, j], s, `\`kms.secrets[${i}].${access}\``);
      });
    }
  });
  duplicates(prefixes, 'secret prefix', issues);
}
