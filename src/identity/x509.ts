// The one entry point to @peculiar/x509 in Portcullis. The library resolves its algorithms through
// tsyringe, which needs a Reflect metadata polyfill loaded first; and it needs a WebCrypto provider.
// Import the library only through this module: that guarantees both are in place before its first use.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// Node's webcrypto is a complete WebCrypto provider; set once, for every caller of the library.
x509.cryptoProvider.set(webcrypto);

export { x509 };

/** ECDSA P-256 with SHA-256: the only key and signature algorithm Portcullis issues or accepts. */
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;
