// Rule defaults, documented where they are set, and the checks the JSON Schema cannot make
// (unique ids, sane bounds). The result is frozen: rules never see a config change under them.
import { PortcullisError } from '../core/errors.js';
import { RULE_KINDS, SEVERITIES, type DetectionConfig, type RuleConfig, type RuleKind, type Severity } from './types.js';

export interface ResolvedRule {
  readonly id: string;
  readonly kind: RuleKind;
  readonly severity: Severity;
  readonly threshold: number;
  readonly windowSeconds: number;
  readonly learningSeconds: number;
  readonly days: number;
  readonly block?: { readonly seconds: number };
}

/**
 * Defaults per kind. Thresholds count hits in one window, except where a rule counts distinct
 * values (enumeration: resources; new-network: networks; brute-force per address: accounts).
 */
export const RULE_DEFAULTS: Readonly<Record<RuleKind, { threshold: number; windowSeconds: number; learningSeconds: number; days: number }>> = {
  // 5 failed logins on one account, or failures on 5 accounts from one address, in 5 minutes.
  'brute-force': { threshold: 5, windowSeconds: 300, learningSeconds: 0, days: 0 },
  // 10 distinct resources (or paths) refused to one principal in 5 minutes.
  'enumeration': { threshold: 10, windowSeconds: 300, learningSeconds: 0, days: 0 },
  // 20 refusals in 1 minute for one principal/address, or for one route from 3+ sources.
  'refusal-spike': { threshold: 20, windowSeconds: 60, learningSeconds: 0, days: 0 },
  // Any refused call between workloads; one alert per caller and target service per 5 minutes.
  'workload-refused': { threshold: 1, windowSeconds: 300, learningSeconds: 0, days: 0 },
  // One credential from 2 networks (/24, /48) within 15 minutes.
  'new-network': { threshold: 2, windowSeconds: 900, learningSeconds: 0, days: 0 },
  // Learn the call graph for 1 day; then one alert per calling workload per hour.
  'new-call-edge': { threshold: 1, windowSeconds: 3600, learningSeconds: 86_400, days: 0 },
  // 3 requests carrying attack signatures from one source in 5 minutes.
  'attack-signature': { threshold: 3, windowSeconds: 300, learningSeconds: 0, days: 0 },
  // Certificates and keys expiring within 14 days; once per item (and expiry date).
  'expiry': { threshold: 1, windowSeconds: 86_400, learningSeconds: 0, days: 14 },
};

/** Per-key state holds at most `threshold` hits, so thresholds are capped to keep memory bounded. */
export const MAX_THRESHOLD = 1000;
const MAX_WINDOW_SECONDS = 7 * 86_400;
const MAX_LEARNING_SECONDS = 90 * 86_400;
/** A block is temporary by design: at most one week. */
const MAX_BLOCK_SECONDS = 7 * 86_400;
const RULE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const RULE_KEYS = ['id', 'kind', 'severity', 'threshold', 'windowSeconds', 'learningSeconds', 'days', 'block'];

function invalid(where: string, why: string): PortcullisError {
  return new PortcullisError('PCL_ERR_CONFIG_INVALID', `detection.${where}: ${why}`);
}

function int(where: string, v: unknown, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(where, `must be a whole number from ${min} to ${max}`);
  return v;
}

/** Applies defaults and checks every rule; throws PCL_ERR_CONFIG_INVALID naming the first problem. */
export function resolveDetectionConfig(cfg: DetectionConfig): readonly ResolvedRule[] {
  if (typeof cfg !== 'object' || cfg === null || !Array.isArray(cfg.rules)) throw invalid('rules', 'must be a list');
  const seen = new Set<string>();
  const out = cfg.rules.map((r: RuleConfig, i): ResolvedRule => {
    const at = `rules[${i}]`;
    if (typeof r !== 'object' || r === null) throw invalid(at, 'must be an object');
    const extra = Object.keys(r).find((k) => !RULE_KEYS.includes(k));
    if (extra) throw invalid(`${at}.${extra}`, `unknown key (known: ${RULE_KEYS.join(', ')})`);
    if (typeof r.id !== 'string' || !RULE_ID.test(r.id)) throw invalid(`${at}.id`, 'must be 1-64 letters, digits, ".", "_" or "-"');
    if (seen.has(r.id)) throw invalid(`${at}.id`, `"${r.id}" is used twice`);
    seen.add(r.id);
    if (!RULE_KINDS.includes(r.kind)) throw invalid(`${at}.kind`, `must be one of ${RULE_KINDS.join(', ')}`);
    if (!SEVERITIES.includes(r.severity)) throw invalid(`${at}.severity`, `must be one of ${SEVERITIES.join(', ')}`);
    const d = RULE_DEFAULTS[r.kind];
    let block: ResolvedRule['block'];
    if (r.block !== undefined) {
      if (typeof r.block !== 'object' || r.block === null) throw invalid(`${at}.block`, 'must be an object with seconds');
      if (r.kind === 'expiry') throw invalid(`${at}.block`, 'an expiry alert has nothing to block');
      block = Object.freeze({ seconds: int(`${at}.block.seconds`, r.block.seconds ?? -1, 0, 1, MAX_BLOCK_SECONDS) });
    }
    return Object.freeze({
      id: r.id,
      kind: r.kind,
      severity: r.severity,
      threshold: int(`${at}.threshold`, r.threshold, d.threshold, 1, MAX_THRESHOLD),
      windowSeconds: int(`${at}.windowSeconds`, r.windowSeconds, d.windowSeconds, 1, MAX_WINDOW_SECONDS),
      learningSeconds: int(`${at}.learningSeconds`, r.learningSeconds, d.learningSeconds, 0, MAX_LEARNING_SECONDS),
      days: int(`${at}.days`, r.days, d.days, 1, 365),
      ...(block ? { block } : {}),
    });
  });
  return Object.freeze(out);
}

/** A sensible rule set: one rule per kind, nothing blocked automatically. */
export function defaultDetectionConfig(): DetectionConfig {
  return {
    rules: [
      { id: 'login-brute-force', kind: 'brute-force', severity: 'high' },
      { id: 'object-enumeration', kind: 'enumeration', severity: 'high' },
      { id: 'refusal-spike', kind: 'refusal-spike', severity: 'medium' },
      { id: 'workload-refused', kind: 'workload-refused', severity: 'high' },
      { id: 'credential-new-network', kind: 'new-network', severity: 'medium' },
      { id: 'new-call-edge', kind: 'new-call-edge', severity: 'medium' },
      { id: 'attack-signature', kind: 'attack-signature', severity: 'high' },
      { id: 'expiry', kind: 'expiry', severity: 'medium' },
    ],
  };
}
