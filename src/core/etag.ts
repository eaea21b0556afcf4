// Entity tags for conditional GET (RFC 9110 §8.8.3, §13.1.2): the control plane tags its snapshot
// with the snapshot's version, and a data plane that already holds it gets 304 and no body.

/** A strong entity tag for `value` (base64url or hex: nothing that needs escaping). */
export function etagOf(value: string): string {
  return `"${value}"`;
}

const LIST_ITEM = /\s*(?:W\/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)/y;

/**
 * Whether an If-None-Match header names `etag` (weak comparison, as RFC 9110 asks for this
 * header) or is `*`. A malformed header matches nothing, so the full answer is sent.
 */
export function matchesEtag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  LIST_ITEM.lastIndex = 0;
  while (LIST_ITEM.lastIndex < header.length) {
    const m = LIST_ITEM.exec(header);
    if (!m) return false;
    if (m[1] === etag) return true;
  }
  return false;
}
