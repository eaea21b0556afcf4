// The introspection client against a real local HTTPS endpoint over mTLS (up, down, slow, wrong
// identity), with a FakeClock for the cache and the timeout.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { FakeClock } from '../../../src/core/clock.js';
import { PortcullisError } from '../../../src/core/errors.js';
import type { CertificateAuthority } from '../../../src/identity/ca.js';
import { mtlsServerOptions, peerSpiffeId, type MtlsCredentials } from '../../../src/identity/tls-options.js';
import { IntrospectionClient, type IntrospectionClientOptions } from '../../../src/dataplane/auth/introspection.js';
import { issue, newCa, sendJson, startHttps, TD, type TestServer } from './pki.js';

const GATEWAY = `spiffe://${TD}/gateway`;
const CONTROL = `spiffe://${TD}/control`;
const AUD = 'https://gw.example.test';
const NOW = Date.UTC(2030, 0, 1);
const sec = (ms: number): number => Math.floor(ms / 1000);

let ca: CertificateAuthority;
let gateway: MtlsCredentials;
let server: TestServer;
let impostor: TestServer;
/** What the endpoint does: answer from `answers`, break the connection, answer junk, or hold the request. */
let mode: 'up' | 'reset' | 'junk' | 'slow' = 'up';
let hits = 0;
let onSlow: (() => void) | undefined;
const held: ServerResponse[] = [];
const answers = new Map<string, Record<string, unknown>>();

const active = (over: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ active: true, iss: 'https://control.example.test', sub: 'alice', aud: AUD, client_id: 'web', token_type: 'Bearer', exp: sec(NOW) + 900, iat: sec(NOW), jti: 'j1', roles: ['customer'], ...over });

before(async () => {
  ca = await newCa();
  gateway = await issue(ca, GATEWAY);
  server = await startHttps(mtlsServerOptions(await issue(ca, CONTROL)), async (req, res) => {
    hits++;
    // RFC 7662 §2.1: the caller authenticates; here, by its workload certificate.
    assert.equal(peerSpiffeId(req.socket as TLSSocket), GATEWAY); // an https server's socket
    assert.equal(req.method, 'POST');
    assert.equal(req.headers['content-type'], 'application/x-www-form-urlencoded');
    let body = '';
    for await (const c of req) body += String(c);
    const token = new URLSearchParams(body).get('token') ?? '';
    if (mode === 'reset') { req.socket.destroy(); return; }
    if (mode === 'junk') { res.writeHead(200, { 'content-type': 'application/json' }); res.end('<html>'); return; }
    if (mode === 'slow') { held.push(res); onSlow?.(); return; }
    sendJson(res, 200, answers.get(token) ?? { active: false });
  });
  // Same CA, another identity: the client must not take it for the control plane.
  impostor = await startHttps(mtlsServerOptions(await issue(ca, `spiffe://${TD}/not-control`)), (_req, res) => sendJson(res, 200, active()));
});
after(async () => {
  for (const r of held) r.destroy();
  await server.close();
  await impostor.close();
});
beforeEach(() => {
  mode = 'up';
  hits = 0;
  answers.clear();
});

function client(over: Partial<IntrospectionClientOptions> = {}): { c: IntrospectionClient; clock: FakeClock } {
  const clock = new FakeClock(NOW);
  const c = new IntrospectionClient({
    endpoint: `https://127.0.0.1:${server.port}/oauth2/introspect`,
    tls: { ...gateway, expectedSpiffeId: CONTROL },
    audience: AUD,
    cacheTtlMs: 30_000,
    onDown: 'deny',
    clock,
    ...over,
  });
  return { c, clock };
}

const code = (c: string) => (err: unknown): boolean => {
  assert.ok(err instanceof PortcullisError, String(err));
  assert.equal(err.code, c, err.message);
  return true;
};

test('an active answer gives the claims, then serves from the cache until cacheTtl', async () => {
  answers.set('tok-a', active({ scope: 'orders:read', attrs: { tier: 'gold' } }));
  const { c, clock } = client();
  const claims = await c.introspect('tok-a', 'GET');
  assert.equal(claims.sub, 'alice');
  assert.deepEqual(claims.roles, ['customer']);
  assert.deepEqual(claims.aud, [AUD]);
  assert.equal(claims.scope, 'orders:read');
  assert.deepEqual(claims.attrs, { tier: 'gold' });
  await c.introspect('tok-a', 'POST');
  assert.equal(hits, 1);
  await clock.advance(30_000);
  await c.introspect('tok-a', 'GET');
  assert.equal(hits, 2);
  c.close();
});

