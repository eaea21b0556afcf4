// Runs in the workload (sidecar, gateway, SDK): makes its key pair and a CSR to send to the CA.
// Only the CSR leaves the process; the private key stays with the workload that made it.
import { KeyObject, webcrypto } from 'node:crypto';
import { EC_P256, ECDSA_SHA256, x509 } from './x509.js';
import { parseSpiffeId } from './spiffe.js';

export interface WorkloadKeyAndCsr {
  /** PKCS#8 PEM, unencrypted: keep it in memory or in a 0600 file, never send it anywhere. */
  keyPem: string;
  /** PKCS#10 PEM requesting `spiffeId` as its URI SAN (the CA decides the final identity anyway). */
  csrPem: string;
}

export async function createWorkloadKeyAndCsr(spiffeId: string): Promise<WorkloadKeyAndCsr> {
  const { id } = parseSpiffeId(spiffeId);
  // Extractable only so the PKCS#8 export below works; the CryptoKey itself is dropped after.
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }])],
  });
  const keyPem = KeyObject.from(keys.privateKey).export({ format: 'pem', type: 'pkcs8' });
  // export() is typed string | Buffer; with format 'pem' it is always a string.
  return { keyPem: keyPem.toString(), csrPem: `${csr.toString('pem')}\n` };
}
