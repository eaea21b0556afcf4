// The gateway's JSON body parser. JSON.parse cannot be used on untrusted bodies: it keeps the last
// of duplicate keys (two services may read different values from one body), accepts `__proto__`
// keys that later merge into prototypes, and silently rounds integers beyond 2^53 (an id of
// 9007199254740993 becomes ...992). This is a strict RFC 8259 parser that refuses all of those,
// plus nesting and key-count bombs, in one pass over the string with charCodeAt.
//
// Objects are returned as plain `{}` objects, not null-prototype ones, so downstream code may use
// them normally; that is safe because the only keys that could reach a prototype (`__proto__`,
// `constructor`, `prototype`) are refused at any depth.
import { PortcullisError } from '../../core/errors.js';

/** Limits applied while parsing; a document exceeding one is refused with PCL_ERR_JSON_INVALID. */
export interface JsonLimits {
  /** Deepest nesting of objects and arrays (a top-level object is depth 1). Default 32. */
  maxDepth: number;
  /** Most keys in any one object. Default 1000. */
  maxKeys: number;
  /** Longest string (key or value) in UTF-8 bytes. Default: no limit beyond the body size limit. */
  maxStringBytes?: number;
}

/** maxDepth 32, maxKeys 1000, no string limit. */
export const DEFAULT_JSON_LIMITS: JsonLimits = Object.freeze({ maxDepth: 32, maxKeys: 1000 });

/** Upper bound accepted for maxDepth: the parser recurses once per level. */
const MAX_DEPTH_CEILING = 1000;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SLASH = 0x2f;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;

/** Integers of at most this many digits are always safe and are accumulated without slicing. */
const SAFE_DIGITS = 15;

function fail(message: string, offset: number): never {
  throw new PortcullisError('PCL_ERR_JSON_INVALID', `${message} at offset ${offset}`);
}

function isForbiddenKey(key: string): boolean {
  return key === '__proto__' || key === 'constructor' || key === 'prototype';
}

