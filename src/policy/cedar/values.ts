// Cedar runtime values, the four extension types and Cedar equality, shaped after cedar-wasm 4.13
// (checked against it, not against the prose spec). Values are plain JS where possible so the
// request's JSON can be used without copying:
//   bool → boolean, String → string, Set → array (duplicates allowed, compared as sets),
//   Record → plain object (own keys only), Long → number when |v| < 2^53 else bigint,
//   entity → EntityRef, extension values → IpAddr | Decimal | Datetime | Duration.
import { rememberLast } from '../../core/remember-last.js';

/** An evaluation error: the policy errors, it is never satisfied. Not an `Error` so throwing it
 *  costs no stack trace on the hot path. */
export class CedarEvalError {
  constructor(readonly message: string) {}
}

export class EntityRef {
  #key: string | undefined;
  constructor(
    readonly type: string,
    readonly id: string,
  ) {}
  /** `Type::"id"`: unambiguous because type names never contain a quote. */
  get key(): string {
    return (this.#key ??= entityKey(this.type, this.id));
  }
}

export function entityKey(type: string, id: string): string {
  return type + '::"' + id + '"';
}

export type Value = boolean | number | bigint | string | Value[] | EntityRef | ExtValue | CRecord;
export interface CRecord {
  [attr: string]: Value;
}

/** Sets a record field. Records are plain objects (V8 keeps those fast; null-prototype objects
 *  are dictionaries), read only through own-property checks, so the one key to take care of is
 *  `__proto__`, which plain assignment would turn into a prototype change. */
export function setField(r: CRecord, key: string, v: Value): void {
  if (key === '__proto__') Object.defineProperty(r, key, { value: v, enumerable: true, writable: true, configurable: true });
  else r[key] = v;
}

// ---------- Long (i64) ----------

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

export function isLong(v: Value): v is number | bigint {
  return typeof v === 'number' || typeof v === 'bigint';
}

/** Canonical Long: a number when safe, else a bigint; `undefined` when outside i64. */
export function longFromBig(b: bigint): number | bigint | undefined {
  if (b < I64_MIN || b > I64_MAX) return undefined;
  return b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : b;
}

function overflow(op: string, a: number | bigint, b: number | bigint): CedarEvalError {
  return new CedarEvalError(`integer overflow while attempting to ${op} the values \`${a}\` and \`${b}\``);
}

export function longAdd(a: Value, b: Value): number | bigint {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a + b;
    if (r <= Number.MAX_SAFE_INTEGER && r >= -Number.MAX_SAFE_INTEGER) return r;
  }
  const [x, y] = twoLongs(a, b);
  const r = longFromBig(BigInt(x) + BigInt(y));
  if (r === undefined) throw overflow('add', x, y);
  return r;
}

export function longSub(a: Value, b: Value): number | bigint {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a - b;
    if (r <= Number.MAX_SAFE_INTEGER && r >= -Number.MAX_SAFE_INTEGER) return r;
  }
  const [x, y] = twoLongs(a, b);
  const r = longFromBig(BigInt(x) - BigInt(y));
  if (r === undefined) throw overflow('subtract', x, y);
  return r;
}

export function longMul(a: Value, b: Value): number | bigint {
  if (typeof a === 'number' && typeof b === 'number') {
    // A true product beyond 2^53 can only round to a float >= 2^53, so this test is exact.
    const r = a * b;
    if (r <= Number.MAX_SAFE_INTEGER && r >= -Number.MAX_SAFE_INTEGER) return r === 0 ? 0 : r;
  }
  const [x, y] = twoLongs(a, b);
  const r = longFromBig(BigInt(x) * BigInt(y));
  if (r === undefined) throw overflow('multiply', x, y);
  return r;
}

export function longNeg(a: Value): number | bigint {
  if (typeof a === 'number') return a === 0 ? 0 : -a;
  if (typeof a !== 'bigint') throw typeError('long', a);
  const r = longFromBig(-a);
  if (r === undefined) throw new CedarEvalError(`integer overflow while attempting to negate the value \`${a}\``);
  return r;
}

