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
  return encode(value, 0);
}

// String concatenation, not arrays and join(): this runs once per appended event and is the
// writer's main cost, so it avoids the intermediate arrays.
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
