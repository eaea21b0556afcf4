// Access-token verification for the data plane (every request passes here). Order, fixed and tested:
//   1. cheap pre-checks, no crypto: size cap, three base64url segments, header JSON, alg allowed;
//   2. signature (jose, key from the local JWKS by kid);
//   3. claims: typ, iss, aud, nbf, exp, then the RFC 9068 required claims and our own shapes.
// Every failure maps to exactly one PCL_ERR_TOKEN_* code; no message ever contains the token.
import { hash as digest } from 'node:crypto';
import { createLocalJWKSet, errors, jwtVerify, type JWK, type JWTPayload } from 'jose';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError, type ErrorCode } from '../core/errors.js';
import { ACCESS_TOKEN_TYP } from './issue.js';
import { checkUserAttributes, type UserAttributes } from '../core/principal.js';

/** Claims of a verified access token (RFC 9068 names); `roles` is [] when the token has none. */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  nbf?: number;
  jti: string;
  client_id: string;
  scope?: string;
  roles: string[];
  /** User attributes (policy input); absent when the token has none. */
  attrs?: UserAttributes;
  /**
   * Confirmation (RFC 7800): the key the token is bound to. `x5t#S256`: a TLS client certificate
   * (RFC 8705 §3); `jkt`: a DPoP key (RFC 9449 §6). Present but empty when the token names only
   * methods we do not support, so that the data plane refuses it instead of treating it as a
   * bearer token. Absent: a bearer token.
   */
  cnf?: TokenConfirmation;
}

/** The `cnf` members the data plane can check; each a base64url SHA-256 (43 characters). */
export interface TokenConfirmation {
  'x5t#S256'?: string;
  jkt?: string;
}

export interface AccessTokenVerifierOptions {
  jwks: { keys: JWK[] };
  issuer: string;
  audience: string;
  clock?: Clock;
  /** Accepted clock skew for exp/nbf, in seconds. Default 30. */
  clockSkewSec?: number;
  /** Accepted JWS algorithms; asymmetric only. Default ['ES256']. */
  algorithms?: string[];
  /**
   * Verified tokens remembered, keyed by the SHA-256 of the token (never the token), so a token seen
   * again skips the signature check; 0 turns the cache off. Default 10,000. An entry is used only
   * until the token's `exp`, is dropped when the key set changes, and `isRevoked` is asked on every
   * call, cached or not.
   */
  cacheSize?: number;
  /** Revocation check on the verified claims (e.g. a revoked `jti` or client); true refuses the token. */
  isRevoked?: (claims: AccessTokenClaims) => boolean;
  /**
   * `at+jwt` (default): RFC 9068 access tokens as our token service issues them (typ, jti,
   * client_id required). `jwt`: tokens of an external issuer in the plain JWT profile (any typ,
   * jti and client_id optional) — signature, iss, aud, exp and nbf are checked all the same.
   */
  profile?: 'at+jwt' | 'jwt';
  /** Claim holding the roles: an array of strings, or one string. Default `roles`. */
  rolesClaim?: string;
}

export interface AccessTokenVerifier {
  verify(token: string): Promise<AccessTokenClaims>;
  /** Replaces the key set (a new snapshot); tokens are checked against it from the next call on. */
  setJwks(jwks: { keys: JWK[] }): void;
}

