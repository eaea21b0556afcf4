// The signed alert webhook: Standard Webhooks signatures, retries on the clock, bounded queue.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FakeClock } from '../../src/core/clock.js';
import { signWebhook, verifyWebhookSignature, WebhookAlertSink } from '../../src/detect/sinks.js';
import type { Alert } from '../../src/detect/types.js';
import { T0 } from './helpers.js';

// The Standard Webhooks specification's own test vector.
const VECTOR = {
  secret: Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64'),
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};
const headers = (h: Partial<Record<'id' | 'ts' | 'sig', string>> = {}) => ({
  'webhook-id': h.id ?? VECTOR.id, 'webhook-timestamp': h.ts ?? String(VECTOR.timestamp), 'webhook-signature': h.sig ?? VECTOR.signature,
});
const AT = VECTOR.timestamp * 1000;

test('signatures match the Standard Webhooks test vector', () => {
  assert.equal(signWebhook(VECTOR.secret, VECTOR.id, VECTOR.timestamp, VECTOR.body), VECTOR.signature);
  assert.equal(signWebhook(VECTOR.secret, VECTOR.id, VECTOR.timestamp, Buffer.from(VECTOR.body)), VECTOR.signature);
});

test('verify: the vector passes, also among several signatures and with header names in any case', () => {
  assert.equal(verifyWebhookSignature(VECTOR.secret, headers(), VECTOR.body, AT), true);
  assert.equal(verifyWebhookSignature(VECTOR.secret, headers({ sig: `v1,bm9wZQ== v2,xyz ${VECTOR.signature}` }), VECTOR.body, AT + 299_000), true);
  assert.equal(verifyWebhookSignature(VECTOR.secret, { 'Webhook-Id': VECTOR.id, 'Webhook-Timestamp': String(VECTOR.timestamp), 'Webhook-Signature': VECTOR.signature }, VECTOR.body, AT), true);
});

test('verify: a tampered body, id or timestamp, a wrong secret, a stale or future timestamp, or a missing header fail', () => {
  const ok = (h: Record<string, string | string[]>, body = VECTOR.body, now = AT, secret: Uint8Array = VECTOR.secret) => verifyWebhookSignature(secret, h, body, now);
  assert.equal(ok(headers(), '{"test": 2432232315}'), false);
  assert.equal(ok(headers({ id: 'msg_other' })), false);
  assert.equal(ok(headers({ ts: String(VECTOR.timestamp + 1) }), VECTOR.body, AT + 1000), false);
  assert.equal(ok(headers(), VECTOR.body, AT, Buffer.alloc(24, 1)), false);
  assert.equal(ok(headers(), VECTOR.body, AT + 301_000), false, 'older than the tolerance');
  assert.equal(ok(headers(), VECTOR.body, AT - 301_000), false, 'from the future');
  assert.equal(verifyWebhookSignature(VECTOR.secret, headers(), VECTOR.body, AT + 3_000_000, 3600), true, 'a wider tolerance');
  assert.equal(ok({ 'webhook-id': VECTOR.id, 'webhook-timestamp': String(VECTOR.timestamp) }), false);
  assert.equal(ok(headers({ sig: 'v1,' })), false);
  assert.equal(ok(headers({ sig: VECTOR.signature.replace('v1,', 'v2,') })), false);
  assert.equal(ok({ ...headers(), 'webhook-signature': [VECTOR.signature, VECTOR.signature] }), false);
  assert.equal(ok(headers({ ts: 'soon' })), false);
});

