// Certificate-bound tokens (RFC 8705 §3) over real TLS: the token's cnf.x5t#S256 must be the
// thumbprint of the client certificate on the request's own connection.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TLSSocket } from 'node:tls';
import { PortcullisError } from '../../../src/core/errors.js';
import type { CertificateAuthority } from '../../../src/identity/ca.js';
import type { MtlsCredentials } from '../../../src/identity/tls-options.js';
import { certificateThumbprint, checkCertificateBinding } from '../../../src/dataplane/auth/cnf-binding.js';
import { gatewayClientCertOptions } from '../../../src/dataplane/auth/mtls-client.js';
import { call, issue, newCa, oddCertificate, sendJson, startHttps, TD, thumbprintOf, type TestServer } from './pki.js';

let ca: CertificateAuthority;
let alice: MtlsCredentials;
let bob: MtlsCredentials;
let server: TestServer;

before(async () => {
  ca = await newCa();
  const gw = await issue(ca, `spiffe://${TD}/gateway`);
  alice = await issue(ca, `spiffe://${TD}/alice`);
  bob = await issue(ca, `spiffe://${TD}/bob`);
  // The handler checks the binding named in the x-bound header against the connection's certificate.
  server = await startHttps({ key: gw.keyPem, cert: gw.chainPem, ...gatewayClientCertOptions(ca.trustBundlePem()) }, (req, res) => {
    const socket = req.socket as TLSSocket; // an https server's socket
    try {
      checkCertificateBinding(String(req.headers['x-bound']), socket);
      sendJson(res, 200, { thumbprint: certificateThumbprint(socket) });
    } catch (err) {
      assert.ok(err instanceof PortcullisError);
      const bound = String(req.headers['x-bound']);
      assert.ok(bound.length < 8 || !err.message.includes(bound), 'message carries the thumbprint');
      sendJson(res, err.status, { code: err.code });
    }
  });
});
after(() => server.close());

const present = (bound: string, creds?: { keyPem: string; chainPem: string }) =>
  call(server.port, { ca: ca.trustBundlePem(), headers: { 'x-bound': bound }, ...(creds ? { key: creds.keyPem, cert: creds.chainPem } : {}) });

test('a token bound to the presented certificate is accepted', async () => {
  const r = await present(thumbprintOf(alice.chainPem), alice);
  assert.equal(r.status, 200);
  assert.equal(r.body.thumbprint, thumbprintOf(alice.chainPem));
});

test('a bound token over a connection without a certificate: PCL_ERR_TOKEN_BINDING', async () => {
  const r = await present(thumbprintOf(alice.chainPem));
  assert.equal(r.status, 401);
  assert.equal(r.body.code, 'PCL_ERR_TOKEN_BINDING');
});

test('a bound token with another certificate (stolen token, own cert): PCL_ERR_TOKEN_BINDING', async () => {
  const r = await present(thumbprintOf(alice.chainPem), bob);
  assert.equal(r.status, 401);
  assert.equal(r.body.code, 'PCL_ERR_TOKEN_BINDING');
});

test('a malformed thumbprint is refused, never compared', async () => {
  for (const bad of ['', 'abc', `${thumbprintOf(alice.chainPem)}A`, thumbprintOf(alice.chainPem).replace(/^./, '+')]) {
    assert.equal((await present(bad, alice)).body.code, 'PCL_ERR_TOKEN_BINDING', bad);
  }
});

test('RFC 8705 §2.2: a certificate outside the trust bundle still proves possession for its binding', async () => {
  // The handshake proved the key; the issuer vouched for the thumbprint. Trust is not the question here.
  const selfIssued = await oddCertificate([`spiffe://${TD}/self`]);
  const r = await present(thumbprintOf(selfIssued.chainPem), selfIssued);
  assert.equal(r.status, 200);
});
