// The OAuth endpoints on a real HTTP server for the conformance tests: PGlite in memory, FakeClock,
// the real admin token, and openid-client configured the way a real client would be (discovery).
// `peer` plays the TLS handshake: what the server "verified" as the next request's SPIFFE ID.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as oidc from 'openid-client';
import { request } from 'undici';
import { FakeClock } from '../../src/core/clock.js';
import { AdminToken } from '../../src/control/admin-token.js';
import { Users } from '../../src/identity/users.js';
import type { PgliteStore } from '../../src/store/pglite.js';
import { RevocationList } from '../../src/tokens/revocations.js';
import { createOAuthRouter, type OAuthClient, type OAuthDeps } from '../../src/tokens/oauth/router.js';
import { SigningKeys } from '../../src/tokens/signing-keys.js';
import { newWrapper, openMemoryStore, startServer } from './setup.js';

export const AUD = 'https://gateway.example';
export const CLI = 'portcullis-cli';
export const REDIRECT = 'http://127.0.0.1/callback';
export const ORDERS = 'spiffe://demo/shop/orders';
export const PAYMENTS = 'spiffe://demo/shop/payments';

export interface Harness {
  url: string;
  store: PgliteStore;
  clock: FakeClock;
  keys: SigningKeys;
  users: Users;
  revocations: RevocationList;
  adminToken: string;
  /** The SPIFFE ID the next requests come with (undefined: no client certificate). */
  peer: string | undefined;
  close(): Promise<void>;
}

export interface HarnessOptions {
  clients?: OAuthClient[];
  extra?: Partial<OAuthDeps>;
}

/** The CLI client, allowed refresh tokens and two resource scopes. */
export const CLI_CLIENT: OAuthClient = { clientId: CLI, type: 'public', redirectUris: [REDIRECT], scopes: ['offline_access', 'orders:read', 'orders:write'] };

export async function startHarness(o: HarnessOptions = {}): Promise<Harness> {
  const store = await openMemoryStore();
  const clock = new FakeClock();
  const keys = await SigningKeys.loadOrCreate({ store, wrapper: newWrapper(), clock });
  const users = new Users(store);
  await users.add({ username: 'alice', password: 'alice-secret-pw', roles: ['customer'], attributes: { tier: 'gold' } });
  const revocations = await RevocationList.open({ store, clock });
  const dataDir = mkdtempSync(join(tmpdir(), 'pcl-oauth-'));
  const { admin } = await AdminToken.loadOrCreate(store, dataDir);
  const adminToken = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  rmSync(dataDir, { recursive: true, force: true });
  let router: ReturnType<typeof createOAuthRouter> | undefined;
  const h = { store, clock, keys, users, revocations, adminToken, peer: undefined } as Omit<Harness, 'url' | 'close'> & { peer: string | undefined }; // url and close are added below
  const server = await startServer((req, res) => {
    router ??= createOAuthRouter({
      issuer: server.url, audience: AUD, accessTokenTtl: 900, users, keys, store, clock, revocations, admin,
      clients: o.clients ?? [CLI_CLIENT],
      ...o.extra,
    });
    return router(req, res, { ...(h.peer ? { peerSpiffeId: h.peer } : {}), sourceAddress: '127.0.0.1' });
  });
  return Object.assign(h, {
    url: server.url,
    close: async () => {
      await server.close();
      await store.close();
    },
  });
}

/** openid-client's Configuration from our metadata (openid-configuration), plain http allowed for loopback tests. */
export function discover(h: Harness, clientId: string, auth: oidc.ClientAuth, metadata?: Partial<oidc.ClientMetadata>, fetchHeaders?: Record<string, string>): Promise<oidc.Configuration> {
  const customFetch: oidc.CustomFetch = (url, options) => fetch(url, { ...options, headers: { ...options.headers, ...fetchHeaders } });
  return oidc.discovery(new URL(h.url), clientId, metadata, auth, {
    execute: [oidc.allowInsecureRequests],
    ...(fetchHeaders ? { [oidc.customFetch]: customFetch } : {}),
  });
}

/**
 * The authorization code flow as openid-client runs it; the login form is posted the way a browser
 * would (openid-client does not play the user). Returns the token response.
 */
export async function loginWithOpenIdClient(h: Harness, config: oidc.Configuration, scope: string, user = { username: 'alice', password: 'alice-secret-pw' }): Promise<oidc.TokenEndpointResponse> {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const authUrl = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT, scope, state,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const form = new URLSearchParams(authUrl.searchParams);
  form.set('username', user.username);
  form.set('password', user.password);
  const login = await request(`${h.url}/oauth2/authorize`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() });
  await login.body.dump();
  assert.equal(login.statusCode, 302);
  return oidc.authorizationCodeGrant(config, new URL(String(login.headers.location)), { pkceCodeVerifier: verifier, expectedState: state });
}

export interface Answer { status: number; headers: Record<string, string | string[] | undefined>; text: string; json: Record<string, unknown> | undefined }

/** A hand-built request, only for what a conforming client library will not send (bad input). */
export async function post(h: Harness, path: string, form: Record<string, string> | string, headers: Record<string, string> = {}): Promise<Answer> {
  const r = await request(h.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: typeof form === 'string' ? form : new URLSearchParams(form).toString(),
  });
  const text = await r.body.text();
  let json: Record<string, unknown> | undefined;
  try { json = JSON.parse(text) as Record<string, unknown>; } catch { json = undefined; } // shape asserted by each test
  return { status: r.statusCode, headers: r.headers, text, json };
}

/** Every record the OAuth endpoints write, to show that a refused request changed nothing. */
export async function storeState(h: Harness): Promise<string> {
  const namespaces = ['auth_codes', 'refresh_tokens', 'revoked_tokens', 'client_assertion_jtis', 'users'];
  const all = await Promise.all(namespaces.map(async (ns) => [ns, await h.store.list(ns)] as const));
  return JSON.stringify(all);
}

/** The payload of a JWT (no verification: for looking at what we issued). */
export function jwtPayload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>; // our tokens' payloads are JSON objects
}

/** The OAuth `error` of a rejected openid-client call (ResponseBodyError or WWWAuthenticateChallengeError). */
export async function oauthError(p: Promise<unknown>): Promise<{ error: string; status: number }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof oidc.ResponseBodyError) return { error: err.error, status: err.status };
    if (err instanceof oidc.WWWAuthenticateChallengeError) {
      const body = (await err.response.json()) as { error?: string }; // our error bodies are RFC 6749 §5.2 JSON
      return { error: body.error ?? '', status: err.status };
    }
    throw err;
  }
  assert.fail('expected the request to be refused');
}
