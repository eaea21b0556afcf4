// DPoP proofs at a protected resource (RFC 9449 §4.3 and §7.1): for `Authorization: DPoP <token>`,
// the `DPoP` header must hold a fresh JWS, signed by the key the token is bound to (`cnf.jkt`), for
// this very request (method and URL), this very token (`ath`), and never seen before (`jti`).
// jose does the JWS work; every refusal is PCL_ERR_DPOP_INVALID (401), which the gateway answers
// with `WWW-Authenticate: DPoP error="invalid_dpop_proof"`. No message contains the proof or token.
import { createHash, timingSafeEqual } from 'node:crypto';
import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify, type JWK, type JWTPayload } from 'jose';
import { systemClock, type Clock } from '../../core/clock.js';
import { PortcullisError } from '../../core/errors.js';

/** RFC 9449 §4.2: the proof's `typ`. */
export const DPOP_TYP = 'dpop+jwt';
/** Default accepted proof algorithms; asymmetric only (RFC 9449 §4.3 check 5). */
export const DEFAULT_DPOP_ALGORITHMS: readonly string[] = ['ES256', 'EdDSA'];
/** Proofs with `iat` further than this from the clock are refused (seconds). */
export const DEFAULT_IAT_WINDOW_SEC = 60;
/** A proof with a P-256 or Ed25519 key is ~600 characters; anything near this is not one. */
const MAX_PROOF_LENGTH = 4096;
const MAX_JTI_LENGTH = 256;
const ASYMMETRIC = new Set(['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

const refuse = (why: string, cause?: unknown): PortcullisError =>
  new PortcullisError('PCL_ERR_DPOP_INVALID', `DPoP proof refused: ${why}`, cause === undefined ? undefined : { cause });

/**
 * Remembers proof ids until they could no longer be accepted anyway. Shared by gateway replicas
 * only if an implementation shares it (the memory one does not: see docs/authentication.md).
 */
export interface ReplayCache {
  /**
   * Records `key` until `untilMs`; false when it is already recorded (a replay). May throw
   * PCL_ERR_DPOP_INVALID when it cannot record (full): a proof that cannot be checked is refused.
   */
  claim(key: string, untilMs: number): boolean | Promise<boolean>;
}

export interface MemoryReplayCacheOptions {
  /** Most ids remembered at once; default 100,000 (~10 MiB). When full of live ids, new proofs are refused. */
  maxEntries?: number;
  clock?: Clock;
}

/** An in-process replay cache: bounded, each id kept only until its proof's `iat` window ends. */
export class MemoryReplayCache implements ReplayCache {
  private readonly seen = new Map<string, number>();
  private readonly maxEntries: number;
  private readonly clock: Clock;
  private lastFullSweep = -Infinity;

  constructor(o: MemoryReplayCacheOptions = {}) {
    this.maxEntries = o.maxEntries ?? 100_000;
    if (!Number.isSafeInteger(this.maxEntries) || this.maxEntries < 1) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'maxEntries must be a positive integer');
    this.clock = o.clock ?? systemClock;
  }

  claim(key: string, untilMs: number): boolean {
    const now = this.clock.now();
    const known = this.seen.get(key);
    if (known !== undefined && known > now) return false;
    if (known !== undefined) this.seen.delete(key);
    // Expiries roughly follow insertion order: drop expired ids from the front, cheaply, every time.
    for (const [k, until] of this.seen) {
      if (until > now) break;
      this.seen.delete(k);
    }
    if (this.seen.size >= this.maxEntries && now - this.lastFullSweep >= 1000) {
      // At most once a second, so a flood cannot make every request walk the whole map.
      this.lastFullSweep = now;
      for (const [k, until] of this.seen) if (until <= now) this.seen.delete(k);
    }
    // Evicting a live id would let its proof be replayed: refuse instead (fail closed).
    if (this.seen.size >= this.maxEntries) throw refuse('replay cache is full, the proof cannot be checked for reuse');
    this.seen.set(key, untilMs);
    return true;
  }

  /** Ids remembered now (for tests and metrics). */
  size(): number {
    return this.seen.size;
  }
}

export interface DpopVerifierOptions {
  clock?: Clock;
  /** Accepted proof algorithms, asymmetric only; default ES256 and EdDSA. */
  algorithms?: readonly string[];
  /** Largest accepted distance between a proof's `iat` and the clock, seconds; default 60. */
  iatWindowSec?: number;
  /** Where proof ids are remembered; default a MemoryReplayCache on the same clock. */
  replay?: ReplayCache;
}

/** What a request offers for one check. */
export interface DpopRequest {
  /** The `DPoP` request header(s), as received (a repeated header arrives as an array or comma-joined). */
  proof: string | string[] | undefined;
  /** The request's method, exactly as received (`htm` is compared case-sensitively). */
  method: string;
  /** The request's URL as the client addressed it (https, host, path; any query is ignored): see requestHtu. */
  url: string;
  /** The access token from `Authorization: DPoP <token>` (for `ath`). */
  accessToken: string;
  /** The token's `cnf.jkt`: the RFC 7638 thumbprint of the key the proof must be signed with. */
  jkt: string;
}

/** A proof that passed every check. */
export interface VerifiedDpopProof {
  jkt: string;
  jti: string;
  /** Seconds since the epoch. */
  iat: number;
}

/** Verifies DPoP proofs (RFC 9449 §4.3) for DPoP-bound access tokens (§7.1). */
export class DpopVerifier {
  private readonly clock: Clock;
  private readonly algorithms: string[];
  private readonly windowSec: number;
  private readonly replay: ReplayCache;

  constructor(o: DpopVerifierOptions = {}) {
    this.clock = o.clock ?? systemClock;
    this.algorithms = [...(o.algorithms ?? DEFAULT_DPOP_ALGORITHMS)];
    const bad = this.algorithms.filter((a) => !ASYMMETRIC.has(a));
    if (this.algorithms.length === 0 || bad.length > 0) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `DPoP algorithms must be asymmetric JWS algorithms; refused: ${bad.join(', ') || '(empty list)'}`);
    }
    this.windowSec = o.iatWindowSec ?? DEFAULT_IAT_WINDOW_SEC;
    if (!Number.isFinite(this.windowSec) || this.windowSec <= 0 || this.windowSec > 600) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'iatWindowSec must be in (0, 600]');
    }
    this.replay = o.replay ?? new MemoryReplayCache({ clock: this.clock });
  }

  /** The algorithms, for the `algs` parameter of a `WWW-Authenticate: DPoP` challenge. */
  get acceptedAlgorithms(): readonly string[] {
    return this.algorithms;
  }

  /** Checks one proof; every refusal is PCL_ERR_DPOP_INVALID. The proof's `jti` is used up on success only. */
  async verify(r: DpopRequest): Promise<VerifiedDpopProof> {
    const proof = singleProof(r.proof);
    const now = this.clock.now();
    let payload: JWTPayload;
    let jwk: JWK;
    try {
      const verified = await jwtVerify(proof, EmbeddedJWK, {
        typ: DPOP_TYP,
        algorithms: this.algorithms,
        currentDate: new Date(now),
        clockTolerance: this.windowSec, // for exp/nbf, should a proof carry them
      });
      payload = verified.payload;
      // EmbeddedJWK refused a header without a jwk object, so it is one here.
      jwk = verified.protectedHeader.jwk as JWK;
    } catch (err) {
      throw refuse('not a valid dpop+jwt JWS signed by its embedded public key with an accepted algorithm', err);
    }
    if ('d' in jwk || jwk.kty === 'oct') throw refuse('jwk header is not a public key');
    const { jti, htm, htu, iat, ath } = payload as Record<string, unknown>; // a JSON object, checked by jwtVerify
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) throw refuse('jti is missing or malformed');
    if (htm !== r.method) throw refuse('htm is not the request method');
    if (typeof htu !== 'string' || !sameResource(htu, r.url)) throw refuse('htu is not the request URL');
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw refuse('iat is missing');
    if (Math.abs(iat * 1000 - now) > this.windowSec * 1000) throw refuse(`iat is more than ${this.windowSec} s from the server's clock`);
    if (typeof ath !== 'string' || !safeEqual(ath, accessTokenHash(r.accessToken))) throw refuse('ath is not the hash of the access token');
    let thumbprint: string;
    try {
      thumbprint = await calculateJwkThumbprint(jwk, 'sha256');
    } catch (err) {
      throw refuse('jwk thumbprint cannot be computed', err);
    }
    if (!safeEqual(thumbprint, r.jkt)) throw refuse('signed with another key than the one the token is bound to');
    // Last, so a proof that fails any check never uses up its jti. Keyed per key: ids are the client's choice.
    const key = createHash('sha256').update(`${thumbprint}\n${jti}`).digest('base64url');
    if (!(await this.replay.claim(key, iat * 1000 + this.windowSec * 1000))) throw refuse('jti was used before (replay)');
    return { jkt: thumbprint, jti, iat };
  }
}

