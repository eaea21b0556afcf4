// The OAuth client endpoints over a real HTTPS server, with the real handler, ClientRegistry,
// AdminToken and — on the same server — the real OAuth router, so a registration is proven by a
// token: a confidential client registered here gets one with private_key_jwt (openid-client), and
// after its removal its next request is invalid_client. Config clients are listed and immutable;
// bad registrations are refused and store nothing. Then the CLI, in process, against the server.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { Command } from 'commander';
import { exportJWK, exportPKCS8, exportSPKI, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import * as oidc from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';
import { registerClientCommands } from '../../src/cli/client.js';
import { createClientsApi } from '../../src/control/clients-api.js';
import { FakeClock } from '../../src/core/clock.js';
import { subscribeAudit, type AdminEvent } from '../../src/core/events.js';
import { Users } from '../../src/identity/users.js';
import { MemoryStore } from '../../src/store/memory.js';
import { NS } from '../../src/store/store.js';
import { ClientRegistry } from '../../src/tokens/oauth/client-registry.js';
import { DEVICE_CODE_GRANT, type OAuthClient } from '../../src/tokens/oauth/clients.js';
import { createOAuthRouter, type OAuthRouter } from '../../src/tokens/oauth/router.js';
import { RefreshTokens } from '../../src/tokens/refresh-tokens.js';
import { RevocationList } from '../../src/tokens/revocations.js';
import { SigningKeys } from '../../src/tokens/signing-keys.js';
import { startAdminApi, type AdminApiServer, type Reply } from '../helpers/admin-api.js';
import { jwtPayload, oauthError } from '../tokens/oauth-harness.js';
import { newWrapper } from '../tokens/setup.js';

const TD = 'demo';
const AUD = 'https://gateway.example';
const configYaml = (url: string, dataDir: string): string => `
trustDomain: ${TD}
control: { url: "${url}", dataDir: "${dataDir}" }
services:
  - { name: api, spiffeId: spiffe://${TD}/api, upstream: http://127.0.0.1:1, sidecar: { listen: 127.0.0.1:2, outbound: 127.0.0.1:3 } }
`;

let harness: AdminApiServer;
let store: MemoryStore;
let clock: FakeClock;
let registry: ClientRegistry;
let sessions: RefreshTokens;
let agent: Agent;
let key: CryptoKey;
let publicJwk: JWK;
let events: AdminEvent[] = [];
let unsubscribe: () => void;

before(async () => {
  store = new MemoryStore();
  clock = new FakeClock();
  const pair = await generateKeyPair('ES256', { extractable: true });
  key = pair.privateKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1' };
  const configPair = await generateKeyPair('ES256', { extractable: true });
  const fixed: OAuthClient[] = [
    { clientId: 'portcullis-cli', type: 'public', redirectUris: ['http://127.0.0.1/callback'], scopes: ['offline_access'], grantTypes: [DEVICE_CODE_GRANT] },
    { clientId: 'reports', type: 'confidential', jwks: { keys: [{ ...(await exportJWK(configPair.publicKey)), kid: 'r1' }] }, scopes: ['orders:read'] },
  ];
  registry = await ClientRegistry.open({ store, clock, fixed });
  const keys = await SigningKeys.loadOrCreate({ store, wrapper: newWrapper(), clock });
  const revocations = await RevocationList.open({ store, clock });
  sessions = new RefreshTokens({ store, clock, revoker: revocations });
  let router: OAuthRouter | undefined;
  harness = await startAdminApi({
    name: 'clients-api', trustDomain: TD, store, configYaml,
    api: (admin) => {
      const api = createClientsApi({ registry, admin, trustDomain: TD, clock, sessions });
      // The OAuth endpoints on the same server, as in the control plane: its issuer is this server's URL.
      return async (req, res, ctx) => {
        if (await api(req, res, ctx)) return true;
        router ??= createOAuthRouter({ issuer: `https://127.0.0.1:${harness.port}`, audience: AUD, accessTokenTtl: 900, users: new Users(store), keys, store, clock, revocations, clients: registry });
        return router(req, res, { sourceAddress: '127.0.0.1' });
      };
    },
  });
  agent = new Agent({ connect: { ca: harness.caPem } });
  // The API's own entries (the token endpoint's oauth.* entries are its business).
  unsubscribe = subscribeAudit((e) => { if (e.type === 'admin' && e.action.startsWith('client.')) events.push(e); });
});

after(async () => {
  unsubscribe();
  await agent.close();
  await harness.close();
});

beforeEach(() => { events = []; });

const admin = (method: string, path: string, body?: unknown, o: { raw?: string; contentType?: string } = {}): Promise<Reply> =>
  harness.send(method, path, { token: harness.adminToken, ...(body !== undefined ? { body } : {}), ...o });
const codeOf = (r: Reply): unknown => (r.json.error as { code?: string } | undefined)?.code;
function refused(r: Reply, status: number, code: string, why = ''): void {
  assert.equal(r.status, status, `${why} ${r.text}`);
  assert.equal(codeOf(r), code, why);
}
const storedIds = async (): Promise<string[]> => (await store.list(NS.oauthClients)).map((r) => r.key).sort();

/** openid-client over our TLS (the harness CA), authenticating with private_key_jwt. */
function machine(clientId: string, signWith: CryptoKey = key, kid = 'k1'): Promise<oidc.Configuration> {
  // undici's fetch with an agent trusting the harness CA; its Response is the WHATWG one openid-client expects.
  const customFetch = ((url: string, options: oidc.CustomFetchOptions) => undiciFetch(url, { ...(options as object), dispatcher: agent })) as unknown as oidc.CustomFetch;
  return oidc.discovery(new URL(`https://127.0.0.1:${harness.port}`), clientId, undefined, oidc.PrivateKeyJwt({ key: signWith, kid }), { [oidc.customFetch]: customFetch });
}

test('without the admin token every endpoint is 401, before the body is read, and nothing is stored', async () => {
  const body = { clientId: 'sneaky', type: 'confidential', jwks: { keys: [publicJwk] } };
  for (const [method, path] of [['GET', '/v1/admin/clients'], ['POST', '/v1/admin/clients'], ['GET', '/v1/admin/clients/reports'], ['DELETE', '/v1/admin/clients/reports'], ['PUT', '/v1/admin/clients/reports/keys']] as const) {
    // A body only where the method has one (the harness sends it without a length otherwise).
    const withBody = method === 'POST' || method === 'PUT' ? { body } : {};
    refused(await harness.send(method, path, withBody), 401, 'PCL_ERR_ADMIN_AUTH', `${method} ${path}`);
    refused(await harness.send(method, path, { ...withBody, token: 'pat_wrong' }), 401, 'PCL_ERR_ADMIN_AUTH', `${method} ${path} (wrong token)`);
  }
  assert.deepEqual(await storedIds(), []);
});

test('a confidential client registered through the API gets a token with private_key_jwt; removed, it is invalid_client', async () => {
  const r = await admin('POST', '/v1/admin/clients', { clientId: 'billing-batch', type: 'confidential', jwks: { keys: [publicJwk] }, scopes: ['invoices:read'], audience: 'https://billing.internal' });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.source, 'api');
  assert.equal(r.json.authMethod, 'private_key_jwt');
  assert.deepEqual(events.map((e) => [e.action, e.detail.clientId]), [['client.register', 'billing-batch']]);

  const batch = await machine('billing-batch');
  const tokens = await oidc.clientCredentialsGrant(batch, { scope: 'invoices:read' });
  const claims = jwtPayload(tokens.access_token);
  assert.deepEqual([claims.client_id, claims.scope, claims.aud], ['billing-batch', 'invoices:read', 'https://billing.internal']);
  assert.equal((await oauthError(oidc.clientCredentialsGrant(batch, { scope: 'admin' }))).error, 'invalid_scope');

  const shown = await admin('GET', '/v1/admin/clients/billing-batch');
  assert.equal(shown.status, 200);
  assert.deepEqual((shown.json.jwks as { keys: JWK[] }).keys, [publicJwk]);

  const removed = await admin('DELETE', '/v1/admin/clients/billing-batch');
  assert.deepEqual(removed.json, { clientId: 'billing-batch', removed: true, revokedSessions: 0 });
  // At once on this replica, whatever the cache's age.
  assert.deepEqual(await oauthError(oidc.clientCredentialsGrant(batch)), { error: 'invalid_client', status: 401 });
  refused(await admin('GET', '/v1/admin/clients/billing-batch'), 404, 'PCL_ERR_CLIENT_NOT_FOUND');
  refused(await admin('DELETE', '/v1/admin/clients/billing-batch'), 404, 'PCL_ERR_CLIENT_NOT_FOUND');
  assert.deepEqual(events.map((e) => e.action), ['client.register', 'client.remove']);
  assert.deepEqual(await storedIds(), []);
});

