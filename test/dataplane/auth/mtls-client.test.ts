// mTLS client authentication over real TLS handshakes: a server that asks for (but does not
// require) client certificates, as the gateway does, and judges each request's certificate.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createSecureServer, type Http2SecureServer } from 'node:http2';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PortcullisError } from '../../../src/core/errors.js';
import type { CertificateAuthority } from '../../../src/identity/ca.js';
import type { MtlsCredentials } from '../../../src/identity/tls-options.js';
import { authenticateClientCertificate, gatewayClientCertOptions, mtlsClaims } from '../../../src/dataplane/auth/mtls-client.js';
import { call, issue, newCa, oddCertificate, sendJson, startHttps, TD, type TestServer } from './pki.js';

const WEB = `spiffe://${TD}/ns/prod/sa/web`;
const BATCH = `spiffe://${TD}/ns/prod/sa/batch`;

let ca: CertificateAuthority;
let otherTdCa: CertificateAuthority;
let impostorCa: CertificateAuthority;
let gatewayCreds: MtlsCredentials;
let web: MtlsCredentials;
let batch: MtlsCredentials;
let twoIds: { keyPem: string; chainPem: string; rootPem: string };
let notSpiffe: { keyPem: string; chainPem: string; rootPem: string };
let server: TestServer;

/** Answers with the authenticated identity, or the refusal's code. `?allow=a,b` sets the allow-list. */
function judge(req: IncomingMessage, res: ServerResponse): void {
  const allow = new URL(req.url ?? '/', 'https://x').searchParams.get('allow');
  try {
    const id = authenticateClientCertificate(req.socket as TLSSocket, TD, allow === null ? undefined : allow.split(',').filter(Boolean)); // an https server's socket
    sendJson(res, 200, id);
  } catch (err) {
    assert.ok(err instanceof PortcullisError);
    sendJson(res, err.status, { code: err.code });
  }
}

before(async () => {
  ca = await newCa();
  otherTdCa = await newCa('other.test');
  impostorCa = await newCa(); // same trust domain name, another key
  gatewayCreds = await issue(ca, `spiffe://${TD}/gateway`);
  web = await issue(ca, WEB);
  batch = await issue(ca, BATCH);
  twoIds = await oddCertificate([WEB, BATCH]);
  notSpiffe = await oddCertificate(['https://web.example.test/']);
  // The bundle trusts our CA, a federated domain's and the test-only roots: naming is what is under test.
  const bundle = [ca.trustBundlePem(), otherTdCa.trustBundlePem(), twoIds.rootPem, notSpiffe.rootPem].join('\n');
  server = await startHttps({ key: gatewayCreds.keyPem, cert: gatewayCreds.chainPem, ...gatewayClientCertOptions(bundle) }, judge);
});
after(() => server.close());

const ask = (creds?: { keyPem: string; chainPem: string }, path = '/') =>
  call(server.port, { ca: ca.trustBundlePem(), path, ...(creds ? { key: creds.keyPem, cert: creds.chainPem } : {}) });

test('gatewayClientCertOptions asks for certificates without refusing the handshake', () => {
  assert.deepEqual(gatewayClientCertOptions('PEM'), { ca: 'PEM', requestCert: true, rejectUnauthorized: false });
});

test('a verified workload certificate of the trust domain authenticates its SPIFFE ID', async () => {
  const r = await ask(web);
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { spiffeId: WEB });
});

test('no client certificate: the handshake succeeds, the request is refused PCL_ERR_PEER_CERT_REQUIRED', async () => {
  const r = await ask();
  assert.equal(r.status, 401);
  assert.equal(r.body.code, 'PCL_ERR_PEER_CERT_REQUIRED');
});

test('a certificate that does not chain to the bundle is refused PCL_ERR_PEER_CERT_REQUIRED', async () => {
  const r = await ask(await issue(impostorCa, WEB));
  assert.equal(r.status, 401);
  assert.equal(r.body.code, 'PCL_ERR_PEER_CERT_REQUIRED');
});

test('two SPIFFE IDs, a non-SPIFFE URI, another trust domain: PCL_ERR_PEER_IDENTITY', async () => {
  for (const creds of [twoIds, notSpiffe, await issue(otherTdCa, 'spiffe://other.test/ns/prod/sa/web')]) {
    const r = await ask(creds);
    assert.equal(r.status, 403);
    assert.equal(r.body.code, 'PCL_ERR_PEER_IDENTITY');
  }
});

test('the allow-list admits exactly its IDs; an empty list admits nobody', async () => {
  assert.deepEqual((await ask(web, `/?allow=${encodeURIComponent(WEB)}`)).body, { spiffeId: WEB });
  const refused = await ask(batch, `/?allow=${encodeURIComponent(WEB)}`);
  assert.equal(refused.status, 403);
  assert.equal(refused.body.code, 'PCL_ERR_PEER_IDENTITY');
  assert.equal((await ask(web, '/?allow=')).body.code, 'PCL_ERR_PEER_IDENTITY');
});

test('HTTP/2 (the gateway default): the compatibility socket exposes the same verdict', async () => {
  const h2: Http2SecureServer = createSecureServer({ key: gatewayCreds.keyPem, cert: gatewayCreds.chainPem, ...gatewayClientCertOptions(ca.trustBundlePem()) },
    (req, res) => judge(req as unknown as IncomingMessage, res as unknown as ServerResponse)); // the members judge uses exist on both
  h2.listen(0, '127.0.0.1');
  await once(h2, 'listening');
  const { port } = h2.address() as AddressInfo; // a TCP listener
  const get = (creds?: MtlsCredentials): Promise<{ status: number; body: Record<string, unknown> }> => new Promise((resolve, reject) => {
    const session = connect(`https://127.0.0.1:${port}`, { ca: ca.trustBundlePem(), ...(creds ? { key: creds.keyPem, cert: creds.chainPem } : {}) });
    session.on('error', reject);
    const stream = session.request({ ':path': '/' });
    let status = 0;
    let text = '';
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.setEncoding('utf8');
    stream.on('data', (c: string) => (text += c));
    stream.on('end', () => { session.close(); resolve({ status, body: JSON.parse(text) as Record<string, unknown> }); });
  });
  try {
    assert.deepEqual(await get(web), { status: 200, body: { spiffeId: WEB } });
    assert.deepEqual(await get(), { status: 401, body: { code: 'PCL_ERR_PEER_CERT_REQUIRED' } });
  } finally {
    h2.close();
  }
});

test('mtlsClaims: the workload is the principal, with no roles', () => {
  const c = mtlsClaims(WEB, 'https://gw.example');
  assert.equal(c.sub, WEB);
  assert.equal(c.client_id, WEB);
  assert.deepEqual(c.roles, []);
  assert.equal(c.iss, 'mtls');
  assert.equal(c.cnf, undefined);
});