function twoLongs(a: Value, b: Value): [number | bigint, number | bigint] {
  if (!isLong(a)) throw typeError('long', a);
  if (!isLong(b)) throw typeError('long', b);
  return [a, b];
}

/** `<`: Long with Long, datetime with datetime, duration with duration. */
export function lessThan(a: Value, b: Value, orEqual: boolean): boolean {
  if (typeof a === 'number' && typeof b === 'number') return orEqual ? a <= b : a < b;
  if (isLong(a) || isLong(b)) {
    if (!isLong(a)) throw typeError('long', a);
    if (!isLong(b)) throw typeError('long', b);
    return orEqual ? a <= b : a < b;
  }
  if (a instanceof Datetime || a instanceof Duration) {
    if (b.constructor !== a.constructor) throw typeError(a.typeName, b);
    const y = (b as Datetime | Duration).ms; // same class, checked above
    return orEqual ? a.ms <= y : a.ms < y;
  }
  throw typeErrorOneOf(['long', 'datetime', 'duration'], a);
}

// ---------- type names and errors (worded like cedar-wasm) ----------

export function typeNameOf(v: Value): string {
  switch (typeof v) {
    case 'boolean':
      return 'bool';
    case 'number':
    case 'bigint':
      return 'long';
    case 'string':
      return 'string';
    default:
      if (Array.isArray(v)) return 'set';
      if (v instanceof EntityRef) return `(entity of type \`${v.type}\`)`;
      if (v instanceof ExtValue) return v.typeName;
      return 'record';
  }
}

export function typeError(expected: string, got: Value): CedarEvalError {
  return new CedarEvalError(`type error: expected ${expected}, got ${typeNameOf(got)}`);
}

export function typeErrorOneOf(expected: string[], got: Value): CedarEvalError {
  return new CedarEvalError(`type error: expected one of [${expected.join(', ')}], got ${typeNameOf(got)}`);
}

export const ANY_ENTITY = '(entity of type `any_entity_type`)';

/** Rust's `escape_debug` for the characters that matter in messages. */
export function quote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c === 0x7f) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return out + '"';
}

export function displayUid(e: EntityRef): string {
  return `${e.type}::${quote(e.id)}`;
}

// ---------- equality ----------

/** Cedar `==`: never errors, different types are unequal, sets compare as sets. */
export function valueEquals(a: Value, b: Value): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object') return false;
  if (a instanceof EntityRef) return b instanceof EntityRef && a.type === b.type && a.id === b.id;
  if (Array.isArray(a)) return Array.isArray(b) && setEquals(a, b);
  if (a instanceof ExtValue) return b instanceof ExtValue && a.equals(b);
  if (Array.isArray(b) || b instanceof EntityRef || b instanceof ExtValue) return false;
  return recordEquals(a, b);
}

export function setContains(set: Value[], v: Value): boolean {
  if (typeof v !== 'object') {
    for (let i = 0; i < set.length; i++) if (set[i] === v) return true;
    return false;
  }
  for (let i = 0; i < set.length; i++) if (valueEquals(set[i] as Value, v)) return true;
  return false;
}

/** Every element of `sub` is in `sup`. */
export function setSubset(sub: Value[], sup: Value[]): boolean {
  for (let i = 0; i < sub.length; i++) if (!setContains(sup, sub[i] as Value)) return false;
  return true;
}

function setEquals(a: Value[], b: Value[]): boolean {
  return setSubset(a, b) && setSubset(b, a);
}

function recordEquals(a: CRecord, b: CRecord): boolean {
  let n = 0;
  for (const k in a) {
    if (!Object.hasOwn(a, k)) continue;
    n++;
    if (!Object.hasOwn(b, k) || !valueEquals(a[k] as Value, b[k] as Value)) return false;
  }
  for (const k in b) if (Object.hasOwn(b, k)) n--;
  return n === 0;
}

// ---------- extension values ----------

