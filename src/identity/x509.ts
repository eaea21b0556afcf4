// The one entry point to @peculiar/x509 in Portcullis. The library resolves its algorithms through
// tsyringe, which needs a Reflect metadata polyfill loaded first; and it needs a WebCrypto provider.
// Importing it from here guarantees both, whatever module happens to load first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// Node's webcrypto is a complete WebCrypto implementation; the library's `Crypto` type is the DOM one,
// which this project does not load (lib has no "DOM"), hence the structural cast.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

/** ECDSA P-256 with SHA-256: the only key and signature algorithm Portcullis issues or accepts. */
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;
