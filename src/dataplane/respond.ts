// Ending a request with a refusal: the public JSON body and status of the error, the request id,
// and no detail that would help an attacker (the detail goes to the audit event).
import type { ServerResponse } from 'node:http';
import type { PortcullisError } from '../core/errors.js';
import { REQUEST_ID_HEADER } from './headers.js';

export function sendError(res: ServerResponse, err: PortcullisError, requestId: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(err.toPublicJSON());
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    [REQUEST_ID_HEADER]: requestId,
  };
  // RFC 6750 §3: tell the client how to authenticate, without echoing anything it sent.
  // (A challenge the caller set already — DPoP's, say — stands.)
  if (err.status === 401 && !res.hasHeader('www-authenticate')) headers['www-authenticate'] = err.code === 'PCL_ERR_TOKEN_MISSING' ? 'Bearer' : 'Bearer error="invalid_token"';
  res.writeHead(err.status, headers);
  res.end(body);
}
