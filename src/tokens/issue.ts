// Access tokens in the RFC 9068 JWT profile: header typ "at+jwt", claims iss, sub, aud, exp, iat,
// nbf, jti, client_id, plus scope, roles, attrs and act (RFC 8693 §4.1) when there are any.
import { KeyObject, randomFillSync, sign as cryptoSign } from 'node:crypto';
import type { CryptoKey } from 'jose';
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

const keyObjects = new WeakMap<CryptoKey, KeyObject>();

/**
 * 128-bit token ids from a pool filled 256 ids at a time: one CSPRNG call instead of one per token
 * (a randomBytes(16) per token cost 4 µs, as much as the rest of the claims). Each byte is used once,
 * as Node's own randomUUID() cache does.
 */
const jtiPool = Buffer.alloc(16 * 256);
let jtiNext = jtiPool.length;
function newJti(): string {
  if (jtiNext === jtiPool.length) {
    randomFillSync(jtiPool);
    jtiNext = 0;
  }
  const jti = jtiPool.toString('base64url', jtiNext, jtiNext + 16);
  jtiNext += 16;
  return jti;
}

/**
 * RFC 7515 compact serialization, signed with node:crypto's one-shot `sign` (ES256: IEEE P1363
 * r‖s as JWS requires; EdDSA: Ed25519). jose's SignJWT goes through WebCrypto, twice the cost per
 * token on this path; verification stays with jose everywhere (tests verify every issued token).
 */
function signCompactJws(header: { alg: string; typ: string; kid: string }, payload: Record<string, unknown>, key: CryptoKey): string {
  let k = keyObjects.get(key);
  if (!k) keyObjects.set(key, k = KeyObject.from(key));
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const signature = header.alg === 'EdDSA'
    ? cryptoSign(null, Buffer.from(input), k)
    : cryptoSign('sha256', Buffer.from(input), { key: k, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
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
  const jti = newJti();
  const claims: Record<string, unknown> = { client_id: c.clientId };
  if (c.scope !== undefined && c.scope !== '') claims.scope = c.scope;
  if (c.roles !== undefined) claims.roles = [...c.roles];
  if (c.attrs !== undefined && Object.keys(c.attrs).length > 0) claims.attrs = structuredClone(c.attrs);
  if (c.act !== undefined) claims.act = structuredClone(c.act);
  const payload = { ...claims, iss: c.issuer, sub: c.subject, aud: c.audience, iat: now, nbf: now, exp: now + c.ttlSec, jti };
  const token = signCompactJws({ alg, typ: ACCESS_TOKEN_TYP, kid }, payload, key);
  return { token, expiresIn: c.ttlSec, jti, exp: now + c.ttlSec };
}
