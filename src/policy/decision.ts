// The shape of every authorization decision, the same as Cedar's so the engine can be swapped
// (issue 4) without touching callers or audit: an error never yields allow.
export interface Decision {
  decision: 'allow' | 'deny';
  /** Ids of the policies that produced the decision; empty for deny-by-default. */
  reasons: string[];
  errors: string[];
}

export const denyByDefault: Decision = Object.freeze({ decision: 'deny', reasons: [], errors: [] }) as Decision;
