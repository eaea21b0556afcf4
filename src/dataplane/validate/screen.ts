// Defence-in-depth screening of request values for SQL-injection and XSS probes. Services must
// still use parameterised queries and output encoding; this catches the classic probes at the
// edge and feeds detection (attack signatures) with a named signature, never the value.
//
// No maintained, permissively licensed detector exists on npm (there is no libinjection port;
// the packages found are unmaintained regex lists that flag any apostrophe), so this is a compact
// signature set in the libinjection manner: values are tokenised as SQL — as written and as if
// they continued a quoted string — and signatures match token sequences, not substrings. "O'Brien",
// "select a size" or "Rock & Roll" therefore pass, while `' OR '1'='1` does not. The HTML side
// looks for tags, event-handler attributes and script URLs the way a browser would parse them.
//
// Each value is checked as received, and once more in HTML-entity-decoded and %-decoded form when
// those differ (one level: the URL decoding of the query already happened in the router).

/** One signature that matched. */
export interface ScreenFinding {
  kind: 'sqli' | 'xss';
  location: 'path' | 'query' | 'body';
  /** JSON pointer of the value: `/id` (path), `/q` or `/tag/1` (query), `/items/0/note` (body). */
  pointer: string;
  /** A name, e.g. 'sqli:union-select', never the value */
  signature: string;
}

/** A request as the screen sees it. */
export interface ScreenInput {
  params: Record<string, string>;
  query: URLSearchParams;
  body?: unknown;
}

/** Default cap of findings per request. */
const DEFAULT_MAX_FINDINGS = 10;
/** Tokens examined per value: every probe shows itself long before this. */
const MAX_TOKENS = 2048;
/** Body nesting followed while collecting strings (parseSafeJson already limits it to 32). */
const MAX_BODY_DEPTH = 64;

// ---------------------------------------------------------------------------------------------
// SQL tokens

type TokType = 'str' | 'num' | 'word' | 'op' | 'comment' | 'punct';
interface Tok { t: TokType; v: string }

function isWordStart(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x40 || c === 0x24 || c > 0x7f;
}
function isWordChar(c: number): boolean {
  return isWordStart(c) || (c >= 0x30 && c <= 0x39);
}
function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0;
}

/**
 * Tokenises `s` as SQL. `quote` (`'` or `"`) starts the scan inside a string literal opened by
 * that quote: the value is assumed to be pasted into `'...'` by the application.
 */
function sqlTokens(s: string, quote: '' | "'" | '"'): Tok[] {
  const out: Tok[] = [];
  const len = s.length;
  let i = 0;
  const readString = (q: number, from: number): number => {
    // from: first character inside the literal; a doubled quote is an escaped quote.
    let j = from;
    for (;;) {
      if (j >= len) return len;
      const c = s.charCodeAt(j);
      if (c === 0x5c) { j += 2; continue; } // MySQL backslash escape
      if (c === q) {
        if (s.charCodeAt(j + 1) === q) { j += 2; continue; }
        return j + 1;
      }
      j++;
    }
  };
  if (quote !== '') {
    const end = readString(quote.charCodeAt(0), 0);
    out.push({ t: 'str', v: s.slice(0, Math.max(0, end - 1)) });
    i = end;
  }
  while (i < len && out.length < MAX_TOKENS) {
    const c = s.charCodeAt(i);
    if (isSpace(c)) { i++; continue; }
    const next = s.charCodeAt(i + 1);
    if (c === 0x27 || c === 0x22 || c === 0x60) { // ' " `
      const end = readString(c, i + 1);
      out.push({ t: c === 0x60 ? 'word' : 'str', v: s.slice(i + 1, Math.max(i + 1, end - 1)) });
      i = end;
      continue;
    }
    if (c === 0x2d && next === 0x2d) { // -- comment
      const nl = s.indexOf('\n', i);
      out.push({ t: 'comment', v: '--' });
      i = nl === -1 ? len : nl + 1;
      continue;
    }
    if (c === 0x23) { // # comment (MySQL) — only as the end of a line: "'# of items'" is text
      const nl = s.indexOf('\n', i);
      const rest = s.slice(i + 1, nl === -1 ? len : nl);
      if (rest.trim() === '') {
        out.push({ t: 'comment', v: '#' });
        i = nl === -1 ? len : nl + 1;
        continue;
      }
    }
    if (c === 0x2f && next === 0x2a) { // /* comment */; MySQL runs /*! ... */ as code
      if (s.charCodeAt(i + 2) === 0x21) {
        i += 3;
        while (i < len && isDigit(s.charCodeAt(i))) i++;
        continue;
      }
      const close = s.indexOf('*/', i + 2);
      out.push({ t: 'comment', v: '/*' });
      i = close === -1 ? len : close + 2;
      continue;
    }
    if (c === 0x2a && next === 0x2f) { i += 2; continue; } // end of a /*! ... */ block
    if (isDigit(c) || (c === 0x2e && isDigit(next))) {
      let j = i + 1;
      while (j < len && (isWordChar(s.charCodeAt(j)) || s.charCodeAt(j) === 0x2e)) j++; // 1, 1.5, 0x1f, 1e3
      out.push({ t: 'num', v: s.slice(i, j) });
      i = j;
      continue;
    }
    if (isWordStart(c)) {
      let j = i + 1;
      while (j < len && isWordChar(s.charCodeAt(j))) j++;
      out.push({ t: 'word', v: s.slice(i, j).toUpperCase() });
      i = j;
      continue;
    }
    const two = s.slice(i, i + 2);
    if (two === '<>' || two === '!=' || two === '<=' || two === '>=' || two === '||' || two === '&&' || two === ':=') {
      out.push({ t: 'op', v: two });
      i += 2;
      continue;
    }
    if (c === 0x3d || c === 0x3c || c === 0x3e) { out.push({ t: 'op', v: s[i] as string /* i < len */ }); i++; continue; }
    out.push({ t: 'punct', v: s[i] as string /* i < len */ });
    i++;
  }
  return out;
}

