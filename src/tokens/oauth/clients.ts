// Registered OAuth clients: public clients (people through the CLI or an app: authorization code +
// PKCE, refresh tokens) and confidential machine clients (client_credentials, authenticated with
// private_key_jwt against their registered public keys, or with tls_client_auth by the workload
// certificate of their registered SPIFFE ID; declared in the config file's tokens.clients).
// Workloads need no registration: their mTLS certificate is one (client_id = their SPIFFE ID).
// Redirect URI matching: exact string match, except that a loopback IP redirect URI matches on any
// port (RFC 8252 §7.3), because native apps and CLIs listen on an ephemeral port. "localhost" gets
// no such leniency (RFC 8252 §8.3: it may not resolve to loopback).
import { createLocalJWKSet, type JWK } from 'jose';
import type { OAuthClientConfig } from '../../core/config/types.js';
import { loadsAsPublicKey, SECRET_MEMBERS } from '../../core/config/tokens-check.js';
import { PortcullisError } from '../../core/errors.js';
import { parseSpiffeId } from '../../identity/spiffe.js';
import { isValidScopeToken, OFFLINE_ACCESS } from './scope.js';

/** A client that cannot keep a secret (RFC 6749 §2.1): identified by client_id, protected by PKCE. */
export interface PublicClient {
  clientId: string;
  type: 'public';
  redirectUris: string[];
  /** Scope values it may be granted; `offline_access` lets it get refresh tokens. Default: none. */
  scopes?: string[];
  /** Grants beyond authorization_code and refresh_token it may use (OPTIONAL_GRANTS). Default: none. */
  grantTypes?: string[];
}

/**
 * A machine client: authenticated with a key pair (RFC 7523 §2.2 private_key_jwt, the default) or
 * with the workload certificate of its SPIFFE ID (RFC 8705 §2.1 tls_client_auth); never with a
 * shared secret (docs/oauth.md says why).
 */
export interface ConfidentialClient {
  clientId: string;
  type: 'confidential';
  /** How it authenticates at the token and revocation endpoints. Default private_key_jwt. */
  authMethod?: ConfidentialAuthMethod;
  /** private_key_jwt: its public keys (never a private or symmetric key); assertions must verify with one of them. */
  jwks?: { keys: JWK[] };
  /** tls_client_auth: the SPIFFE ID of the client certificate (verified by the server) it must present. */
  spiffeId?: string;
  /** `aud` of the access tokens it gets (RFC 8707: another resource server). Default: the token service's audience. */
  audience?: string;
  /** Scope values client_credentials may grant it. Default: none. */
  scopes?: string[];
  /** Grants beyond client_credentials it may use (OPTIONAL_GRANTS). Default: none. */
  grantTypes?: string[];
}

export type OAuthClient = PublicClient | ConfidentialClient;

export type ConfidentialAuthMethod = 'private_key_jwt' | 'tls_client_auth';

/** The registration of a client declared in the config file (tokens.clients, already schema-checked). */
export function clientFromConfig(c: OAuthClientConfig): ConfidentialClient {
  return {
    clientId: c.clientId,
    type: 'confidential',
    authMethod: c.authMethod,
    ...(c.jwks ? { jwks: { keys: c.jwks.keys.map((k) => ({ ...k })) } } : {}),
    ...(c.spiffeId !== undefined ? { spiffeId: c.spiffeId } : {}),
    // client_credentials, the config's only grant, is every confidential client's: no optional grant to add.
    scopes: [...c.scopes],
    ...(c.audience !== undefined ? { audience: c.audience } : {}),
  };
}

/** RFC 8628 device authorization grant. */
export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** Grants a client has only when its registration lists them in `grantTypes` (deny by default). */
export const OPTIONAL_GRANTS: readonly string[] = [DEVICE_CODE_GRANT];

/** True when the registration lists `grant` among its optional grants. */
export function clientHasGrant(c: OAuthClient, grant: string): boolean {
  return c.grantTypes?.includes(grant) === true;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]']);
/** Keys one private_key_jwt client may register (two during a rotation, with room to spare). */
export const MAX_CLIENT_KEYS = 10;
const MAX_REDIRECT_URI_LENGTH = 2048;

