// PKCE (RFC 7636) with S256 only: `plain` would put the verifier itself on the front channel.
import { createHash, timingSafeEqual } from 'node:crypto';

/** RFC 7636 §4.1: 43-128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~". */
const VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;

export function isValidCodeVerifier(v: unknown): v is string {
  return typeof v === 'string' && VERIFIER.test(v);
}

/** Same alphabet and length as a verifier (an S256 challenge is exactly 43 characters). */
export function isValidCodeChallenge(c: unknown): c is string {
  return typeof c === 'string' && VERIFIER.test(c);
}

/** BASE64URL(SHA256(ASCII(code_verifier))), RFC 7636 §4.2. */
export function s256Challenge(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

/** Constant-time comparison of the verifier's S256 challenge with the stored challenge. */
export function verifyS256(verifier: string, challenge: string): boolean {
  if (!isValidCodeVerifier(verifier)) return false;
  const a = Buffer.from(s256Challenge(verifier), 'utf8');
  const b = Buffer.from(challenge, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}
