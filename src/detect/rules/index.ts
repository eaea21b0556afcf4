// One rule class per kind; the detector builds them from the resolved config.
import type { ResolvedRule } from '../config.js';
import { AttackSignatureRule } from './attack-signature.js';
import { BruteForceRule } from './brute-force.js';
import { EnumerationRule } from './enumeration.js';
import { ExpiryRule, type ExpiringItem } from './expiry.js';
import { NewCallEdgeRule } from './new-call-edge.js';
import { NewNetworkRule } from './new-network.js';
import { RefusalSpikeRule } from './refusal-spike.js';
import type { Rule, RuleContext } from './rule.js';
import { WorkloadRefusedRule } from './workload-refused.js';

export type { Rule, RuleContext } from './rule.js';
export type { ExpiringItem } from './expiry.js';
export { AttackSignatureRule, BruteForceRule, EnumerationRule, ExpiryRule, NewCallEdgeRule, NewNetworkRule, RefusalSpikeRule, WorkloadRefusedRule };

export function createRule(config: ResolvedRule, ctx: RuleContext, expiring: () => ExpiringItem[]): Rule {
  switch (config.kind) {
    case 'brute-force': return new BruteForceRule(config, ctx);
    case 'enumeration': return new EnumerationRule(config, ctx);
    case 'refusal-spike': return new RefusalSpikeRule(config, ctx);
    case 'workload-refused': return new WorkloadRefusedRule(config, ctx);
    case 'new-network': return new NewNetworkRule(config, ctx);
    case 'new-call-edge': return new NewCallEdgeRule(config, ctx);
    case 'attack-signature': return new AttackSignatureRule(config, ctx);
    case 'expiry': return new ExpiryRule(config, ctx, expiring);
  }
}