/** Validates the registrations once, at start, and indexes them by client_id. */
export function indexClients(clients: OAuthClient[]): ReadonlyMap<string, OAuthClient> {
  const byId = new Map<string, OAuthClient>();
  for (const c of clients) {
    const valid = validateClient(c);
    if (byId.has(valid.clientId)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${valid.clientId}" is registered twice`);
    byId.set(valid.clientId, valid);
  }
  return byId;
}

/** RFC 6749 Appendix A.1 VSCHAR narrowed to what is safe in a URL path and a log line (the config schema's clientId). */
const CLIENT_ID = /^[A-Za-z0-9._~:-]{1,255}$/;

/**
 * Checks one registration (from the config, the control plane's own, or the admin API) and returns
 * a frozen, normalized copy: the one function every registration passes, so no path can skip a check.
 */
export function validateClient(c: OAuthClient): OAuthClient {
  if (typeof c !== 'object' || c === null) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'OAuth client registration must be an object');
  if (typeof c.clientId !== 'string' || !CLIENT_ID.test(c.clientId)) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'OAuth client_id must be 1-255 of A-Z a-z 0-9 . _ ~ : -');
  }
  // A workload's client_id is its SPIFFE ID, proven by its certificate: no registration may claim one.
  if (c.clientId.toLowerCase().startsWith('spiffe:')) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${c.clientId}": SPIFFE IDs are reserved for workloads`);
  const scopes = checkScopes(c);
  const grantTypes = checkGrantTypes(c);
  if (c.type === 'public') {
    // A device-only client (a TV, a CLI without a browser) has nowhere to be redirected to.
    if (!Array.isArray(c.redirectUris) || (c.redirectUris.length === 0 && !grantTypes.includes(DEVICE_CODE_GRANT))) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${c.clientId}" has no redirect URI`);
    }
    for (const uri of c.redirectUris) checkRegisteredRedirect(c.clientId, uri);
    // Only the members of a public client: a leftover (jwks, authMethod) would be a misunderstanding.
    return Object.freeze({ clientId: c.clientId, type: 'public', redirectUris: Object.freeze([...new Set(c.redirectUris)]) as string[], scopes, grantTypes }); // frozen copy, never mutated
  }
  if (c.type === 'confidential') {
    if (scopes.includes(OFFLINE_ACCESS)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${c.clientId}": refresh tokens are for public clients (client_credentials needs none)`);
    return Object.freeze({
      clientId: c.clientId, type: 'confidential', ...checkClientAuth(c), scopes, grantTypes,
      ...(c.audience !== undefined ? { audience: checkAudience(c.clientId, c.audience) } : {}),
    });
  }
  throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${String((c as { clientId: unknown }).clientId)}": type must be public or confidential`); // a registration from untyped input
}

/** The client's scopes, checked (RFC 6749 §3.3 syntax) and frozen. */
function checkScopes(c: OAuthClient): string[] {
  const scopes = c.scopes ?? [];
  if (!Array.isArray(scopes) || !scopes.every(isValidScopeToken)) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${c.clientId}": scopes must be RFC 6749 scope tokens`);
  }
  return Object.freeze([...new Set(scopes)]) as string[]; // frozen copy, never mutated
}

/** Only grants that exist as optional ones: a typo must not pass silently as "no grant". */
function checkGrantTypes(c: OAuthClient): string[] {
  const grants = c.grantTypes ?? [];
  if (!Array.isArray(grants) || !grants.every((g) => OPTIONAL_GRANTS.includes(g))) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${c.clientId}": grantTypes may list only ${OPTIONAL_GRANTS.join(', ')}`);
  }
  return Object.freeze([...new Set(grants)]) as string[]; // frozen copy, never mutated
}

