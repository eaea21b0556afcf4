// The detection layer: audit events in, alerts out to sinks, and (for rules that say so) block
// requests. It runs on the publisher's stack through the audit channel, so it never throws and
// never waits: a rule that fails is counted and skipped, a sink is only handed the alert.
import { subscribeAudit, type AuditEvent } from '../core/events.js';
import type { Clock, Timer } from '../core/clock.js';
import { silentLogger, type Logger } from '../core/log.js';
import { BoundedMap, MAX_KEYS } from './bounded.js';
import { resolveDetectionConfig } from './config.js';
import { createRule, type ExpiringItem, type Rule } from './rules/index.js';
import { DETECT_COMPONENT, type AlertSink } from './sinks.js';
import type { Alert, BlockRequest, DetectionConfig, RuleKind } from './types.js';

export interface DetectorDeps {
  clock: Clock;
  sinks: AlertSink[];
  /** Called for alerts of rules with `block`; applying the block (and auditing it) is the caller's. */
  block?: (b: BlockRequest) => void | Promise<void>;
  /** Certificates and keys to watch, for expiry rules; called on each tick. */
  expiring?: () => ExpiringItem[];
  /**
   * The gateway's SPIFFE ID. Its calls to sidecars carry users' requests: they are attributed to
   * the user the gateway recorded for the same request id, and never counted (or blocked) as the
   * gateway's own. Without it, sidecar and service events of user requests have no user, and no
   * workload is ever blocked (it might be the gateway).
   */
  gatewaySpiffeId?: string;
  logger?: Logger;
  /** Alerts handed to sinks at most per rule per minute; more are dropped and counted (default 60). */
  maxAlertsPerMinute?: number;
  /** Keys tracked per rule at most (default 10,000, fewer for high thresholds). */
  maxKeysPerRule?: number;
}

export interface DetectorStats {
  events: number;
  alerts: number;
  /** Alerts over the per-rule rate: neither sent nor acted on. */
  rateLimited: number;
  blocks: number;
  ruleErrors: number;
  sinkErrors: number;
  blockErrors: number;
  rules: Record<string, { kind: RuleKind; alerts: number; errors: number; keys: number }>;
}

/** Which subject field a block names, in order of preference, per kind (none: never blocked). */
const BLOCK_TARGETS: Readonly<Record<RuleKind, readonly ('principal' | 'address' | 'workload')[]>> = {
  // The guessing address, not the account: blocking accounts would let anyone lock users out.
  'brute-force': ['address', 'principal'],
  'enumeration': ['principal', 'workload'],
  'refusal-spike': ['principal', 'address', 'workload'],
  'workload-refused': ['workload'],
  'new-network': ['principal'],
  'new-call-edge': ['workload'],
  'attack-signature': ['address', 'principal', 'workload'],
  'expiry': [],
};

/** Who the gateway recorded for a request, kept this long for the sidecars' events of it. */
const CORRELATION_MS = 60_000;
const ERROR_LOG_INTERVAL_MS = 60_000;

interface RuleSlot {
  rule: Rule;
  alerts: number;
  errors: number;
  minute: number;
  inMinute: number;
}

export class Detector {
  private readonly slots: RuleSlot[];
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly maxPerMinute: number;
  private readonly users: BoundedMap<AuditEvent['who']>;
  private readonly counts = { events: 0, alerts: 0, rateLimited: 0, blocks: 0, ruleErrors: 0, sinkErrors: 0, blockErrors: 0 };
  private lastErrorLog = Number.NEGATIVE_INFINITY;

  /** Throws PCL_ERR_CONFIG_INVALID for a bad rule set: the only place it throws. */
  constructor(cfg: DetectionConfig, private readonly deps: DetectorDeps) {
    this.clock = deps.clock;
    this.logger = deps.logger ?? silentLogger;
    this.maxPerMinute = deps.maxAlertsPerMinute ?? 60;
    this.users = new BoundedMap(MAX_KEYS);
    const ctx = {
      startedAt: this.clock.now(),
      ...(deps.gatewaySpiffeId !== undefined ? { gatewaySpiffeId: deps.gatewaySpiffeId } : {}),
      ...(deps.maxKeysPerRule !== undefined ? { maxKeys: deps.maxKeysPerRule } : {}),
    };
    const expiring = deps.expiring ?? ((): ExpiringItem[] => []);
    const rules = resolveDetectionConfig(cfg);
    this.slots = rules.map((c) => ({ rule: createRule(c, ctx, expiring), alerts: 0, errors: 0, minute: 0, inMinute: 0 }));
    if (deps.gatewaySpiffeId === undefined && rules.some((r) => r.block && BLOCK_TARGETS[r.kind].includes('workload'))) {
      this.logger.warn('detection has no gatewaySpiffeId: workloads are never blocked, and users behind the gateway are not attributed at sidecars');
    }
  }