test('the cache never outlives the token: exp caps it', async () => {
  answers.set('tok-short', active({ exp: sec(NOW) + 5 }));
  const { c, clock } = client();
  await c.introspect('tok-short', 'GET');
  await clock.advance(6_000);
  answers.delete('tok-short'); // the endpoint now says inactive (expired)
  await assert.rejects(c.introspect('tok-short', 'GET'), code('PCL_ERR_TOKEN_INACTIVE'));
  assert.equal(hits, 2);
  c.close();
});

test('inactive answers are refused and remembered briefly (negativeTtl), then asked again', async () => {
  const { c, clock } = client({ negativeTtlMs: 10_000 });
  await assert.rejects(c.introspect('tok-unknown', 'GET'), code('PCL_ERR_TOKEN_INACTIVE'));
  await assert.rejects(c.introspect('tok-unknown', 'GET'), code('PCL_ERR_TOKEN_INACTIVE'));
  assert.equal(hits, 1);
  await clock.advance(10_000);
  answers.set('tok-unknown', active());
  assert.equal((await c.introspect('tok-unknown', 'GET')).sub, 'alice');
  assert.equal(hits, 2);
  c.close();
});

test('active answers not for this gateway are refused: other audience, refresh token, other issuer, expired', async () => {
  answers.set('tok-other-aud', active({ aud: 'https://elsewhere.test' }));
  // What /oauth2/introspect answers for a refresh token: active, no aud, no token_type.
  answers.set('tok-refresh', { active: true, iss: 'https://control.example.test', sub: 'alice', client_id: 'web', exp: sec(NOW) + 86_400, iat: sec(NOW) });
  answers.set('tok-other-iss', active({ iss: 'https://evil.test' }));
  answers.set('tok-expired', active({ exp: sec(NOW) - 1 }));
  answers.set('tok-no-exp', active({ exp: undefined }));
  const { c } = client({ issuer: 'https://control.example.test' });
  for (const t of ['tok-other-aud', 'tok-refresh', 'tok-other-iss', 'tok-expired', 'tok-no-exp']) {
    await assert.rejects(c.introspect(t, 'GET'), code('PCL_ERR_TOKEN_INACTIVE'), t);
  }
  c.close();
});

test('malformed claims in an active answer: PCL_ERR_TOKEN_CLAIMS, not cached', async () => {
  answers.set('tok-bad', active({ roles: 'admin' }));
  const { c } = client();
  await assert.rejects(c.introspect('tok-bad', 'GET'), code('PCL_ERR_TOKEN_CLAIMS'));
  await assert.rejects(c.introspect('tok-bad', 'GET'), code('PCL_ERR_TOKEN_CLAIMS'));
  assert.equal(hits, 2);
  c.close();
});

test('a bound token stays bound through introspection (cnf)', async () => {
  const jkt = 'A'.repeat(43);
  answers.set('tok-bound', active({ cnf: { jkt } }));
  const { c } = client();
  assert.deepEqual((await c.introspect('tok-bound', 'GET')).cnf, { jkt });
  c.close();
});

test("onDown deny: an endpoint that breaks the connection or answers junk refuses every token it has not vouched for freshly", async () => {
  const { c, clock } = client({ onDown: 'deny' });
  answers.set('tok-a', active());
  await c.introspect('tok-a', 'GET');
  await clock.advance(30_000);
  for (const m of ['reset', 'junk'] as const) {
    mode = m;
    await assert.rejects(c.introspect('tok-a', 'GET'), code('PCL_ERR_INTROSPECTION_UNAVAILABLE'), m);
    await assert.rejects(c.introspect('tok-new', 'GET'), code('PCL_ERR_INTROSPECTION_UNAVAILABLE'), m);
  }
  c.close();
});

test('onDown allow-reads: GET/HEAD with a recently active token only, and never past staleGrace or exp', async () => {
  answers.set('tok-a', active({ exp: sec(NOW) + 50 }));
  answers.set('tok-b', active());
  const { c, clock } = client({ onDown: 'allow-reads', cacheTtlMs: 30_000, staleGraceMs: 30_000 });
  await c.introspect('tok-a', 'GET');
  await c.introspect('tok-b', 'GET');
  await clock.advance(30_000); // no longer fresh: the endpoint is asked, and it is down
  mode = 'reset';
  assert.equal((await c.introspect('tok-b', 'GET')).sub, 'alice');
  assert.equal((await c.introspect('tok-b', 'HEAD')).sub, 'alice');
  for (const m of ['POST', 'PUT', 'PATCH', 'DELETE']) await assert.rejects(c.introspect('tok-b', m), code('PCL_ERR_INTROSPECTION_UNAVAILABLE'), m);
  await assert.rejects(c.introspect('tok-never-seen', 'GET'), code('PCL_ERR_INTROSPECTION_UNAVAILABLE'));
  await clock.advance(20_000); // tok-a's exp has passed
  await assert.rejects(c.introspect('tok-a', 'GET'), code('PCL_ERR_INTROSPECTION_UNAVAILABLE'));
  assert.equal((await c.introspect('tok-b', 'GET')).sub, 'alice');
  await clock.advance(10_000); // cacheTtl + staleGrace after tok-b's answer
  await assert.rejects(c.introspect('tok-b', 'GET'), code('PCL_ERR_INTROSPECTION_UNAVAILABLE'));
  c.close();
});