/** The credential of the client's auth method, and nothing else: a leftover of the other method is a mistake. */
function checkClientAuth(c: ConfidentialClient): Pick<ConfidentialClient, 'authMethod' | 'jwks' | 'spiffeId'> {
  const method = c.authMethod ?? 'private_key_jwt';
  const fail = (why: string): PortcullisError => new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${c.clientId}": ${why}`);
  if (method === 'private_key_jwt') {
    if (c.spiffeId !== undefined) throw fail('spiffeId is for tls_client_auth');
    return { authMethod: method, jwks: checkClientJwks(c.clientId, c.jwks) };
  }
  if (method === 'tls_client_auth') {
    if (c.jwks !== undefined) throw fail('jwks is for private_key_jwt');
    try {
      parseSpiffeId(c.spiffeId ?? '');
    } catch (err) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${c.clientId}": tls_client_auth needs the SPIFFE ID of its certificate`, { cause: err });
    }
    return { authMethod: method, spiffeId: c.spiffeId };
  }
  throw fail('authMethod must be private_key_jwt or tls_client_auth (client secrets are not supported)'); // untyped configuration
}

/** An audience becomes an `aud` value verbatim: printable, no whitespace. */
function checkAudience(clientId: string, audience: string): string {
  if (typeof audience !== 'string' || !/^[\x21-\x7e]{1,2048}$/.test(audience)) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": audience must be 1-2048 printable characters without spaces`);
  }
  return audience;
}

/** Public keys only (1-10), each one node:crypto loads as EC, Ed25519 or RSA of 2048 bits or more. */
function checkClientJwks(clientId: string, jwks: { keys: JWK[] } | undefined): { keys: JWK[] } {
  if (!jwks || !Array.isArray(jwks.keys) || jwks.keys.length === 0 || jwks.keys.length > MAX_CLIENT_KEYS) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": jwks must be { keys: [1-${MAX_CLIENT_KEYS} public JWKs] }`);
  }
  for (const k of jwks.keys) {
    if (typeof k !== 'object' || k === null || Array.isArray(k)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": jwks keys must be JWK objects`);
    // The private key stays with the client; a symmetric key would be a shared secret (docs/oauth.md).
    if (SECRET_MEMBERS.some((m) => m in k) || k.kty === 'oct') {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": jwks holds private or symmetric key material; register the public key only`);
    }
    if ((k.kty !== 'EC' && k.kty !== 'RSA' && k.kty !== 'OKP') || !loadsAsPublicKey(k)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": jwks must hold EC (P-256/384/521), OKP (Ed25519) or RSA (2048 bits or more) public keys only`);
    }
  }
  const copy = structuredClone({ keys: jwks.keys });
  try {
    createLocalJWKSet(copy);
  } catch (err) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": jwks is not a valid JSON Web Key Set`, { cause: err });
  }
  return Object.freeze(copy);
}

function checkRegisteredRedirect(clientId: string, uri: string): void {
  if (typeof uri !== 'string' || uri.length > MAX_REDIRECT_URI_LENGTH || !/^[\x21-\x7e]+$/.test(uri)) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": redirect URIs must be 1-${MAX_REDIRECT_URI_LENGTH} printable characters without spaces`);
  }
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": redirect URI "${uri}" is not an absolute URL`);
  }
  if (u.hash || uri.includes('#')) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": redirect URI "${uri}" has a fragment (RFC 6749 §3.1.2)`);
  if (u.username || u.password) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": redirect URI "${uri}" has credentials`);
  if (u.protocol === 'http:' && !LOOPBACK_HOSTS.has(u.hostname)) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": plain-http redirect URI "${uri}" must be a loopback IP (RFC 8252 §7.3)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}": redirect URI "${uri}" must be http(s)`);
  }
}

/** True when `requested` is one of the client's redirect URIs under the rules above. */
export function redirectUriAllowed(client: PublicClient, requested: string): boolean {
  if (client.redirectUris.includes(requested)) return true;
  let r: URL;
  try {
    r = new URL(requested);
  } catch {
    return false;
  }
  if (r.protocol !== 'http:' || !LOOPBACK_HOSTS.has(r.hostname) || r.username || r.password || requested.includes('#')) return false;
  return client.redirectUris.some((registered) => {
    const g = new URL(registered); // every registered URI parsed in indexClients
    if (g.protocol !== 'http:' || g.hostname !== r.hostname) return false;
    // Only the port may differ; the rest must be equal as written, so the request has to be in
    // the URL's canonical form (no dot segments, backslashes or re-encodings to play with).
    g.port = r.port;
    return g.href === requested;
  });
}
