// private_key_jwt client authentication (RFC 7523 §2.2 and §3, OpenID Connect Core §9): the client
// signs a short-lived JWT with its private key; we verify it with the public keys it registered.
// Checks, in order: shape and size; iss names a registered confidential client (and equals any
// client_id sent alongside); signature with an asymmetric alg; iss = sub = client_id; aud is us;
// exp present, not passed, at most 5 minutes ahead; jti present and never seen before.
import { createHash } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import type { Clock } from '../../core/clock.js';
import { NS, type Store } from '../../store/store.js';
import type { ClientLookup } from './client-registry.js';
import type { ConfidentialClient } from './clients.js';
import { OAuthError } from './errors.js';

/** RFC 7523 §2.2 client_assertion_type. */
export const JWT_BEARER_CLIENT_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** An assertion valid longer than this is refused: a stolen one must be useless soon. */
export const MAX_ASSERTION_LIFETIME_SEC = 300;
/** Accepted skew between the client's clock and ours for exp / nbf / iat. */
const CLOCK_SKEW_SEC = 30;
const MAX_ASSERTION_LENGTH = 8192;
const MAX_JTI_LENGTH = 256;
/** Asymmetric only: the client registered public keys; `none` and HMAC can never verify here. */
export const ASSERTION_ALGORITHMS: readonly string[] = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
const PURGE_INTERVAL_MS = 600_000;

/** Assertion ids seen (NS.clientAssertions), each kept until its assertion's exp: replay is refused. */
export class SeenAssertions {
  private lastPurge: number;

  constructor(private readonly store: Store, private readonly clock: Clock) {
    this.lastPurge = clock.now();
  }

  /** True the first time a (client, jti) pair is seen; false for a replay. */
  async firstUse(clientId: string, jti: string, expSec: number): Promise<boolean> {
    const now = this.clock.now();
    if (now - this.lastPurge >= PURGE_INTERVAL_MS) {
      this.lastPurge = now;
      await this.purgeExpired();
    }
    const key = `${clientId}:${createHash('sha256').update(jti, 'utf8').digest('base64url')}`;
    // insert is create-only: of two concurrent requests with the same assertion, one wins.
    return this.store.insert(NS.clientAssertions, key, { exp: expSec });
  }

  /** Deletes entries whose assertion has expired (and so could not be replayed anyway). */
  async purgeExpired(): Promise<number> {
    const now = Math.floor(this.clock.now() / 1000);
    let n = 0;
    for (const { key, value } of await this.store.list<{ exp: number }>(NS.clientAssertions)) {
      if (value.exp + CLOCK_SKEW_SEC >= now) continue;
      await this.store.delete(NS.clientAssertions, key);
      n++;
    }
    return n;
  }
}

export interface AssertionContext {
  clients: ClientLookup;
  /** Accepted `aud` values: the issuer identifier and the token endpoint URL (RFC 7523 §3 item 3). */
  audiences: readonly string[];
  clock: Clock;
  seen: SeenAssertions;
}

/** The confidential client the assertion authenticates; `invalid_client` for anything else. */
export async function verifyClientAssertion(c: AssertionContext, assertion: string, claimedClientId: string | null): Promise<ConfidentialClient> {
  const refuse = (why: string, cause?: unknown): OAuthError =>
    new OAuthError('PCL_ERR_OAUTH_INVALID_CLIENT', 'client assertion invalid', { cause: cause ?? new Error(why) });
  if (assertion.length > MAX_ASSERTION_LENGTH) throw refuse('assertion too long');
  let unverified: JWTPayload;
  try {
    unverified = decodeJwt(assertion);
  } catch (err) {
    throw refuse('assertion is not a JWT', err);
  }
  // iss only picks the keys to verify with; nothing else from the unverified payload is used.
  const clientId = unverified.iss;
  if (typeof clientId !== 'string') throw refuse('assertion has no iss');
  if (claimedClientId !== null && claimedClientId !== clientId) throw refuse('client_id differs from the assertion iss');
  const client = await c.clients.get(clientId);
  if (!client || client.type !== 'confidential') throw refuse('iss is not a registered confidential client');
  // A client registered for tls_client_auth has no keys: it may not switch methods.
  const jwks = client.authMethod === 'tls_client_auth' ? undefined : client.jwks;
  if (!jwks) throw refuse('iss is not registered for private_key_jwt');

  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(assertion, createLocalJWKSet(jwks), {
      algorithms: [...ASSERTION_ALGORITHMS],
      issuer: clientId,
      subject: clientId,
      audience: [...c.audiences],
      requiredClaims: ['exp', 'jti'],
      clockTolerance: CLOCK_SKEW_SEC,
      currentDate: new Date(c.clock.now()),
    }));
  } catch (err) {
    throw refuse('assertion does not verify', err);
  }
  // Only us as the audience (draft-ietf-oauth-rfc7523bis): an assertion also valid elsewhere could be replayed here.
  if (Array.isArray(payload.aud) && payload.aud.length !== 1) throw refuse('assertion aud names more than one audience');
  const nowSec = Math.floor(c.clock.now() / 1000);
  const exp = payload.exp as number; // required and numeric, checked by jwtVerify
  if (exp > nowSec + MAX_ASSERTION_LIFETIME_SEC + CLOCK_SKEW_SEC) throw refuse(`assertion valid for more than ${MAX_ASSERTION_LIFETIME_SEC} s`);
  const jti = payload.jti;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) throw refuse('assertion jti is not a 1-256 character string');
  if (!(await c.seen.firstUse(clientId, jti, exp))) throw refuse('assertion jti already used (replay)');
  return client;
}
