// Attack signatures in a request target: what scanners and injection probes send. Matched on
// the path as recorded (the raw target when the normalizer refused it, query included) and on
// its percent-decoded forms (twice, for double encoding), so "%2e%2e%2f" is seen as "../".
// Patterns are anchored on syntax an ordinary path never has, and none can backtrack badly.

export interface Signature {
  name: string;
  /** `raw` as recorded; `decoded` percent-decoded twice, "+" as space, lower case. */
  test(raw: string, decoded: string): boolean;
}

const re = (...patterns: RegExp[]) => (s: string): boolean => patterns.some((p) => p.test(s));

export const SIGNATURES: readonly Signature[] = [
  {
    name: 'path-traversal',
    test: (raw, d) => re(/(?:^|[/\\])\.\.(?:[/\\;]|$)/, /\/etc\/(?:passwd|shadow)\b/, /\bwin\.ini\b/, /\/proc\/self\//)(d)
      || /%c0%ae|%e0%80%ae|%u002e|%uff0e/i.test(raw),
  },
  { name: 'encoded-separator', test: (raw) => /%(?:25)*(?:2f|5c)/i.test(raw) },
  { name: 'nul-byte', test: (raw, d) => /%(?:25)*00/.test(raw) || d.includes('\u0000') },
  { name: 'crlf-injection', test: (raw, d) => /%(?:25)*0[ad]/i.test(raw) || /[\r\n]/.test(d) },
  { name: 'request-smuggling', test: (_raw, d) => re(/\bhttp\/1\.[01]\b/, /\btransfer-encoding\s*:/, /\bcontent-length\s*:/)(d) },
  {
    name: 'sql-injection',
    test: (_raw, d) => re(
      /\bunion\b[\s/*]{1,20}(?:all[\s/*]{1,20})?select\b/,
      /['"`]\s*(?:or|and)\s+['"`]?\w{0,20}['"`]?\s*(?:=|like\b|>|<)/,
      /\b(?:or|and)\s+\d{1,6}\s*=\s*\d{1,6}\s*(?:--|#|\/\*|$)/,
      /['"`]\s*(?:--|#|\/\*|;)/,
      /;\s*(?:drop|delete|insert|update|truncate|alter|exec|shutdown)\b/,
      /\b(?:sleep|benchmark|pg_sleep)\s*\(|\bwaitfor\s+delay\b/,
      /\binformation_schema\b|\bxp_cmdshell\b|\bload_file\s*\(/,
    )(d),
  },
  {
    name: 'xss',
    test: (_raw, d) => re(
      /<\s*\/?\s*(?:script|iframe|svg|img|object|embed|body|math|details)\b/,
      /\b(?:javascript|vbscript)\s*:/,
      /\bon(?:error|load|mouseover|focus|click|toggle|begin)\s*=/,
    )(d),
  },
  {
    name: 'command-injection',
    test: (_raw, d) => re(
      /(?:;|\||&&|`|\$\()\s*(?:cat|id|whoami|uname|wget|curl|nc|bash|sh|powershell)\b/,
      /\$\{\s*jndi\s*:/,
    )(d),
  },
];

const MAX_INSPECTED = 8192;

/** Percent-escapes decoded one round ("%uXXXX" too); anything malformed is left as it is. */
function decodeOnce(s: string): string {
  return s
    .replace(/%u([0-9a-f]{4})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16)))
    .replace(/%([0-9a-f]{2})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** Only unreserved characters and "/": no escapes, quotes, spaces or punctuation to inspect. */
const PLAIN = /^[A-Za-z0-9\-._~/]*$/;
/** What a signature can still find in a plain path. */
const PLAIN_SUSPECT = /\.\.|\/etc\/|win\.ini|\/proc\/|http\/1\.|information_schema|xp_cmdshell/i;

/** Names of the signatures `path` carries, in catalogue order; empty for an ordinary path. */
export function matchSignatures(path: string): string[] {
  // Most paths are plain: skip the decoding and the catalogue for them (the hot path).
  if (PLAIN.test(path) && !PLAIN_SUSPECT.test(path)) return [];
  const raw = path.slice(0, MAX_INSPECTED);
  const decoded = decodeOnce(decodeOnce(raw.replace(/\+/g, ' '))).toLowerCase();
  return SIGNATURES.filter((s) => s.test(raw, decoded)).map((s) => s.name);
}
