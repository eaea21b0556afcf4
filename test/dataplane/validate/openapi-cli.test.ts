// `portcullis openapi import`: the routes fragment, --roles, --help, and exit code 2 on a bad document.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { parse } from 'yaml';
import { importRoutes, parseRoles, registerOpenApiCommands } from '../../../src/cli/openapi.js';
import { PortcullisError } from '../../../src/core/errors.js';
import { fixture } from '../../helpers/paths.js';

const shop = fixture('openapi', 'shop.yaml');

/** Runs the command on a fresh program; captures stdout, stderr and the exit code it set. */
async function run(t: TestContext, args: string[]): Promise<{ out: string; err: string; code: number | undefined }> {
  let out = '';
  let err = '';
  t.mock.method(process.stdout, 'write', (chunk: string | Uint8Array) => { out += String(chunk); return true; });
  t.mock.method(console, 'error', (...parts: unknown[]) => { err += `${parts.join(' ')}\n`; });
  const before = process.exitCode;
  const cli = new Command('portcullis').exitOverride().configureOutput({ writeOut: (s) => { out += s; }, writeErr: (s) => { err += s; } });
  registerOpenApiCommands(cli);
  try {
    await cli.parseAsync(args, { from: 'user' });
  } catch (e) {
    if (!(e instanceof Error && 'exitCode' in e)) throw e; // commander's exitOverride (help, usage)
  } finally {
    t.mock.restoreAll();
  }
  const code = process.exitCode === undefined ? undefined : Number(process.exitCode);
  process.exitCode = before;
  return { out, err, code };
}

test('openapi import prints one route per operation, referring back to the document', async (t) => {
  const r = await run(t, ['openapi', 'import', shop, '--service', 'orders']);
  assert.equal(r.code, undefined, r.err);
  const doc = parse(r.out) as { routes: Record<string, unknown>[] };
  assert.equal(doc.routes.length, 6);
  assert.deepEqual(doc.routes[0], { id: 'listOrders', method: 'GET', path: '/orders', service: 'orders', validate: { openapi: { file: shop, operation: 'listOrders' } } });
  assert.ok(doc.routes.every((route) => !('roles' in route)), 'no roles unless --roles');
  assert.match(r.out, /^ {6}openapi: \{ file: .*shop\.yaml, operation: createOrder \}$/m);
});

test('--roles adds the roles to every route; --base-path prefixes the server path', async (t) => {
  const r = await run(t, ['openapi', 'import', shop, '--service', 'orders', '--roles', 'customer, admin', '--base-path']);
  const doc = parse(r.out) as { routes: { roles: string[]; path: string }[] };
  assert.ok(doc.routes.every((route) => JSON.stringify(route.roles) === '["customer","admin"]'));
  assert.equal(doc.routes[0]?.path, '/v1/orders');
  assert.match(r.out, /roles: \[ customer, admin \]/);
  assert.doesNotMatch(r.out, /[&*]a\d/, 'no YAML anchors or aliases');
});

test('a bad document exits 2 with the PCL_ERR_OPENAPI_INVALID message on stderr, nothing on stdout', async (t) => {
  const r = await run(t, ['openapi', 'import', fixture('openapi', 'bad', 'external-ref.yaml'), '--service', 'orders']);
  assert.equal(r.code, 2);
  assert.equal(r.out, '');
  assert.match(r.err, /error \[PCL_ERR_OPENAPI_INVALID\]: .*external-ref\.yaml: #\/paths\/~1orders\/post/);
});

test('--help describes the command and its options', async (t) => {
  const r = await run(t, ['openapi', 'import', '--help']);
  assert.match(r.out, /^Usage: portcullis openapi import \[options\] <file>/);
  for (const o of ['--service <name>', '--roles <r1,r2>', '--base-path']) assert.ok(r.out.includes(o), o);
  assert.match(r.out, /Exits 2 when the\s+document is not valid/);
});

test('service and role names are checked before anything is printed', () => {
  const invalidArg = (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT';
  assert.throws(() => importRoutes(shop, { service: 'Orders Service' }), invalidArg);
  assert.throws(() => parseRoles('admin,'), invalidArg);
  assert.throws(() => parseRoles('a b'), invalidArg);
  assert.deepEqual(parseRoles('a,b,a'), ['a', 'b']);
});
