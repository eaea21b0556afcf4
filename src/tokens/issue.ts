// Access tokens in the RFC 9068 JWT profile: header typ "at+jwt", claims iss, sub, aud, exp, iat,
// nbf, jti, client_id, plus scope, roles, attrs and act (RFC 8693 §4.1) when there are any.
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import type { UserAttributes } from '../core/principal.js';
import type { SigningKeys } from './signing-keys.js';

export const ACCESS_TOKEN_TYP = 'at+jwt';

/** RFC 8693 §4.1 `act`: the party acting for the subject; `act.act` is the one before it in a chain. */
export interface ActorClaim {
  sub: string;
  act?: ActorClaim;
}

export interface AccessTokenRequest {
  issuer: string;
  audience: string | string[];
  subject: string;
  clientId: string;
  roles?: string[];
  /** The user's attributes (policy input), as the `attrs` claim when there are any. */
  attrs?: UserAttributes;
  /** Space-separated scope values (RFC 6749 §3.3). */
  scope?: string;
  /** The actor (token exchange): the token is for `subject`, used by `act.sub`. */
  act?: ActorClaim;
  /** Lifetime in whole seconds. */
  ttlSec: number;
  clock?: Clock;
}

export interface IssuedAccessToken {
  token: string;
  expiresIn: number;
  jti: string;
  /** The `exp` claim, epoch seconds (what a revocation of this token needs). */
  exp: number;
}

export async function issueAccessToken(keys: SigningKeys, c: AccessTokenRequest): Promise<IssuedAccessToken> {
  if (!Number.isSafeInteger(c.ttlSec) || c.ttlSec <= 0) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'ttlSec must be a positive whole number of seconds');
  }
  if (!c.subject || !c.clientId || !c.issuer) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'issuer, subject and clientId are required');
  }
  const { kid, alg, key } = keys.current();
  const now = Math.floor((c.clock ?? systemClock).now() / 1000);
  const jti = randomBytes(16).toString('base64url');
  const claims: Record<string, unknown> = { client_id: c.clientId };
  if (c.scope !== undefined && c.scope !== '') claims.scope = c.scope;
  if (c.roles !== undefined) claims.roles = [...c.roles];
  if (c.attrs !== undefined && Object.keys(c.attrs).length > 0) claims.attrs = structuredClone(c.attrs);
  if (c.act !== undefined) claims.act = structuredClone(c.act);
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg, typ: ACCESS_TOKEN_TYP, kid })
    .setIssuer(c.issuer)
    .setSubject(c.subject)
    .setAudience(c.audience)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + c.ttlSec)
    .setJti(jti)
    .sign(key);
  return { token, expiresIn: c.ttlSec, jti, exp: now + c.ttlSec };
}
