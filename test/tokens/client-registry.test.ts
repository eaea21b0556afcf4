// ClientRegistry on both real stores (PGlite and PostgreSQL): two replicas over one store, the
// fixed clients first, create-only registration, compare-and-set key replacement, the cache's
// refresh interval on the fake clock, and a stored record that no longer validates authenticates
// nothing.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { FakeClock } from '../../src/core/clock.js';
import { NS, type Store } from '../../src/store/store.js';
import { MemoryStore } from '../../src/store/memory.js';
import { PgliteStore } from '../../src/store/pglite.js';
import { ClientRegistry, CLIENT_CACHE_REFRESH_MS } from '../../src/tokens/oauth/client-registry.js';
import type { OAuthClient } from '../../src/tokens/oauth/clients.js';
import { openPg } from '../store/pg-fixture.js';

const opened: Store[] = [];
after(async () => { for (const s of opened) await s.close(); });

async function jwk(kid: string): Promise<JWK> {
  const { publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { ...(await exportJWK(publicKey)), kid };
}

const FIXED: OAuthClient[] = [{ clientId: 'portcullis-cli', type: 'public', redirectUris: ['http://127.0.0.1/callback'], scopes: ['offline_access'] }];

for (const [name, open] of [['PGlite', () => PgliteStore.open()], ['PostgreSQL', () => openPg()]] as const) {
  test(`${name}: two replicas, one store`, async () => {
    const store: Store = await open();
    opened.push(store);
    const clock = new FakeClock(Date.UTC(2030, 0, 1));
    const a = await ClientRegistry.open({ store, clock, fixed: FIXED });
    const b = await ClientRegistry.open({ store, clock, fixed: FIXED });
    const k1 = await jwk('k1');
    const k2 = await jwk('k2');

    const reg = await a.register({ clientId: 'batch', type: 'confidential', jwks: { keys: [k1] }, scopes: ['x:read'] });
    assert.deepEqual([reg.source, reg.createdAt], ['api', '2030-01-01T00:00:00.000Z']);
    assert.equal((await a.get('batch'))?.type, 'confidential', 'at once on the replica that registered it');
    assert.equal(await b.get('batch'), undefined, 'the other replica: after its refresh');
    await clock.advance(CLIENT_CACHE_REFRESH_MS - 1);
    assert.equal(await b.get('batch'), undefined);
    await clock.advance(1);
    assert.equal((await b.get('batch'))?.clientId, 'batch');
    assert.deepEqual(b.knownScopes(), ['offline_access', 'x:read']);

    // Create-only: the other replica cannot register the same id again (not even after its cache is fresh).
    await assert.rejects(b.register({ clientId: 'batch', type: 'confidential', jwks: { keys: [k2] } }), { code: 'PCL_ERR_CLIENT_EXISTS' });
    await assert.rejects(a.register({ clientId: 'portcullis-cli', type: 'public', redirectUris: ['https://evil.example/cb'] }), { code: 'PCL_ERR_CLIENT_IMMUTABLE' });
    await assert.rejects(a.remove('portcullis-cli'), { code: 'PCL_ERR_CLIENT_IMMUTABLE' });

    await a.get('batch'); // A's cache, fresh from now
    const rotated = await b.setKeys('batch', { keys: [k2] });
    assert.deepEqual(rotated.type === 'confidential' ? rotated.jwks?.keys.map((k) => k.kid) : [], ['k2']);
    const onA = await a.get('batch');
    assert.deepEqual(onA?.type === 'confidential' ? onA.jwks?.keys.map((k) => k.kid) : [], ['k1'], 'A still has the cached keys');
    await clock.advance(CLIENT_CACHE_REFRESH_MS);
    const fresh = await a.get('batch');
    assert.deepEqual(fresh?.type === 'confidential' ? fresh.jwks?.keys.map((k) => k.kid) : [], ['k2']);

    await b.remove('batch');
    await assert.rejects(a.remove('batch'), { code: 'PCL_ERR_CLIENT_NOT_FOUND' });
    await clock.advance(CLIENT_CACHE_REFRESH_MS);
    assert.equal(await a.get('batch'), undefined);
    assert.deepEqual((await a.list()).map((c) => [c.clientId, c.source]), [['portcullis-cli', 'config']]);

    // A record changed behind the API's back (a private key slipped in) is ignored, not trusted.
    await store.put(NS.oauthClients, 'tampered', { registration: { clientId: 'tampered', type: 'confidential', jwks: { keys: [{ ...k1, d: 'AAAA' }] } }, createdAt: '', updatedAt: '' });
    await store.put(NS.oauthClients, 'renamed', { registration: { clientId: 'other', type: 'public', redirectUris: ['https://a.example/cb'] }, createdAt: '', updatedAt: '' });
    await clock.advance(CLIENT_CACHE_REFRESH_MS);
    assert.equal(await a.get('tampered'), undefined);
    assert.equal(await a.get('other'), undefined);
    assert.equal(await a.get('renamed'), undefined);
    await assert.rejects(a.show('tampered'), { code: 'PCL_ERR_CLIENT_NOT_FOUND' });
  });
}

test('workload ids never reach the store; a store that fails a reload fails the lookup (closed)', async () => {
  const store = new MemoryStore();
  const clock = new FakeClock(Date.UTC(2030, 0, 1));
  const r = await ClientRegistry.open({ store, clock, fixed: FIXED });
  let reads = 0;
  const list = store.list.bind(store);
  store.list = async <T>(ns: string) => { reads++; return list<T>(ns); };
  await clock.advance(CLIENT_CACHE_REFRESH_MS);
  assert.equal(await r.get('spiffe://demo/orders'), undefined);
  assert.equal(await r.get('portcullis-cli').then((c) => c?.clientId), 'portcullis-cli');
  assert.equal(reads, 0, 'fixed clients and SPIFFE IDs are answered without the store');
  assert.equal(await r.get('unknown'), undefined);
  assert.equal(await r.get('unknown-2'), undefined);
  assert.equal(reads, 1, 'one reload per interval, however many unknown ids');
  await clock.advance(CLIENT_CACHE_REFRESH_MS);
  store.list = () => Promise.reject(new Error('store down'));
  await assert.rejects(r.get('unknown'), /store down/);
  assert.equal((await r.get('portcullis-cli'))?.clientId, 'portcullis-cli', 'fixed clients do not need the store');
});

test('fixed-only registries refuse changes', async () => {
  const r = ClientRegistry.fixed(FIXED);
  assert.equal(await r.get('x'), undefined);
  await assert.rejects(r.register({ clientId: 'x', type: 'public', redirectUris: ['https://a.example/cb'] }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});
