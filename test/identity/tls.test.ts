// Real TLS handshakes on 127.0.0.1 with certificates from the CA: the only proof that the
// certificate profile and the TLS options work together in OpenSSL.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type ConnectionOptions, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { PortcullisError } from '../../src/core/errors.js';
import { PgliteStore } from '../../src/store/pglite.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { spiffeIdFromCertificate } from '../../src/identity/spiffe.js';
import { mtlsClientOptions, mtlsServerOptions, peerSpiffeId, type MtlsCredentials } from '../../src/identity/tls-options.js';
import { MemoryStore } from '../../src/store/memory.js';

const TD = 'example.test';
const SERVER_ID = `spiffe://${TD}/ns/prod/sa/orders`;
const CLIENT_ID = `spiffe://${TD}/ns/prod/sa/web`;

let store: PgliteStore;
let ca: CertificateAuthority;
let impostorCa: CertificateAuthority;
let server: Server;
let port: number;
/** Handshakes the server refused, in order, with OpenSSL's verdict on the client certificate. */
const refused: { error: Error; authorizationError: string | undefined }[] = [];
/** Connections the server accepted. */
let accepted = 0;

async function credentials(authority: CertificateAuthority, spiffeId: string, trustBundlePem = ca.trustBundlePem()): Promise<MtlsCredentials> {
  const { keyPem, csrPem } = await createWorkloadKeyAndCsr(spiffeId);
  const { chainPem } = await authority.issue({ csrPem, spiffeId });
  return { keyPem, chainPem, trustBundlePem };
}

before(async () => {
  store = await PgliteStore.open();
  const wrapper = new KeyWrapper(randomBytes(32));
  ca = await CertificateAuthority.loadOrCreate({ store, wrapper, trustDomain: TD });
  // Same trust domain name, different key: what an attacker who can name things but not sign them has.
  impostorCa = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper, trustDomain: TD });

  server = createServer(mtlsServerOptions(await credentials(ca, SERVER_ID)), (socket: TLSSocket) => {
    // The server answers with the identity it authenticated, so tests see both sides agree.
    accepted++;
    socket.end(peerSpiffeId(socket));
  });
  server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
    refused.push({ error, authorizationError: socket.authorizationError?.toString() });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  // listen() on a TCP address always yields an AddressInfo, never a string or null.
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server.close();
  await store.close();
});

interface Outcome {
  data: string;
  error: Error | undefined;
}

/** Connects, reads until the server closes, and reports what came back or what went wrong. */
function call(options: ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    let data = '';
    let error: Error | undefined;
    const socket = connect({ host: '127.0.0.1', port, ...options });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('error', (err: Error) => (error ??= err));
    socket.on('close', () => resolve({ data, error }));
  });
}

/** Waits until the server has recorded `n` refused handshakes (its event can trail the client's close). */
async function refusedCount(n: number): Promise<void> {
  while (refused.length < n) await once(server, 'tlsClientError');
}