test('key rotation: PUT keys replaces the public keys; the old key stops working at once', async () => {
  const next = await generateKeyPair('ES256', { extractable: true });
  const nextJwk = { ...(await exportJWK(next.publicKey)), kid: 'k2' };
  assert.equal((await admin('POST', '/v1/admin/clients', { clientId: 'rotating', type: 'confidential', jwks: { keys: [publicJwk] } })).status, 201);
  assert.ok((await oidc.clientCredentialsGrant(await machine('rotating'))).access_token);
  // Both during the switch, then the new one alone.
  assert.equal((await admin('PUT', '/v1/admin/clients/rotating/keys', { jwks: { keys: [publicJwk, nextJwk] } })).status, 200);
  assert.ok((await oidc.clientCredentialsGrant(await machine('rotating', next.privateKey, 'k2'))).access_token);
  const only = await admin('PUT', '/v1/admin/clients/rotating/keys', { jwks: { keys: [nextJwk] } });
  assert.equal(only.status, 200, only.text);
  assert.deepEqual((only.json.jwks as { keys: JWK[] }).keys.map((k) => k.kid), ['k2']);
  assert.equal((await oauthError(oidc.clientCredentialsGrant(await machine('rotating')))).error, 'invalid_client');
  assert.ok((await oidc.clientCredentialsGrant(await machine('rotating', next.privateKey, 'k2'))).access_token);
  // Never a private key; never for a client without keys; never for a config client; a strict body.
  refused(await admin('PUT', '/v1/admin/clients/rotating/keys', { jwks: { keys: [{ ...(await exportJWK(next.privateKey)), kid: 'k3' }] } }), 400, 'PCL_ERR_INVALID_ARGUMENT', 'private key');
  refused(await admin('PUT', '/v1/admin/clients/rotating/keys', { jwks: { keys: [] } }), 400, 'PCL_ERR_INVALID_ARGUMENT', 'no key');
  refused(await admin('PUT', '/v1/admin/clients/rotating/keys', { keys: [nextJwk] }), 400, 'PCL_ERR_INVALID_ARGUMENT', 'keys outside jwks');
  refused(await admin('PUT', '/v1/admin/clients/reports/keys', { jwks: { keys: [nextJwk] } }), 409, 'PCL_ERR_CLIENT_IMMUTABLE');
  refused(await admin('PUT', '/v1/admin/clients/nobody/keys', { jwks: { keys: [nextJwk] } }), 404, 'PCL_ERR_CLIENT_NOT_FOUND');
  refused(await admin('POST', '/v1/admin/clients/rotating/keys', { jwks: { keys: [nextJwk] } }), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
  assert.equal((await admin('POST', '/v1/admin/clients', { clientId: 'mtls', type: 'confidential', authMethod: 'tls_client_auth', spiffeId: `spiffe://${TD}/batch` })).status, 201);
  refused(await admin('PUT', '/v1/admin/clients/mtls/keys', { jwks: { keys: [nextJwk] } }), 400, 'PCL_ERR_INVALID_ARGUMENT', 'tls_client_auth client');
  assert.deepEqual(events.map((e) => e.action), ['client.register', 'client.keys', 'client.keys', 'client.register']);
  for (const id of ['rotating', 'mtls']) assert.equal((await admin('DELETE', `/v1/admin/clients/${id}`)).status, 200);
});

test('the list marks config clients; they cannot be changed or removed, and their ids cannot be taken', async () => {
  assert.equal((await admin('POST', '/v1/admin/clients', { clientId: 'tv-app', type: 'public', redirectUris: [], grantTypes: [DEVICE_CODE_GRANT], scopes: ['orders:read'] })).status, 201);
  const list = await admin('GET', '/v1/admin/clients');
  assert.equal(list.status, 200);
  const clients = list.json.clients as { clientId: string; source: string }[];
  assert.deepEqual(clients.map((c) => [c.clientId, c.source]), [['portcullis-cli', 'config'], ['reports', 'config'], ['tv-app', 'api']]);
  refused(await admin('DELETE', '/v1/admin/clients/reports'), 409, 'PCL_ERR_CLIENT_IMMUTABLE');
  refused(await admin('DELETE', '/v1/admin/clients/portcullis-cli'), 409, 'PCL_ERR_CLIENT_IMMUTABLE');
  refused(await admin('POST', '/v1/admin/clients', { clientId: 'reports', type: 'confidential', jwks: { keys: [publicJwk] } }), 409, 'PCL_ERR_CLIENT_IMMUTABLE', 'config id');
  refused(await admin('POST', '/v1/admin/clients', { clientId: 'portcullis-cli', type: 'public', redirectUris: ['https://evil.example/cb'] }), 409, 'PCL_ERR_CLIENT_IMMUTABLE', 'CLI id');
  assert.equal((await admin('GET', '/v1/admin/clients/reports')).json.source, 'config');
  // The device-only public client works at the device endpoint (RFC 8628), as a registered public client.
  const device = await harness.send('POST', '/oauth2/device_authorization', { raw: 'client_id=tv-app&scope=orders%3Aread', contentType: 'application/x-www-form-urlencoded' });
  assert.equal(device.status, 200, device.text);
  assert.equal((await admin('DELETE', '/v1/admin/clients/tv-app')).status, 200);
  const gone = await harness.send('POST', '/oauth2/device_authorization', { raw: 'client_id=tv-app', contentType: 'application/x-www-form-urlencoded' });
  assert.equal(gone.status, 401);
  assert.equal(gone.json.error, 'invalid_client');
});

test('bad registrations are refused with a code and store nothing', async () => {
  const priv = await exportJWK(key);
  const rsaSmall = generateKeyPairSync('rsa', { modulusLength: 1024 }); // jose refuses to make one
  assert.equal((await admin('POST', '/v1/admin/clients', { clientId: 'taken', type: 'confidential', jwks: { keys: [publicJwk] } })).status, 201);
  const before = await storedIds();
  const bad: [unknown, string, number, string][] = [
    [{ clientId: 'p1', type: 'confidential', jwks: { keys: [{ ...priv, kid: 'x' }] } }, 'private EC key in jwks', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'p2', type: 'confidential', jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0' }] } }, 'symmetric key', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'p3', type: 'confidential', jwks: { keys: [{ ...publicJwk, p: 'AQAB' }] } }, 'a private RSA member without d', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'p4', type: 'confidential', jwks: { keys: [rsaSmall.publicKey.export({ format: 'jwk' })] } }, 'RSA 1024', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'p5', type: 'confidential', jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' }] } }, 'not a point', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 's1', type: 'confidential', jwks: { keys: [publicJwk] }, clientSecret: 'hunter2' }, 'clientSecret', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 's2', type: 'confidential', client_secret: 'hunter2' }, 'client_secret', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 's3', type: 'confidential', authMethod: 'client_secret_basic' }, 'client_secret_basic', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'r1', type: 'public', redirectUris: ['http://evil.example/cb'] }, 'plain http off loopback', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'r2', type: 'public', redirectUris: ['https://app.example/cb#frag'] }, 'fragment', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'r3', type: 'public', redirectUris: ['/relative'] }, 'relative', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'r4', type: 'public', redirectUris: ['javascript:alert(1)'] }, 'javascript:', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'r5', type: 'public', redirectUris: ['https://user:pw@app.example/cb'] }, 'credentials in URI', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'r6', type: 'public', redirectUris: [] }, 'no redirect URI, no device grant', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'r7', type: 'public', redirectUris: ['https://app.example/cb'], jwks: { keys: [publicJwk] } }, 'keys on a public client', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'taken', type: 'confidential', jwks: { keys: [publicJwk] } }, 'duplicate id', 409, 'PCL_ERR_CLIENT_EXISTS'],
    [{ clientId: 'spiffe://demo/orders', type: 'confidential', jwks: { keys: [publicJwk] } }, 'SPIFFE ID', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'SPIFFE:x', type: 'confidential', jwks: { keys: [publicJwk] } }, 'SPIFFE ID, upper case', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'has space', type: 'confidential', jwks: { keys: [publicJwk] } }, 'client_id charset', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'c1', type: 'confidential', jwks: { keys: [publicJwk] }, scopes: ['offline_access'] }, 'confidential refresh tokens', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'c2', type: 'confidential', jwks: { keys: [publicJwk] }, scopes: ['a b'] }, 'scope syntax', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'c3', type: 'confidential', jwks: { keys: [publicJwk] }, grantTypes: ['implicit'] }, 'unknown grant', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'c4', type: 'confidential', jwks: { keys: [publicJwk] }, spiffeId: `spiffe://${TD}/x` }, 'both credentials', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'c5', type: 'confidential', authMethod: 'tls_client_auth', spiffeId: 'spiffe://other/x' }, 'SPIFFE ID outside the trust domain', 400, 'PCL_ERR_SPIFFE_ID_INVALID'],
    [{ clientId: 'c6', type: 'confidential' }, 'no credential', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'c7', type: 'confidential', jwks: { keys: [publicJwk] }, audience: 'two words' }, 'audience', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'c8', type: 'machine', jwks: { keys: [publicJwk] } }, 'type', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'c9', type: 'confidential', jwks: { keys: [publicJwk] }, redirectUris: ['https://a.example/cb'] }, 'redirect URI on a confidential client', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ clientId: 'c10', type: 'confidential', jwks: { keys: Array.from({ length: 11 }, () => publicJwk) } }, 'eleven keys', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [{ type: 'confidential', jwks: { keys: [publicJwk] } }, 'no client id', 400, 'PCL_ERR_INVALID_ARGUMENT'],
    [[{ clientId: 'arr', type: 'public', redirectUris: ['https://a.example/cb'] }], 'an array body', 400, 'PCL_ERR_INVALID_ARGUMENT'],
  ];
  for (const [body, why, status, code] of bad) {
    const r = await admin('POST', '/v1/admin/clients', body);
    refused(r, status, code, why);
    assert.ok(!r.text.includes('hunter2') && !r.text.includes(String(priv.d)), `${why}: nothing echoed`);
  }
  refused(await admin('POST', '/v1/admin/clients', undefined, { raw: '{"clientId":', contentType: 'application/json' }), 400, 'PCL_ERR_INVALID_ARGUMENT', 'broken JSON');
  refused(await admin('POST', '/v1/admin/clients', undefined, { raw: JSON.stringify({ clientId: 'x', type: 'public', redirectUris: ['https://a.example/cb'] }), contentType: 'text/plain' }), 400, 'PCL_ERR_INVALID_ARGUMENT', 'content type');
  refused(await admin('PATCH', '/v1/admin/clients', {}), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
  refused(await admin('GET', '/v1/admin/clients/%E0%A4%A'), 404, 'PCL_ERR_CLIENT_NOT_FOUND', 'bad escape');
  refused(await admin('GET', '/v1/admin/clients/a%20b'), 404, 'PCL_ERR_CLIENT_NOT_FOUND', 'cannot be an id');
  assert.deepEqual(await storedIds(), before, 'nothing stored');
  assert.deepEqual(events.map((e) => e.action), ['client.register'], 'only the one registration is audited');
  assert.equal((await admin('DELETE', '/v1/admin/clients/taken')).status, 200);
});

