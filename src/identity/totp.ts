// Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP, HMAC-SHA1 from node:crypto): the
// second factor of people who sign in. Pure functions of a key and a time; what a user has used
// already (replay) is remembered by Users, which owns the records.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { PortcullisError } from '../core/errors.js';

/** RFC 6238 §4.1 defaults, and what every authenticator app assumes. */
export const TOTP_STEP_SECONDS = 30;
export const TOTP_DIGITS = 6;
/** Steps accepted either side of the current one (RFC 6238 §5.2 recommends at most one). */
export const TOTP_WINDOW = 1;
/** 160 bits: the shared-secret length RFC 4226 §4 (R6) recommends. */
export const TOTP_SECRET_BYTES = 20;

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32, upper case, no padding (the form otpauth URLs carry). */
export function base32Encode(data: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of data) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** Decodes RFC 4648 base32 (case-insensitive, padding and spaces ignored); throws PCL_ERR_INVALID_ARGUMENT. */
export function base32Decode(text: string): Buffer {
  const clean = text.replace(/[\s=]/g, '').toUpperCase();
  const bytes: number[] = [];
  let bits = 0;
  let value = 0;
  for (let i = 0; i < clean.length; i++) {
    const v = BASE32.indexOf(clean.charAt(i));
    if (v < 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `not base32 at offset ${i}`);
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(bytes);
}

/** A fresh random secret for enrolment. */
export function generateTotpSecret(): Buffer {
  return randomBytes(TOTP_SECRET_BYTES);
}

/** RFC 4226 §5.3: HMAC-SHA1 of the 8-byte big-endian counter, dynamic truncation, `digits` decimal digits. */
export function hotp(key: Buffer, counter: number, digits: number = TOTP_DIGITS): string {
  if (!Number.isSafeInteger(counter) || counter < 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'HOTP counter must be a non-negative integer');
  if (!Number.isInteger(digits) || digits < 6 || digits > 8) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'HOTP digits must be 6, 7 or 8');
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(msg).digest();
  // The last nibble picks where the 31-bit value starts (mac is 20 bytes, offset at most 15).
  const offset = (mac[mac.length - 1] ?? 0) & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, '0');
}

/** The time step (RFC 6238 §4.2 `T`) containing `timeMs`. */
export function totpStep(timeMs: number, stepSeconds: number = TOTP_STEP_SECONDS): number {
  return Math.floor(timeMs / 1000 / stepSeconds);
}

/** The code at `timeMs`. */
export function totp(key: Buffer, timeMs: number, o: { digits?: number; stepSeconds?: number } = {}): string {
  return hotp(key, totpStep(timeMs, o.stepSeconds), o.digits);
}

/**
 * Checks `code` against the steps around `timeMs` (±`window`) and returns the matching step, or
 * undefined. Steps at or before `afterStep` (the last one this user used) never match, so a code
 * cannot be replayed within its window. Every candidate is compared, in constant time.
 */
export function verifyTotp(
  key: Buffer,
  code: string,
  timeMs: number,
  o: { digits?: number; stepSeconds?: number; window?: number; afterStep?: number } = {},
): number | undefined {
  const digits = o.digits ?? TOTP_DIGITS;
  if (typeof code !== 'string' || code.length !== digits || !/^\d+$/.test(code)) return undefined;
  const now = totpStep(timeMs, o.stepSeconds);
  const window = o.window ?? TOTP_WINDOW;
  const given = Buffer.from(code, 'ascii');
  let matched: number | undefined;
  for (let step = now - window; step <= now + window; step++) {
    if (step < 0) continue;
    const equal = timingSafeEqual(Buffer.from(hotp(key, step, digits), 'ascii'), given);
    if (equal && matched === undefined && (o.afterStep === undefined || step > o.afterStep)) matched = step;
  }
  return matched;
}

/** The Key Uri Format authenticator apps read from a QR code: otpauth://totp/Issuer:account?… */
export function otpauthUrl(o: { issuer: string; account: string; secretBase32: string; digits?: number; stepSeconds?: number }): string {
  const label = `${encodeURIComponent(o.issuer)}:${encodeURIComponent(o.account)}`;
  const q = new URLSearchParams({
    secret: o.secretBase32,
    issuer: o.issuer,
    algorithm: 'SHA1',
    digits: String(o.digits ?? TOTP_DIGITS),
    period: String(o.stepSeconds ?? TOTP_STEP_SECONDS),
  });
  return `otpauth://totp/${label}?${q.toString()}`;
}
