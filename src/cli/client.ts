// `portcullis client list | show | add | remove | set-keys`: OAuth clients, through the control
// plane's admin API. A client gets public keys (--jwks, a JWKS or one JWK or a PEM public key) or a
// SPIFFE ID, never a secret; a file holding private key material is refused here, before anything
// is sent, so a private key never leaves this machine by mistake.
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { SECRET_MEMBERS } from '../core/config/tokens-check.js';
import { PortcullisError } from '../core/errors.js';
import type { ClientEntry } from '../tokens/oauth/client-registry.js';
import { DEVICE_CODE_GRANT } from '../tokens/oauth/clients.js';
import { withAdminClient } from './admin-client.js';

interface Opts { config: string; dataDir?: string; json?: boolean }

/** Short names for the optional grants (the registration holds the RFC's URN). */
const GRANTS: Record<string, string> = { device_code: DEVICE_CODE_GRANT, [DEVICE_CODE_GRANT]: DEVICE_CODE_GRANT };

const invalid = (msg: string): PortcullisError => new PortcullisError('PCL_ERR_INVALID_ARGUMENT', msg);
const collect = (value: string, previous: string[]): string[] => [...previous, value];
const clientPath = (id: string, rest = ''): string => `/v1/admin/clients/${encodeURIComponent(id)}${rest}`;

/**
 * Public keys from a file: a JWK Set, one JWK, or a PEM public key (its kid: the RFC 7638
 * thumbprint). Private key material is refused: only the public half is registered.
 */
