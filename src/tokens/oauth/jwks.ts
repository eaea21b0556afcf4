// GET /.well-known/jwks.json: the public signing keys, cached for a minute only (key rotation, when
// it comes, must publish a new key at least that long before signing with it).
import type { ServerResponse } from 'node:http';
import type { ResolvedDeps } from './deps.js';
import { sendJson } from './http.js';

export function handleJwks(deps: ResolvedDeps, res: ServerResponse): void {
  sendJson(res, 200, deps.keys.jwks(), { 'Cache-Control': 'public, max-age=60', 'Content-Type': 'application/jwk-set+json' });
}