export abstract class ExtValue {
  abstract readonly typeName: 'ipaddr' | 'decimal' | 'datetime' | 'duration';
  abstract equals(other: ExtValue): boolean;
}

function extError(ext: string, msg: string): CedarEvalError {
  return new CedarEvalError(`error while evaluating \`${ext}\` extension function: ${msg}`);
}

/** An IPv4/IPv6 address with its prefix; equality is on (address, prefix), as in Cedar.
 *  IPv4 lives in a plain number (the hot path), IPv6 in a bigint. */
export class IpAddr extends ExtValue {
  readonly typeName = 'ipaddr';
  constructor(
    readonly v6: boolean,
    /** IPv4 address as an unsigned 32-bit number (0 for IPv6). */
    readonly v4addr: number,
    /** IPv6 address as a 128-bit unsigned bigint (0n for IPv4). */
    readonly v6addr: bigint,
    readonly prefix: number,
  ) {
    super();
  }
  equals(o: ExtValue): boolean {
    return o instanceof IpAddr && o.v6 === this.v6 && o.v4addr === this.v4addr && o.v6addr === this.v6addr && o.prefix === this.prefix;
  }
  isInRange(o: IpAddr): boolean {
    if (this.v6 !== o.v6) return false;
    if (!this.v6) {
      const net = (a: number, p: number) => (p === 0 ? 0 : (a & (0xffffffff << (32 - p))) >>> 0);
      const bc = (a: number, p: number) => (p === 32 ? a : (a | (0xffffffff >>> p)) >>> 0);
      return net(o.v4addr, o.prefix) <= net(this.v4addr, this.prefix) && bc(this.v4addr, this.prefix) <= bc(o.v4addr, o.prefix);
    }
    const net = (a: bigint, p: number) => (a >> BigInt(128 - p)) << BigInt(128 - p);
    const bc = (a: bigint, p: number) => a | ((1n << BigInt(128 - p)) - 1n);
    return net(o.v6addr, o.prefix) <= net(this.v6addr, this.prefix) && bc(this.v6addr, this.prefix) <= bc(o.v6addr, o.prefix);
  }
  isLoopback(): boolean {
    // Cedar 4.13: the whole range must be loopback (127.0.0.0/8, ::1).
    return this.v6 ? this.v6addr === 1n && this.prefix === 128 : this.v4addr >>> 24 === 127 && this.prefix >= 8;
  }
  isMulticast(): boolean {
    return this.v6 ? this.v6addr >> 120n === 0xffn && this.prefix >= 8 : this.v4addr >>> 28 === 0xe && this.prefix >= 4;
  }
}

/** Rust's `Ipv4Addr::from_str`: four decimal octets of 1-3 digits, no leading zeros; -1 if invalid. */
function parseIpv4(s: string): number {
  let value = 0;
  let octets = 0;
  let i = 0;
  const n = s.length;
  while (true) {
    const start = i;
    let oct = 0;
    while (i < n && i - start < 4) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      oct = oct * 10 + (c - 48);
      i++;
    }
    const len = i - start;
    if (len === 0 || len > 3 || oct > 255 || (len > 1 && s.charCodeAt(start) === 48)) return -1;
    value = value * 256 + oct;
    if (++octets === 4) return i === n ? value : -1;
    if (i >= n || s.charCodeAt(i) !== 46) return -1;
    i++;
  }
}

/** Rust's `Ipv6Addr::from_str` without the embedded-IPv4 forms (Cedar refuses those earlier). */
function parseIpv6(s: string): bigint | undefined {
  const readGroups = (str: string, limit: number): number[] | undefined => {
    if (str === '') return [];
    const parts = str.split(':');
    if (parts.length > limit) return undefined;
    const out: number[] = [];
    for (const p of parts) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
      out.push(parseInt(p, 16));
    }
    return out;
  };
  let groups: number[];
  const dc = s.indexOf('::');
  if (dc < 0) {
    const g = readGroups(s, 8);
    if (g === undefined || g.length !== 8) return undefined;
    groups = g;
  } else {
    const head = readGroups(s.slice(0, dc), 7);
    if (head === undefined) return undefined;
    const tail = readGroups(s.slice(dc + 2), 7 - head.length);
    if (tail === undefined) return undefined;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(g);
  return v;
}

