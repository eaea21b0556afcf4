// Step 6 of the gateway pipeline: per-principal / API key / client / route / address rate limits,
// checked against a LimitStore, with a chosen behaviour when a shared store is down, and the
// RateLimit response headers (draft-ietf-httpapi-ratelimit-headers-10).
import { hash as digest } from 'node:crypto';
import { systemClock, type Clock } from '../../core/clock.js';
import { PortcullisError } from '../../core/errors.js';
import type { GcraParams, GcraResult } from './gcra.js';
import { MemoryLimitStore, type LimitStore } from './stores.js';

/** What a rule's counter is keyed on. */
export type LimitKey = 'principal' | 'apikey' | 'client' | 'route' | 'address';

/** One rate limit. */
export interface LimitRule {
  /** Stable name, used in RateLimit-Policy and audit; 1-64 of [A-Za-z0-9._-]. */
  id: string;
  /** What the counter is keyed on; a request lacking that attribute (e.g. no API key) is not counted by this rule */
  key: LimitKey;
  /** Requests allowed per `per`; a positive integer. */
  rate: number;
  /** The period `rate` is counted over (the `w` of RateLimit-Policy). */
  per: 'second' | 'minute' | 'hour' | 'day';
  /** Requests allowed at once; a positive integer, default = rate */
  burst?: number;
  /** Route ids this rule applies to; absent = all routes */
  routes?: string[];
}

/** What the limiter knows of a request. */
export interface LimitContext {
  /** The matched route's id (never the raw path, so path variants share one counter). */
  routeId: string;
  /** The authenticated subject, if any. */
  principal?: string;
  /** The verified API key, if any; hashed before it reaches the store. */
  apiKey?: string;
  /** The OAuth client id, if any. */
  client?: string;
  /** The socket's peer address, or the address a trusted proxy reported; never a client-chosen header. */
  address: string;
}

/** The outcome of {@link RateLimiter.check}. */
export interface LimitDecision {
  /** false: answer 429 PCL_ERR_RATE_LIMITED with {@link rateLimitHeaders}. */
  allowed: boolean;
  /** the most constraining rule's state, for headers */
  rule: string;
  /** That rule's `rate` (quota per window). */
  limit: number;
  /** Requests that rule still allows right now. */
  remaining: number;
  /** ms until that rule's bucket is full again. */
  resetMs: number;
  /** ms until that rule allows one more request (0 when allowed). */
  retryAfterMs: number;
  /** set when the store failed and the fallback decided */
  degraded?: 'deny' | 'allow' | 'local';
}

/** Options of {@link RateLimiter}. */
export interface RateLimiterOptions {
  rules: LimitRule[];
  store: LimitStore;
  /** when the (shared) store fails: 'deny' (refuse, 503 PCL_ERR_RATE_LIMIT_UNAVAILABLE), 'allow' (serve unlimited), 'local' (default: fall back to an in-process MemoryLimitStore, per replica) */
  onStoreDown?: 'deny' | 'allow' | 'local';
  /** Time source of the fallback store and of `storeRetryMs`; default systemClock. */
  clock?: Clock;
  /** Called when the store starts failing (once per outage, not once per request). */
  onDegraded?: (err: Error) => void;
  /** After a store failure, requests skip the store for this long before trying it again; default 1000 ms. */
  storeRetryMs?: number;
}

const PER_MS: Record<LimitRule['per'], number> = { second: 1000, minute: 60_000, hour: 3_600_000, day: 86_400_000 };
const KEY_KINDS: ReadonlySet<string> = new Set<LimitKey>(['principal', 'apikey', 'client', 'route', 'address']);
const RULE_ID = /^[A-Za-z0-9._-]{1,64}$/;
// Values kept readable in the store; anything else (long, odd bytes, glob characters) is hashed.
const RAW_VALUE = /^[A-Za-z0-9._:@/+-]{1,64}$/;

/**
 * The store key of a rule's counter: `<rule id>:<key kind>:<value>`. API keys are always hashed
 * (never stored in clear); other values are hashed when long or unusual. A hashed value is `~`
 * + the first 22 base64url characters of its SHA-256, and `~` never appears in a raw value.
 */
