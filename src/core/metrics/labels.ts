// Label values must be bounded: every distinct value is a time series kept forever by Prometheus.
// Values come from the config (route ids, service names) or the code (error codes, actions); anything
// else — a raw path, a user id, a value we did not foresee — is folded into OTHER.

export const OTHER = 'other';

/** A label whose values are known in advance (plus ""); anything else reads as OTHER. */
export class KnownLabel {
  private readonly known: ReadonlySet<string>;

  constructor(values: Iterable<string>) {
    this.known = new Set(['', ...values]);
  }

  value(v: string | undefined): string {
    const s = v ?? '';
    return this.known.has(s) ? s : OTHER;
  }
}

/**
 * A label whose values the code defines but nothing lists (admin actions): a value must look like
 * an identifier, and after `max` distinct values every new one reads as OTHER.
 */
export class CappedLabel {
  private readonly seen = new Set<string>();

  constructor(
    private readonly max: number,
    private readonly shape = /^[A-Za-z0-9][\w.:/-]{0,127}$/,
  ) {}

  value(v: string | undefined): string {
    const s = v ?? '';
    if (s === '' || this.seen.has(s)) return s;
    if (!this.shape.test(s) || this.seen.size >= this.max) return OTHER;
    this.seen.add(s);
    return s;
  }
}

/** "2xx" … "5xx"; "none" when no response was sent (the connection closed first). */
export function statusClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'none';
}