/** RFC 9449 §4.2 `ath`: base64url(SHA-256(ASCII access token)). */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest('base64url');
}

/**
 * The URL to compare a proof's `htu` with: `https://<host><path>` of the request as the client sent
 * it (the raw target, before the gateway's normalization; the query is dropped). The host is the
 * `:authority` (HTTP/2) or `Host` header; with `origins`, it must be one of them (the gateway's
 * public origins, e.g. `https://api.example.com`), so a proof for another host cannot be replayed
 * here by naming that host. Refuses (PCL_ERR_DPOP_INVALID) a request without a usable host.
 */
export function requestHtu(headers: Record<string, string | string[] | undefined>, rawUrl: string, origins?: readonly string[]): string {
  const host = headers[':authority'] ?? headers.host;
  if (typeof host !== 'string' || host === '' || /[/?#@\\\s]/.test(host)) throw refuse('the request has no usable Host');
  let origin: string;
  try {
    origin = new URL(`https://${host}`).origin;
  } catch (err) {
    throw refuse('the request has no usable Host', err);
  }
  if (origins !== undefined && !origins.some((o) => canonicalUrl(o) === `${origin}/`)) throw refuse('the request Host is not one of the gateway origins');
  const path = rawUrl.split(/[?#]/, 1)[0] ?? '';
  return `${origin}${path.startsWith('/') ? path : `/${path}`}`;
}

/**
 * `https://host[:port]/path`, normalized as RFC 9449 §4.3 asks (RFC 3986 §6.2.2 and §6.2.3: case,
 * percent-encoding, dot segments, default port), without query and fragment; undefined when `u`
 * is not an absolute http(s) URL, or carries user info.
 */
export function canonicalUrl(u: string): string | undefined {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    return undefined;
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username !== '' || url.password !== '') return undefined;
  // Percent-encoded unreserved characters are decoded, every other escape gets upper-case hex.
  const path = url.pathname.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return /^[A-Za-z0-9\-._~]$/.test(c) ? c : `%${hex.toUpperCase()}`;
  });
  return `${url.protocol}//${url.host}${path}`;
}

function sameResource(htu: string, requestUrl: string): boolean {
  const a = canonicalUrl(htu);
  const b = canonicalUrl(requestUrl);
  return a !== undefined && b !== undefined && safeEqual(a, b);
}

/** The one proof of a request; a repeated header (array, or joined with commas) is refused. */
function singleProof(p: string | string[] | undefined): string {
  if (p === undefined || p === '') throw refuse('no DPoP header');
  if (typeof p !== 'string' || p.includes(',')) throw refuse('DPoP header repeated');
  if (p.length > MAX_PROOF_LENGTH) throw refuse(`longer than ${MAX_PROOF_LENGTH} characters`);
  const proof = p.trim();
  if (!COMPACT_JWS.test(proof)) throw refuse('not a compact JWS');
  return proof;
}

/** Constant-time equality of two strings (their SHA-256 digests are compared, so lengths may differ). */
function safeEqual(a: string, b: string): boolean {
  const h = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(h(a), h(b));
}
