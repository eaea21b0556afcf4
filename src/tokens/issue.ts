// Access tokens in the RFC 9068 JWT profile: header typ "at+jwt", claims iss, sub, aud, exp, iat,
// nbf, jti, client_id, plus scope and roles when there are any.
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import type { UserAttributes } from '../core/principal.js';
import type { SigningKeys } from './signing-keys.js';

export const ACCESS_TOKEN_TYP = 'at+jwt';

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
  /** Lifetime in whole seconds. */
  ttlSec: number;
  clock?: Clock;
}

export interface IssuedAccessToken {
  token: string;
  expiresIn: number;
  jti: string;
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
  return { token, expiresIn: c.ttlSec, jti };
}