/** An address without prefix; prefix -1 marks "not an address". */
function parseIpOnly(s: string, prefix: number): IpAddr | undefined {
  const v4 = parseIpv4(s);
  if (v4 >= 0) return new IpAddr(false, v4, 0n, prefix < 0 ? 32 : prefix);
  const v6 = parseIpv6(s);
  return v6 === undefined ? undefined : new IpAddr(true, 0, v6, prefix < 0 ? 128 : prefix);
}

function atLeastTwo(s: string, c: string): boolean {
  const i = s.indexOf(c);
  return i >= 0 && s.indexOf(c, i + 1) >= 0;
}

// Values are immutable, and a busy gateway parses the same `now` (to the millisecond) and the same
// client address again and again: each parser remembers its last answer.
export const parseIp: (s: string) => IpAddr = rememberLast(parseIpUncached);

function parseIpUncached(s: string): IpAddr {
  const E = (m: string) => extError('ipaddr', m);
  if (atLeastTwo(s, ':') && atLeastTwo(s, '.')) {
    throw E(`error parsing IP address from string: We do not accept IPv4 embedded in IPv6 (e.g., ::ffff:127.0.0.1). Found: \`${s}\``);
  }
  const whole = parseIpOnly(s, -1);
  if (whole) return whole;
  const slash = s.indexOf('/');
  if (slash < 0) throw E(`invalid IP address: ${s}`);
  const addrStr = s.slice(0, slash);
  const prefixStr = s.slice(slash + 1);
  const addr = parseIpOnly(addrStr, -1);
  if (!addr) throw E(`error parsing IP address from the string \`${addrStr}\`: invalid IP address syntax`);
  const max = addr.v6 ? 128 : 32;
  if (prefixStr.length > (addr.v6 ? 3 : 2)) throw E(`error parsing prefix: string length ${prefixStr.length} is too large`);
  if (prefixStr === '') throw E('error parsing prefix from the string ``: cannot parse integer from empty string');
  if (!/^[0-9]+$/.test(prefixStr)) throw E(`error parsing prefix \`${prefixStr}\`: encountered non-digit`);
  if (prefixStr.length > 1 && prefixStr[0] === '0') throw E(`error parsing prefix \`${prefixStr}\`: leading zero(s)`);
  const prefix = Number(prefixStr);
  if (prefix > max) throw E(`error parsing prefix: ${prefix} is larger than the limit ${max}`);
  return parseIpOnly(addrStr, prefix) as IpAddr; // parsed just above
}

/** Fixed point with four fraction digits, stored as an i64 count of 1/10000. */
export class Decimal extends ExtValue {
  readonly typeName = 'decimal';
  constructor(readonly value: bigint) {
    super();
  }
  equals(o: ExtValue): boolean {
    return o instanceof Decimal && o.value === this.value;
  }
}

export function parseDecimal(s: string): Decimal {
  const E = (m: string) => extError('decimal', m);
  const m = /^(-?)([0-9]+)\.([0-9]+)$/.exec(s);
  if (!m) {
    // Rust's `\d` is Unicode-aware: other digits pass its regex and then fail integer parsing.
    if (/^-?\p{Nd}+\.\p{Nd}+$/u.test(s)) throw E('overflow when converting to decimal');
    throw E(`\`${s}\` is not a well-formed decimal value`);
  }
  const [, sign = '', int = '', frac = ''] = m;
  const whole = BigInt(sign + int);
  if (whole < I64_MIN || whole > I64_MAX) throw E('overflow when converting to decimal');
  const scaled = whole * 10000n;
  if (scaled < I64_MIN || scaled > I64_MAX) throw E('overflow when converting to decimal');
  if (frac.length > 4) throw E(`too many digits after the decimal in \`${s}\``);
  const f = BigInt(frac) * 10n ** BigInt(4 - frac.length);
  const v = sign === '-' ? scaled - f : scaled + f;
  if (v < I64_MIN || v > I64_MAX) throw E('overflow when converting to decimal');
  return new Decimal(v);
}

