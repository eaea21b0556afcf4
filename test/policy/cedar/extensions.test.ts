// The ip, decimal, datetime and duration extensions, parsed and computed in JS exactly as
// cedar-wasm 4.13 does: hand-picked edge cases, then seeded random strings near the grammar.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Datetime, Decimal, Duration, IpAddr, parseDatetime, parseDecimal, parseDuration, parseIp } from '../../../src/policy/cedar/values.js';
import { U, pair, shape, type Policies } from './oracle.js';

test('known values', () => {
  const ip = parseIp('10.1.2.3/8');
  assert.ok(ip instanceof IpAddr && !ip.v6 && ip.prefix === 8 && ip.v4addr === 0x0a010203);
  assert.equal(parseIp('::1').v6addr, 1n);
  assert.ok(parseIp('10.1.2.3').isInRange(parseIp('10.0.0.0/8')));
  assert.ok(!parseIp('10.0.0.0/7').isInRange(parseIp('10.0.0.0/8')));
  assert.ok(!parseIp('::a00:1').isInRange(parseIp('10.0.0.0/8')));
  assert.deepEqual(parseDecimal('-1.5'), new Decimal(-15000n));
  assert.deepEqual(parseDecimal('-0.5'), new Decimal(-5000n));
  assert.deepEqual(parseDatetime('1970-01-02T00:00:00.001+0100'), new Datetime(82800001n));
  assert.deepEqual(parseDatetime('1969-12-31'), new Datetime(-86400000n));
  assert.deepEqual(parseDuration('-1d2h'), new Duration(-93600000n));
  assert.deepEqual(parseDuration('-9223372036854775808ms'), new Duration(-(2n ** 63n)));
  for (const bad of ['1.2.3', '01.2.3.4', '1.2.3.4/01', '::ffff:1.2.3.4', '1:2:3:4:5:6::7:8', '12345::', ' 1.2.3.4']) assert.throws(() => parseIp(bad), bad);
  for (const bad of ['1', '.5', '1.', '+1.0', '1.23456', '922337203685477.5808']) assert.throws(() => parseDecimal(bad), bad);
  for (const bad of ['2024-02-30', '2023-02-29', '2024-01-01T24:00:00Z', '2024-01-01T00:00:00', '2024-01-01T00:00:00.5Z', '2024-01-01T00:00:00+2400', '+2024-01-01']) assert.throws(() => parseDatetime(bad), bad);
  for (const bad of ['', '-', '1', '1h1h', '1m1h', '+1h', '106751991168d', '9223372036854775808ms']) assert.throws(() => parseDuration(bad), bad);
});

/** A small deterministic generator of strings near each grammar. */
function rng(seed: number): { int(n: number): number; pick<T>(a: readonly T[]): T; chance(p: number): boolean } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  // int(n) < n, so the index is in range.
  return { int, pick: <T>(arr: readonly T[]) => arr[int(arr.length)] as T, chance: (p: number) => next() < p };
}

type R = ReturnType<typeof rng>;

function mutate(r: R, s: string, alphabet: string): string {
  for (let k = r.int(3); k > 0; k--) {
    const i = r.int(s.length + 1);
    const c = alphabet[r.int(alphabet.length)] ?? '';
    s = r.chance(0.5) ? s.slice(0, i) + c + s.slice(i) : s.slice(0, i) + s.slice(i + 1);
  }
  return s;
}

const pad = (n: number, w: number) => String(n).padStart(w, '0');

