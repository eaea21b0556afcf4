// Brute force and credential stuffing on logins: many failures on one account, or failures on
// many accounts from one address. A success clears nothing: the real user signing in between
// guesses must not hide them; a user's typo or two stays far below the threshold anyway.
import type { AdminEvent, AuditEvent } from '../../core/events.js';
import { armAlert, BoundedMap, DistinctWindow, HitWindow, keysFor } from '../bounded.js';
import type { ResolvedRule } from '../config.js';
import { addressOf } from '../subject.js';
import type { Alert } from '../types.js';
import { makeAlert, q, type Rule, type RuleContext } from './rule.js';

interface Counted<W> { w: W; alertedUntil: number }

/** A failed sign-in: a login with a password, or a client authenticating at the token endpoint. */
function failedCredential(e: AdminEvent): boolean {
  if (e.outcome !== 'failure') return false;
  if (e.action === 'oauth.login' || e.action.endsWith('.login')) return true;
  return e.action === 'oauth.token' && e.detail.error === 'invalid_client';
}

export class BruteForceRule implements Rule {
  private readonly byAccount: BoundedMap<Counted<HitWindow>>;
  private readonly byAddress: BoundedMap<Counted<DistinctWindow>>;
  private readonly windowMs: number;

  constructor(readonly config: ResolvedRule, ctx: RuleContext) {
    this.windowMs = config.windowSeconds * 1000;
    this.byAccount = new BoundedMap(keysFor(config.threshold, ctx.maxKeys));
    this.byAddress = new BoundedMap(keysFor(config.threshold, ctx.maxKeys));
  }

  observe(e: AuditEvent, now: number): Alert[] {
    if (e.type !== 'admin' || !failedCredential(e)) return [];
    const address = addressOf(e);
    // Names as typed: case and spaces do not make a new account. A nameless client failure
    // (the token endpoint records none) counts per address.
    const typed = (e.who.sub ?? e.who.clientId)?.trim().toLowerCase().slice(0, 128);
    const account = typed || (address ? `?@${address}` : undefined);
    this.tick(now);
    const alerts: Alert[] = [];
    const { threshold } = this.config;
    if (account) {
      const s = this.byAccount.touch(account, now, () => ({ w: new HitWindow(threshold), alertedUntil: 0 }));
      s.w.add(now, e.requestId);
      const n = s.w.count(now, this.windowMs);
      if (n >= threshold && armAlert(s, now, this.windowMs)) {
        alerts.push(makeAlert(this.config, now, {
          summary: `${n} failed sign-ins for account ${typed ? q(typed) : '(unnamed)'} within ${this.config.windowSeconds}s`,
          subject: { principal: typed || undefined, address },
          count: n,
          requestIds: s.w.evidence(now, this.windowMs),
        }));
      }
    }
    if (address && typed) {
      const s = this.byAddress.touch(address, now, () => ({ w: new DistinctWindow(threshold), alertedUntil: 0 }));
      s.w.add(typed, now, e.requestId);
      const n = s.w.count(now, this.windowMs);
      if (n >= threshold && armAlert(s, now, this.windowMs)) {
        alerts.push(makeAlert(this.config, now, {
          summary: `failed sign-ins on ${n} accounts from ${q(address)} within ${this.config.windowSeconds}s (credential stuffing or password spraying)`,
          subject: { address },
          count: n,
          requestIds: s.w.evidence(now, this.windowMs),
        }));
      }
    }
    return alerts;
  }

  tick(now: number): Alert[] {
    this.byAccount.prune(now, this.windowMs);
    this.byAddress.prune(now, this.windowMs);
    return [];
  }

  size(): number {
    return this.byAccount.size + this.byAddress.size;
  }
}