export function storeKey(ruleId: string, kind: LimitKey, value: string): string {
  const v = kind !== 'apikey' && RAW_VALUE.test(value)
    ? value
    : `~${digest('sha256', value, 'base64url').slice(0, 22)}`;
  return `${ruleId}:${kind}:${v}`;
}

interface CompiledRule {
  rule: LimitRule;
  params: GcraParams;
  routes: ReadonlySet<string> | undefined;
}

interface Take {
  c: CompiledRule;
  key: string;
}

function invalid(message: string): PortcullisError {
  return new PortcullisError('PCL_ERR_INVALID_ARGUMENT', message);
}

function compile(rules: readonly LimitRule[]): CompiledRule[] {
  const seen = new Set<string>();
  return rules.map((rule, i) => {
    const where = `limit rule #${i}`;
    if (typeof rule.id !== 'string' || !RULE_ID.test(rule.id)) throw invalid(`${where}: id must be 1-64 of [A-Za-z0-9._-]`);
    if (seen.has(rule.id)) throw invalid(`${where}: id ${rule.id} is used twice`);
    seen.add(rule.id);
    if (!KEY_KINDS.has(rule.key)) throw invalid(`${where} (${rule.id}): unknown key kind`);
    if (!Object.hasOwn(PER_MS, rule.per)) throw invalid(`${where} (${rule.id}): per must be second, minute, hour or day`);
    if (!Number.isSafeInteger(rule.rate) || rule.rate <= 0) throw invalid(`${where} (${rule.id}): rate must be an integer > 0`);
    const burst = rule.burst ?? rule.rate;
    if (!Number.isSafeInteger(burst) || burst < 1) throw invalid(`${where} (${rule.id}): burst must be an integer >= 1`);
    if (rule.routes !== undefined && (!Array.isArray(rule.routes) || rule.routes.some((r) => typeof r !== 'string' || r === ''))) {
      throw invalid(`${where} (${rule.id}): routes must be a list of route ids`);
    }
    return {
      rule,
      params: { emissionIntervalMs: PER_MS[rule.per] / rule.rate, burst },
      routes: rule.routes ? new Set(rule.routes) : undefined,
    };
  });
}

function attribute(kind: LimitKey, ctx: LimitContext): string | undefined {
  switch (kind) {
    case 'principal': return ctx.principal;
    case 'apikey': return ctx.apiKey;
    case 'client': return ctx.client;
    case 'route': return ctx.routeId;
    case 'address': return ctx.address;
  }
}

function decisionOf(c: CompiledRule, r: GcraResult): LimitDecision {
  return { allowed: r.allowed, rule: c.rule.id, limit: c.rule.rate, remaining: r.remaining, resetMs: r.resetMs, retryAfterMs: r.retryAfterMs };
}

/** The most constraining state: the refusal lasting longest, else the fewest remaining. */
function combine(takes: readonly Take[], results: readonly GcraResult[]): LimitDecision {
  let best: LimitDecision | undefined;
  takes.forEach((t, i) => {
    const r = results[i];
    if (!r) return;
    const d = decisionOf(t.c, r);
    if (!best) best = d;
    else if (best.allowed !== d.allowed) { if (!d.allowed) best = d; }
    else if (!d.allowed) { if (d.retryAfterMs > best.retryAfterMs) best = d; }
    else if (d.remaining < best.remaining || (d.remaining === best.remaining && d.resetMs > best.resetMs)) best = d;
  });
  // check() only combines when there is at least one take, and Promise.all gives one result each.
  return best!;
}

/**
 * Checks every rule applying to a request. A request is counted by each applicable rule in
 * parallel (one round trip), so a request refused by one rule still spends a unit of the others.
 */
export class RateLimiter {
  private readonly rules: CompiledRule[];
  private readonly store: LimitStore;
  private readonly onStoreDown: 'deny' | 'allow' | 'local';
  private readonly clock: Clock;
  private readonly onDegraded: ((err: Error) => void) | undefined;
  private readonly storeRetryMs: number;
  private local: MemoryLimitStore | undefined;
  private degraded = false;
  private retryStoreAt = 0;
  private lastError: Error | undefined;

