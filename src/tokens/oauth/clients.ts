// Registered OAuth clients and redirect URI matching: exact string match, except that a loopback
// IP redirect URI matches on any port (RFC 8252 §7.3), because native apps and CLIs listen on an
// ephemeral port. "localhost" gets no such leniency (RFC 8252 §8.3: it may not resolve to loopback).
import { PortcullisError } from '../../core/errors.js';

export interface OAuthClient {
  clientId: string;
  type: 'public';
  redirectUris: string[];
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]']);

/** Validates the registrations once, at start, and indexes them by client_id. */
export function indexClients(clients: OAuthClient[]): ReadonlyMap<string, OAuthClient> {
  const byId = new Map<string, OAuthClient>();
  for (const c of clients) {
    if (typeof c.clientId !== 'string' || c.clientId.length === 0 || c.clientId.length > 255) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'OAuth client_id must be 1-255 characters');
    }
    if (byId.has(c.clientId)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${c.clientId}" is registered twice`);
    if (c.type !== 'public') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${c.clientId}": only public clients are supported`);
    if (c.redirectUris.length === 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${c.clientId}" has no redirect URI`);
    for (const uri of c.redirectUris) checkRegisteredRedirect(c.clientId, uri);
    byId.set(c.clientId, Object.freeze({ ...c, redirectUris: Object.freeze([...c.redirectUris]) as string[] })); // frozen copy, never mutated
  }
  return byId;
}

function checkRegisteredRedirect(clientId: string, uri: string): void {
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
export function redirectUriAllowed(client: OAuthClient, requested: string): boolean {
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
