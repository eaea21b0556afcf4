// The gateway's verifier of the control plane's access tokens, set up from the config: issuer,
// audience, clock skew, and the JWS algorithms tokens.algorithms accepts (ES256 and/or EdDSA; the
// schema never lets `none` or an HMAC algorithm through, and createAccessTokenVerifier refuses
// them again). A token signed with an algorithm not listed is refused before its signature is
// checked (PCL_ERR_TOKEN_ALG), whatever key the JWKS holds.
import type { PortcullisConfig } from '../../core/config/types.js';
import type { Clock } from '../../core/clock.js';
import { createAccessTokenVerifier, type AccessTokenClaims, type AccessTokenVerifier } from '../../tokens/verify.js';

export type Jwks = Parameters<typeof createAccessTokenVerifier>[0]['jwks'];

export function createGatewayTokenVerifier(config: PortcullisConfig, jwks: Jwks, o: { clock: Clock; isRevoked?: (claims: AccessTokenClaims) => boolean }): AccessTokenVerifier {
  return createAccessTokenVerifier({
    jwks,
    issuer: config.tokens.issuer,
    audience: config.tokens.audience,
    clock: o.clock,
    clockSkewSec: config.tokens.clockSkew,
    algorithms: [...config.tokens.algorithms],
    ...(o.isRevoked ? { isRevoked: o.isRevoked } : {}),
  });
}