function hexValue(c: number): number {
  if (c >= ZERO && c <= NINE) return c - ZERO;
  const lower = c | 0x20; // folds A-F onto a-f
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

class Parser {
  private pos = 0;
  private readonly len: number;

  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
    private readonly maxKeys: number,
    private readonly maxStringBytes: number,
  ) {
    this.len = text.length;
  }

  parseDocument(): unknown {
    this.skipWhitespace();
    const value = this.parseValue(0);
    this.skipWhitespace();
    if (this.pos < this.len) fail('unexpected data after the JSON value', this.pos);
    return value;
  }

  private skipWhitespace(): void {
    const text = this.text;
    let pos = this.pos;
    while (pos < this.len) {
      const c = text.charCodeAt(pos);
      // RFC 8259 whitespace: space, tab, line feed, carriage return — nothing else.
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else break;
    }
    this.pos = pos;
  }

  private parseValue(depth: number): unknown {
    if (this.pos >= this.len) fail('unexpected end of input', this.pos);
    const c = this.text.charCodeAt(this.pos);
    if (c === QUOTE) return this.parseString();
    if (c === LBRACE) return this.parseObject(depth + 1);
    if (c === LBRACKET) return this.parseArray(depth + 1);
    if (c === MINUS || (c >= ZERO && c <= NINE)) return this.parseNumber();
    if (c === 0x74 /* t */) return this.literal('true', true);
    if (c === 0x66 /* f */) return this.literal('false', false);
    if (c === 0x6e /* n */) return this.literal('null', null);
    return fail('unexpected character', this.pos);
  }

  private literal<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) fail('unexpected character', this.pos);
    this.pos += word.length;
    return value;
  }

  private parseObject(depth: number): Record<string, unknown> {
    if (depth > this.maxDepth) fail(`nesting deeper than ${this.maxDepth}`, this.pos);
    const start = this.pos;
    this.pos++; // {
    const obj: Record<string, unknown> = {};
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === RBRACE) {
      this.pos++;
      return obj;
    }
    let count = 0;
    for (;;) {
      if (this.text.charCodeAt(this.pos) !== QUOTE) fail(this.pos >= this.len ? 'unexpected end of input' : 'expected a string key', this.pos);
      const keyAt = this.pos;
      const key = this.parseString();
      if (isForbiddenKey(key)) fail('forbidden key (__proto__, constructor or prototype)', keyAt);
      if (Object.hasOwn(obj, key)) fail('duplicate key', keyAt);
      if (++count > this.maxKeys) fail(`object has more than ${this.maxKeys} keys`, start);
      this.skipWhitespace();
      if (this.text.charCodeAt(this.pos) !== COLON) fail(this.pos >= this.len ? 'unexpected end of input' : 'expected ":"', this.pos);
      this.pos++;
      this.skipWhitespace();
      obj[key] = this.parseValue(depth);
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      if (c === COMMA) {
        this.pos++;
        this.skipWhitespace();
        continue;
      }
      if (c === RBRACE) {
        this.pos++;
        return obj;
      }
      fail(this.pos >= this.len ? 'unexpected end of input' : 'expected "," or "}"', this.pos);
    }
  }

  private parseArray(depth: number): unknown[] {
    if (depth > this.maxDepth) fail(`nesting deeper than ${this.maxDepth}`, this.pos);
    this.pos++; // [
    const arr: unknown[] = [];
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === RBRACKET) {
      this.pos++;
      return arr;
    }
    for (;;) {
      arr.push(this.parseValue(depth));
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      if (c === COMMA) {
        this.pos++;
        this.skipWhitespace();
        continue;
      }
      if (c === RBRACKET) {
        this.pos++;
        return arr;
      }
      fail(this.pos >= this.len ? 'unexpected end of input' : 'expected "," or "]"', this.pos);
    }
  }

  private parseString(): string {
    const text = this.text;
    const start = this.pos + 1; // after the opening quote
    let pos = start;
    // Fast path: no escapes — one slice of the source.
    for (;;) {
      if (pos >= this.len) fail('unterminated string', start - 1);
      const c = text.charCodeAt(pos);
      if (c === QUOTE) {
        this.pos = pos + 1;
        return this.checkLength(text.slice(start, pos), start - 1);
      }
      if (c === BACKSLASH) break;
      if (c < 0x20) fail('control character in string', pos);
      if (c >= 0xd800 && c <= 0xdfff) pos = this.checkRawSurrogate(pos);
      else pos++;
    }
    // Slow path: escapes; copy the runs between them.
    let out = text.slice(start, pos);
    let runStart = pos;
    for (;;) {
      if (pos >= this.len) fail('unterminated string', start - 1);
      const c = text.charCodeAt(pos);
      if (c === QUOTE) {
        out += text.slice(runStart, pos);
        this.pos = pos + 1;
        return this.checkLength(out, start - 1);
      }
      if (c === BACKSLASH) {
        out += text.slice(runStart, pos);
        pos = this.readEscape(pos);
        out += this.escaped;
        runStart = pos;
        continue;
      }
      if (c < 0x20) fail('control character in string', pos);
      if (c >= 0xd800 && c <= 0xdfff) pos = this.checkRawSurrogate(pos);
      else pos++;
    }
  }

  /** The text of the escape readEscape last decoded (avoids allocating a result object). */
  private escaped = '';

  /** Decodes the escape at `pos` (a backslash) into `this.escaped`; returns the position after it. */
  private readEscape(pos: number): number {
    const e = this.text.charCodeAt(pos + 1);
    switch (e) {
      case QUOTE: this.escaped = '"'; return pos + 2;
      case BACKSLASH: this.escaped = '\\'; return pos + 2;
      case SLASH: this.escaped = '/'; return pos + 2;
      case 0x62: this.escaped = '\b'; return pos + 2;
      case 0x66: this.escaped = '\f'; return pos + 2;
      case 0x6e: this.escaped = '\n'; return pos + 2;
      case 0x72: this.escaped = '\r'; return pos + 2;
      case 0x74: this.escaped = '\t'; return pos + 2;
      case 0x75: { // \uXXXX, possibly a surrogate pair \uD83D\uDE00
        const unit = this.readHex4(pos + 2);
        if (unit >= 0xdc00 && unit <= 0xdfff) fail('lone low surrogate in \\u escape', pos);
        if (unit >= 0xd800 && unit <= 0xdbff) {
          const next = pos + 6;
          if (this.text.charCodeAt(next) !== BACKSLASH || this.text.charCodeAt(next + 1) !== 0x75) fail('lone high surrogate in \\u escape', pos);
          const low = this.readHex4(next + 2);
          if (low < 0xdc00 || low > 0xdfff) fail('lone high surrogate in \\u escape', pos);
          this.escaped = String.fromCharCode(unit, low);
          return pos + 12;
        }
        this.escaped = String.fromCharCode(unit);
        return pos + 6;
      }
      default:
        return fail(pos + 1 >= this.len ? 'unterminated string' : 'invalid escape', pos);
    }
  }

  private readHex4(pos: number): number {
    if (pos + 4 > this.len) fail('truncated \\u escape', pos);
    let v = 0;
    for (let i = 0; i < 4; i++) {
      const h = hexValue(this.text.charCodeAt(pos + i));
      if (h < 0) fail('invalid \\u escape', pos);
      v = (v << 4) | h;
    }
    return v;
  }

  /** A surrogate code unit in the source text itself (callers may pass strings not decoded from UTF-8). */
  private checkRawSurrogate(pos: number): number {
    const c = this.text.charCodeAt(pos);
    if (c <= 0xdbff) {
      const low = this.text.charCodeAt(pos + 1); // NaN past the end: fails the range check
      if (low >= 0xdc00 && low <= 0xdfff) return pos + 2;
    }
    return fail('lone surrogate in string', pos);
  }

  private checkLength(s: string, at: number): string {
    // Each UTF-16 code unit is at most 3 UTF-8 bytes: only long strings need the exact count.
    if (s.length * 3 > this.maxStringBytes && Buffer.byteLength(s, 'utf8') > this.maxStringBytes) {
      fail(`string longer than ${this.maxStringBytes} bytes`, at);
    }
    return s;
  }

  private parseNumber(): number {
    const text = this.text;
    const start = this.pos;
    let pos = start;
    let negative = false;
    if (text.charCodeAt(pos) === MINUS) {
      negative = true;
      pos++;
    }
    let c = text.charCodeAt(pos);
    const intStart = pos;
    let value = 0;
    if (c === ZERO) {
      pos++;
      c = text.charCodeAt(pos);
      if (c >= ZERO && c <= NINE) fail('leading zero in number', start);
    } else if (c >= ZERO && c <= NINE) {
      do {
        value = value * 10 + (c - ZERO);
        c = text.charCodeAt(++pos);
      } while (c >= ZERO && c <= NINE);
    } else {
      fail('invalid number', start);
    }
    const intDigits = pos - intStart;
    let integer = true;
    if (c === DOT) {
      integer = false;
      c = text.charCodeAt(++pos);
      if (!(c >= ZERO && c <= NINE)) fail('invalid number', start);
      do c = text.charCodeAt(++pos); while (c >= ZERO && c <= NINE);
    }
    if (c === 0x65 || c === 0x45) { // e E
      integer = false;
      c = text.charCodeAt(++pos);
      if (c === PLUS || c === MINUS) c = text.charCodeAt(++pos);
      if (!(c >= ZERO && c <= NINE)) fail('invalid number', start);
      do c = text.charCodeAt(++pos); while (c >= ZERO && c <= NINE);
    }
    this.pos = pos;
    if (integer) {
      if (intDigits <= SAFE_DIGITS) return negative ? -value : value;
      const n = Number(text.slice(start, pos));
      if (!Number.isSafeInteger(n)) fail('integer outside ±(2^53-1)', start);
      return n;
    }
    const n = Number(text.slice(start, pos));
    if (!Number.isFinite(n)) fail('number too large for a double', start);
    return n;
  }
}