  observe(event: AuditEvent): void {
    try {
      // Our own alerts come back through the audit channel (AuditAlertSink): not evidence.
      if (event.component === DETECT_COMPONENT) return;
      this.counts.events++;
      const now = this.clock.now();
      const e = this.attribute(event, now);
      for (const slot of this.slots) this.run(slot, now, (r) => r.observe(e, now));
    } catch (err) {
      this.failed(undefined, err);
    }
  }

  /** Expiry checks and pruning of idle state; call every minute or so (connectDetector does). */
  tick(): void {
    try {
      const now = this.clock.now();
      this.users.prune(now, CORRELATION_MS);
      for (const slot of this.slots) this.run(slot, now, (r) => r.tick(now));
    } catch (err) {
      this.failed(undefined, err);
    }
  }

  stats(): DetectorStats {
    const rules: DetectorStats['rules'] = {};
    for (const s of this.slots) rules[s.rule.config.id] = { kind: s.rule.config.kind, alerts: s.alerts, errors: s.errors, keys: s.rule.size() };
    return { ...this.counts, rules };
  }

  private run(slot: RuleSlot, now: number, step: (r: Rule) => Alert[]): void {
    let alerts: Alert[];
    try {
      alerts = step(slot.rule);
    } catch (err) {
      slot.errors++;
      this.failed(slot.rule.config.id, err);
      return;
    }
    for (const a of alerts) this.emit(slot, a, now);
  }

  private emit(slot: RuleSlot, alert: Alert, now: number): void {
    // A flood of distinct subjects must not become a flood of alerts (or of blocks).
    const minute = Math.floor(now / 60_000);
    if (minute !== slot.minute) { slot.minute = minute; slot.inMinute = 0; }
    if (slot.inMinute >= this.maxPerMinute) {
      this.counts.rateLimited++;
      return;
    }
    slot.inMinute++;
    slot.alerts++;
    this.counts.alerts++;
    for (const sink of this.deps.sinks) {
      try {
        const p = sink.send(alert);
        if (p) p.catch(() => { this.counts.sinkErrors++; });
      } catch {
        this.counts.sinkErrors++;
      }
    }
    const block = slot.rule.config.block;
    if (!block || !this.deps.block) return;
    const kind = BLOCK_TARGETS[alert.kind].find((k) => alert.subject[k] !== undefined);
    const value = kind ? alert.subject[kind] : undefined;
    // Blocking the gateway would take every user down: a workload is blocked only when the
    // gateway's identity is known and it is not that.
    if (!kind || !value || (kind === 'workload' && (this.deps.gatewaySpiffeId === undefined || value === this.deps.gatewaySpiffeId))) return;
    try {
      const p = this.deps.block({ kind, value, seconds: block.seconds, rule: alert.rule, alertId: alert.id });
      if (p) p.catch(() => { this.counts.blockErrors++; });
      this.counts.blocks++;
    } catch {
      this.counts.blockErrors++;
    }
  }

  /**
   * A sidecar's or service's event of a request the gateway forwarded names the gateway as the
   * caller and no user: the user is the one the gateway recorded for that request id. A copy is
   * changed, never the event, which other subscribers (the audit log) hold too.
   */
  private attribute(e: AuditEvent, now: number): AuditEvent {
    const gw = this.deps.gatewaySpiffeId;
    if (gw === undefined || e.type !== 'decision' || e.requestId === undefined) return e;
    if (e.component === 'gateway') {
      if (e.who.sub !== undefined || e.who.clientId !== undefined) {
        const { sub, clientId, sourceAddress } = e.who;
        this.users.set(e.requestId, { sub, clientId, sourceAddress }, now);
      }
      return e;
    }
    if (e.who.spiffeId !== gw || e.who.sub !== undefined || e.who.clientId !== undefined) return e;
    const u = this.users.get(e.requestId);
    if (!u) return e;
    const who = { ...e.who };
    if (u.sub !== undefined) who.sub = u.sub;
    if (u.clientId !== undefined) who.clientId = u.clientId;
    if (u.sourceAddress !== undefined) who.sourceAddress = u.sourceAddress;
    return { ...e, who };
  }

  private failed(ruleId: string | undefined, err: unknown): void {
    this.counts.ruleErrors++;
    const now = this.clock.now();
    if (now - this.lastErrorLog < ERROR_LOG_INTERVAL_MS) return;
    this.lastErrorLog = now;
    this.logger.warn({ rule: ruleId, err: err instanceof Error ? err.message : String(err), errors: this.counts.ruleErrors }, 'detection rule failed; event skipped by that rule');
  }
}

/**
 * Feeds the detector every audit event and ticks it every `tickSeconds` (first tick now).
 * Returns the function that stops both.
 */
export function connectDetector(detector: Detector, clock: Clock, tickSeconds = 60): () => void {
  const unsubscribe = subscribeAudit((e) => detector.observe(e));
  let timer: Timer | undefined;
  let stopped = false;
  const tick = (): void => {
    if (stopped) return;
    detector.tick();
    timer = clock.setTimer(tickSeconds * 1000, tick);
  };
  tick();
  return () => {
    stopped = true;
    timer?.cancel();
    unsubscribe();
  };
}