test('removing a public client ends the sessions (refresh-token families) held through it', async () => {
  assert.equal((await admin('POST', '/v1/admin/clients', { clientId: 'web-app', type: 'public', redirectUris: ['https://app.example/cb'], scopes: ['offline_access'] })).status, 201);
  const access = { jti: 'j1', exp: Math.floor(clock.now() / 1000) + 900 };
  const token = await sessions.issue({ clientId: 'web-app', username: 'alice', scope: 'offline_access', access });
  const other = await sessions.issue({ clientId: 'portcullis-cli', username: 'alice', scope: 'offline_access', access: { jti: 'j2', exp: access.exp } });
  assert.equal((await sessions.lookup(token)).state, 'active');
  const removed = await admin('DELETE', '/v1/admin/clients/web-app');
  assert.equal(removed.json.revokedSessions, 1);
  assert.equal((await sessions.lookup(token)).state, 'inactive');
  assert.equal((await sessions.lookup(other)).state, 'active', 'another client\'s sessions stay');
  assert.equal(events.find((e) => e.action === 'client.remove')?.detail.revokedSessions, 1);
});

test('another replica sees a registration and a removal within its refresh interval (2 s)', async () => {
  const replica = await ClientRegistry.open({ store, clock, fixed: [] });
  assert.equal(await replica.get('late'), undefined);
  assert.equal((await admin('POST', '/v1/admin/clients', { clientId: 'late', type: 'confidential', jwks: { keys: [publicJwk] } })).status, 201);
  assert.equal(await replica.get('late'), undefined, 'cached: not yet');
  await clock.advance(2000);
  assert.equal((await replica.get('late'))?.type, 'confidential');
  assert.equal((await admin('DELETE', '/v1/admin/clients/late')).status, 200);
  assert.ok(await replica.get('late'), 'cached: still there');
  await clock.advance(2000);
  assert.equal(await replica.get('late'), undefined);
});