function resolveLimits(limits: Partial<JsonLimits> | undefined): { maxDepth: number; maxKeys: number; maxStringBytes: number } {
  const maxDepth = limits?.maxDepth ?? DEFAULT_JSON_LIMITS.maxDepth;
  const maxKeys = limits?.maxKeys ?? DEFAULT_JSON_LIMITS.maxKeys;
  const maxStringBytes = limits?.maxStringBytes ?? Number.POSITIVE_INFINITY;
  if (!Number.isInteger(maxDepth) || maxDepth < 1 || maxDepth > MAX_DEPTH_CEILING) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `JSON maxDepth must be an integer from 1 to ${MAX_DEPTH_CEILING}`);
  }
  if (!Number.isInteger(maxKeys) || maxKeys < 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'JSON maxKeys must be a non-negative integer');
  if (maxStringBytes !== Number.POSITIVE_INFINITY && (!Number.isInteger(maxStringBytes) || maxStringBytes < 0)) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'JSON maxStringBytes must be a non-negative integer');
  }
  return { maxDepth, maxKeys, maxStringBytes };
}

/**
 * Parses one JSON text (RFC 8259: any value at top level, no BOM, no comments, no trailing commas).
 * Throws PCL_ERR_JSON_INVALID, with the character offset, for a syntax error, a `__proto__`,
 * `constructor` or `prototype` key at any depth, a duplicate key, nesting beyond `maxDepth`, more
 * than `maxKeys` keys in one object, a string over `maxStringBytes`, an integer outside ±(2^53−1),
 * a number that is not a finite double (1e400), or a lone surrogate (escaped or raw).
 * Throws PCL_ERR_INVALID_ARGUMENT for limits that are not valid.
 */
export function parseSafeJson(text: string, limits?: Partial<JsonLimits>): unknown {
  const l = resolveLimits(limits);
  return new Parser(text, l.maxDepth, l.maxKeys, l.maxStringBytes).parseDocument();
}

// One decoder for every body: without `stream`, a fatal TextDecoder keeps no state between calls.
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes a body as UTF-8, refusing (PCL_ERR_JSON_INVALID) any invalid sequence: overlong forms,
 * encoded surrogates, truncated characters. A leading byte-order mark is removed.
 */
export function decodeUtf8Strict(buf: Buffer): string {
  try {
    return strictDecoder.decode(buf);
  } catch (err) {
    throw new PortcullisError('PCL_ERR_JSON_INVALID', `body is not valid UTF-8 (${buf.length} bytes)`, { cause: err });
  }
}