const LOGIC = new Set(['OR', 'AND', 'XOR', '||', '&&']);
const COMPARE = new Set(['=', '<>', '!=', '<', '>', '<=', '>=', 'LIKE', 'IS', 'IN', 'REGEXP', 'RLIKE', 'SOUNDS']);
const STACKED: Record<string, Set<string> | null> = {
  DROP: new Set(['TABLE', 'DATABASE', 'SCHEMA', 'VIEW', 'INDEX', 'USER', 'PROCEDURE', 'FUNCTION', 'TRIGGER']),
  TRUNCATE: new Set(['TABLE']),
  ALTER: new Set(['TABLE', 'DATABASE', 'USER', 'VIEW']),
  CREATE: new Set(['TABLE', 'DATABASE', 'USER', 'VIEW', 'PROCEDURE', 'FUNCTION', 'TRIGGER']),
  DELETE: new Set(['FROM']),
  INSERT: new Set(['INTO']),
  SHUTDOWN: null,
  DECLARE: null,
  EXEC: null,
  EXECUTE: null,
};
const CATALOGS = new Set(['INFORMATION_SCHEMA', 'SQLITE_MASTER', 'SQLITE_SCHEMA', 'PG_CATALOG', 'SYSOBJECTS', 'SYSCOLUMNS', 'MSYSOBJECTS']);
const SLEEPERS = new Set(['SLEEP', 'PG_SLEEP', 'BENCHMARK']);

function isOperand(t: Tok | undefined): boolean {
  return t !== undefined && (t.t === 'str' || t.t === 'num' || t.t === 'word' || (t.t === 'punct' && t.v === '('));
}
function isLiteral(t: Tok | undefined): boolean {
  return t !== undefined && (t.t === 'str' || t.t === 'num' || (t.t === 'word' && (t.v === 'TRUE' || t.v === 'NULL')));
}

/** Does what follows SELECT look like a select list ("NULL", "1,2", "password FROM users") rather than prose ("select anyone")? */
function selectList(code: Tok[], i: number): boolean {
  const a = code[i];
  if (a === undefined) return false;
  if (a.t === 'num' || a.t === 'str' || a.v === 'NULL' || a.v === '*' || a.v === '(' || a.v.startsWith('@')) return true;
  if (a.t !== 'word') return false;
  const b = code[i + 1];
  if (b !== undefined && (b.v === ',' || b.v === '(' || b.v === '.' || b.v === ';')) return true;
  return code.slice(i + 1, i + 20).some((t) => t.v === 'FROM');
}