test('a slow endpoint times out on the clock (timeoutMs) and counts as down', async () => {
  const { c, clock } = client({ timeoutMs: 2000 });
  mode = 'slow';
  const arrived = new Promise<void>((resolve) => (onSlow = resolve));
  let settled = false;
  const refused = assert.rejects(c.introspect('tok-a', 'GET').finally(() => { settled = true; }), code('PCL_ERR_INTROSPECTION_UNAVAILABLE'));
  await arrived;
  await clock.advance(1999);
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false); // still waiting
  await clock.advance(1);
  await refused;
  c.close();
});

test('an unreachable endpoint, or one with another SPIFFE ID, is down', async () => {
  const closed = await startHttps(mtlsServerOptions(gateway), () => undefined);
  const port = closed.port;
  await closed.close();
  for (const endpoint of [`https://127.0.0.1:${port}/oauth2/introspect`, `https://127.0.0.1:${impostor.port}/oauth2/introspect`]) {
    const { c } = client({ endpoint });
    await assert.rejects(c.introspect('tok-a', 'GET'), code('PCL_ERR_INTROSPECTION_UNAVAILABLE'), endpoint);
    c.close();
  }
});

test('concurrent requests with one token make one call; the cache is bounded', async () => {
  for (const t of ['t1', 't2', 't3']) answers.set(t, active());
  const { c } = client({ maxEntries: 2 });
  await Promise.all([c.introspect('t1', 'GET'), c.introspect('t1', 'GET'), c.introspect('t1', 'GET')]);
  assert.equal(hits, 1);
  await c.introspect('t2', 'GET');
  await c.introspect('t3', 'GET');
  assert.deepEqual(c.cacheSize(), { active: 2, inactive: 0 });
  await c.introspect('t1', 'GET'); // evicted first, so asked again
  assert.equal(hits, 4);
  c.close();
});

test('isRevoked is asked on every use, cached or not; oversized tokens are refused unasked', async () => {
  answers.set('tok-a', active());
  let revoked = false;
  const { c } = client({ isRevoked: () => revoked });
  await c.introspect('tok-a', 'GET');
  revoked = true;
  await assert.rejects(c.introspect('tok-a', 'GET'), code('PCL_ERR_TOKEN_REVOKED'));
  await assert.rejects(c.introspect('x'.repeat(8193), 'GET'), code('PCL_ERR_TOKEN_MALFORMED'));
  await assert.rejects(c.introspect('', 'GET'), code('PCL_ERR_TOKEN_MALFORMED'));
  assert.equal(hits, 1);
  c.close();
});

test('setTls: new workload credentials are used from the next call on', async () => {
  answers.set('tok-a', active());
  answers.set('tok-b', active());
  const { c } = client();
  await c.introspect('tok-a', 'GET');
  // A certificate the endpoint does not trust: the next call fails, proving the new credentials are in use.
  const outsider = await issue(await newCa(), GATEWAY, ca.trustBundlePem());
  c.setTls({ ...outsider, expectedSpiffeId: CONTROL });
  await assert.rejects(c.introspect('tok-b', 'GET'), code('PCL_ERR_INTROSPECTION_UNAVAILABLE'));
  c.setTls({ ...gateway, expectedSpiffeId: CONTROL });
  assert.equal((await c.introspect('tok-b', 'GET')).sub, 'alice');
  c.close();
});

test('options are checked: https endpoint, audience, onDown', () => {
  const tls = { ...gateway, expectedSpiffeId: CONTROL };
  assert.throws(() => new IntrospectionClient({ endpoint: 'http://127.0.0.1/x', tls, audience: AUD, onDown: 'deny' }), code('PCL_ERR_INVALID_ARGUMENT'));
  assert.throws(() => new IntrospectionClient({ endpoint: 'https://127.0.0.1/x', tls, audience: '', onDown: 'deny' }), code('PCL_ERR_INVALID_ARGUMENT'));
  // A value outside the union, as a hand-written config could produce.
  assert.throws(() => new IntrospectionClient({ endpoint: 'https://127.0.0.1/x', tls, audience: AUD, onDown: 'allow' as 'deny' }), code('PCL_ERR_INVALID_ARGUMENT'));
});
