// Small HTTP helpers for the control plane's JSON API.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBoundedBody } from '../core/body.js';
import { PortcullisError } from '../core/errors.js';

/** Parses a JSON object body and returns its string fields by name; anything else is refused. */
export async function readJsonObject(req: IncomingMessage, limit = 64 * 1024): Promise<Record<string, unknown>> {
  const type = String(req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'content-type must be application/json');
  let value: unknown;
  try {
    value = JSON.parse((await readBoundedBody(req, limit, () => new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `request body over ${limit} bytes`))).toString('utf8'));
  } catch (err) {
    if (err instanceof PortcullisError) throw err;
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'body must be a JSON object');
  return value as Record<string, unknown>; // checked just above
}

export function stringField(body: Record<string, unknown>, name: string, max = 16 * 1024): string {
  const v = body[name];
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `field "${name}" must be a non-empty string`);
  return v;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(text);
}
