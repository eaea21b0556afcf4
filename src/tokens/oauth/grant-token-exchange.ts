// grant_type=urn:ietf:params:oauth:grant-type:token-exchange (RFC 8693), delegation only: a workload
// (the actor, authenticated by its mTLS certificate) presents a user's access token and gets a new
// one for the same user, for one downstream audience, with `act` naming itself (§4.1). The new
// token can only be narrower than the one presented: one audience from the configured list, a
// subset of the scope, a lifetime within what the subject token has left.
import { issueAccessToken, type ActorClaim } from '../issue.js';
import type { AuthenticatedClient } from './client-auth.js';
import type { ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import type { GrantResult } from './grant-result.js';
import { MAX_ACT_DEPTH, verifyOwnAccessToken } from './own-tokens.js';
import { formatScope, narrowScope, parseScope } from './scope.js';

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** RFC 8693 §3: the only token type exchanged here, in and out. */
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** Parameters RFC 8693 §2.1 allows more than once; the token endpoint lets them through to us. */
export const MULTI_VALUED_PARAMS: readonly string[] = ['audience', 'resource'];

export async function grantTokenExchange(deps: ResolvedDeps, params: URLSearchParams, client: AuthenticatedClient): Promise<GrantResult> {
  const exchange = deps.tokenExchange;
  // Off unless configured: the token endpoint does not offer the grant then, so this is defence in depth.
  if (!exchange) throw new OAuthError('PCL_ERR_OAUTH_UNSUPPORTED_GRANT', 'token exchange is not enabled');
  if (client.kind !== 'workload') throw new OAuthError('PCL_ERR_OAUTH_UNAUTHORIZED_CLIENT', 'token exchange is for workloads (tls_client_auth)');

  const subjectToken = params.get('subject_token');
  const subjectTokenType = params.get('subject_token_type');
  if (!subjectToken || !subjectTokenType) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', 'subject_token and subject_token_type are required');
  if (subjectTokenType !== ACCESS_TOKEN_TYPE) throw new OAuthError('PCL_ERR_OAUTH_UNSUPPORTED_TOKEN_TYPE', 'subject_token_type must be urn:ietf:params:oauth:token-type:access_token');
  const requestedType = params.get('requested_token_type');
  if (requestedType !== null && requestedType !== ACCESS_TOKEN_TYPE) throw new OAuthError('PCL_ERR_OAUTH_UNSUPPORTED_TOKEN_TYPE', 'requested_token_type must be urn:ietf:params:oauth:token-type:access_token');
  // The actor is the authenticated workload; a second token claiming to be one is not accepted.
  if (params.has('actor_token') || params.has('actor_token_type')) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', 'actor_token is not supported: the actor is the client certificate');

  // RFC 8693 §2.1 + RFC 8707 §2: audience and resource both name the target; exactly one in all.
  const targets = [...params.getAll('audience'), ...params.getAll('resource')];
  if (targets.length === 0) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', 'audience or resource is required');
  if (targets.length > 1) throw new OAuthError('PCL_ERR_OAUTH_INVALID_TARGET', 'exactly one audience or resource per exchange');
  const target = targets[0] as string; // length checked just above
  if (params.getAll('resource').some((r) => !isAbsoluteUriWithoutFragment(r))) {
    throw new OAuthError('PCL_ERR_OAUTH_INVALID_TARGET', 'resource must be an absolute URI without a fragment (RFC 8707 §2)');
  }
  // RFC 8693 §2.2.2: invalid_target for an audience we will not issue for.
  if (!exchange.audiences.has(target)) throw new OAuthError('PCL_ERR_OAUTH_INVALID_TARGET', 'the requested audience is not allowed');

  // Expired, revoked, tampered, someone else's: one answer (the brief's invalid_grant; see docs/oauth.md).
  const invalid = (why: string): OAuthError => new OAuthError('PCL_ERR_OAUTH_INVALID_GRANT', 'subject_token invalid, expired or revoked', { cause: new Error(why) });
  const subject = await verifyOwnAccessToken(deps, subjectToken);
  if (!subject) throw invalid('not one of our unexpired access tokens');
  await deps.revocations.ready();
  if (deps.revocations.isRevokedToken(subject)) throw invalid('subject token revoked');
  // Only a token meant for the edge (our audience) or for this very workload may be exchanged by it.
  if (!subject.aud.includes(deps.audience) && !subject.aud.includes(client.clientId)) throw invalid('subject token not issued for this workload');
  if (actDepth(subject.act) >= MAX_ACT_DEPTH) throw invalid('delegation chain too long');

  const subjectScope = parseScope(subject.scope ?? null);
  const requested = parseScope(params.get('scope'));
  const scope = formatScope(requested.length > 0 ? narrowScope(requested, subjectScope) : subjectScope);

  // Never outlive the subject token: delegation must not extend a session.
  const remaining = subject.exp - Math.floor(deps.clock.now() / 1000);
  if (remaining <= 0) throw invalid('subject token expires now');
  const ttlSec = Math.min(deps.accessTokenTtl, remaining);
  const act: ActorClaim = { sub: client.clientId, ...(subject.act ? { act: subject.act } : {}) };
  const issued = await issueAccessToken(deps.keys, {
    issuer: deps.issuer,
    audience: target,
    subject: subject.sub,
    // RFC 8693 §4.3: client_id is the client that requested this token, the workload.
    clientId: client.clientId,
    ...(subject.roles ? { roles: subject.roles } : {}),
    ...(subject.attrs ? { attrs: subject.attrs } : {}),
    ...(scope ? { scope } : {}),
    act,
    ttlSec,
    clock: deps.clock,
  });
  return {
    issued,
    issuedTokenType: ACCESS_TOKEN_TYPE,
    who: { sub: subject.sub, clientId: client.clientId, spiffeId: client.clientId },
    ...(scope ? { scope } : {}),
    detail: { audience: target, subject_jti: subject.jti },
  };
}

function actDepth(act: ActorClaim | undefined): number {
  let n = 0;
  for (let a = act; a; a = a.act) n++;
  return n;
}

function isAbsoluteUriWithoutFragment(v: string): boolean {
  if (v.includes('#')) return false;
  try {
    return new URL(v).protocol.length > 1;
  } catch {
    return false;
  }
}
