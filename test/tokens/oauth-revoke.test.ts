// POST /oauth2/revoke (RFC 7009) driven with openid-client's tokenRevocation: refresh tokens revoke
// their family, access tokens join the revocation list that data planes get in the snapshot; unknown
// tokens are 200 (§2.2); another client's token is refused (§2.1); client authentication as at the
// token endpoint. Plus the RevocationList itself.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as oidc from 'openid-client';
import { FakeClock } from '../../src/core/clock.js';
import { MemoryStore } from '../../src/store/memory.js';
import { NS } from '../../src/store/store.js';
import { RevocationList, RevokedJtis, REVOCATION_GRACE_SEC } from '../../src/tokens/revocations.js';
import { createAccessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify.js';
import { AUD, CLI, ORDERS, discover, jwtPayload, loginWithOpenIdClient, oauthError, post, startHarness, storeState, type Harness } from './oauth-harness.js';

let h: Harness;
let cli: oidc.Configuration;
let workload: oidc.Configuration;
/** A data plane's verifier, fed from the snapshot's revocation list. */
let gateway: AccessTokenVerifier;
const revokedAtGateway = new RevokedJtis();
const snapshotRefresh = (): void => revokedAtGateway.load(h.revocations.list());

before(async () => {
  h = await startHarness();
  cli = await discover(h, CLI, oidc.None());
  workload = await discover(h, ORDERS, oidc.TlsClientAuth());
  gateway = createAccessTokenVerifier({ jwks: h.keys.jwks(), issuer: h.url, audience: AUD, clock: h.clock, isRevoked: revokedAtGateway.isRevoked });
});
after(() => h.close());

test('revoking an access token: its jti is listed until exp, and the data plane refuses it', async () => {
  const t = await loginWithOpenIdClient(h, cli, 'orders:read');
  assert.equal((await gateway.verify(t.access_token)).sub, 'alice');
  await oidc.tokenRevocation(cli, t.access_token, { token_type_hint: 'access_token' });
  const { jti, exp } = jwtPayload(t.access_token) as { jti: string; exp: number }; // our access tokens always carry both
  assert.ok(h.revocations.isRevoked(jti));
  assert.deepEqual(h.revocations.list().filter((e) => e.jti === jti), [{ jti, exp }]);
  snapshotRefresh();
  await assert.rejects(gateway.verify(t.access_token), { code: 'PCL_ERR_TOKEN_REVOKED' }, 'even from the verifier cache');
  // Revoking again is fine (idempotent) and still 200.
  await oidc.tokenRevocation(cli, t.access_token);
});

test('revoking a refresh token revokes its family and the access tokens it produced', async () => {
  const t = await loginWithOpenIdClient(h, cli, 'offline_access orders:read');
  const r = await oidc.refreshTokenGrant(cli, t.refresh_token ?? '');
  // token_type_hint is only a hint: a wrong one still finds the token (§2.1).
  await oidc.tokenRevocation(cli, r.refresh_token ?? '', { token_type_hint: 'access_token' });
  assert.equal((await oauthError(oidc.refreshTokenGrant(cli, r.refresh_token ?? ''))).error, 'invalid_grant');
  assert.ok(h.revocations.isRevoked(String(jwtPayload(r.access_token).jti)));
  assert.ok(h.revocations.isRevoked(String(jwtPayload(t.access_token).jti)));
});

test('unknown, malformed, expired and tampered tokens: 200, and nothing changes (§2.2)', async () => {
  const t = await loginWithOpenIdClient(h, cli, '');
  await h.clock.advance(901_000);
  const before = await storeState(h);
  const forged = [t.access_token.split('.')[0], t.access_token.split('.')[1], 'AAAA'].join('.');
  for (const token of ['A'.repeat(43), 'garbage', t.access_token, forged, 'a.b.c']) {
    await oidc.tokenRevocation(cli, token);
    const raw = await post(h, '/oauth2/revoke', { client_id: CLI, token });
    assert.equal(raw.status, 200);
    assert.equal(raw.text, '');
    assert.equal(raw.headers['cache-control'], 'no-store');
  }
  assert.equal(await storeState(h), before);
});

test('a token issued to another client is refused (§2.1), and stays valid', async () => {
  h.peer = ORDERS;
  const w = await oidc.clientCredentialsGrant(workload);
  h.peer = undefined;
  const before = await storeState(h);
  assert.deepEqual(await oauthError(oidc.tokenRevocation(cli, w.access_token)), { error: 'unauthorized_client', status: 400 });
  assert.equal(await storeState(h), before);
  const u = await loginWithOpenIdClient(h, cli, 'offline_access');
  const mid = await storeState(h);
  h.peer = ORDERS;
  try {
    assert.equal((await oauthError(oidc.tokenRevocation(workload, u.refresh_token ?? ''))).error, 'unauthorized_client');
    assert.equal(await storeState(h), mid);
    // Its own token, with its certificate (tls_client_auth): revoked.
    await oidc.tokenRevocation(workload, w.access_token);
  } finally {
    h.peer = undefined;
  }
  assert.ok(h.revocations.isRevoked(String(jwtPayload(w.access_token).jti)));
  assert.ok((await oidc.refreshTokenGrant(cli, u.refresh_token ?? '')).access_token, "the user's refresh token was not touched");
});

test('client authentication as at the token endpoint; refusals change nothing', async () => {
  const t = await loginWithOpenIdClient(h, cli, 'offline_access');
  const before = await storeState(h);
  const none = await post(h, '/oauth2/revoke', { token: t.refresh_token ?? '' });
  assert.equal(none.status, 401);
  assert.equal(none.json?.error, 'invalid_client');
  const basic = await post(h, '/oauth2/revoke', { token: t.refresh_token ?? '' }, { authorization: 'Basic eDp5' });
  assert.equal(basic.status, 401);
  assert.equal(basic.json?.error, 'invalid_client');
  assert.equal(basic.headers['www-authenticate'], 'Basic realm="portcullis"');
  assert.equal((await post(h, '/oauth2/revoke', { client_id: 'nobody', token: t.refresh_token ?? '' })).status, 401);
  const missing = await post(h, '/oauth2/revoke', { client_id: CLI });
  assert.equal(missing.status, 400);
  assert.equal(missing.json?.error, 'invalid_request');
  assert.equal((await post(h, '/oauth2/revoke', `client_id=${CLI}&token=a&token=b`)).json?.error, 'invalid_request');
  const get = await fetch(`${h.url}/oauth2/revoke`);
  assert.equal(get.status, 405);
  assert.equal(await storeState(h), before);
});

test('RevocationList: persisted, dropped after exp plus the grace period, bounded input', async () => {
  const clock = new FakeClock(1_700_000_000_000);
  const store = new MemoryStore();
  const list = await RevocationList.open({ store, clock });
  const now = 1_700_000_000;
  await list.revoke('jti-a', now + 60);
  await list.revoke('jti-b', now + 600);
  await list.revoke('jti-old', now - REVOCATION_GRACE_SEC - 1); // long expired: nothing to do
  assert.deepEqual(list.list(), [{ jti: 'jti-a', exp: now + 60 }, { jti: 'jti-b', exp: now + 600 }]);
  assert.equal(list.isRevoked('jti-old'), false);
  assert.equal(list.isRevoked('nope'), false);

  // Another instance over the same store (a restart) sees the same list.
  assert.deepEqual((await RevocationList.open({ store, clock })).list(), list.list());

  // Past exp, still listed for the verifiers' clock skew; then gone.
  await clock.advance(61_000);
  assert.ok(list.isRevoked('jti-a'));
  await clock.advance(REVOCATION_GRACE_SEC * 1000);
  assert.equal(list.isRevoked('jti-a'), false);
  assert.deepEqual(list.list().map((e) => e.jti), ['jti-b']);
  assert.equal(await list.purgeExpired(), 1);
  assert.deepEqual((await store.list(NS.revokedTokens)).map((r) => r.key), ['jti-b']);

  await assert.rejects(list.revoke('has space', now + 60), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  await assert.rejects(list.revoke('ok', 1.5), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => new RevocationList({ store, clock }).isRevoked('x'), { code: 'PCL_ERR_INTERNAL' }, 'fails closed before loading');
});

test('grant revocations: every token of a user or client issued until then, at the control plane and the data plane, for one token lifetime', async () => {
  const clock = new FakeClock(1_700_000_000_000);
  const store = new MemoryStore();
  const list = await RevocationList.open({ store, clock });
  const now = 1_700_000_000;
  const token = (sub: string, client_id: string, iat: number) => ({ jti: `j-${sub}-${client_id}-${iat}`, sub, client_id, iat });
  await list.revokeIssuedBefore('user', 'sam', 900);
  await list.revokeIssuedBefore('client', 'batch', 900);
  assert.deepEqual(list.grantList(), [{ subject: 'client:batch', before: now, exp: now + 900 }, { subject: 'user:sam', before: now, exp: now + 900 }]);
  assert.deepEqual(list.list(), [], 'jti entries are a list of their own');
  const gateway = new RevokedJtis();
  gateway.load(list.list(), list.grantList());
  const cases: [ReturnType<typeof token>, boolean, string][] = [
    [token('sam', 'web', now - 100), true, 'the user\'s token through any client'],
    [token('sam', 'web', now), true, 'issued in the very second of the revocation'],
    [token('ann', 'batch', now - 5), true, 'any token of the removed client'],
    [token('ann', 'web', now - 5), false, 'another user through another client'],
    [token('sam', 'web', now + 1), false, 'issued after: the account enabled again'],
    [token('ann', 'batch', now + 1), false, 'a client registered again under the same id'],
  ];
  for (const [claims, revoked, why] of cases) {
    assert.equal(list.isRevokedToken(claims), revoked, `control plane: ${why}`);
    assert.equal(gateway.isRevoked(claims), revoked, `data plane: ${why}`);
  }
  // A restart reads them back; a later revocation of the same holder moves `before` on.
  const reopened = await RevocationList.open({ store, clock });
  assert.deepEqual(reopened.grantList(), list.grantList());
  await clock.advance(10_000);
  await reopened.revokeIssuedBefore('user', 'sam', 900);
  assert.equal(reopened.isRevokedToken(token('sam', 'web', now + 5)), true);
  // Kept for the token lifetime plus the verifiers' grace, then dropped: no token it covered can still be valid.
  await clock.advance((900 + REVOCATION_GRACE_SEC) * 1000);
  assert.deepEqual(reopened.grantList(), []);
  assert.equal(reopened.isRevokedToken(token('sam', 'web', now - 100)), false);
  assert.equal(await reopened.purgeExpired(), 2);
  assert.deepEqual(await store.list(NS.revokedTokens), []);
  await assert.rejects(list.revokeIssuedBefore('user', 'sam', 0), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});
