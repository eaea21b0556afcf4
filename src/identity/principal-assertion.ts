// The end user the gateway authenticated, as the service behind a sidecar receives it: a compact
// JWS (ES256) signed with the gateway's own SVID key, its certificate chain in `x5c`, addressed to
// one service (`aud` = that service's SPIFFE ID) and valid for a minute. The sidecar checks it
// before it authorizes the call, and the SDK checks it again in the service, so a process that
// reaches the service's loopback port cannot name a user: it would need the gateway's key.
//
// Cost: signing is cached per (service, principal) for most of the assertion's life, and both
// checkers cache verified assertions, so the hot path pays a map lookup; only a new user, a new
// service or a renewed gateway certificate costs an ECDSA operation. Any JOSE library verifies
// the format (RFC 7515 with `x5c`), for services written without the SDK.
import { createPrivateKey, sign as cryptoSign, verify as cryptoVerify, X509Certificate, type KeyObject } from 'node:crypto';
import { checkUserAttributes, type Principal } from '../core/principal.js';
import { PortcullisError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import { parseAnchors, parsePemChain, verifySvidChain, MAX_SVID_CHAIN, type SvidChain } from './svid-chain.js';

export const PRINCIPAL_ASSERTION_TYP = 'pcl-principal+jwt';
/** How long an assertion is valid; the signer reuses one for its first half only. */
export const PRINCIPAL_ASSERTION_TTL_MS = 60_000;
/** Clock difference tolerated between the gateway and the checkers (seconds). */
const SKEW_S = 5;
const MAX_ASSERTION_CHARS = 16_384;
const CACHE_ENTRIES = 10_000;

export interface SignerCredentials {
  spiffeId: string;
  keyPem: string;
  /** The SVID chain, leaf first (PEM). */
  chainPem: string;
}

const b64url = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');

interface Signed { jws: string; reuseUntilMs: number }

/**
 * Makes assertions with the gateway's current SVID; `credentials` is asked on every call, so a
 * renewal is picked up at once. Remembered per principal object (the verified-token cache hands
 * out the same claims for the same token) and, for principals built afresh, per content.
 */
export class PrincipalAssertionSigner {
  private keyFor = { pem: '', key: undefined as KeyObject | undefined, header: '' };
  private byObject = new WeakMap<Principal, Map<string, Signed>>();
  private readonly byContent = new Map<string, Signed>();

  constructor(private readonly credentials: () => SignerCredentials, private readonly clock: Clock = systemClock) {}

  /** An assertion that `principal` was authenticated, for the service `audience` (a SPIFFE ID). */
  sign(principal: Principal, audience: string): string {
    const now = this.clock.now();
    const creds = this.credentials();
    if (this.keyFor.pem !== creds.keyPem) this.useKey(creds);
    let mine = this.byObject.get(principal);
    const hit = mine?.get(audience);
    if (hit && hit.reuseUntilMs > now) return hit.jws;
    const contentKey = `${audience}\n${JSON.stringify(principal)}`;
    let signed = this.byContent.get(contentKey);
    if (!signed || signed.reuseUntilMs <= now) {
      signed = { jws: this.signNew(creds.spiffeId, principal, audience, now), reuseUntilMs: now + PRINCIPAL_ASSERTION_TTL_MS / 2 };
      if (this.byContent.size >= CACHE_ENTRIES) this.byContent.clear(); // bounded; refilled at the cost of one signature per user
      this.byContent.set(contentKey, signed);
    }
    if (!mine) this.byObject.set(principal, mine = new Map());
    mine.set(audience, signed);
    return signed.jws;
  }

  /** A renewed certificate: its key signs from now on, and nothing signed with the old one is handed out. */
  private useKey(creds: SignerCredentials): void {
    const certs = parsePemChain(creds.chainPem);
    if (typeof certs === 'string') throw new PortcullisError('PCL_ERR_INTERNAL', `gateway SVID: ${certs}`);
    const key = createPrivateKey(creds.keyPem);
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new PortcullisError('PCL_ERR_INTERNAL', 'gateway SVID key is not ECDSA P-256');
    const header = { alg: 'ES256', typ: PRINCIPAL_ASSERTION_TYP, x5c: certs.map((c) => c.raw.toString('base64')) };
    this.keyFor = { pem: creds.keyPem, key, header: b64url(JSON.stringify(header)) };
    this.byObject = new WeakMap();
    this.byContent.clear();
  }

  private signNew(issuer: string, principal: Principal, audience: string, now: number): string {
    const iat = Math.floor(now / 1000);
    const payload = {
      iss: issuer, aud: audience, iat, exp: iat + PRINCIPAL_ASSERTION_TTL_MS / 1000,
      sub: principal.sub, roles: principal.roles,
      ...(principal.attrs ? { attrs: principal.attrs } : {}),
      ...(principal.clientId ? { client_id: principal.clientId } : {}),
      ...(principal.iss ? { user_iss: principal.iss } : {}),
    };
    const input = `${this.keyFor.header}.${b64url(JSON.stringify(payload))}`;
    const sig = cryptoSign('sha256', Buffer.from(input), { key: this.keyFor.key!, dsaEncoding: 'ieee-p1363' });
    return `${input}.${sig.toString('base64url')}`;
  }
}

export interface PrincipalAssertionVerifierOptions {
  /** The SPIFFE ID an assertion must be addressed to: this service's. */
  audience: string;
  /** The SPIFFE ID that must have signed it: the gateway's. */
  issuer: string;
  /** The current trust bundle (PEM); asked on every check, re-parsed only when it changes. */
  trustBundlePem: () => string;
  clock?: Clock;
}

function refuse(why: string): PortcullisError {
  return new PortcullisError('PCL_ERR_PRINCIPAL_ASSERTION', `principal assertion refused: ${why}`);
}

function parsePart(part: string | undefined, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(part ?? '', 'base64url').toString('utf8'));
  } catch {
    throw refuse(`${what} is not base64url JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw refuse(`${what} is not an object`);
  return v as Record<string, unknown>;
}

/** Checks assertions for one service; verified ones are remembered until they expire. */
export class PrincipalAssertionVerifier {
  private readonly clock: Clock;
  private anchors = { pem: '', certs: [] as X509Certificate[] };
  private readonly chains = new Map<string, SvidChain | string>();
  private readonly verified = new Map<string, { principal: Principal; expMs: number }>();

  constructor(private readonly o: PrincipalAssertionVerifierOptions) {
    this.clock = o.clock ?? systemClock;
  }

  /** The principal the assertion carries; throws `PCL_ERR_PRINCIPAL_ASSERTION` when it is not one we can trust now. */
  verify(jws: string): Principal {
    const now = this.clock.now();
    const bundle = this.o.trustBundlePem();
    if (bundle !== this.anchors.pem) {
      this.anchors = { pem: bundle, certs: parseAnchors(bundle) };
      this.chains.clear();
      this.verified.clear(); // a rotated-out CA must not keep vouching through the cache
    }
    const hit = this.verified.get(jws);
    if (hit && hit.expMs > now) return hit.principal;
    if (jws.length > MAX_ASSERTION_CHARS) throw refuse('too long');
    const parts = jws.split('.');
    if (parts.length !== 3) throw refuse('not a compact JWS');
    const [h, p, s] = parts as [string, string, string];
    const header = parsePart(h, 'header');
    if (header.alg !== 'ES256' || header.typ !== PRINCIPAL_ASSERTION_TYP) throw refuse('wrong alg or typ');
    const x5c = header.x5c;
    if (!Array.isArray(x5c) || x5c.length < 1 || x5c.length > MAX_SVID_CHAIN || !x5c.every((c) => typeof c === 'string')) throw refuse('x5c must hold the signer chain');
    const chain = this.chainOf(x5c as string[]);
    if (typeof chain === 'string') throw refuse(chain);
    if (chain.id !== this.o.issuer) throw refuse(`signed by ${chain.id}, not by the gateway`);
    if (!(now >= chain.notBefore - SKEW_S * 1000 && now <= chain.notAfter)) throw refuse('signer certificate not valid now');
    const sig = Buffer.from(s, 'base64url');
    if (!cryptoVerify('sha256', Buffer.from(`${h}.${p}`), { key: chain.key, dsaEncoding: 'ieee-p1363' }, sig)) throw refuse('signature does not verify');
    const c = parsePart(p, 'payload');
    if (c.iss !== chain.id) throw refuse('iss is not the signer');
    if (c.aud !== this.o.audience) throw refuse('addressed to another service');
    const nowS = now / 1000;
    if (typeof c.exp !== 'number' || typeof c.iat !== 'number' || c.exp <= nowS - SKEW_S || c.iat > nowS + SKEW_S || c.exp - c.iat > PRINCIPAL_ASSERTION_TTL_MS / 1000) {
      throw refuse('expired or not yet valid');
    }
    const principal = principalFromClaims(c);
    if (!principal) throw refuse('malformed principal');
    if (this.verified.size >= CACHE_ENTRIES) this.verified.clear();
    this.verified.set(jws, { principal, expMs: Math.min(c.exp * 1000 + SKEW_S * 1000, chain.notAfter) });
    return principal;
  }

  private chainOf(x5c: string[]): SvidChain | string {
    const key = x5c.join('.');
    let chain = this.chains.get(key);
    if (chain === undefined) {
      try {
        chain = verifySvidChain(x5c.map((c) => new X509Certificate(Buffer.from(c, 'base64'))), this.anchors.certs);
      } catch {
        chain = 'x5c cannot be parsed';
      }
      if (this.chains.size >= 64) this.chains.clear(); // a few gateway certificates at a time
      this.chains.set(key, chain);
    }
    return chain;
  }
}

function principalFromClaims(c: Record<string, unknown>): Principal | undefined {
  if (typeof c.sub !== 'string' || c.sub.length === 0 || c.sub.length > 256) return undefined;
  if (!Array.isArray(c.roles) || c.roles.length > 64 || !c.roles.every((r) => typeof r === 'string')) return undefined;
  if (c.attrs !== undefined && checkUserAttributes(c.attrs) !== undefined) return undefined;
  if (c.client_id !== undefined && typeof c.client_id !== 'string') return undefined;
  if (c.user_iss !== undefined && typeof c.user_iss !== 'string') return undefined;
  return {
    sub: c.sub, roles: c.roles as string[],
    ...(c.attrs !== undefined ? { attrs: c.attrs as Principal['attrs'] & object } : {}),
    ...(typeof c.client_id === 'string' ? { clientId: c.client_id } : {}),
    ...(typeof c.user_iss === 'string' ? { iss: c.user_iss } : {}),
  };
}