  /** Throws PCL_ERR_INVALID_ARGUMENT for an invalid rule (bad id, duplicate id, rate <= 0, burst < 1). */
  constructor(o: RateLimiterOptions) {
    this.rules = compile(o.rules);
    this.store = o.store;
    this.onStoreDown = o.onStoreDown ?? 'local';
    if (!['deny', 'allow', 'local'].includes(this.onStoreDown)) throw invalid('onStoreDown must be deny, allow or local');
    this.clock = o.clock ?? systemClock;
    this.onDegraded = o.onDegraded;
    this.storeRetryMs = o.storeRetryMs ?? 1000;
    if (!Number.isFinite(this.storeRetryMs) || this.storeRetryMs < 0) throw invalid('storeRetryMs must be >= 0');
  }

  /** null when no rule applies. All applicable rules are checked; a refusal by any refuses. Does not throw on refusal; throws PortcullisError PCL_ERR_RATE_LIMIT_UNAVAILABLE only for onStoreDown 'deny' */
  async check(ctx: LimitContext): Promise<LimitDecision | null> {
    const takes: Take[] = [];
    for (const c of this.rules) {
      if (c.routes && !c.routes.has(ctx.routeId)) continue;
      const value = attribute(c.rule.key, ctx);
      if (value === undefined) continue;
      takes.push({ c, key: storeKey(c.rule.id, c.rule.key, value) });
    }
    if (takes.length === 0) return null;

    if (!this.degraded || this.clock.now() >= this.retryStoreAt) {
      try {
        const results = await Promise.all(takes.map((t) => this.store.take(t.key, t.c.params, 1)));
        this.degraded = false;
        return combine(takes, results);
      } catch (err) {
        this.storeFailed(err instanceof Error ? err : new Error(String(err)));
      }
    }
    return this.fallback(takes);
  }

  private storeFailed(err: Error): void {
    this.lastError = err;
    this.retryStoreAt = this.clock.now() + this.storeRetryMs;
    if (this.degraded) return;
    this.degraded = true;
    try {
      this.onDegraded?.(err);
    } catch {
      // A failing observer must not change the decision.
    }
  }

  private async fallback(takes: readonly Take[]): Promise<LimitDecision> {
    switch (this.onStoreDown) {
      case 'deny':
        throw new PortcullisError('PCL_ERR_RATE_LIMIT_UNAVAILABLE', 'rate-limit store unavailable (onStoreDown: deny)', { cause: this.lastError });
      case 'allow': {
        // takes is never empty here (check() returned null otherwise).
        const first = takes[0]!;
        return { allowed: true, rule: first.c.rule.id, limit: first.c.rule.rate, remaining: first.c.params.burst, resetMs: 0, retryAfterMs: 0, degraded: 'allow' };
      }
      case 'local': {
        this.local ??= new MemoryLimitStore({ clock: this.clock });
        const local = this.local;
        const results = await Promise.all(takes.map((t) => local.take(t.key, t.c.params, 1)));
        return { ...combine(takes, results), degraded: 'local' };
      }
    }
  }

  /** Closes the store and the local fallback. */
  async close(): Promise<void> {
    await Promise.all([this.store.close(), this.local?.close()]);
  }
}

/**
 * The response headers for a decision, per draft-ietf-httpapi-ratelimit-headers-10:
 * `ratelimit-policy: "<id>";q=<rate>;w=<window s>` and `ratelimit: "<id>";r=<remaining>;t=<s to full>`
 * for the decision's rule, plus `retry-after: <s, rounded up, >= 1>` on refusal. `rules` are the
 * limiter's rules (to find the window); names are lower case, as Node sends them.
 */
export function rateLimitHeaders(d: LimitDecision, rules: readonly LimitRule[]): Record<string, string> {
  const h: Record<string, string> = {};
  const rule = rules.find((r) => r.id === d.rule);
  if (rule) h['ratelimit-policy'] = `"${rule.id}";q=${rule.rate};w=${PER_MS[rule.per] / 1000}`;
  h['ratelimit'] = `"${d.rule}";r=${Math.max(0, Math.floor(d.remaining))};t=${Math.max(0, Math.ceil(d.resetMs / 1000))}`;
  if (!d.allowed) {
    const s = Number.isFinite(d.retryAfterMs) ? Math.max(1, Math.ceil(d.retryAfterMs / 1000)) : PER_MS.day / 1000;
    h['retry-after'] = String(s);
  }
  return h;
}