/** Far above any token we issue (~1 KiB) and below anything that could hurt to parse. */
export const MAX_TOKEN_LENGTH = 8192;
const DEFAULT_CACHE_SIZE = 10_000;
const DEFAULT_CLOCK_SKEW_SEC = 30;
const DEFAULT_ALGORITHMS = ['ES256'];
/** Signature algorithms a public JWKS can verify; `none` and the HMAC family can never be allowed. */
const ASYMMETRIC = new Set(['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);
/** RFC 9068 §2.2 required claims (iss and aud are required through the issuer/audience options). */
const REQUIRED_CLAIMS = ['sub', 'exp', 'iat', 'jti', 'client_id'];
const B64URL = /^[A-Za-z0-9_-]+$/;
const B64URL_OR_EMPTY = /^[A-Za-z0-9_-]*$/;

export function createAccessTokenVerifier(o: AccessTokenVerifierOptions): AccessTokenVerifier {
  const algorithms = o.algorithms ?? DEFAULT_ALGORITHMS;
  const bad = algorithms.filter((a) => !ASYMMETRIC.has(a));
  if (algorithms.length === 0 || bad.length > 0) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `algorithms must be asymmetric JWS algorithms; refused: ${bad.join(', ') || '(empty list)'}`);
  }
  const allowed = new Set(algorithms);
  const clockSkewSec = o.clockSkewSec ?? DEFAULT_CLOCK_SKEW_SEC;
  if (!Number.isFinite(clockSkewSec) || clockSkewSec < 0) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'clockSkewSec must be a non-negative number');
  }
  if (!o.issuer || !o.audience) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'issuer and audience are required');
  const clock = o.clock ?? systemClock;
  let keySet = toKeySet(o.jwks);
  const cacheSize = o.cacheSize ?? DEFAULT_CACHE_SIZE;
  const profile = o.profile ?? 'at+jwt';
  const rolesClaim = o.rolesClaim ?? 'roles';
  const cache = new Map<string, Readonly<AccessTokenClaims>>();
  const checked = (claims: Readonly<AccessTokenClaims>): AccessTokenClaims => {
    if (o.isRevoked?.(claims)) throw fail('PCL_ERR_TOKEN_REVOKED', 'revoked');
    return claims;
  };

  return {
    setJwks(jwks) {
      keySet = toKeySet(jwks);
      cache.clear(); // a key taken out of the set must stop vouching for its tokens at once
    },

    async verify(token) {
      let key: string | undefined;
      if (cacheSize > 0 && typeof token === 'string' && token.length <= MAX_TOKEN_LENGTH) {
        key = digest('sha256', token, 'base64url'); // one-shot: half the cost of createHash()
        const hit = cache.get(key);
        if (hit) {
          // exp as jwtVerify would judge it now (same skew); an expired entry is dropped and re-verified (and refused).
          if (hit.exp + clockSkewSec > clock.now() / 1000) return checked(hit);
          cache.delete(key);
        }
      }
      preCheck(token, allowed);
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keySet, {
          algorithms,
          issuer: o.issuer,
          audience: o.audience,
          ...(profile === 'at+jwt' ? { typ: ACCESS_TOKEN_TYP } : {}),
          requiredClaims: profile === 'at+jwt' ? REQUIRED_CLAIMS : ['sub', 'exp'],
          clockTolerance: clockSkewSec,
          currentDate: new Date(clock.now()),
        }));
      } catch (err) {
        throw mapJoseError(err);
      }
      const claims = toClaims(payload, profile, rolesClaim);
      Object.freeze(claims.roles);
      Object.freeze(claims);
      if (key !== undefined) {
        if (cache.size >= cacheSize) cache.delete(cache.keys().next().value as string); // the oldest entry; the map is not empty here
        cache.set(key, claims);
      }
      return checked(claims);
    },
  };
}

function toKeySet(jwks: { keys: JWK[] }): ReturnType<typeof createLocalJWKSet> {
  if (!jwks || !Array.isArray(jwks.keys)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'jwks must be { keys: JWK[] }');
  // A private or symmetric member in a verification key set is a configuration mistake, not a key.
  for (const k of jwks.keys) {
    if ('d' in k || 'k' in k || k.kty === 'oct') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'jwks must contain public keys only');
  }
  try {
    return createLocalJWKSet(jwks);
  } catch (err) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'jwks is not a valid JSON Web Key Set', { cause: err });
  }
}

function fail(code: ErrorCode, detail: string, cause?: unknown): PortcullisError {
  return new PortcullisError(code, `access token refused: ${detail}`, cause === undefined ? undefined : { cause });
}

/** Refuses what is obviously not one of our tokens before any crypto or JSON parsing of claims. */
function preCheck(token: unknown, allowed: Set<string>): void {
  if (typeof token !== 'string' || token.length === 0) throw fail('PCL_ERR_TOKEN_MALFORMED', 'empty or not a string');
  if (token.length > MAX_TOKEN_LENGTH) throw fail('PCL_ERR_TOKEN_MALFORMED', `longer than ${MAX_TOKEN_LENGTH} characters`);
  const parts = token.split('.');
  if (parts.length !== 3) throw fail('PCL_ERR_TOKEN_MALFORMED', 'not a compact JWS (three segments)');
  const [h, p, s] = parts as [string, string, string]; // length checked on the line above
  // The signature may be empty here so that an unsigned `alg: none` token is reported as an alg error.
  if (!B64URL.test(h) || !B64URL.test(p) || !B64URL_OR_EMPTY.test(s)) throw fail('PCL_ERR_TOKEN_MALFORMED', 'segment is not base64url');
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
  } catch (err) {
    throw fail('PCL_ERR_TOKEN_MALFORMED', 'header is not JSON', err);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw fail('PCL_ERR_TOKEN_MALFORMED', 'header is not a JSON object');
  const alg: unknown = (header as Record<string, unknown>).alg; // narrowed to a non-null, non-array object just above
  if (typeof alg !== 'string') throw fail('PCL_ERR_TOKEN_MALFORMED', 'header has no alg');
  if (!allowed.has(alg)) throw fail('PCL_ERR_TOKEN_ALG', `alg ${JSON.stringify(alg.slice(0, 32))} not allowed`);
}