// A receiver whose answers the test scripts; it checks every delivery's signature itself.
const SECRET = Buffer.alloc(32, 7);
let server: Server;
let url: string;
let answers: number[] = [];
const received: { headers: IncomingHttpHeaders; body: string; valid: boolean }[] = [];
let clock: FakeClock;

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => { body += c; });
    req.on('end', () => {
      received.push({ headers: req.headers, body, valid: verifyWebhookSignature(SECRET, req.headers, body, clock.now()) });
      res.statusCode = answers.shift() ?? 200;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`; // listening on TCP: address() is an AddressInfo
});

after(() => new Promise<void>((r) => server.close(() => r())));

function alert(n = 1): Alert {
  return {
    id: `a-${n}`, time: new Date(T0).toISOString(), rule: 'login-brute-force', kind: 'brute-force', severity: 'high',
    summary: '5 failed sign-ins for account "alice"', subject: { principal: 'alice', address: '192.0.2.66' }, count: 5,
    window: { seconds: 300, start: new Date(T0 - 300_000).toISOString(), end: new Date(T0).toISOString() }, evidence: { requestIds: ['r1'] },
  };
}

function fresh(): void {
  clock = new FakeClock(T0);
  answers = [];
  received.length = 0;
}

test('a 503 is retried with backoff on the clock, same id, fresh timestamp and signature; then delivered', async () => {
  fresh();
  answers = [503, 503, 200];
  const sink = new WebhookAlertSink({ url, secret: SECRET, clock, backoffMs: 1000 });
  sink.send(alert());
  await sink.idle();
  assert.equal(received.length, 1);
  assert.equal(sink.stats().retries, 1);
  await clock.advance(999);
  await sink.idle();
  assert.equal(received.length, 1, 'no retry before the backoff');
  await clock.advance(1);
  await sink.idle();
  assert.equal(received.length, 2);
  await clock.advance(2000); // doubled
  await sink.idle();
  assert.equal(received.length, 3);
  assert.deepEqual(sink.stats(), { queued: 0, delivered: 1, retries: 2, dropped: 0, queueFull: 0, gaveUp: 0, rejected: 0 });
  assert.ok(received.every((r) => r.valid), 'every attempt is signed');
  assert.equal(new Set(received.map((r) => r.headers['webhook-id'])).size, 1);
  assert.deepEqual(received.map((r) => Number(r.headers['webhook-timestamp']) - T0 / 1000), [0, 1, 3]);
  const payload = JSON.parse(received[2]?.body ?? '') as { type: string; data: Alert };
  assert.equal(payload.type, 'portcullis.alert');
  assert.deepEqual(payload.data, alert());
  assert.equal(received[2]?.headers['content-type'], 'application/json');
  await sink.close();
});

test('after maxAttempts failures the alert is dropped and counted, and the next one goes', async () => {
  fresh();
  answers = [503, 502, 500, 200];
  const sink = new WebhookAlertSink({ url, secret: SECRET, clock, maxAttempts: 3, backoffMs: 1000 });
  sink.send(alert(1));
  sink.send(alert(2));
  for (let i = 0; i < 4; i++) {
    await sink.idle();
    await clock.advance(10_000);
  }
  await sink.idle();
  assert.deepEqual(sink.stats(), { queued: 0, delivered: 1, retries: 2, dropped: 1, queueFull: 0, gaveUp: 1, rejected: 0 });
  assert.equal((JSON.parse(received[3]?.body ?? '') as { data: Alert }).data.id, 'a-2');
  await sink.close();
});

test('a network error is retried like a 5xx; a 4xx is not retried', async () => {
  fresh();
  const down = new WebhookAlertSink({ url: 'http://127.0.0.1:1/alerts', secret: SECRET, clock, maxAttempts: 2, backoffMs: 1000 });
  down.send(alert());
  await down.idle();
  await clock.advance(1000);
  await down.idle();
  assert.deepEqual(down.stats(), { queued: 0, delivered: 0, retries: 1, dropped: 1, queueFull: 0, gaveUp: 1, rejected: 0 });
  await down.close();
  answers = [400];
  const sink = new WebhookAlertSink({ url, secret: SECRET, clock });
  sink.send(alert());
  await sink.idle();
  assert.deepEqual(sink.stats(), { queued: 0, delivered: 0, retries: 0, dropped: 1, queueFull: 0, gaveUp: 0, rejected: 1 });
  await sink.close();
});

test('the queue is bounded: alerts beyond it are dropped and counted; close drops the rest', async () => {
  fresh();
  answers = [503];
  const sink = new WebhookAlertSink({ url, secret: SECRET, clock, maxQueue: 2, backoffMs: 60_000 });
  for (let i = 0; i < 5; i++) sink.send(alert(i));
  await sink.idle();
  assert.deepEqual(sink.stats(), { queued: 2, delivered: 0, retries: 1, dropped: 3, queueFull: 3, gaveUp: 0, rejected: 0 });
  await sink.close();
  assert.equal(sink.stats().dropped, 5);
  assert.equal(clock.pendingTimers(), 0);
});

test('a secret shorter than 24 bytes or a non-HTTP URL is refused at construction', () => {
  assert.throws(() => new WebhookAlertSink({ url, secret: Buffer.alloc(16), clock: new FakeClock() }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => new WebhookAlertSink({ url: 'ftp://example.com/', secret: SECRET, clock: new FakeClock() }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});
