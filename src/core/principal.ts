// The identity Portcullis hands to a service on the loopback hop: the verified end user (set by
// the gateway, passed on by a sidecar only when the caller is the gateway) and the verified
// calling workload (set by the sidecar). Shared by the data plane (writes) and the SDK (reads).
import type { IncomingHttpHeaders } from 'node:http';

export const PRINCIPAL_HEADER = 'x-portcullis-principal';
/** Host name under which a service reaches the control plane's transit and secrets APIs through
 *  its sidecar; not a valid service name, so it cannot collide with one. */
export const CONTROL_HOST = 'portcullis.control';
export const PEER_HEADER = 'x-portcullis-peer';

export interface Principal {
  sub: string;
  roles: string[];
  clientId?: string;
  iss?: string;
}

export function encodePrincipal(p: Principal): string {
  return Buffer.from(JSON.stringify(p), 'utf8').toString('base64url');
}

/** The end user the gateway authenticated, or undefined (no header, or not well-formed). */
export function decodePrincipal(headers: IncomingHttpHeaders): Principal | undefined {
  const raw = headers[PRINCIPAL_HEADER];
  if (typeof raw !== 'string') return undefined;
  try {
    const p = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Partial<Principal>; // shape checked below
    if (typeof p.sub !== 'string' || !Array.isArray(p.roles) || !p.roles.every((r) => typeof r === 'string')) return undefined;
    return { sub: p.sub, roles: p.roles, ...(typeof p.clientId === 'string' ? { clientId: p.clientId } : {}), ...(typeof p.iss === 'string' ? { iss: p.iss } : {}) };
  } catch {
    return undefined;
  }
}
