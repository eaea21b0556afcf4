// One credential used from several networks (IPv4 /24, IPv6 /48) within a short window: a token
// or API key copied elsewhere, or used from two places at once. A credential is the user and
// client together, so one person on two different apps is two credentials. Only data-plane
// decisions and client-credentials token requests count: a login happens in the user's browser
// while a confidential client redeems the code from its server, two networks by design.
import type { AuditEvent } from '../../core/events.js';
import { armAlert, BoundedMap, DistinctWindow, keysFor } from '../bounded.js';
import type { ResolvedRule } from '../config.js';
import { addressOf, networkOf } from '../subject.js';
import type { Alert } from '../types.js';
import { makeAlert, q, type Rule, type RuleContext } from './rule.js';

interface State { networks: DistinctWindow; alertedUntil: number }

export class NewNetworkRule implements Rule {
  private readonly byCredential: BoundedMap<State>;
  private readonly windowMs: number;

  constructor(readonly config: ResolvedRule, ctx: RuleContext) {
    this.windowMs = config.windowSeconds * 1000;
    this.byCredential = new BoundedMap(keysFor(config.threshold, ctx.maxKeys));
  }

  observe(e: AuditEvent, now: number): Alert[] {
    const counts = e.type === 'decision'
      || (e.action === 'oauth.token' && e.outcome === 'success' && e.detail.grant_type === 'client_credentials');
    if (!counts) return [];
    const { sub, clientId } = e.who;
    const address = addressOf(e);
    if ((!sub && !clientId) || !address) return [];
    const network = networkOf(address);
    if (!network) return [];
    this.tick(now);
    const key = `${(sub ?? '').slice(0, 256)}\u0000${(clientId ?? '').slice(0, 256)}`;
    const s = this.byCredential.touch(key, now, () => ({ networks: new DistinctWindow(this.config.threshold), alertedUntil: 0 }));
    s.networks.add(network, now, e.requestId);
    const n = s.networks.count(now, this.windowMs);
    if (n < this.config.threshold || !armAlert(s, now, this.windowMs)) return [];
    const who = sub && clientId ? `${q(sub)} (client ${q(clientId)})` : q(sub ?? clientId ?? '');
    return [makeAlert(this.config, now, {
      summary: `credential of ${who} used from ${n} networks within ${this.config.windowSeconds}s: ${s.networks.values(now, this.windowMs).join(', ')}`,
      subject: { principal: sub ?? clientId, address },
      count: n,
      requestIds: s.networks.evidence(now, this.windowMs),
    })];
  }

  tick(now: number): Alert[] {
    this.byCredential.prune(now, this.windowMs);
    return [];
  }

  size(): number {
    return this.byCredential.size;
  }
}
