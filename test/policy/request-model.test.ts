// The request model's clock parts, which are remembered between calls (the last millisecond's ISO
// text, the last UTC minute's time of day): each call must still answer for its own instant.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isoTime } from '../../src/core/clock.js';
import { routeAuthzRequest, timeOfDay } from '../../src/policy/request-model.js';

test('the remembered time of day follows the clock across minutes, hours, days and zones', () => {
  const t = Date.parse('2026-11-28T23:59:59.999Z'); // a Saturday
  assert.deepEqual(timeOfDay(t), { hour: 23, minute: 59, weekday: 6 });
  assert.deepEqual(timeOfDay(t + 1), { hour: 0, minute: 0, weekday: 0 }, 'one millisecond later: Sunday, midnight');
  assert.deepEqual(timeOfDay(t - 60_000), { hour: 23, minute: 58, weekday: 6 }, 'back in time is answered too');
  assert.deepEqual(timeOfDay(t + 1, 'Europe/Paris'), { hour: 1, minute: 0, weekday: 0 });
  const a = timeOfDay(t);
  a.hour = 3; // a caller's copy: changing it changes nothing remembered
  assert.equal(timeOfDay(t).hour, 23);
});

test('the remembered ISO time is the one of the millisecond asked', () => {
  for (const ms of [0, 1, 1, 1_764_000_000_000, 1_764_000_000_001, 1]) assert.equal(isoTime(ms), new Date(ms).toISOString());
});

test('a route request carries its own instant in context.now and context.time', () => {
  const base = { route: { id: 'r', service: 's' }, principal: { sub: 'u', roles: [] }, method: 'GET', path: '/', params: {}, sourceIp: '10.0.0.1' };
  const first = routeAuthzRequest({ ...base, nowMs: Date.parse('2026-11-26T10:15:00.000Z') });
  const second = routeAuthzRequest({ ...base, nowMs: Date.parse('2026-11-26T10:16:00.500Z') });
  assert.deepEqual(first.context?.now, { __extn: { fn: 'datetime', arg: '2026-11-26T10:15:00.000Z' } });
  assert.deepEqual(second.context?.now, { __extn: { fn: 'datetime', arg: '2026-11-26T10:16:00.500Z' } });
  assert.deepEqual(second.context?.time, { hour: 10, minute: 16, weekday: 4 });
});
