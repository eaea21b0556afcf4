// Canonical JSON, the encoding the audit chain hashes: object members sorted by key (UTF-16 code
// units, as RFC 8785 JCS orders them), no whitespace, strings and numbers spelt as JSON.stringify
// spells them (which is what JCS specifies for both). One value has exactly one spelling, so any
// writer or verifier that parses an entry and re-encodes it gets the same bytes and the same hash.
//
// Only what JSON can carry round-trip is accepted: plain objects, arrays, strings, finite numbers,
// booleans, null. Members whose value is `undefined` are left out (as JSON.stringify does, so an
// optional field that is absent and one that is undefined hash alike); anything else is refused.

/** Deeper nesting is refused: it also stops a cyclic object. */
export const MAX_DEPTH = 32;

export class CanonicalJsonError extends Error {
  override readonly name = 'CanonicalJsonError';
}

export function canonicalJson(value: unknown): string {
  // The common case: a copy with members in sorted order, spelt by the native JSON.stringify (a
  // third of the cost of encoding piece by piece). JSON.stringify puts integer-like keys ("7")
  // first whatever the insertion order, so a value with a key that starts with a digit is encoded
  // piece by piece instead; both give the same bytes (test/audit/canonical.test.ts compares them).
  const copy = sortedCopy(value, 0);
  return copy === DIGIT_KEY ? encode(value, 0) : JSON.stringify(copy);
}

/** sortedCopy's answer when a key would be reordered by JSON.stringify. */
const DIGIT_KEY: unique symbol = Symbol('digit key');

/**
 * The value with every object's members inserted in sorted order, checked as encode() checks it.
 * An object or array already in canonical order is returned itself, not copied (the data plane
 * builds its decision events that way).
 */
function sortedCopy(v: unknown, depth: number): unknown {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v;
    case 'number':
      if (!Number.isFinite(v)) throw new CanonicalJsonError('a number is not finite');
      return v;
    case 'object': {
      if (v === null) return null;
      if (depth >= MAX_DEPTH) throw new CanonicalJsonError(`nested deeper than ${MAX_DEPTH} levels`);
      if (Array.isArray(v)) {
        let out: unknown[] | undefined;
        for (let i = 0; i < v.length; i++) {
          const item: unknown = v[i];
          if (item === undefined) throw new CanonicalJsonError('an array holds undefined');
          const c = sortedCopy(item, depth + 1);
          if (c === DIGIT_KEY) return DIGIT_KEY;
          if (c !== item) (out ??= v.slice(0, i))[i] = c;
          else if (out) out[i] = c;
        }
        return out ?? v;
      }
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) throw new CanonicalJsonError('only plain objects are accepted');
      const obj = v as Record<string, unknown>; // a plain object, checked just above
      const keys = Object.keys(obj);
      let same = true; // members already in order, and each value its own canonical form
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i] as string; // index checked
        const code = k.charCodeAt(0);
        if (code >= 48 && code <= 57) return DIGIT_KEY;
        if (i > 0 && (keys[i - 1] as string) >= k) same = false;
      }
      if (same) {
        for (const k of keys) {
          const item = obj[k];
          if (item === undefined) continue;
          const c = sortedCopy(item, depth + 1);
          if (c === DIGIT_KEY) return DIGIT_KEY;
          if (c !== item) { same = false; break; }
        }
        if (same) return obj;
      }
      if (keys.length > 1) keys.sort();
      const out: Record<string, unknown> = {};
      for (const k of keys) {
        const item = obj[k];
        if (item === undefined) continue;
        const c = sortedCopy(item, depth + 1);
        if (c === DIGIT_KEY) return DIGIT_KEY;
        if (k === '__proto__') Object.defineProperty(out, k, { value: c, enumerable: true, writable: true, configurable: true });
        else out[k] = c;
      }
      return out;
    }
    default:
      throw new CanonicalJsonError(`a ${typeof v} cannot be stored`);
  }
}

// String concatenation, not arrays and join(): the piece-by-piece encoding, for values whose keys
// JSON.stringify would reorder.
function encode(v: unknown, depth: number): string {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      if (!Number.isFinite(v)) throw new CanonicalJsonError('a number is not finite');
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object': {
      if (v === null) return 'null';
      if (depth >= MAX_DEPTH) throw new CanonicalJsonError(`nested deeper than ${MAX_DEPTH} levels`);
      if (Array.isArray(v)) {
        let out = '[';
        // An index loop, not map(): map skips holes, which would silently drop them.
        for (let i = 0; i < v.length; i++) {
          const item: unknown = v[i];
          if (item === undefined) throw new CanonicalJsonError('an array holds undefined');
          out += (i === 0 ? '' : ',') + encode(item, depth + 1);
        }
        return `${out}]`;
      }
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) throw new CanonicalJsonError('only plain objects are accepted');
      // Checked as a plain object just above; a string-keyed view is what the loop needs.
      const obj = v as Record<string, unknown>;
      const keys = Object.keys(obj);
      if (keys.length > 1) keys.sort();
      let out = '{';
      let first = true;
      for (const k of keys) {
        const item = obj[k];
        if (item === undefined) continue;
        out += `${first ? '' : ','}${JSON.stringify(k)}:${encode(item, depth + 1)}`;
        first = false;
      }
      return `${out}}`;
    }
    default:
      // undefined at the top, bigint, symbol, function: none survives a JSON round trip.
      throw new CanonicalJsonError(`a ${typeof v} cannot be stored`);
  }
}
