import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/core/config/load.js';
import { starterConfig, STARTER_TRUST_DOMAIN } from '../../src/core/config/starter.js';
import { PortcullisError } from '../../src/core/errors.js';

test('the starter config parses and describes one service and one route', () => {
  const text = starterConfig({ serviceName: 'orders', upstream: 'http://127.0.0.1:3000' });
  assert.equal(text.split('\n')[0], '# yaml-language-server: $schema=./node_modules/portcullis/schema/portcullis.schema.json');
  const c = parseConfig(text, '/srv/app/portcullis.yaml');
  assert.equal(c.trustDomain, STARTER_TRUST_DOMAIN);
  assert.deepEqual(c.services.map((s) => ({ name: s.name, spiffeId: s.spiffeId, upstream: s.upstream, sidecar: s.sidecar })), [{
    name: 'orders',
    spiffeId: `spiffe://${STARTER_TRUST_DOMAIN}/orders`,
    upstream: 'http://127.0.0.1:3000',
    sidecar: { listen: '127.0.0.1:15001', outbound: '127.0.0.1:16001' },
  }]);
  assert.deepEqual(c.routes.map((r) => ({ id: r.id, method: r.method, path: r.path, service: r.service, auth: r.auth, roles: r.roles })),
    [{ id: 'orders.list', method: 'GET', path: '/orders', service: 'orders', auth: ['jwt'], roles: ['reader'] }]);
  assert.deepEqual(c.calls, []);
  assert.equal(c.control.dataDir, '/srv/app/.portcullis');
});

test('every section of the starter is explained by a comment', () => {
  const lines = starterConfig({ serviceName: 'a', upstream: 'http://localhost:8080', trustDomain: 'acme.test' }).split('\n');
  for (const section of ['trustDomain:', 'control:', 'gateway:', 'tokens:', 'services:', 'routes:', 'calls:']) {
    const i = lines.findIndex((l) => l.startsWith(section));
    assert.ok(i > 0, `${section} present`);
    assert.match(lines[i - 1] ?? '', /^#/, `${section} is preceded by a comment`);
  }
});

test('the trust domain option is used', () => {
  const c = parseConfig(starterConfig({ serviceName: 'a', upstream: 'http://localhost:8080', trustDomain: 'acme.test' }), 'p.yaml');
  assert.equal(c.trustDomain, 'acme.test');
  assert.equal(c.gateway.spiffeId, 'spiffe://acme.test/gateway');
});

test('inputs that would not validate, or would inject YAML, are refused', () => {
  const bad: Parameters<typeof starterConfig>[0][] = [
    { serviceName: 'Orders', upstream: 'http://127.0.0.1:3000' },
    { serviceName: 'orders\nroutes: []', upstream: 'http://127.0.0.1:3000' },
    { serviceName: 'orders', upstream: 'https://127.0.0.1:3000' },
    { serviceName: 'orders', upstream: 'http://127.0.0.1:3000/api' },
    { serviceName: 'orders', upstream: 'http://127.0.0.1:3000', trustDomain: 'Example.org' },
    { serviceName: '', upstream: 'http://127.0.0.1:3000' },
  ];
  for (const opts of bad) {
    assert.throws(() => starterConfig(opts), (err: unknown) => err instanceof PortcullisError && err.code === 'PCL_ERR_INVALID_ARGUMENT', JSON.stringify(opts));
  }
});