export async function readPublicJwks(file: string): Promise<{ keys: JWK[] }> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `cannot read ${file}`, { cause: err });
  }
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) throw invalid(`${file} holds a private key: give the public key only (the private key stays with the client)`);
  let keys: unknown[];
  if (text.includes('-----BEGIN PUBLIC KEY-----')) {
    let jwk: JWK;
    try {
      jwk = createPublicKey(text).export({ format: 'jwk' }) as JWK; // node:crypto's JWK export of a public key
    } catch (err) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${file} is not a usable PEM public key`, { cause: err });
    }
    keys = [{ ...jwk, kid: await calculateJwkThumbprint(jwk) }];
  } else {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw invalid(`${file} is neither JSON (a JWK Set or one JWK) nor a PEM public key`);
    }
    const obj = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {}; // an object, checked
    keys = Array.isArray(obj.keys) ? obj.keys : typeof obj.kty === 'string' ? [obj] : [];
    if (keys.length === 0) throw invalid(`${file} holds no JWK: expected { "keys": [...] } or one JWK`);
  }
  for (const k of keys) {
    if (typeof k !== 'object' || k === null) throw invalid(`${file}: every key must be a JWK object`);
    if (SECRET_MEMBERS.some((m) => m in k)) throw invalid(`${file} holds private or symmetric key material: give the public key only (the private key stays with the client)`);
  }
  return { keys: keys as JWK[] }; // objects without secret members; the control plane checks the rest
}

function describe(c: ClientEntry): string {
  const parts = [c.clientId, c.type, `source ${c.source}`];
  if (c.type === 'public') {
    parts.push(`redirect URIs ${c.redirectUris.join(' ') || '-'}`);
  } else {
    const method = c.authMethod ?? 'private_key_jwt';
    parts.push(method === 'tls_client_auth' ? `tls_client_auth ${c.spiffeId ?? '?'}` : `private_key_jwt keys ${(c.jwks?.keys ?? []).map((k) => k.kid ?? '(no kid)').join(',')}`);
    if (c.audience) parts.push(`audience ${c.audience}`);
  }
  parts.push(`scopes ${(c.scopes ?? []).join(' ') || '-'}`);
  if ((c.grantTypes ?? []).length > 0) parts.push(`grants ${(c.grantTypes ?? []).map((g) => (g === DEVICE_CODE_GRANT ? 'device_code' : g)).join(',')}`);
  if (c.createdAt) parts.push(`created ${c.createdAt}`);
  return parts.join('  ');
}

function print(value: unknown, o: Opts, human: () => void): void {
  if (o.json) console.log(JSON.stringify(value, null, 2));
  else human();
}

interface AddOpts extends Opts {
  public?: boolean;
  confidential?: boolean;
  redirectUri: string[];
  scope: string[];
  grant: string[];
  audience?: string;
  jwks?: string;
  spiffeId?: string;
  authMethod?: string;
}

/** The registration body from `client add`'s options; checked before the config is read or the control plane called. */
export async function registrationFromOptions(clientId: string, o: AddOpts): Promise<Record<string, unknown>> {
  if (o.public === o.confidential) throw invalid('give exactly one of --public or --confidential');
  const grantTypes = o.grant.map((g) => {
    const urn = GRANTS[g];
    if (!urn) throw invalid(`unknown --grant ${JSON.stringify(g)}: the only optional grant is device_code`);
    return urn;
  });
  const common = { clientId, ...(o.scope.length > 0 ? { scopes: o.scope } : {}), ...(grantTypes.length > 0 ? { grantTypes } : {}) };
  if (o.public) {
    const misplaced = [['--jwks', o.jwks], ['--spiffe-id', o.spiffeId], ['--auth-method', o.authMethod], ['--audience', o.audience]].filter(([, v]) => v !== undefined).map(([n]) => n);
    if (misplaced.length > 0) throw invalid(`a public client has no credential: ${misplaced.join(', ')} are for --confidential`);
    return { ...common, type: 'public', redirectUris: o.redirectUri };
  }
  if (o.redirectUri.length > 0) throw invalid('--redirect-uri is for --public clients (a confidential client uses client_credentials)');
  const authMethod = o.authMethod ?? (o.spiffeId !== undefined ? 'tls_client_auth' : 'private_key_jwt');
  if (authMethod !== 'private_key_jwt' && authMethod !== 'tls_client_auth') throw invalid('--auth-method must be private_key_jwt or tls_client_auth (client secrets are not supported)');
  if (authMethod === 'private_key_jwt' && (o.jwks === undefined || o.spiffeId !== undefined)) throw invalid('private_key_jwt needs --jwks <file> (its public keys) and no --spiffe-id');
  if (authMethod === 'tls_client_auth' && (o.spiffeId === undefined || o.jwks !== undefined)) throw invalid('tls_client_auth needs --spiffe-id <id> (its workload certificate) and no --jwks');
  return {
    ...common, type: 'confidential', authMethod,
    ...(o.jwks !== undefined ? { jwks: await readPublicJwks(o.jwks) } : {}),
    ...(o.spiffeId !== undefined ? { spiffeId: o.spiffeId } : {}),
    ...(o.audience !== undefined ? { audience: o.audience } : {}),
  };
}

export function registerClientCommands(cli: Command, defaultConfig: string): void {
  const client = cli.command('client').description('OAuth clients: public (people through an app) and confidential (machines with private_key_jwt or tls_client_auth); never a client secret');
  const common = (c: Command): Command => c.option('-c, --config <file>', 'config file', defaultConfig).option('--data-dir <dir>', 'data directory holding the admin token').option('--json', 'JSON output');

  common(client.command('list')).description('every client: the CLI\'s and the config file\'s (source config, fixed) and those registered here (source api)')
    .action(async (o: Opts) => {
      const { clients } = await withAdminClient(o, (c) => c.call<{ clients: ClientEntry[] }>('GET', '/v1/admin/clients'));
      print(clients, o, () => {
        if (clients.length === 0) console.log('no clients');
        for (const c of clients) console.log(describe(c));
      });
    });

  common(client.command('show')).description('one client\'s registration (public keys included)')
    .argument('<client-id>')
    .action(async (id: string, o: Opts) => {
      const c = await withAdminClient(o, (a) => a.call<ClientEntry>('GET', clientPath(id)));
      print(c, o, () => {
        console.log(describe(c));
        if (c.type === 'confidential' && c.jwks) console.log(JSON.stringify(c.jwks, null, 2));
      });
    });

  common(client.command('add')).description('register a client; it works on every control-plane replica within seconds')
    .argument('<client-id>', '1-255 of A-Z a-z 0-9 . _ ~ : - (not a SPIFFE ID, not portcullis-cli)')
    .option('--public', 'a public client: people sign in through it (authorization code + PKCE)')
    .option('--confidential', 'a confidential client: a machine (client_credentials) with private_key_jwt or tls_client_auth')
    .option('--redirect-uri <uri>', 'public: a redirect URI (https, or http on 127.0.0.1 / [::1] on any port); repeatable', collect, [])
    .option('--scope <scope>', 'a scope it may be granted (offline_access: refresh tokens, public only); repeatable', collect, [])
    .option('--grant <grant>', 'an optional grant: device_code (RFC 8628); repeatable', collect, [])
    .option('--audience <aud>', 'confidential: the aud of its access tokens (default tokens.audience)')
    .option('--jwks <file>', 'confidential, private_key_jwt: its PUBLIC keys (a JWK Set, one JWK, or a PEM public key)')
    .option('--spiffe-id <id>', 'confidential, tls_client_auth: the SPIFFE ID of its workload certificate')
    .option('--auth-method <method>', 'private_key_jwt (default with --jwks) or tls_client_auth (default with --spiffe-id)')
    .action(async (id: string, o: AddOpts) => {
      const body = await registrationFromOptions(id, o);
      const c = await withAdminClient(o, (a) => a.call<ClientEntry>('POST', '/v1/admin/clients', body));
      print(c, o, () => console.log(`registered ${describe(c)}`));
    });

  common(client.command('remove')).description('remove a client registered here; its next token request is invalid_client and its sessions end')
    .argument('<client-id>')
    .action(async (id: string, o: Opts) => {
      const r = await withAdminClient(o, (a) => a.call<{ clientId: string; removed: boolean; revokedSessions: number }>('DELETE', clientPath(id)));
      print(r, o, () => console.log(`removed ${id}${r.revokedSessions > 0 ? `; ${r.revokedSessions} session(s) ended` : ''}`));
    });

  common(client.command('set-keys')).description('replace a private_key_jwt client\'s public keys (rotation: register old and new, then the new alone)')
    .argument('<client-id>')
    .requiredOption('--jwks <file>', 'its PUBLIC keys (a JWK Set, one JWK, or a PEM public key)')
    .action(async (id: string, o: Opts & { jwks: string }) => {
      const jwks = await readPublicJwks(o.jwks);
      const c = await withAdminClient(o, (a) => a.call<ClientEntry>('PUT', clientPath(id, '/keys'), { jwks }));
      print(c, o, () => console.log(`keys of ${id} replaced: ${describe(c)}`));
    });
}