test('two workload certificates from the CA complete mutual TLS, each side seeing the other\'s SPIFFE ID', async () => {
  const client = await credentials(ca, CLIENT_ID);
  let serverSeen: string | undefined;
  const options = mtlsClientOptions({ ...client, expectedSpiffeId: SERVER_ID });
  const outcome = await new Promise<Outcome>((resolve) => {
    let data = '';
    const socket = connect({ host: '127.0.0.1', port, ...options }, () => {
      serverSeen = spiffeIdFromCertificate(socket.getPeerCertificate());
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('error', (error: Error) => resolve({ data, error }));
    socket.on('close', () => resolve({ data, error: undefined }));
  });
  assert.equal(outcome.error, undefined);
  assert.equal(outcome.data, CLIENT_ID);
  assert.equal(serverSeen, SERVER_ID);
});

test('mutual TLS also works when the client caps the version at TLS 1.2 (ECDHE-ECDSA suites)', async () => {
  const client = await credentials(ca, CLIENT_ID);
  const outcome = await call({ ...mtlsClientOptions({ ...client, expectedSpiffeId: SERVER_ID }), maxVersion: 'TLSv1.2' });
  assert.equal(outcome.error, undefined);
  assert.equal(outcome.data, CLIENT_ID);
});

test('a client certificate from another CA is refused at the handshake', async () => {
  const [refusedBefore, acceptedBefore] = [refused.length, accepted];
  // The impostor's certificate, presented by a client that itself trusts the real CA.
  const client = await credentials(impostorCa, CLIENT_ID);
  const outcome = await call(mtlsClientOptions({ ...client, expectedSpiffeId: SERVER_ID }));
  // Under TLS 1.3 the client may see a plain close rather than an error: the server's side is what counts.
  assert.equal(outcome.data, '');
  await refusedCount(refusedBefore + 1);
  assert.equal(accepted, acceptedBefore);
  // Node verifies after the handshake and destroys the socket, so the verdict is here, not in the error.
  assert.match(String(refused[refusedBefore]?.authorizationError), /UNABLE_TO_VERIFY|CERT_SIGNATURE|UNABLE_TO_GET_ISSUER/);
});

test('a client without a certificate is refused at the handshake', async () => {
  const [before, acceptedBefore] = [refused.length, accepted];
  const withCert = mtlsClientOptions({ ...(await credentials(ca, CLIENT_ID)), expectedSpiffeId: SERVER_ID });
  const outcome = await call({ ...withCert, key: undefined, cert: undefined });
  assert.equal(outcome.data, '');
  await refusedCount(before + 1);
  assert.equal(accepted, acceptedBefore);
  assert.match(String(refused[before]?.error.message), /certificate/i);
});

test('the client refuses a server whose SPIFFE ID is not the expected one', async () => {
  const client = await credentials(ca, CLIENT_ID);
  const outcome = await call(mtlsClientOptions({ ...client, expectedSpiffeId: `spiffe://${TD}/ns/prod/sa/payments` }));
  assert.equal(outcome.data, '');
  assert.ok(outcome.error instanceof PortcullisError);
  assert.equal(outcome.error.code, 'PCL_ERR_PEER_IDENTITY');
});

test('the client refuses a server whose certificate is from another CA, even with the right ID', async () => {
  // The client trusts only the real CA; point it at a server holding an impostor certificate.
  const impostorServer = createServer(mtlsServerOptions(await credentials(impostorCa, SERVER_ID)), (s) => s.end('should not happen'));
  impostorServer.on('tlsClientError', () => {});
  impostorServer.listen(0, '127.0.0.1');
  await once(impostorServer, 'listening');
  try {
    const client = await credentials(ca, CLIENT_ID);
    const outcome = await new Promise<Outcome>((resolve) => {
      // listen() on a TCP address always yields an AddressInfo.
      const socket = connect({ host: '127.0.0.1', port: (impostorServer.address() as AddressInfo).port, ...mtlsClientOptions({ ...client, expectedSpiffeId: SERVER_ID }) });
      let data = '';
      socket.on('data', (c: Buffer) => (data += c.toString()));
      socket.on('error', (error: Error) => resolve({ data, error }));
      socket.on('close', () => resolve({ data, error: undefined }));
    });
    assert.equal(outcome.data, '');
    assert.ok(outcome.error);
    // Refused by chain verification, before the identity check is even reached.
    assert.ok(!(outcome.error instanceof PortcullisError));
    assert.match(outcome.error.message, /certificate|verify/i);
  } finally {
    impostorServer.close();
  }
});

test('mtlsClientOptions validates the expected SPIFFE ID up front', () => {
  assert.throws(
    () => mtlsClientOptions({ keyPem: '', chainPem: '', trustBundlePem: '', expectedSpiffeId: 'spiffe://Example.test/x' }),
    (err: unknown) => err instanceof PortcullisError && err.code === 'PCL_ERR_SPIFFE_ID_INVALID',
  );
});