/** Milliseconds since the Unix epoch (i64). */
export class Datetime extends ExtValue {
  readonly typeName = 'datetime';
  constructor(readonly ms: bigint) {
    super();
  }
  equals(o: ExtValue): boolean {
    return o instanceof Datetime && o.ms === this.ms;
  }
}

/** Milliseconds (i64). */
export class Duration extends ExtValue {
  readonly typeName = 'duration';
  constructor(readonly ms: bigint) {
    super();
  }
  equals(o: ExtValue): boolean {
    return o instanceof Duration && o.ms === this.ms;
  }
}

const DAY_MS = 86400000n;

/** Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function validDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false;
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const dim = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1] ?? 0;
  return d <= dim;
}

export const parseDatetime: (s: string) => Datetime = rememberLast(parseDatetimeUncached);

function parseDatetimeUncached(s: string): Datetime {
  const E = (m: string) => extError('datetime', m);
  const dm = /^([0-9]{4})-([0-9]{2})-([0-9]{2})/.exec(s);
  if (!dm) throw E('invalid date pattern');
  const [dateStr, ys = '', mos = '', ds = ''] = dm;
  const y = Number(ys);
  const mo = Number(mos);
  const d = Number(ds);
  const checkDate = () => {
    if (!validDate(y, mo, d)) throw E(`invalid date: ${dateStr}`);
  };
  if (dateStr.length === s.length) {
    checkDate();
    return new Datetime(BigInt(daysFromCivil(y, mo, d)) * DAY_MS);
  }
  const rest = s.slice(dateStr.length);
  const tm = /^T([0-9]{2}):([0-9]{2}):([0-9]{2})/.exec(rest);
  if (!tm) throw E('invalid hour/minute/second pattern');
  const [hmsStr, hs = '', mis = '', ss = ''] = tm;
  const om = /^(\.([0-9]{3}))?(Z|((\+|-)([0-9]{2})([0-9]{2})))$/.exec(rest.slice(hmsStr.length));
  if (!om) throw E('invalid millisecond and/or offset pattern');
  checkDate();
  const h = Number(hs);
  const mi = Number(mis);
  const sec = Number(ss);
  if (h > 23 || mi > 59 || sec > 59) throw E(`invalid hour/minute/second: ${hmsStr.slice(1)}`);
  const ms = om[2] === undefined ? 0 : Number(om[2]);
  let offsetSec = 0;
  if (om[4] !== undefined) {
    const oh = Number(om[6]);
    const omi = Number(om[7]);
    if (oh >= 24 || omi >= 60) throw E(`invalid offset range: ${oh}${omi}`);
    offsetSec = (om[5] === '+' ? 1 : -1) * (oh * 3600 + omi * 60);
  }
  const total = BigInt(daysFromCivil(y, mo, d)) * DAY_MS + BigInt(((h * 60 + mi) * 60 + sec - offsetSec) * 1000 + ms);
  return new Datetime(total);
}

export function parseDuration(s: string): Duration {
  const E = (m: string) => extError('duration', m);
  const m = /^-?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$/.exec(s);
  if (s === '' || s === '-' || !m) throw E('invalid duration pattern');
  const neg = s.startsWith('-');
  const over = () => E('Duration overflows internal representation');
  // Same order and limits as Cedar: the ms part may reach -2^63, the others must fit i64 first.
  const ms = BigInt(m[10] ?? '0');
  let total = neg ? -ms : ms;
  if (total < I64_MIN || total > I64_MAX) throw over();
  for (const [idx, mul] of [[8, 1000n], [6, 60000n], [4, 3600000n], [2, DAY_MS]] as const) {
    const part = m[idx];
    if (part === undefined) continue;
    const n = BigInt(part);
    if (n > I64_MAX) throw over();
    const step = n * mul;
    if (step > I64_MAX) throw over();
    total = neg ? total - step : total + step;
    if (total < I64_MIN || total > I64_MAX) throw over();
  }
  return new Duration(total);
}

// ---------- extension functions ----------

function asExt<T extends ExtValue>(v: Value, cls: abstract new (...a: never[]) => T, name: string): T {
  if (v instanceof cls) return v;
  throw typeError(name, v);
}

function asString(v: Value): string {
  if (typeof v === 'string') return v;
  throw typeError('string', v);
}

function i64OrThrow(b: bigint, msg: () => string): bigint {
  if (b < I64_MIN || b > I64_MAX) throw new CedarEvalError(msg());
  return b;
}

function showDatetime(d: Datetime): string {
  return `datetime("1970-01-01").offset(duration("${d.ms}ms"))`;
}

/** Positional arguments (unary functions ignore `b`): no argument array on the hot path. */
export type ExtFn = (a: Value, b: Value) => Value;

