// User assertions for tests: forged ones (unsigned, or signed by a workload that is not the
// gateway) and genuine ones made with a given identity's key.
import type { Principal } from '../../src/core/principal.js';
import { PrincipalAssertionSigner, PRINCIPAL_ASSERTION_TYP, type SignerCredentials } from '../../src/identity/principal-assertion.js';

/** What an attacker without any key can send: the right shape, `alg: none`, no signature. */
export function unsignedAssertion(p: Principal, audience = 'spiffe://demo/any'): string {
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  return `${part({ alg: 'none', typ: PRINCIPAL_ASSERTION_TYP })}.${part({ iss: 'spiffe://demo/gateway', aud: audience, iat: now, exp: now + 60, ...p })}.`;
}

/** An assertion signed with `creds` (the gateway's makes a genuine one; any other's a forgery). */
export function assertionBy(creds: SignerCredentials, p: Principal, audience: string): string {
  return new PrincipalAssertionSigner(() => creds).sign(p, audience);
}