function mapJoseError(err: unknown): PortcullisError {
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) return fail('PCL_ERR_TOKEN_ALG', 'alg not allowed', err);
  if (err instanceof errors.JWSSignatureVerificationFailed) return fail('PCL_ERR_TOKEN_SIGNATURE', 'signature does not verify', err);
  if (err instanceof errors.JWKSNoMatchingKey) return fail('PCL_ERR_TOKEN_SIGNATURE', 'no key in the JWKS for this kid/alg', err);
  if (err instanceof errors.JWKSMultipleMatchingKeys) return fail('PCL_ERR_TOKEN_SIGNATURE', 'several keys match and the token names no kid', err);
  if (err instanceof errors.JWTExpired) return fail('PCL_ERR_TOKEN_EXPIRED', 'expired', err);
  if (err instanceof errors.JWTClaimValidationFailed) {
    // Only reached after the signature verified (jose validates claims after the signature).
    switch (err.claim) {
      case 'iss': return fail('PCL_ERR_TOKEN_ISSUER', `iss ${err.reason}`, err);
      case 'aud': return fail('PCL_ERR_TOKEN_AUDIENCE', `aud ${err.reason}`, err);
      case 'nbf': return err.reason === 'check_failed'
        ? fail('PCL_ERR_TOKEN_NOT_YET_VALID', 'not valid yet (nbf)', err)
        : fail('PCL_ERR_TOKEN_CLAIMS', `nbf ${err.reason}`, err);
      default: return fail('PCL_ERR_TOKEN_CLAIMS', `${err.claim} ${err.reason}`, err);
    }
  }
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return fail('PCL_ERR_TOKEN_MALFORMED', 'not a valid JWS/JWT', err);
  // Anything else (a key that will not import, a runtime error) still refuses the token.
  return fail('PCL_ERR_TOKEN_MALFORMED', 'cannot be processed', err);
}

/** Checks the shapes jose does not: every claim we hand on has the type the data plane relies on. */
function toClaims(p: JWTPayload, profile: 'at+jwt' | 'jwt', rolesClaim: string): AccessTokenClaims {
  const str = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
  if (!str(p.sub)) throw fail('PCL_ERR_TOKEN_CLAIMS', 'sub is not a non-empty string');
  // The plain JWT profile of an external issuer may omit jti and client_id; what is there must be well formed.
  const strict = profile === 'at+jwt';
  if ((strict || p.jti !== undefined) && !str(p.jti)) throw fail('PCL_ERR_TOKEN_CLAIMS', 'jti is not a non-empty string');
  if ((strict || p.client_id !== undefined) && !str(p.client_id)) throw fail('PCL_ERR_TOKEN_CLAIMS', 'client_id is not a non-empty string');
  if (p.scope !== undefined && typeof p.scope !== 'string') throw fail('PCL_ERR_TOKEN_CLAIMS', 'scope is not a string');
  const rawRoles: unknown = p[rolesClaim] ?? [];
  // External issuers often carry one role as a string; our own tokens always carry an array.
  const roles: unknown = !strict && typeof rawRoles === 'string' ? [rawRoles] : rawRoles;
  if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string')) throw fail('PCL_ERR_TOKEN_CLAIMS', 'roles is not an array of strings');
  // iss, aud, exp, iat and nbf were type-checked by jwtVerify (issuer/audience options, numeric dates).
  const claims: AccessTokenClaims = {
    iss: p.iss as string, // equal to the configured issuer, checked by jwtVerify
    sub: p.sub,
    aud: p.aud as string | string[], // contains the configured audience, checked by jwtVerify
    exp: p.exp as number, // required and numeric, checked by jwtVerify
    iat: p.iat as number, // required and numeric, checked by jwtVerify
    jti: p.jti ?? '',
    client_id: p.client_id ?? '',
    roles: [...(roles as string[])], // every element checked to be a string above
  };
  if (p.attrs !== undefined) {
    const bad = checkUserAttributes(p.attrs);
    if (bad) throw fail('PCL_ERR_TOKEN_CLAIMS', `attrs: ${bad}`);
    claims.attrs = p.attrs as UserAttributes; // checked just above
  }
  if (p.nbf !== undefined) claims.nbf = p.nbf;
  if (p.scope !== undefined) claims.scope = p.scope;
  if (p.cnf !== undefined) claims.cnf = parseConfirmation(p.cnf);
  return claims;
}

const SHA256_B64URL = /^[A-Za-z0-9_-]{43}$/;

/**
 * A `cnf` claim's supported members, shapes checked and frozen; other members leave an (empty)
 * object behind. Throws PCL_ERR_TOKEN_CLAIMS for a malformed one. Also used for introspection answers.
 */
export function parseConfirmation(cnf: unknown): TokenConfirmation {
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) throw fail('PCL_ERR_TOKEN_CLAIMS', 'cnf is not a JSON object');
  const c = cnf as Record<string, unknown>; // narrowed to a non-null, non-array object just above
  const out: TokenConfirmation = {};
  for (const name of ['x5t#S256', 'jkt'] as const) {
    const v = c[name];
    if (v === undefined) continue;
    if (typeof v !== 'string' || !SHA256_B64URL.test(v)) throw fail('PCL_ERR_TOKEN_CLAIMS', `cnf.${name} is not a base64url SHA-256 digest`);
    out[name] = v;
  }
  return Object.freeze(out);
}