/** Signatures of one token stream; `broken` says the first token ended a quoted string or is a number. */
function sqlSignatures(toks: Tok[], quoted: boolean, found: Set<string>): void {
  const code = toks.filter((t) => t.t !== 'comment');
  // Anywhere: UNION [ALL|DISTINCT] [(] SELECT
  for (let i = 0; i < code.length; i++) {
    const t = code[i] as Tok; // i < length
    if (t.t === 'word' && t.v === 'UNION') {
      let j = i + 1;
      if (code[j]?.v === 'ALL' || code[j]?.v === 'DISTINCT') j++;
      while (code[j]?.v === '(') j++;
      if (code[j]?.v === 'SELECT' && selectList(code, j + 1)) found.add('sqli:union-select');
    }
    if (t.t === 'punct' && t.v === ';') {
      const kw = code[i + 1];
      if (kw?.t === 'word' && Object.hasOwn(STACKED, kw.v)) {
        const objects = STACKED[kw.v];
        if (objects === null || (objects !== undefined && objects.has(code[i + 2]?.v ?? ''))) found.add('sqli:stacked-query');
      }
      if (kw?.v === 'UPDATE' && code[i + 2]?.t === 'word' && code[i + 3]?.v === 'SET') found.add('sqli:stacked-query');
      if (kw?.v === 'SELECT' && code.slice(i + 2, i + 40).some((x) => x.v === 'FROM')) found.add('sqli:stacked-query');
    }
    if (t.t === 'word' && SLEEPERS.has(t.v) && code[i + 1]?.v === '(' && code[i + 2]?.t === 'num' && (code[i + 3]?.v === ')' || code[i + 3]?.v === ',')) found.add('sqli:time-delay');
    if (t.t === 'word' && t.v === 'WAITFOR' && code[i + 1]?.v === 'DELAY') found.add('sqli:time-delay');
    if (t.t === 'word' && CATALOGS.has(t.v) && (code[i + 1]?.v === '.' || code[i - 1]?.v === 'FROM')) found.add('sqli:system-catalog');
  }

  // After a break out of a literal: the first token is the quoted string the value closed, or a
  // number standing where the application expected one.
  const first = toks[0];
  if (first === undefined || !(quoted ? first.t === 'str' : first.t === 'num')) return;
  let k = 1;
  while (toks[k]?.v === ')') k++;
  const next = toks[k];
  if (next === undefined) return;
  if (quoted && next.t === 'comment') { found.add('sqli:comment-truncation'); return; }
  if (LOGIC.has(next.v)) {
    // ' OR '1'='1   1 OR 1=1   ' or ''='   ' AND 1=(SELECT ...)
    let j = k + 1;
    while (toks[j]?.v === 'NOT' || toks[j]?.v === '(') j++;
    const a = toks[j];
    const op = toks[j + 1];
    if (isOperand(a) && op !== undefined && COMPARE.has(op.v) && isOperand(toks[j + 2])) { found.add('sqli:tautology'); return; }
    // ' OR 1--   ' OR TRUE#   (a bare truth value, then the rest of the query cut off)
    const after = toks[j + 1];
    if (isLiteral(a) && (after?.t === 'comment' || (quoted && after === undefined) || after?.v === ';')) found.add('sqli:tautology');
    return;
  }
  if (next.v === ';' || next.v === 'UNION') return; // reported above when it is a real statement
  if (next.v === 'ORDER' && toks[k + 1]?.v === 'BY' && toks[k + 2]?.t === 'num') found.add('sqli:order-by-probe');
  if (next.v === 'GROUP' && toks[k + 1]?.v === 'BY') found.add('sqli:order-by-probe');
  if (next.v === 'HAVING' || next.v === 'PROCEDURE') found.add('sqli:order-by-probe');
}

function screenSql(value: string, found: Set<string>): void {
  sqlSignatures(sqlTokens(value, ''), false, found);
  if (value.includes("'")) sqlSignatures(sqlTokens(value, "'"), true, found);
  if (value.includes('"')) sqlSignatures(sqlTokens(value, '"'), true, found);
}

// ---------------------------------------------------------------------------------------------
// HTML

const SCRIPT_TAGS = new Set(['script']);
const DANGEROUS_TAGS = new Set(['iframe', 'frame', 'frameset', 'object', 'embed', 'applet', 'base', 'meta', 'link', 'style', 'svg', 'math', 'template', 'portal']);
const URL_SCHEMES = ['javascript:', 'vbscript:'];

function isAsciiLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}
function isHtmlSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d;
}

/** Scans the attributes of a tag starting at `i` (after its name); reports event handlers. */
function scanAttributes(s: string, i: number, found: Set<string>): void {
  const len = s.length;
  while (i < len) {
    let c = s.charCodeAt(i);
    if (c === 0x3e) return; // >
    if (isHtmlSpace(c) || c === 0x2f) { i++; continue; }
    const start = i;
    while (i < len && !isHtmlSpace(c = s.charCodeAt(i)) && c !== 0x2f && c !== 0x3e && c !== 0x3d) i++;
    const name = s.slice(start, i).toLowerCase();
    while (i < len && isHtmlSpace(s.charCodeAt(i))) i++;
    if (s.charCodeAt(i) !== 0x3d) continue; // attribute without a value
    i++;
    if (name.length > 2 && name.startsWith('on') && /^on[a-z]+$/.test(name)) found.add('xss:event-handler');
    while (i < len && isHtmlSpace(s.charCodeAt(i))) i++;
    const q = s.charCodeAt(i);
    if (q === 0x22 || q === 0x27) {
      const end = s.indexOf(q === 0x22 ? '"' : "'", i + 1);
      i = end === -1 ? len : end + 1;
    } else {
      while (i < len && !isHtmlSpace(s.charCodeAt(i)) && s.charCodeAt(i) !== 0x3e) i++;
    }
  }
}

/** Browsers ignore tabs and newlines inside a URL scheme ("java\tscript:"): compare without them. */
function schemeAt(s: string, i: number): string | undefined {
  for (const scheme of URL_SCHEMES) {
    let j = i;
    let k = 0;
    while (k < scheme.length && j < s.length) {
      const c = s.charCodeAt(j);
      if (c === 0x09 || c === 0x0a || c === 0x0d) { j++; continue; }
      if ((c | 0x20) !== scheme.charCodeAt(k) && c !== scheme.charCodeAt(k)) break;
      j++;
      k++;
    }
    if (k === scheme.length) return s.slice(j);
  }
  return undefined;
}

/** Code after a script scheme: `alert(1)`, `void(0)`, `x=1`, or a leading symbol — not the words of a book title. */
function looksLikeCode(rest: string): boolean {
  const m = /^\s*([A-Za-z_$][\w$.]*)?\s*(.)/.exec(rest);
  if (!m) return false;
  const sym = m[2] as string; // the regex's second group always matches
  if (m[1] === undefined) return '/([{!+-~\'"`%'.includes(sym);
  return sym === '(' || sym === '`' || sym === '=' || sym === '[';
}