// The CLI, in process, against the same server.
async function cli(...args: string[]): Promise<{ out: string[]; err: string[]; help: string; error?: unknown }> {
  const out: string[] = [];
  const err: string[] = [];
  let help = '';
  const program = new Command('portcullis').exitOverride().configureOutput({ writeOut: (s) => { help += s; }, writeErr: (s) => { help += s; } });
  registerClientCommands(program, harness.configFile);
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  console.error = (...a: unknown[]) => { err.push(a.join(' ')); };
  try {
    await program.parseAsync(['node', 'portcullis', 'client', ...args]);
    return { out, err, help };
  } catch (e) {
    return { out, err, help, error: e };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test('CLI: every client command answers --help', async () => {
  for (const verb of ['list', 'show', 'add', 'remove', 'set-keys']) {
    const r = await cli(verb, '--help');
    assert.match(r.help, new RegExp(`Usage: portcullis client ${verb}`), verb);
  }
  assert.match((await cli('add', '--help')).help, /--redirect-uri <uri>[\s\S]*--spiffe-id <id>[\s\S]*--auth-method/);
});

test('CLI: add (PEM public key and JWK file), list, show, set-keys, remove; a private key file is refused before sending', async () => {
  const pair = await generateKeyPair('ES256', { extractable: true });
  const pemFile = join(harness.dataDir, 'cli-client.pub.pem');
  writeFileSync(pemFile, await exportSPKI(pair.publicKey));
  const privateFile = join(harness.dataDir, 'cli-client.key.pem');
  writeFileSync(privateFile, await exportPKCS8(pair.privateKey));
  const privateJwkFile = join(harness.dataDir, 'cli-client.key.json');
  writeFileSync(privateJwkFile, JSON.stringify({ keys: [await exportJWK(pair.privateKey)] }));
  const jwkFile = join(harness.dataDir, 'cli-client.jwk.json');
  writeFileSync(jwkFile, JSON.stringify(publicJwk));

  const added = await cli('add', 'cli-batch', '--confidential', '--jwks', pemFile, '--scope', 'a:read', '--scope', 'a:write');
  assert.equal(added.error, undefined, String(added.error));
  assert.match(added.out.join('\n'), /^registered cli-batch {2}confidential {2}source api {2}private_key_jwt keys \S+ {2}scopes a:read a:write/);
  // The thumbprint kid lets the client sign assertions openid-client-style.
  const shown = await registry.show('cli-batch');
  const kid = shown.type === 'confidential' ? shown.jwks?.keys[0]?.kid ?? '' : '';
  assert.ok(kid.length > 20, 'a thumbprint');
  assert.ok((await oidc.clientCredentialsGrant(await machine('cli-batch', pair.privateKey, kid))).access_token);

  const eventsBefore = events.length;
  for (const file of [privateFile, privateJwkFile]) {
    const r = await cli('add', 'leaky', '--confidential', '--jwks', file);
    assert.equal((r.error as { code?: string }).code, 'PCL_ERR_INVALID_ARGUMENT', file);
  }
  assert.equal(events.length, eventsBefore, 'nothing reached the control plane');
  assert.equal((await cli('add', 'both', '--public', '--confidential')).error !== undefined, true);
  assert.equal(((await cli('add', 'g', '--public', '--redirect-uri', 'https://a.example/cb', '--grant', 'implicit')).error as { code?: string }).code, 'PCL_ERR_INVALID_ARGUMENT');

  const pub = await cli('add', 'cli-web', '--public', '--redirect-uri', 'https://app.example/cb', '--redirect-uri', 'http://127.0.0.1/cb', '--scope', 'offline_access', '--grant', 'device_code', '--json');
  assert.equal(pub.error, undefined, String(pub.error));
  const pubJson = JSON.parse(pub.out.join('\n')) as { redirectUris: string[]; grantTypes: string[] };
  assert.deepEqual(pubJson.redirectUris, ['https://app.example/cb', 'http://127.0.0.1/cb']);
  assert.deepEqual(pubJson.grantTypes, [DEVICE_CODE_GRANT]);
  const mtls = await cli('add', 'cli-mtls', '--confidential', '--spiffe-id', `spiffe://${TD}/batch`);
  assert.match(mtls.out.join('\n'), /tls_client_auth spiffe:\/\/demo\/batch/);

  const list = await cli('list');
  assert.deepEqual(list.out.map((l) => l.split('  ').slice(0, 3).join(' ')), [
    'portcullis-cli public source config', 'reports confidential source config',
    'cli-batch confidential source api', 'cli-mtls confidential source api', 'cli-web public source api',
  ]);
  const listJson = JSON.parse((await cli('list', '--json')).out.join('\n')) as { clientId: string }[];
  assert.equal(listJson.length, 5);
  assert.match((await cli('show', 'cli-web')).out.join('\n'), /grants device_code/);

  const rotated = await cli('set-keys', 'cli-batch', '--jwks', jwkFile);
  assert.equal(rotated.error, undefined, String(rotated.error));
  assert.match(rotated.out.join('\n'), /keys of cli-batch replaced: .*keys k1/);
  const immutable = await cli('remove', 'reports');
  assert.equal((immutable.error as { code?: string }).code, 'PCL_ERR_CLIENT_IMMUTABLE');
  for (const id of ['cli-batch', 'cli-web', 'cli-mtls']) assert.deepEqual((await cli('remove', id)).out, [`removed ${id}`]);
  assert.equal(((await cli('show', 'cli-web')).error as { code?: string }).code, 'PCL_ERR_CLIENT_NOT_FOUND');
  assert.deepEqual(await storedIds(), []);
});
