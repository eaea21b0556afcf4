// Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over
// "<webhook-id>.<webhook-timestamp>.<body>" with the shared secret's bytes, sent as
// "v1,<base64>"; a receiver accepts when any listed v1 signature matches and the timestamp is
// within its tolerance (replay protection).
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The `webhook-signature` value for one message (timestamp in Unix seconds). */
export function signWebhook(secret: Uint8Array, id: string, timestamp: number | string, body: string | Uint8Array): string {
  const mac = createHmac('sha256', secret).update(`${id}.${timestamp}.`).update(body).digest('base64');
  return `v1,${mac}`;
}

type Headers = Record<string, string | string[] | undefined>;

function header(headers: Headers, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === name) return typeof v === 'string' ? v : undefined; // a repeated header is refused
  }
  return undefined;
}

/**
 * Whether a received webhook is authentic and fresh: all three headers present, the timestamp
 * within `toleranceSec` of `now` (epoch ms) either way, and one `v1` signature matching `body`
 * (the raw bytes as received, before any JSON parsing). Never throws.
 */
export function verifyWebhookSignature(secret: Uint8Array, headers: Headers, body: string | Uint8Array, now: number, toleranceSec = 300): boolean {
  const id = header(headers, 'webhook-id');
  const ts = header(headers, 'webhook-timestamp');
  const sigs = header(headers, 'webhook-signature');
  if (!id || !ts || !sigs || !/^\d{1,12}$/.test(ts)) return false;
  if (Math.abs(now / 1000 - Number(ts)) > toleranceSec) return false;
  // Signed over the header as sent, not as re-printed from a number.
  const expected = Buffer.from(signWebhook(secret, id, ts, body).slice(3), 'base64');
  let ok = false;
  for (const s of sigs.split(' ')) {
    const [version, value] = s.split(',', 2);
    if (version !== 'v1' || !value) continue;
    const given = Buffer.from(value, 'base64');
    // Checked on every entry (no early exit) so timing does not tell which one matched.
    if (given.length === expected.length && timingSafeEqual(given, expected)) ok = true;
  }
  return ok;
}
