import assert from 'node:assert/strict';
import { test } from 'node:test';
import { indexClients, redirectUriAllowed, type OAuthClient } from '../../src/tokens/oauth/clients.js';

const client: OAuthClient = { clientId: 'cli', type: 'public', redirectUris: ['http://127.0.0.1/callback', 'https://app.example/cb?x=1', 'http://[::1]:9000/cb'] };

test('exact match for registered URIs', () => {
  assert.equal(redirectUriAllowed(client, 'https://app.example/cb?x=1'), true);
  assert.equal(redirectUriAllowed(client, 'https://app.example/cb?x=2'), false);
  assert.equal(redirectUriAllowed(client, 'https://app.example/cb'), false);
  assert.equal(redirectUriAllowed(client, 'https://app.example:444/cb?x=1'), false, 'no port leniency outside loopback');
  assert.equal(redirectUriAllowed(client, 'https://APP.example/cb?x=1'), false);
});

test('loopback IP redirect URIs match on any port (RFC 8252 §7.3), nothing else', () => {
  assert.equal(redirectUriAllowed(client, 'http://127.0.0.1:53211/callback'), true);
  assert.equal(redirectUriAllowed(client, 'http://[::1]:1234/cb'), true);
  assert.equal(redirectUriAllowed(client, 'http://127.0.0.1:53211/callback/'), false);
  assert.equal(redirectUriAllowed(client, 'http://127.0.0.1:53211/other'), false);
  assert.equal(redirectUriAllowed(client, 'http://localhost:53211/callback'), false);
  assert.equal(redirectUriAllowed(client, 'https://127.0.0.1:53211/callback'), false);
  assert.equal(redirectUriAllowed(client, 'http://127.0.0.1:53211/x/../callback'), false, 'dot segments');
  assert.equal(redirectUriAllowed(client, 'http://127.0.0.1:53211\\@evil.example/callback'), false, 'backslash');
  assert.equal(redirectUriAllowed(client, 'http://a:b@127.0.0.1:53211/callback'), false, 'userinfo');
  assert.equal(redirectUriAllowed(client, 'http://127.0.0.1:53211/callback#frag'), false, 'fragment');
  assert.equal(redirectUriAllowed(client, 'http://127.0.0.1:53211@evil.example/callback'), false, 'host confusion');
});

test('registrations are validated once', () => {
  assert.throws(() => indexClients([{ clientId: 'a', type: 'public', redirectUris: ['http://evil.example/cb'] }]), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => indexClients([{ clientId: 'a', type: 'public', redirectUris: ['https://a.example/cb#x'] }]), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => indexClients([{ clientId: 'a', type: 'public', redirectUris: [] }]), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => indexClients([client, client]), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});