const GENERATORS: Record<string, [(r: R) => string, string[]]> = {
  ip: [
    (r) => {
      const v4 = () => [0, 0, 0, 0].map(() => r.pick([r.int(256), 127, 224, 0, '01', '256'])).join('.');
      const v6 = () => {
        const parts = Array.from({ length: r.int(9) }, () => r.pick(['0', '1', 'ff', 'FFFF', 'abcd', '12345', 'ff00']));
        if (r.chance(0.5)) parts.splice(r.int(parts.length + 1), 0, '');
        return parts.join(':');
      };
      let s = r.chance(0.5) ? v4() : r.pick([v6(), '::1', '::', 'ff02::1', '1::']);
      if (r.chance(0.4)) s += '/' + r.pick([String(r.int(40)), String(r.int(130)), '08', '', '+1']);
      return r.chance(0.3) ? mutate(r, s, '0123456789abcdef.:/ ') : s;
    },
    ['ip(context.s).isIpv4()', 'ip(context.s).isLoopback()', 'ip(context.s).isMulticast()', 'ip(context.s) == ip(context.t)', 'ip(context.s).isInRange(ip(context.t))'],
  ],
  decimal: [
    (r) => {
      const s = `${r.chance(0.3) ? '-' : ''}${r.int(10 ** r.int(17))}${r.chance(0.9) ? '.' + pad(r.int(10 ** r.int(6)), r.int(6)) : ''}`;
      return r.chance(0.3) ? mutate(r, s, '0123456789.-+') : s;
    },
    ['decimal(context.s) == decimal(context.t)', 'decimal(context.s).lessThan(decimal(context.t))', 'decimal(context.s).greaterThanOrEqual(decimal("-1.5"))'],
  ],
  datetime: [
    (r) => {
      let s = `${pad(r.int(10000), 4)}-${pad(1 + r.int(13), 2)}-${pad(1 + r.int(31), 2)}`;
      if (r.chance(0.7)) {
        s += `T${pad(r.int(25), 2)}:${pad(r.int(61), 2)}:${pad(r.int(61), 2)}`;
        if (r.chance(0.4)) s += '.' + pad(r.int(1000), 3);
        s += r.chance(0.5) ? 'Z' : `${r.pick(['+', '-'])}${pad(r.int(25), 2)}${pad(r.int(61), 2)}`;
      }
      return r.chance(0.25) ? mutate(r, s, '0123456789-:TZ.+') : s;
    },
    ['datetime(context.s) == datetime(context.t)', 'datetime(context.s) < datetime(context.t)', 'datetime(context.s).toTime() <= duration("12h")',
      'datetime(context.s).toDate() == datetime(context.t).toDate()', 'datetime(context.s).durationSince(datetime(context.t)) < duration("1d")'],
  ],
  duration: [
    (r) => {
      let s = r.chance(0.3) ? '-' : '';
      for (const u of ['d', 'h', 'm', 's', 'ms']) if (r.chance(0.4)) s += String(r.pick([r.int(100), r.int(1e6), 106751991167, 9223372036854775807n])) + u;
      return r.chance(0.25) ? mutate(r, s, '0123456789dhms-') : s;
    },
    ['duration(context.s) == duration(context.t)', 'duration(context.s) < duration(context.t)', 'duration(context.s).toDays() > 2',
      'duration(context.s).toSeconds() >= 0', 'datetime("2000-01-01").offset(duration(context.s)) < datetime("2000-01-02")'],
  ],
};

for (const [name, [gen, exprs]] of Object.entries(GENERATORS)) {
  test(`${name}: random strings parse and compute as in cedar-wasm`, () => {
    const policies: Policies = Object.fromEntries(exprs.map((e, i) => [`e${i}`, `permit(principal, action, resource) when { ${e} };`]));
    const p = pair(policies);
    const r = rng(name.length * 7919);
    let errors = 0;
    let allows = 0;
    for (let i = 0; i < 200; i++) {
      const s = gen(r);
      const t = r.chance(0.5) ? gen(r) : s;
      const req = { principal: U('U', 'a'), action: U('A', 'b'), resource: U('R', 'c'), context: { s, t } };
      const ref = p.reference(req, []);
      assert.deepEqual(shape(p.ours(req, [])), shape(ref), JSON.stringify({ s, t }));
      errors += ref.errors.length;
      allows += ref.reasons.length;
    }
    // The strings reach both outcomes, so the comparison means something.
    assert.ok(errors > 50 && allows > 50, `errors ${errors}, satisfied ${allows}`);
  });
}
