// Our own access tokens, as the token service judges them for introspection, revocation and token
// exchange: signed by one of our keys, our issuer, typ at+jwt, not expired (no clock skew: we are
// the clock that issued them), and the RFC 9068 claims present. Any audience: exchanged tokens are
// for other services. Revocation is the caller's check, so revocation itself can find the token.
import { createLocalJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { checkUserAttributes, type UserAttributes } from '../../core/principal.js';
import { ACCESS_TOKEN_TYP, type ActorClaim } from '../issue.js';
import { SIGNING_ALGS } from '../signing-keys.js';
import { MAX_TOKEN_LENGTH } from '../verify.js';
import type { ResolvedDeps } from './deps.js';

/** The imported key set, kept until the published keys change (importing per call was a quarter of an introspection's cost). */
let cached: { kids: string; set: ReturnType<typeof createLocalJWKSet> } | undefined;
function keySetOf(jwks: { keys: { kid?: string }[] }): ReturnType<typeof createLocalJWKSet> {
  const kids = jwks.keys.map((k) => k.kid ?? '').join(',');
  if (cached?.kids !== kids) cached = { kids, set: createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]) }; // our own JWKS document
  return cached.set;
}

/** The claims of one of our access tokens, shapes checked. */
export interface OwnAccessToken {
  iss: string;
  sub: string;
  aud: string[];
  exp: number;
  iat: number;
  nbf?: number;
  jti: string;
  client_id: string;
  scope?: string;
  roles?: string[];
  attrs?: UserAttributes;
  act?: ActorClaim;
}

/** RFC 8693 §4.1 allows arbitrarily deep `act`; ours are built one hop at a time, so a bound keeps them sane. */
export const MAX_ACT_DEPTH = 8;

/** The token's claims when it is one of ours and unexpired; undefined for anything else. Never throws for bad input. */
export async function verifyOwnAccessToken(deps: ResolvedDeps, token: string): Promise<OwnAccessToken | undefined> {
  if (token.length === 0 || token.length > MAX_TOKEN_LENGTH || token.split('.').length !== 3) return undefined;
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, keySetOf(deps.keys.jwks()), {
      algorithms: [...SIGNING_ALGS],
      issuer: deps.issuer,
      typ: ACCESS_TOKEN_TYP,
      requiredClaims: ['sub', 'exp', 'iat', 'jti', 'client_id', 'aud'],
      currentDate: new Date(deps.clock.now()),
    }));
  } catch {
    return undefined; // not ours, tampered, expired, not yet valid: all the same to every caller
  }
  return toOwnClaims(payload);
}

function toOwnClaims(p: JWTPayload): OwnAccessToken | undefined {
  const str = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
  if (!str(p.sub) || !str(p.jti) || !str(p.client_id)) return undefined;
  const aud = typeof p.aud === 'string' ? [p.aud] : p.aud;
  if (!Array.isArray(aud) || aud.length === 0 || !aud.every(str)) return undefined;
  if (p.scope !== undefined && typeof p.scope !== 'string') return undefined;
  if (p.roles !== undefined && !(Array.isArray(p.roles) && p.roles.every((r) => typeof r === 'string'))) return undefined;
  if (p.attrs !== undefined && checkUserAttributes(p.attrs) !== undefined) return undefined;
  if (p.act !== undefined && !isActor(p.act, 1)) return undefined;
  return {
    iss: p.iss as string, // equal to our issuer, checked by jwtVerify
    sub: p.sub,
    aud,
    exp: p.exp as number, // required and numeric, checked by jwtVerify
    iat: p.iat as number, // required and numeric, checked by jwtVerify
    ...(typeof p.nbf === 'number' ? { nbf: p.nbf } : {}),
    jti: p.jti,
    client_id: p.client_id,
    ...(p.scope !== undefined ? { scope: p.scope } : {}),
    ...(p.roles !== undefined ? { roles: [...(p.roles as string[])] } : {}), // checked above: strings only
    ...(p.attrs !== undefined ? { attrs: p.attrs as UserAttributes } : {}), // checked by checkUserAttributes above
    ...(p.act !== undefined ? { act: p.act as ActorClaim } : {}), // checked by isActor
  };
}

function isActor(v: unknown, depth: number): boolean {
  if (depth > MAX_ACT_DEPTH || typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const a = v as Record<string, unknown>; // a non-null, non-array object
  if (typeof a.sub !== 'string' || a.sub.length === 0) return false;
  return a.act === undefined || isActor(a.act, depth + 1);
}