function screenHtml(value: string, found: Set<string>): void {
  const len = value.length;
  for (let i = 0; i < len; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x3c) { // <
      let j = i + 1;
      if (value.charCodeAt(j) === 0x2f) j++; // </script>
      if (!isAsciiLetter(value.charCodeAt(j))) continue; // "<3", "a < b": not a tag
      const start = j;
      while (j < len && (isAsciiLetter(value.charCodeAt(j)) || isDigit(value.charCodeAt(j)) || value.charCodeAt(j) === 0x2d)) j++;
      const name = value.slice(start, j).toLowerCase();
      const endOfName = value.charCodeAt(j);
      if (j < len && !isHtmlSpace(endOfName) && endOfName !== 0x2f && endOfName !== 0x3e) continue; // "<abc&" is text
      if (SCRIPT_TAGS.has(name)) found.add('xss:script-tag');
      else if (DANGEROUS_TAGS.has(name)) found.add('xss:dangerous-tag');
      scanAttributes(value, j, found);
      i = j - 1; // attribute values are scanned too (href="javascript:...")
      continue;
    }
    if ((c | 0x20) === 0x6a || (c | 0x20) === 0x76) { // j, v: javascript: / vbscript:
      const prev = i === 0 ? 0x20 : value.charCodeAt(i - 1);
      if (isAsciiLetter(prev) || isDigit(prev)) continue; // inside a word
      const rest = schemeAt(value, i);
      if (rest !== undefined && looksLikeCode(rest)) found.add('xss:script-url');
      continue;
    }
    if (c === 0x22 || c === 0x27) { // " onmouseover=...: breaking out of an attribute value
      let j = i + 1;
      if (!(isHtmlSpace(value.charCodeAt(j)) || value.charCodeAt(j) === 0x2f)) continue;
      while (j < len && (isHtmlSpace(value.charCodeAt(j)) || value.charCodeAt(j) === 0x2f)) j++;
      const m = /^on[a-z]{3,}\s*=/i.exec(value.slice(j, j + 40));
      if (m) found.add('xss:attribute-breakout');
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

const NAMED_ENTITIES: Record<string, string> = { lt: '<', gt: '>', quot: '"', apos: "'", amp: '&', colon: ':', sol: '/', lpar: '(', rpar: ')', tab: '\t', newline: '\n', equals: '=' };

/** One level of HTML character references, as a browser decodes attribute values and text. */
function decodeEntities(s: string): string {
  return s.replace(/&(#[xX][0-9a-fA-F]{1,8}|#[0-9]{1,10}|[a-zA-Z]{2,8});?/g, (m: string, ref: string) => {
    if (ref.startsWith('#')) {
      const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m;
    }
    return NAMED_ENTITIES[ref.toLowerCase()] ?? m;
  });
}

/** One level of %XX decoding; invalid escapes and invalid UTF-8 stay as they are. */
function decodePercent(s: string): string {
  return s.replace(/(?:%[0-9a-fA-F]{2})+/g, (m) => {
    try {
      return decodeURIComponent(m);
    } catch {
      return m;
    }
  });
}

/** The signatures one value matches, checked as is, entity-decoded and %-decoded. */
function screenValue(value: string): Set<string> {
  const found = new Set<string>();
  const forms = [value];
  if (value.includes('&')) forms.push(decodeEntities(value));
  if (value.includes('%')) forms.push(decodePercent(value));
  for (const form of new Set(forms)) {
    screenSql(form, found);
    screenHtml(form, found);
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Requests

function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * Screens path parameters, query values and every string (values and keys) of a JSON body.
 * Returns at most `maxFindings` (default 10) findings; [] when nothing matched. Pure: it neither
 * blocks nor logs — the caller applies the route's `screen` mode (off, report, block).
 */
export function screenRequest(input: ScreenInput, maxFindings = DEFAULT_MAX_FINDINGS): ScreenFinding[] {
  const findings: ScreenFinding[] = [];
  const check = (location: ScreenFinding['location'], pointer: string, value: string): boolean => {
    for (const signature of screenValue(value)) {
      findings.push({ kind: signature.startsWith('sqli:') ? 'sqli' : 'xss', location, pointer, signature });
      if (findings.length >= maxFindings) return false;
    }
    return true;
  };
  if (maxFindings <= 0) return findings;

  for (const [name, value] of Object.entries(input.params)) {
    if (!check('path', `/${escapePointer(name)}`, value)) return findings;
  }
  const seen = new Map<string, number>();
  for (const [name, value] of input.query) {
    const n = seen.get(name) ?? 0;
    seen.set(name, n + 1);
    const repeated = input.query.getAll(name).length > 1;
    const pointer = `/${escapePointer(name)}${repeated ? `/${n}` : ''}`;
    if (n === 0 && !check('query', pointer, name)) return findings;
    if (!check('query', pointer, value)) return findings;
  }
  if (input.body === undefined) return findings;

  // Iterative walk: a hostile body cannot exhaust the stack.
  const stack: { value: unknown; pointer: string; depth: number }[] = [{ value: input.body, pointer: '', depth: 0 }];
  while (stack.length > 0) {
    const { value, pointer, depth } = stack.pop() as { value: unknown; pointer: string; depth: number }; // length > 0
    if (typeof value === 'string') {
      if (!check('body', pointer, value)) return findings;
    } else if (depth < MAX_BODY_DEPTH && Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], pointer: `${pointer}/${i}`, depth: depth + 1 });
    } else if (depth < MAX_BODY_DEPTH && typeof value === 'object' && value !== null) {
      const entries = Object.entries(value);
      for (const [key] of entries) if (!check('body', `${pointer}/${escapePointer(key)}`, key)) return findings;
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, v] = entries[i] as [string, unknown]; // i < length
        stack.push({ value: v, pointer: `${pointer}/${escapePointer(key)}`, depth: depth + 1 });
      }
    }
  }
  return findings;
}
