// Keyed hashes of sensitive identifiers in audit events (as Vault's audit HMAC): a username typed
// into a failed login may be a password typed into the wrong field, so it is recorded as
// `hmac:<hex>` under the KMS keyring `audit-ids`. An operator matches on it with
// `portcullis audit hash <value>` (POST /v1/admin/audit/hash), and detection keys on the same value.
import type { KeyManager } from '../kms/key-manager.js';
import { parseCiphertext } from '../kms/ciphertext.js';

export const AUDIT_IDS_KEYRING = 'audit-ids';
/** Prefix of every keyed hash in an audit event. */
export const AUDIT_HASH_PREFIX = 'hmac:';
/** Values longer than this are cut before hashing (the audit record needs a match, not the value). */
const MAX_VALUE = 1024;

export type IdHasher = (value: string) => Promise<string>;

/**
 * The keyring never rotates on its own: a new version would give the same value another hash,
 * and older audit entries could no longer be matched. 128 bits of the MAC are kept.
 */
export async function openIdHasher(kms: KeyManager): Promise<IdHasher> {
  await kms.ensureKeyring(AUDIT_IDS_KEYRING, { type: 'hmac-sha256' });
  return async (value) => {
    const mac = await kms.hmac(AUDIT_IDS_KEYRING, Buffer.from(value.slice(0, MAX_VALUE), 'utf8'));
    return AUDIT_HASH_PREFIX + parseCiphertext(mac).payload.subarray(0, 16).toString('hex');
  };
}
