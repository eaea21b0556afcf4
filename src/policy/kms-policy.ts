// Who may use which keyring for what, and who may read or write which secret: pure functions over
// the frozen config's `kms` section, deny by default (STYLE.md habit 4). A workload is known by
// its SPIFFE ID only; the admin token is the API's business, not the policy's.
import type { KmsOperation, PortcullisConfig } from '../core/config/types.js';
import { isSecretPath } from '../kms/secrets.js';
import { denyByDefault, type Decision } from './decision.js';

export type SecretAccess = 'read' | 'write';

interface Compiled {
  /** SPIFFE ID → service name. */
  serviceOf: Map<string, string>;
  /** `<keyring>\0<service>\0<operation>` → rule id. */
  grants: Map<string, string>;
  /** Secret rules, longest prefix first (so the reason names the most specific rule). */
  secrets: { prefix: string; read: ReadonlySet<string>; write: ReadonlySet<string> }[];
}

// The config is frozen once loaded, so what is compiled from it never goes stale; a WeakMap lets
// an unused config be collected. Each call stays a pure function of its arguments.
const compiled = new WeakMap<PortcullisConfig, Compiled>();

function compile(config: PortcullisConfig): Compiled {
  const cached = compiled.get(config);
  if (cached) return cached;
  const serviceOf = new Map(config.services.map((s) => [s.spiffeId, s.name]));
  const grants = new Map<string, string>();
  for (const k of config.kms.keyrings) {
    for (const g of k.allow) {
      for (const op of g.operations) grants.set(`${k.name}\0${g.service}\0${op}`, `kms:${k.name}:${g.service}:${op}`);
    }
  }
  const secrets = [...config.kms.secrets]
    .sort((a, b) => b.prefix.length - a.prefix.length)
    .map((r) => ({ prefix: r.prefix, read: new Set(r.read), write: new Set(r.write) }));
  const c = { serviceOf, grants, secrets };
  compiled.set(config, c);
  return c;
}

/** May the workload `callerSpiffeId` call `operation` on `keyring`? Reason: `kms:<keyring>:<service>:<operation>`. */
export function authorizeKms(config: PortcullisConfig, callerSpiffeId: string, keyring: string, operation: KmsOperation): Decision {
  const c = compile(config);
  const service = c.serviceOf.get(callerSpiffeId);
  if (service === undefined) return denyByDefault;
  // NUL cannot occur in a keyring or service name, so the key is unambiguous.
  const rule = c.grants.get(`${keyring}\0${service}\0${operation}`);
  return rule === undefined ? denyByDefault : { decision: 'allow', reasons: [rule], errors: [] };
}

/**
 * May the workload read (or write) the secret at `path`? A malformed path is refused with an
 * error before any prefix is compared, so `payments/../users/x` can never match `payments/`.
 * Reason: `secret:<prefix>:<service>:<access>`.
 */
export function authorizeSecret(config: PortcullisConfig, callerSpiffeId: string, path: string, access: SecretAccess): Decision {
  if (!isSecretPath(path)) return { decision: 'deny', reasons: [], errors: ['malformed secret path'] };
  const c = compile(config);
  const service = c.serviceOf.get(callerSpiffeId);
  if (service === undefined) return denyByDefault;
  for (const rule of c.secrets) {
    if (path.startsWith(rule.prefix) && rule[access].has(service)) {
      return { decision: 'allow', reasons: [`secret:${rule.prefix}:${service}:${access}`], errors: [] };
    }
  }
  return denyByDefault;
}
