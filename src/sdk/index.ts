// What a service behind a Portcullis sidecar reads. The end user comes as the gateway's signed
// assertion, checked by `Authorizer#principalOf`. The caller's SPIFFE ID is set by the sidecar,
// which strips client-supplied copies: it can be trusted on the loopback hop only, so never
// expose the service's own port beyond loopback.
import type { IncomingHttpHeaders } from 'node:http';
import { PEER_HEADER, type Principal } from '../core/principal.js';

export type { Principal };

/** The SPIFFE ID of the workload that called this service (the gateway's for edge traffic). */
export function peerOf(headers: IncomingHttpHeaders): string | undefined {
  const raw = headers[PEER_HEADER];
  return typeof raw === 'string' ? raw : undefined;
}

/** Masks all but the last four digits of a card number, for responses and logs. */
export function maskCardNumber(pan: string): string {
  const digits = pan.replace(/\D/g, '');
  return digits.length < 4 ? '****' : `**** **** **** ${digits.slice(-4)}`;
}

export { FieldEncryptor, mask, type DataKeySource, type FieldEncryptorOptions } from './fields.js';
export { KmsClient, type KmsClientOptions, type Secret } from './kms-client.js';
export { Authorizer, type AuthorizerOptions, type ResourceDecision, type CedarJson, type EntityJson, type EntityUid, type Decision } from './authorizer.js';
export { verifyWebhookSignature } from '../detect/sinks.js';
