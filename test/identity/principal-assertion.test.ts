import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { PrincipalAssertionSigner, PrincipalAssertionVerifier, type SignerCredentials } from '../../src/identity/principal-assertion.js';
import { FakeClock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { unsignedAssertion } from '../helpers/principal-assertion.js';

const TD = 'assert.test';
const GATEWAY = `spiffe://${TD}/gateway`;
const ORDERS = `spiffe://${TD}/shop/orders`;
const USERS = `spiffe://${TD}/shop/users`;
const alice = { sub: 'alice', roles: ['customer'], attrs: { department: 'sales' }, clientId: 'web', iss: 'https://idp' };

let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let gateway: SignerCredentials;
let orders: SignerCredentials;
let foreignGateway: SignerCredentials;

async function svid(authority: CertificateAuthority, spiffeId: string): Promise<SignerCredentials> {
  const { keyPem, csrPem } = await createWorkloadKeyAndCsr(spiffeId);
  return { spiffeId, keyPem, chainPem: (await authority.issue({ csrPem, spiffeId })).chainPem };
}

const newCa = () => CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), trustDomain: TD });

before(async () => {
  [ca, otherCa] = await Promise.all([newCa(), newCa()]);
  [gateway, orders, foreignGateway] = await Promise.all([svid(ca, GATEWAY), svid(ca, ORDERS), svid(otherCa, GATEWAY)]);
});

function verifierFor(audience: string, clock = new FakeClock(Date.now()), bundle = () => ca.trustBundlePem()): PrincipalAssertionVerifier {
  return new PrincipalAssertionVerifier({ audience, issuer: GATEWAY, trustBundlePem: bundle, clock });
}

function refusedWith(fn: () => unknown, why: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_PRINCIPAL_ASSERTION' && why.test(e.message));
}

test('the gateway signs, the addressed service reads back exactly the principal', () => {
  const jws = new PrincipalAssertionSigner(() => gateway).sign(alice, ORDERS);
  assert.equal(jws.split('.').length, 3);
  assert.deepEqual(verifierFor(ORDERS).verify(jws), alice);
  // A principal without the optional parts stays without them.
  const bare = new PrincipalAssertionSigner(() => gateway).sign({ sub: 'bob', roles: [] }, ORDERS);
  assert.deepEqual(verifierFor(ORDERS).verify(bare), { sub: 'bob', roles: [] });
});

test('refused: addressed to another service, signed by another workload, from another CA, unsigned, tampered', () => {
  const toOrders = new PrincipalAssertionSigner(() => gateway).sign(alice, ORDERS);
  refusedWith(() => verifierFor(USERS).verify(toOrders), /another service/);
  refusedWith(() => verifierFor(ORDERS).verify(new PrincipalAssertionSigner(() => orders).sign(alice, ORDERS)), /not by the gateway/);
  refusedWith(() => verifierFor(ORDERS).verify(new PrincipalAssertionSigner(() => foreignGateway).sign(alice, ORDERS)), /not anchored/);
  refusedWith(() => verifierFor(ORDERS).verify(unsignedAssertion(alice, ORDERS)), /alg/);
  const [h, p, s] = toOrders.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  const promoted = Buffer.from(JSON.stringify({ ...claims, roles: ['admin'] })).toString('base64url');
  refusedWith(() => verifierFor(ORDERS).verify(`${h}.${promoted}.${s}`), /signature/);
  // The gateway's own key, but x5c swapped for another workload's chain: the signature no longer matches.
  const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { x5c: string[] };
  const ordersX5c = JSON.parse(Buffer.from(new PrincipalAssertionSigner(() => orders).sign(alice, ORDERS).split('.')[0] ?? '', 'base64url').toString()) as { x5c: string[] };
  const swapped = Buffer.from(JSON.stringify({ ...header, x5c: ordersX5c.x5c })).toString('base64url');
  refusedWith(() => verifierFor(ORDERS).verify(`${swapped}.${p}.${s}`), /not by the gateway/);
  for (const junk of ['', 'a.b', 'a.b.c', `${'x'.repeat(20_000)}.a.b`]) refusedWith(() => verifierFor(ORDERS).verify(junk), /./);
});

test('valid for a minute: refused after it expires, including from the cache', async () => {
  const clock = new FakeClock(Date.now());
  const jws = new PrincipalAssertionSigner(() => gateway, clock).sign(alice, ORDERS);
  const v = verifierFor(ORDERS, clock);
  assert.equal(v.verify(jws).sub, 'alice');
  await clock.advance(30_000);
  assert.equal(v.verify(jws).sub, 'alice'); // served from the cache
  await clock.advance(36_000);
  refusedWith(() => v.verify(jws), /expired/);
});

test('the signer reuses an assertion for half its life, then signs a new one; a new key (renewal) signs at once', async () => {
  const clock = new FakeClock(Date.now());
  let creds = gateway;
  const signer = new PrincipalAssertionSigner(() => creds, clock);
  const first = signer.sign(alice, ORDERS);
  await clock.advance(10_000);
  assert.equal(signer.sign(alice, ORDERS), first);
  assert.notEqual(signer.sign(alice, USERS), first, 'one per audience');
  await clock.advance(25_000);
  const second = signer.sign(alice, ORDERS);
  assert.notEqual(second, first);
  assert.equal(verifierFor(ORDERS, clock).verify(second).sub, 'alice');
  creds = { ...orders, spiffeId: GATEWAY }; // a different key: nothing cached under the old one may be handed out
  assert.notEqual(signer.sign(alice, ORDERS), second);
});

test('a trust bundle without the signer\'s CA refuses what it accepted before (no cached trust survives a bundle change)', () => {
  let bundle = ca.trustBundlePem();
  const v = verifierFor(ORDERS, new FakeClock(Date.now()), () => bundle);
  const jws = new PrincipalAssertionSigner(() => gateway).sign(alice, ORDERS);
  assert.equal(v.verify(jws).sub, 'alice');
  bundle = otherCa.trustBundlePem();
  refusedWith(() => v.verify(jws), /not anchored/);
});

test('a malformed principal inside a valid signature is refused', () => {
  // Only the gateway can make one; a bug there must still not hand a service a bad shape.
  const signer = new PrincipalAssertionSigner(() => gateway);
  refusedWith(() => verifierFor(ORDERS).verify(signer.sign({ sub: '', roles: [] }, ORDERS)), /malformed/);
  refusedWith(() => verifierFor(ORDERS).verify(signer.sign({ sub: 'x', roles: [], attrs: { roles: 'admin' } }, ORDERS)), /malformed/);
});
