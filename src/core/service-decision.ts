// The SDK's decisions, as a service hands them to its sidecar in a response header on the loopback
// hop. Shared format: the SDK encodes, the sidecar decodes (and strips the header).
export interface ServiceDecision {
  action: string;
  resource: string;
  decision: 'allow' | 'deny';
  reasons: string[];
}

const MAX_HEADER = 16 * 1024;
/** A response filtered item by item (grades of one student) reports each decision, up to this many. */
export const MAX_SERVICE_DECISIONS = 50;

export function encodeServiceDecisions(list: readonly ServiceDecision[]): string {
  return Buffer.from(JSON.stringify(list.slice(0, MAX_SERVICE_DECISIONS)), 'utf8').toString('base64url');
}

function check(v: Partial<ServiceDecision>): ServiceDecision | undefined {
  const str = (x: unknown, max: number): x is string => typeof x === 'string' && x.length > 0 && x.length <= max;
  if (!str(v.action, 256) || !str(v.resource, 512) || (v.decision !== 'allow' && v.decision !== 'deny')) return undefined;
  if (!Array.isArray(v.reasons) || v.reasons.length > 100 || !v.reasons.every((r) => str(r, 256))) return undefined;
  return { action: v.action, resource: v.resource, decision: v.decision, reasons: v.reasons };
}

/** The decisions, or undefined when the header is not a valid list (never trusted beyond the audit record). */
export function decodeServiceDecisions(raw: string | string[]): ServiceDecision[] | undefined {
  if (typeof raw !== 'string' || raw.length > MAX_HEADER) return undefined;
  try {
    const v = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as unknown;
    if (!Array.isArray(v) || v.length === 0 || v.length > MAX_SERVICE_DECISIONS) return undefined;
    const out = v.map((x) => (typeof x === 'object' && x !== null ? check(x as Partial<ServiceDecision>) : undefined));
    return out.every((x) => x !== undefined) ? (out as ServiceDecision[]) : undefined; // each checked
  } catch {
    return undefined;
  }
}