const EXT_FNS: Record<string, [arity: number, fn: ExtFn]> = {
  ip: [1, (a) => parseIp(asString(a))],
  isIpv4: [1, (a) => !asExt(a, IpAddr, 'ipaddr').v6],
  isIpv6: [1, (a) => asExt(a, IpAddr, 'ipaddr').v6],
  isLoopback: [1, (a) => asExt(a, IpAddr, 'ipaddr').isLoopback()],
  isMulticast: [1, (a) => asExt(a, IpAddr, 'ipaddr').isMulticast()],
  isInRange: [2, (a, b) => asExt(a, IpAddr, 'ipaddr').isInRange(asExt(b, IpAddr, 'ipaddr'))],
  decimal: [1, (a) => parseDecimal(asString(a))],
  lessThan: [2, (a, b) => asExt(a, Decimal, 'decimal').value < asExt(b, Decimal, 'decimal').value],
  lessThanOrEqual: [2, (a, b) => asExt(a, Decimal, 'decimal').value <= asExt(b, Decimal, 'decimal').value],
  greaterThan: [2, (a, b) => asExt(a, Decimal, 'decimal').value > asExt(b, Decimal, 'decimal').value],
  greaterThanOrEqual: [2, (a, b) => asExt(a, Decimal, 'decimal').value >= asExt(b, Decimal, 'decimal').value],
  datetime: [1, (a) => parseDatetime(asString(a))],
  duration: [1, (a) => parseDuration(asString(a))],
  offset: [
    2,
    (a, b) => {
      const d = asExt(a, Datetime, 'datetime');
      const o = asExt(b, Duration, 'duration');
      const msg = () => `error while evaluating \`offset\` extension function: overflows when adding an offset: ${showDatetime(d)}+(${o.ms}ms)`;
      return new Datetime(i64OrThrow(d.ms + o.ms, msg));
    },
  ],
  durationSince: [
    2,
    (a, b) => {
      const x = asExt(a, Datetime, 'datetime');
      const y = asExt(b, Datetime, 'datetime');
      const msg = () =>
        `error while evaluating \`durationSince\` extension function: overflows when computing the duration between ${showDatetime(x)} and ${showDatetime(y)}`;
      return new Duration(i64OrThrow(x.ms - y.ms, msg));
    },
  ],
  toDate: [
    1,
    (a) => {
      const d = asExt(a, Datetime, 'datetime');
      const rem = ((d.ms % DAY_MS) + DAY_MS) % DAY_MS;
      const msg = () => `error while evaluating \`toDate\` extension function: overflows when computing the date of ${showDatetime(d)}`;
      return new Datetime(i64OrThrow(d.ms - rem, msg));
    },
  ],
  toTime: [1, (a) => new Duration(((asExt(a, Datetime, 'datetime').ms % DAY_MS) + DAY_MS) % DAY_MS)],
  // bigint division truncates toward zero, as Rust's does.
  toMilliseconds: [1, (a) => longFromBig(asExt(a, Duration, 'duration').ms) ?? 0],
  toSeconds: [1, (a) => longFromBig(asExt(a, Duration, 'duration').ms / 1000n) ?? 0],
  toMinutes: [1, (a) => longFromBig(asExt(a, Duration, 'duration').ms / 60000n) ?? 0],
  toHours: [1, (a) => longFromBig(asExt(a, Duration, 'duration').ms / 3600000n) ?? 0],
  toDays: [1, (a) => longFromBig(asExt(a, Duration, 'duration').ms / DAY_MS) ?? 0],
};

