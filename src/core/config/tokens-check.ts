// Checks of the `tokens` section the schema cannot express: the signing algorithm must be one the
// gateway accepts, and each declared OAuth client must be usable as declared — unique, with the
// credential its auth method needs and no other, public keys only, each a key node:crypto can load.
// Messages name paths and identifiers, never a key's value.
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { quote } from './hint.js';
import { matchesDefinition, schemaDefinition } from './schema.js';
import type { ConfigIssue, ConfigPath } from './references.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** The CLI's own public client (CLI_CLIENT_ID in src/control/server.ts; core cannot import control). */
export const RESERVED_CLIENT_IDS: readonly string[] = ['portcullis-cli'];
/** JWK members that hold private or symmetric key material. */
export const SECRET_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];
/** The default of tokens.algorithms and tokens.signingAlg (DEFAULTS in defaults.ts, repeated to keep this file free of cycles). */
const DEFAULT_ALG = 'ES256';

export function checkTokens(tokens: Obj, trustDomain: string | undefined, issues: ConfigIssue[]): void {
  const issue = (path: ConfigPath, message: string, hint?: string, at: 'key' | 'value' = 'value', code: ConfigIssue['code'] = 'PCL_ERR_CONFIG_REFERENCE'): void => {
    issues.push({ code, path: ['tokens', ...path], at, message, ...(hint !== undefined ? { hint } : {}) });
  };

  // The gateway must accept what the control plane signs, or every new token is refused.
  const signingAlg = tokens.signingAlg === undefined ? DEFAULT_ALG : str(tokens.signingAlg);
  const algorithms = tokens.algorithms === undefined ? [DEFAULT_ALG] : list(tokens.algorithms);
  // Unknown names are the schema's to report.
  const names = schemaDefinition('jwsAlgorithm').enum ?? [];
  const known = (a: unknown): a is string => typeof a === 'string' && names.includes(a);
  if (known(signingAlg) && algorithms.every(known) && !algorithms.includes(signingAlg)) {
    issue(tokens.signingAlg !== undefined ? ['signingAlg'] : ['algorithms'],
      `tokens.signingAlg ${signingAlg} is not among tokens.algorithms (${algorithms.join(', ')}): the gateway would refuse every new token`,
      `list it in tokens.algorithms, e.g. [${[...algorithms, signingAlg].join(', ')}]; keep the old one until its last token has expired`);
  }

  const first = new Map<string, number>();
  list(tokens.clients).forEach((c, i) => {
    if (!isObj(c)) return; // the schema reports the type
    const at = (...rest: (string | number)[]): ConfigPath => ['clients', i, ...rest];
    const id = str(c.clientId);
    if (id !== undefined) {
      const seen = first.get(id);
      if (seen !== undefined) issues.push({ code: 'PCL_ERR_CONFIG_REFERENCE', path: ['tokens', ...at('clientId')], at: 'value', message: `client id ${quote(id)} of tokens.clients[${i}] is already used by tokens.clients[${seen}]`, hint: 'each client id must be unique', related: ['tokens', 'clients', seen, 'clientId'] });
      else first.set(id, i);
      if (RESERVED_CLIENT_IDS.includes(id)) issue(at('clientId'), `client id ${quote(id)} is reserved for the Portcullis CLI`, 'choose another client id');
      if (id.toLowerCase().startsWith('spiffe:')) issue(at('clientId'), `client id ${quote(id)} is a SPIFFE ID: workloads authenticate with their certificate without a registration`, 'use a plain name, and authMethod: tls_client_auth with spiffeId if the client is a workload');
    }
    if (c.clientSecret !== undefined) {
      issue(at('clientSecret'), `tokens.clients[${i}] has a client secret: client secrets are not supported`, 'authenticate the client with private_key_jwt (jwks: its public key) or tls_client_auth (spiffeId: its workload certificate)', 'key', 'PCL_ERR_CONFIG_INVALID');
    }
    const method = c.authMethod === undefined ? 'private_key_jwt' : str(c.authMethod);
    if (method === 'private_key_jwt') {
      if (c.jwks === undefined) issue(at(), `tokens.clients[${i}] (private_key_jwt) has no \`jwks\``, 'give the public keys its assertions are signed with, or use authMethod: tls_client_auth');
      if (c.spiffeId !== undefined) issue(at('spiffeId'), `tokens.clients[${i}] authenticates with private_key_jwt: \`spiffeId\` is for tls_client_auth`, 'remove it, or set authMethod: tls_client_auth', 'key');
    } else if (method === 'tls_client_auth') {
      const spiffeId = str(c.spiffeId);
      if (c.spiffeId === undefined) issue(at(), `tokens.clients[${i}] (tls_client_auth) has no \`spiffeId\``, 'give the SPIFFE ID of the workload certificate it authenticates with');
      else if (spiffeId !== undefined && trustDomain !== undefined && matchesDefinition('trustDomain', trustDomain) && !spiffeId.startsWith(`spiffe://${trustDomain}/`)) {
        issue(at('spiffeId'), `SPIFFE ID ${quote(spiffeId)} of tokens.clients[${i}] is outside the trust domain ${quote(trustDomain)}`, `only certificates of this trust domain's CA authenticate at the control plane; it must start with ${quote(`spiffe://${trustDomain}/`)}`);
      }
      if (c.jwks !== undefined) issue(at('jwks'), `tokens.clients[${i}] authenticates with tls_client_auth: \`jwks\` is for private_key_jwt`, 'remove it, or set authMethod: private_key_jwt', 'key');
    }
    if (list(c.scopes).includes('offline_access')) {
      issue(at('scopes'), `tokens.clients[${i}] lists offline_access: refresh tokens are for people's (public) clients`, 'client_credentials needs none: the client asks again when its token expires', 'value', 'PCL_ERR_CONFIG_INVALID');
    }
    list(isObj(c.jwks) ? c.jwks.keys : undefined).forEach((k, j) => {
      if (!isObj(k)) return;
      const secret = SECRET_MEMBERS.filter((m) => k[m] !== undefined);
      if (secret.length > 0) {
        issue(at('jwks', 'keys', j, secret[0] as string), `tokens.clients[${i}].jwks.keys[${j}] holds private key material (${secret.join(', ')})`, 'configure the public key only: the private key stays with the client', 'key', 'PCL_ERR_CONFIG_INVALID');
        return;
      }
      if (!loadsAsPublicKey(k)) issue(at('jwks', 'keys', j), `tokens.clients[${i}].jwks.keys[${j}] is not a usable public key`, 'an EC (P-256, P-384, P-521), OKP (Ed25519) or RSA (2048 bits or more) public JWK', 'value', 'PCL_ERR_CONFIG_INVALID');
    });
  });
}

/** Whether node:crypto loads the JWK as a public key we accept (RSA: at least 2048 bits). */
export function loadsAsPublicKey(jwk: Obj): boolean {
  try {
    const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }); // a plain object from YAML; node:crypto checks every member
    if (key.asymmetricKeyType === 'rsa') return (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048;
    return key.asymmetricKeyType === 'ec' || key.asymmetricKeyType === 'ed25519';
  } catch {
    return false;
  }
}
