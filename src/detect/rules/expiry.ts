// Certificates and keys close to expiry: on each tick, every item the provider lists that expires
// within `days` (or has expired) raises one alert. The key is the name and the expiry date, so
// a renewed item (a new notAfter) that nears its end again alerts again.
import type { AuditEvent } from '../../core/events.js';
import { BoundedMap, MAX_KEYS } from '../bounded.js';
import type { ResolvedRule } from '../config.js';
import type { Alert } from '../types.js';
import { makeAlert, q, type Rule, type RuleContext } from './rule.js';

export interface ExpiringItem {
  name: string;
  notAfter: Date;
}

const DAY_MS = 86_400_000;

export class ExpiryRule implements Rule {
  private readonly alerted: BoundedMap<true>;

  constructor(readonly config: ResolvedRule, ctx: RuleContext, private readonly provider: () => ExpiringItem[]) {
    this.alerted = new BoundedMap(ctx.maxKeys ?? MAX_KEYS);
  }

  observe(_e: AuditEvent, _now: number): Alert[] {
    return [];
  }

  tick(now: number): Alert[] {
    const items = this.provider();
    const alerts: Alert[] = [];
    const current = new Set<string>();
    for (const item of items) {
      const at = item.notAfter.getTime();
      if (typeof item.name !== 'string' || !Number.isFinite(at)) continue;
      const key = `${item.name}\u0000${at}`;
      current.add(key);
      const left = at - now;
      if (left > this.config.days * DAY_MS || this.alerted.has(key)) continue;
      this.alerted.set(key, true, now);
      const when = item.notAfter.toISOString();
      alerts.push(makeAlert(this.config, now, {
        summary: left <= 0
          ? `${q(item.name)} expired at ${when}`
          : `${q(item.name)} expires in ${Math.floor(left / DAY_MS)} days (${when})`,
        subject: { workload: item.name },
        count: Math.max(0, Math.floor(left / DAY_MS)),
        requestIds: [],
        windowSeconds: this.config.days * 86_400,
      }));
    }
    // Items gone from the list (renewed, removed) are forgotten.
    for (const key of [...this.alerted.keys()]) if (!current.has(key)) this.alerted.delete(key);
    return alerts;
  }

  size(): number {
    return this.alerted.size;
  }
}
