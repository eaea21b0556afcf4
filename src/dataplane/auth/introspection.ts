// Opaque-token introspection at the gateway (issue 5, "OAuth2 introspection of opaque tokens, with a
// cache and an explicit fail-closed / fail-open-for-reads setting"). The token is POSTed (RFC 7662
// §2.1) to the control plane's /oauth2/introspect over mTLS (the gateway's workload certificate is
// its client authentication; the server must prove the expected SPIFFE ID). Answers are cached by
// the SHA-256 of the token, never the token: active ones until min(exp, answer + cacheTtl), inactive
// ones briefly. When the endpoint cannot answer, `onDown` decides: `deny` refuses (503); `allow-reads`
// admits GET/HEAD with a token the endpoint called active recently (see docs/authentication.md).
import { hash as digest } from 'node:crypto';
import { Agent, request } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { systemClock, type Clock } from '../../core/clock.js';
import { PortcullisError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { checkUserAttributes, type UserAttributes } from '../../core/principal.js';
import { mtlsClientOptions, type MtlsCredentials } from '../../identity/tls-options.js';
import { MAX_TOKEN_LENGTH, parseConfirmation, type AccessTokenClaims } from '../../tokens/verify.js';

/** What to do while the introspection endpoint cannot answer. */
export type IntrospectionOnDown = 'deny' | 'allow-reads';

export interface IntrospectionClientOptions {
  /** The RFC 7662 endpoint, e.g. `https://control.example:8444/oauth2/introspect`; https only. */
  endpoint: string;
  /** The gateway's workload credentials, and the SPIFFE ID the endpoint's certificate must carry. */
  tls: MtlsCredentials & { expectedSpiffeId: string };
  /** `aud` the token must include (the gateway's `tokens.audience`); other tokens are not for us. */
  audience: string;
  /** When set, an active answer's `iss` must equal it. */
  issuer?: string;
  /** Whole exchange (connect, answer, body), ms; default 2000. */
  timeoutMs?: number;
  /** How long an active answer is used without asking again, ms (never past the token's exp); default 30,000. */
  cacheTtlMs?: number;
  /** With `allow-reads`: how long after its freshness an active answer still admits reads while the endpoint is down, ms; default cacheTtlMs. */
  staleGraceMs?: number;
  /** How long an inactive answer is remembered, ms; default 10,000. */
  negativeTtlMs?: number;
  /** Most answers cached, per kind (active, inactive); default 10,000. The oldest leave first. */
  maxEntries?: number;
  onDown: IntrospectionOnDown;
  /** Revocation check on every use, cached or not (the snapshot's revoked jtis); true refuses the token. */
  isRevoked?: (claims: AccessTokenClaims) => boolean;
  clock?: Clock;
  logger?: Logger;
}

interface ActiveEntry {
  claims: Readonly<AccessTokenClaims>;
  /** Used without asking until then (ms). */
  freshUntil: number;
  /** Kept (for allow-reads while down) until then (ms). */
  keepUntil: number;
}

type Answer =
  | { kind: 'active'; claims: Readonly<AccessTokenClaims> }
  | { kind: 'inactive'; why: string }
  | { kind: 'down'; why: string };

const MAX_ANSWER_BYTES = 64 * 1024;
const READS = new Set(['GET', 'HEAD']);

const inactive = (why: string): PortcullisError => new PortcullisError('PCL_ERR_TOKEN_INACTIVE', `access token refused: ${why}`);

/** RFC 7662 client with a cache; one per gateway. */
export class IntrospectionClient {
  private readonly url: URL;
  private agent: Agent;
  /** Agents replaced by setTls, until their requests in flight are done. */
  private readonly retired = new Set<Agent>();
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly cacheTtlMs: number;
  private readonly staleGraceMs: number;
  private readonly negativeTtlMs: number;
  private readonly maxEntries: number;
  private readonly active = new Map<string, ActiveEntry>();
  private readonly negative = new Map<string, number>();
  /** One request in flight per token, however many requests carry it. */
  private readonly inFlight = new Map<string, Promise<Answer>>();

  constructor(private readonly o: IntrospectionClientOptions) {
    this.url = new URL(o.endpoint);
    if (this.url.protocol !== 'https:') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'the introspection endpoint must be an https URL');
    if (!o.audience) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'audience is required');
    if (o.onDown !== 'deny' && o.onDown !== 'allow-reads') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'onDown must be deny or allow-reads');
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? silentLogger;
    this.timeoutMs = positive(o.timeoutMs ?? 2000, 'timeoutMs');
    this.cacheTtlMs = positive(o.cacheTtlMs ?? 30_000, 'cacheTtlMs');
    this.staleGraceMs = positive(o.staleGraceMs ?? this.cacheTtlMs, 'staleGraceMs');
    this.negativeTtlMs = positive(o.negativeTtlMs ?? 10_000, 'negativeTtlMs');
    this.maxEntries = positive(o.maxEntries ?? 10_000, 'maxEntries');
    this.agent = this.newAgent(o.tls);
  }

  /** New workload credentials (rotation) or trust bundle: later requests use them. */
  setTls(tls: MtlsCredentials & { expectedSpiffeId: string }): void {
    const old = this.agent;
    this.agent = this.newAgent(tls);
    // Requests in flight finish on the old agent (within timeoutMs); its idle connections go then.
    this.retired.add(old);
    this.clock.setTimer(this.timeoutMs, () => { old.destroy(); this.retired.delete(old); });
  }

  /** Closes every connection to the endpoint. */
  close(): void {
    this.agent.destroy();
    for (const a of this.retired) a.destroy();
    this.retired.clear();
  }

  /**
   * The claims of an active token for this gateway, from the cache or the endpoint. Refusals:
   * PCL_ERR_TOKEN_MALFORMED (empty or over 8 KiB), PCL_ERR_TOKEN_INACTIVE (inactive, or active but
   * not for our audience/issuer or without a future exp), PCL_ERR_TOKEN_CLAIMS (malformed claims),
   * PCL_ERR_TOKEN_REVOKED (isRevoked), PCL_ERR_INTROSPECTION_UNAVAILABLE (endpoint down, per onDown).
   */
  async introspect(token: string, method: string): Promise<AccessTokenClaims> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw new PortcullisError('PCL_ERR_TOKEN_MALFORMED', 'access token refused: empty or longer than 8192 characters');
    }
    const key = digest('sha256', token, 'base64url');
    const now = this.clock.now();
    const cached = this.active.get(key);
    if (cached && now < cached.freshUntil) return this.checked(cached.claims);
    const negUntil = this.negative.get(key);
    if (negUntil !== undefined && now < negUntil) throw inactive('the introspection endpoint called it inactive');
    if (negUntil !== undefined) this.negative.delete(key);

    let pending = this.inFlight.get(key);
    if (!pending) {
      pending = this.ask(token).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, pending);
    }
    const answer = await pending;
    if (answer.kind === 'active') {
      this.remember(key, answer.claims);
      return this.checked(answer.claims);
    }
    if (answer.kind === 'inactive') {
      this.active.delete(key);
      this.forget(key);
      throw inactive(answer.why);
    }
    return this.whileDown(key, method, answer.why);
  }

  /** How many answers are cached (for tests and metrics). */
  cacheSize(): { active: number; inactive: number } {
    return { active: this.active.size, inactive: this.negative.size };
  }

  private whileDown(key: string, method: string, why: string): AccessTokenClaims {
    const now = this.clock.now();
    const entry = this.active.get(key);
    if (entry && now >= entry.keepUntil) this.active.delete(key);
    const usable = entry !== undefined && now < entry.keepUntil;
    if (this.o.onDown === 'allow-reads' && READS.has(method) && usable) {
      this.logger.warn({ why, method, onDown: this.o.onDown }, 'introspection endpoint down: read admitted on a recent active answer');
      return this.checked(entry.claims);
    }
    this.logger.warn({ why, method, onDown: this.o.onDown }, 'introspection endpoint down: request refused');
    const detail = this.o.onDown === 'deny' ? 'gateway.introspection.onDown is deny'
      : !READS.has(method) ? `onDown allow-reads admits only GET and HEAD, not ${method}` : 'no recent active answer for this token';
    throw new PortcullisError('PCL_ERR_INTROSPECTION_UNAVAILABLE', `introspection endpoint unavailable (${why}); ${detail}`);
  }

  private checked(claims: Readonly<AccessTokenClaims>): AccessTokenClaims {
    if (this.o.isRevoked?.(claims)) throw new PortcullisError('PCL_ERR_TOKEN_REVOKED', 'access token refused: revoked');
    return claims;
  }

  private remember(key: string, claims: Readonly<AccessTokenClaims>): void {
    const now = this.clock.now();
    const expMs = claims.exp * 1000;
    this.active.delete(key); // re-inserted last: the map's order is the eviction order
    if (this.active.size >= this.maxEntries) this.active.delete(this.active.keys().next().value as string); // not empty: size ≥ maxEntries ≥ 1
    this.active.set(key, { claims, freshUntil: Math.min(expMs, now + this.cacheTtlMs), keepUntil: Math.min(expMs, now + this.cacheTtlMs + this.staleGraceMs) });
  }

  private forget(key: string): void {
    this.negative.delete(key);
    if (this.negative.size >= this.maxEntries) this.negative.delete(this.negative.keys().next().value as string); // not empty: size ≥ maxEntries ≥ 1
    this.negative.set(key, this.clock.now() + this.negativeTtlMs);
  }

  /** One RFC 7662 exchange; never throws (a failure is a `down` answer). */
  private async ask(token: string): Promise<Answer> {
    let doc: unknown;
    try {
      doc = await this.post(`token=${encodeURIComponent(token)}&token_type_hint=access_token`);
    } catch (err) {
      return { kind: 'down', why: err instanceof Error ? err.message : String(err) };
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || typeof (doc as { active?: unknown }).active !== 'boolean') {
      return { kind: 'down', why: 'the answer is not an RFC 7662 document' };
    }
    const d = doc as Record<string, unknown>; // a non-null, non-array object: checked above
    if (d.active !== true) return { kind: 'inactive', why: 'the introspection endpoint called it inactive' };
    try {
      return this.toClaims(d);
    } catch (err) {
      if (err instanceof PortcullisError && err.code === 'PCL_ERR_TOKEN_INACTIVE') return { kind: 'inactive', why: err.message };
      throw err; // PCL_ERR_TOKEN_CLAIMS: refused, and not cached
    }
  }

  /** An active answer's claims, shapes checked as the JWT verifier checks them; not ours → inactive. */
  private toClaims(d: Record<string, unknown>): Answer {
    const str = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
    const aud = typeof d.aud === 'string' ? [d.aud] : d.aud;
    // A refresh token introspects active without `aud`: it is never an access token for us.
    if (!Array.isArray(aud) || !aud.includes(this.o.audience)) throw inactive('not for this audience');
    if (this.o.issuer !== undefined && d.iss !== this.o.issuer) throw inactive('not from the configured issuer');
    if (typeof d.exp !== 'number' || !Number.isFinite(d.exp) || d.exp * 1000 <= this.clock.now()) throw inactive('no exp, or expired');
    if (d.token_type !== undefined && !(typeof d.token_type === 'string' && /^(bearer|dpop)$/i.test(d.token_type))) throw inactive('not an access token');
    const claimsError = (why: string): PortcullisError => new PortcullisError('PCL_ERR_TOKEN_CLAIMS', `access token refused: introspection answer ${why}`);
    if (!str(d.sub)) throw claimsError('has no sub');
    for (const name of ['jti', 'client_id', 'scope', 'iss'] as const) {
      if (d[name] !== undefined && typeof d[name] !== 'string') throw claimsError(`${name} is not a string`);
    }
    if (d.iat !== undefined && typeof d.iat !== 'number') throw claimsError('iat is not a number');
    if (d.nbf !== undefined && typeof d.nbf !== 'number') throw claimsError('nbf is not a number');
    const roles = d.roles ?? [];
    if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string')) throw claimsError('roles is not an array of strings');
    const claims: AccessTokenClaims = {
      iss: typeof d.iss === 'string' ? d.iss : '',
      sub: d.sub,
      aud: aud as string[], // an array that includes our audience: checked above
      exp: d.exp,
      iat: typeof d.iat === 'number' ? d.iat : 0,
      jti: typeof d.jti === 'string' ? d.jti : '',
      client_id: typeof d.client_id === 'string' ? d.client_id : '',
      roles: Object.freeze([...(roles as string[])]) as string[], // every element checked above; frozen like the verifier's
    };
    if (typeof d.scope === 'string') claims.scope = d.scope;
    if (typeof d.nbf === 'number') claims.nbf = d.nbf;
    if (d.attrs !== undefined) {
      const bad = checkUserAttributes(d.attrs);
      if (bad) throw claimsError(`attrs: ${bad}`);
      claims.attrs = d.attrs as UserAttributes; // checked just above
    }
    // A bound token stays bound when introspected (RFC 8705 §3.2, RFC 9449 §6.2).
    if (d.cnf !== undefined) claims.cnf = parseConfirmation(d.cnf);
    return { kind: 'active', claims: Object.freeze(claims) };
  }

  private newAgent(tls: MtlsCredentials & { expectedSpiffeId: string }): Agent {
    return new Agent({ ...mtlsClientOptions(tls), keepAlive: true, maxSockets: 32 });
  }

  /** POSTs the form, resolves to the parsed JSON of a 200; rejects on anything else, or after timeoutMs. */
  private post(form: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const done = (err: Error | undefined, value?: unknown): void => {
        if (settled) return;
        settled = true;
        timer.cancel();
        if (err) reject(err);
        else resolve(value);
      };
      const req = request(this.url, {
        method: 'POST',
        agent: this.agent,
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'content-length': Buffer.byteLength(form) },
      }, (res: IncomingMessage) => {
        if (res.statusCode !== 200) {
          res.resume();
          done(new Error(`answered HTTP ${res.statusCode ?? 0}`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ANSWER_BYTES) {
            done(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
            req.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          try {
            done(undefined, JSON.parse(Buffer.concat(chunks).toString('utf8')));
          } catch {
            done(new Error('answer is not JSON'));
          }
        });
        res.on('error', (err) => done(err));
      });
      const timer = this.clock.setTimer(this.timeoutMs, () => {
        done(new Error(`no answer within ${this.timeoutMs} ms`));
        req.destroy();
      });
      req.on('error', (err) => done(err));
      req.end(form);
    });
  }
}

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n <= 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${name} must be a positive integer`);
  return n;
}