/** A known extension function's arity and implementation (for compile-time specialisation). */
export function extensionFn(name: string): { arity: number; fn: ExtFn } | undefined {
  const entry = Object.hasOwn(EXT_FNS, name) ? EXT_FNS[name] : undefined;
  return entry ? { arity: entry[0], fn: entry[1] } : undefined;
}

export function arityError(name: string, arity: number, got: number): CedarEvalError {
  return new CedarEvalError(`wrong number of arguments provided to extension function \`${name}\`: expected ${arity}, got ${got}`);
}

/** Calls an extension function by name, as a policy or an `__extn` JSON escape does. */
export function callExtension(name: string, args: Value[]): Value {
  const entry = Object.hasOwn(EXT_FNS, name) ? EXT_FNS[name] : undefined;
  if (!entry) throw new CedarEvalError(`extension function \`${name}\` does not exist`);
  const [arity, fn] = entry;
  if (args.length !== arity) throw arityError(name, arity, args.length);
  return fn(args[0] as Value, args[1] as Value); // arity checked; unary functions ignore b
}

// ---------- like ----------

export type PatternElem = { wildcard: true } | { literal: string };

/** Glob match with `*` as the only wildcard, over code units (equivalent to chars for
 *  well-formed strings, the only kind Cedar accepts). */
export function wildcardMatch(s: string, pattern: readonly PatternElem[]): boolean {
  // Flatten to a code-unit pattern: -1 = wildcard.
  const p: number[] = [];
  for (const e of pattern) {
    if ('wildcard' in e) p.push(-1);
    else for (let i = 0; i < e.literal.length; i++) p.push(e.literal.charCodeAt(i));
  }
  let si = 0;
  let pi = 0;
  let star = -1;
  let mark = 0;
  while (si < s.length) {
    if (pi < p.length && p[pi] !== -1 && p[pi] === s.charCodeAt(si)) {
      si++;
      pi++;
    } else if (pi < p.length && p[pi] === -1) {
      star = pi++;
      mark = si;
    } else if (star >= 0) {
      pi = star + 1;
      si = ++mark;
    } else return false;
  }
  while (pi < p.length && p[pi] === -1) pi++;
  return pi === p.length;
}

/** Precompiles a pattern into a matcher; a literal-only or simple prefix/suffix pattern avoids the loop. */
export function compilePattern(pattern: readonly PatternElem[]): (s: string) => boolean {
  const lits: string[] = [];
  const kinds: boolean[] = [];
  for (const e of pattern) {
    if ('wildcard' in e) {
      if (kinds[kinds.length - 1] !== true) kinds.push(true);
    } else if (kinds[kinds.length - 1] === false) lits[lits.length - 1] += e.literal;
    else {
      kinds.push(false);
      lits.push(e.literal);
    }
  }
  if (kinds.length === 0) return (s) => s === '';
  if (kinds.length === 1) return kinds[0] ? () => true : ((lit) => (s: string) => s === lit)(lits[0] ?? '');
  if (kinds.length === 2 && kinds[0] === false) {
    const lit = lits[0] ?? '';
    return (s) => s.startsWith(lit);
  }
  if (kinds.length === 2 && kinds[0] === true) {
    const lit = lits[0] ?? '';
    return (s) => s.endsWith(lit);
  }
  const frozen = [...pattern];
  return (s) => wildcardMatch(s, frozen);
}
