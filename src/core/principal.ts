// The identity Portcullis hands to a service on the loopback hop: the verified end user (the
// gateway's signed assertion, identity/principal-assertion.ts, passed on by a sidecar only when
// the caller is the gateway) and the verified calling workload (set by the sidecar). Shared by
// the data plane (writes) and the SDK (reads).

export const PRINCIPAL_HEADER = 'x-portcullis-principal';
/** Host name under which a service reaches the control plane's transit and secrets APIs through
 *  its sidecar; not a valid service name, so it cannot collide with one. */
export const CONTROL_HOST = 'portcullis.control';
export const PEER_HEADER = 'x-portcullis-peer';
/** Response header on the loopback hop: the service's own (SDK) decision, for its sidecar's audit
 *  log. Sidecars and the gateway strip it from every response. */
export const DECISION_HEADER = 'x-portcullis-decision';

/** A user attribute (policy input: `principal.department`); kept to what a token can carry. */
export type AttrValue = string | number | boolean | string[];
export type UserAttributes = Record<string, AttrValue>;

export interface Principal {
  sub: string;
  roles: string[];
  attrs?: UserAttributes;
  clientId?: string;
  iss?: string;
}

const ATTR_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const okString = (v: unknown): v is string => typeof v === 'string' && v.length <= 256;

/** Why `v` is not a valid attribute map, or undefined when it is one. `roles` is reserved. */
export function checkUserAttributes(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'attributes must be an object';
  const entries = Object.entries(v);
  if (entries.length > 32) return 'at most 32 attributes';
  for (const [k, x] of entries) {
    if (!ATTR_NAME.test(k) || k === 'roles') return `attribute name ${JSON.stringify(k.slice(0, 64))} is not allowed`;
    const ok = okString(x) || typeof x === 'boolean' || (typeof x === 'number' && Number.isSafeInteger(x))
      || (Array.isArray(x) && x.length <= 64 && x.every(okString));
    if (!ok) return `attribute ${k} must be a string, a whole number, a boolean or a list of strings`;
  }
  return undefined;
}
