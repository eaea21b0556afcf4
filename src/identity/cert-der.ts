// A small DER encoder and a strict DER reader for the CA's hot path: reading one PKCS#10 request
// (RFC 2986) and writing one X.509 certificate (RFC 5280). Why it exists: @peculiar/x509 goes
// through a general ASN.1 object model and WebCrypto, about 5 ms of CPU per certificate, when the
// CA needs a handful of fixed structures, under 0.1 ms this way. ASN.1 encoding is not cryptography:
// every signature is made and checked by node:crypto, by the caller. The output is tested byte for
// byte against @peculiar/x509's for the same inputs, and with OpenSSL (test/identity/cert-der.test.ts).
// Deliberately narrow: single-byte tags, definite lengths, DER only; the reader refuses anything else.
import { isIP } from 'node:net';
import { PortcullisError } from '../core/errors.js';

// ---------------------------------------------------------------------------------------------
// Encoding.

const T = { BOOLEAN: 0x01, INTEGER: 0x02, BIT_STRING: 0x03, OCTET_STRING: 0x04, OID: 0x06, UTF8: 0x0c, PRINTABLE: 0x13, IA5: 0x16, UTC_TIME: 0x17, GENERALIZED_TIME: 0x18, SEQUENCE: 0x30, SET: 0x31 } as const;
/** GeneralName choices (RFC 5280 §4.2.1.6), [n] IMPLICIT: context-specific, primitive. */
const GN = { dns: 0x82, uri: 0x86, ip: 0x87 } as const;

function lengthOf(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return [0x80 | bytes.length, ...bytes];
}

/** One TLV: `tag`, the minimal length, the content. */
export function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag, ...lengthOf(body.length)]), body]);
}

export const sequence = (...items: Uint8Array[]): Buffer => tlv(T.SEQUENCE, ...items);
const set = (...items: Uint8Array[]): Buffer => tlv(T.SET, ...items);
export const octetString = (bytes: Uint8Array): Buffer => tlv(T.OCTET_STRING, bytes);
const BOOLEAN_TRUE = Buffer.from([T.BOOLEAN, 1, 0xff]);

/** An OBJECT IDENTIFIER TLV from its dotted form. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => (/^(0|[1-9][0-9]{0,15})$/.test(a) ? Number(a) : NaN));
  const [a, b, ...rest] = arcs;
  if (a === undefined || b === undefined || arcs.some((x) => !Number.isSafeInteger(x)) || a > 2 || (a < 2 && b > 39)) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `not an object identifier: ${dotted.slice(0, 64)}`);
  }
  const out: number[] = [];
  for (const arc of [a * 40 + b, ...rest]) {
    const sub = [arc % 128];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) sub.unshift(0x80 | (v % 128));
    out.push(...sub);
  }
  return tlv(T.OID, Buffer.from(out));
}

/** A non-negative INTEGER from its big-endian magnitude: leading zeros dropped, one added when the top bit is set. */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  if (m.length === 0) return tlv(T.INTEGER, Buffer.from([0]));
  return (m[0] ?? 0) >= 0x80 ? tlv(T.INTEGER, Buffer.from([0]), m) : tlv(T.INTEGER, m);
}

/** BIT STRING of whole bytes (a key, a signature). */
export const bitString = (bytes: Uint8Array): Buffer => tlv(T.BIT_STRING, Buffer.from([0]), bytes);

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; always whole seconds, UTC. */
export function time(d: Date): Buffer {
  const ms = d.getTime();
  const year = d.getUTCFullYear();
  if (!Number.isFinite(ms) || ms % 1000 !== 0 || year < 0 || year > 9999) {
    throw new PortcullisError('PCL_ERR_INTERNAL', 'certificate times are whole seconds between years 0 and 9999');
  }
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z for these years
  const digits = iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19);
  return year >= 1950 && year < 2050 ? tlv(T.UTC_TIME, Buffer.from(`${digits.slice(2)}Z`, 'latin1')) : tlv(T.GENERALIZED_TIME, Buffer.from(`${digits}Z`, 'latin1'));
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/**
 * A Name of one attribute per RDN, in order; PrintableString where the value allows it, UTF8String
 * otherwise (what @peculiar/x509 writes, so the CA's own certificates and these agree).
 */
export function distinguishedName(attributes: { type: string; value: string }[]): Buffer {
  return sequence(...attributes.map(({ type, value }) => set(sequence(oid(type), tlv(PRINTABLE.test(value) ? T.PRINTABLE : T.UTF8, Buffer.from(value, 'utf8'))))));
}

/** Extension (RFC 5280 §4.1): id, critical only when true (DER leaves the default out), value wrapped in an OCTET STRING. */
export function extension(id: Buffer, critical: boolean, value: Uint8Array): Buffer {
  return critical ? sequence(id, BOOLEAN_TRUE, octetString(value)) : sequence(id, octetString(value));
}

/** basicConstraints value: cA FALSE is the default, so an end entity's is an empty SEQUENCE. */
export function basicConstraints(ca: boolean): Buffer {
  return ca ? sequence(BOOLEAN_TRUE) : sequence();
}

/** keyUsage value from flags where bit i (1 << i) is the named bit i of RFC 5280 (digitalSignature = 1, ...). */
export function keyUsage(flags: number): Buffer {
  if (!Number.isInteger(flags) || flags <= 0 || flags >= 1 << 9) throw new PortcullisError('PCL_ERR_INTERNAL', 'key usage flags out of range');
  const bits = 32 - Math.clz32(flags); // named bits in use, the highest set one last
  const bytes = Buffer.alloc(Math.ceil(bits / 8));
  for (let i = 0; i < bits; i++) if (flags & (1 << i)) bytes[i >> 3] = (bytes[i >> 3] ?? 0) | (0x80 >> (i & 7));
  // DER: trailing zero bits are dropped, and the count of unused bits in the last byte says so.
  return tlv(T.BIT_STRING, Buffer.from([bytes.length * 8 - bits]), bytes);
}

/** extKeyUsage value: the purposes' OID TLVs, in order. */
export const extKeyUsage = (purposes: Buffer[]): Buffer => sequence(...purposes);

/** authorityKeyIdentifier value with only keyIdentifier ([0] IMPLICIT OCTET STRING). */
export const authorityKeyIdentifier = (keyId: Uint8Array): Buffer => sequence(tlv(0x80, keyId));

export type GeneralNameInput = { type: 'uri' | 'dns' | 'ip'; value: string };

/** subjectAltName value. URIs and DNS names are IA5 (ASCII); IPs are 4 or 16 bytes. */
export function generalNames(names: GeneralNameInput[]): Buffer {
  return sequence(...names.map(({ type, value }) => {
    if (type === 'ip') return tlv(GN.ip, ipAddressBytes(value));
    if (!/^[\x21-\x7e]+$/.test(value)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `a ${type} name must be printable ASCII without spaces`);
    return tlv(GN[type], Buffer.from(value, 'latin1'));
  }));
}

/** An IP address as iPAddress bytes (RFC 5280 §4.2.1.6): 4 for IPv4, 16 for IPv6. Zones have no place in a certificate. */
export function ipAddressBytes(ip: string): Buffer {
  const family = isIP(ip);
  if (family === 4) return Buffer.from(ip.split('.').map(Number));
  if (family !== 6 || ip.includes('%')) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${JSON.stringify(ip).slice(0, 100)} is not an IP address without a zone`);
  let text = ip;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    // An embedded IPv4 tail (::ffff:10.0.0.1) is the last two 16-bit groups.
    const [a = 0, b = 0, c = 0, d = 0] = text.slice(lastColon + 1).split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  const groups = (s: string | undefined): string[] => (s ? s.split(':') : []);
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const all = halves.length === 2 ? [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail] : head;
  // isIP has checked the syntax; this only guards the arithmetic.
  if (all.length !== 8 || !all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'unreadable IPv6 address');
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export interface TbsCertificateFields {
  /** The serial's magnitude, big-endian (positive: the caller keeps the top bit clear or it gets a 0 byte). */
  serial: Uint8Array;
  /** AlgorithmIdentifier DER of the signature that will be made over the result. */
  signatureAlgorithm: Buffer;
  /** The issuer's subject Name, DER exactly as in the issuer's certificate (so chains match byte for byte). */
  issuer: Buffer;
  notBefore: Date;
  notAfter: Date;
  subject: Buffer;
  /** SubjectPublicKeyInfo DER. */
  spki: Buffer;
  /** Extension DERs, in the order they appear. */
  extensions: Buffer[];
}

/** TBSCertificate (RFC 5280 §4.1), version 3: the bytes the issuer signs. */
export function tbsCertificate(f: TbsCertificateFields): Buffer {
  return sequence(
    tlv(0xa0, tlv(T.INTEGER, Buffer.from([2]))),
    unsignedInteger(f.serial),
    f.signatureAlgorithm,
    f.issuer,
    sequence(time(f.notBefore), time(f.notAfter)),
    f.subject,
    f.spki,
    tlv(0xa3, sequence(...f.extensions)),
  );
}

/** Certificate: the TBS, the algorithm again, the signature node:crypto made over the TBS. */
export function certificate(tbs: Buffer, signatureAlgorithm: Buffer, signature: Uint8Array): Buffer {
  return sequence(tbs, signatureAlgorithm, bitString(signature));
}

/** PEM as OpenSSL writes it: 64-character lines, a newline after the END line. */
export function pem(label: 'CERTIFICATE' | 'CERTIFICATE REQUEST', der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += `${b64.slice(i, i + 64)}\n`;
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

// ---------------------------------------------------------------------------------------------
// Reading: strict DER, every length checked against its parent. Errors are plain Errors with a
// fixed message (never the content); callers wrap them in their own coded error.

/** One element: its tag, where its header starts, where its content starts and ends. */
export interface Element {
  tag: number;
  offset: number;
  start: number;
  end: number;
}

class DerError extends Error {}

/** Reads the TLV at `offset`, which must end by `limit`. */
export function readElement(buf: Uint8Array, offset: number, limit: number = buf.length): Element {
  if (offset + 2 > limit) throw new DerError('truncated');
  const tag = buf[offset] ?? 0;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tag');
  let len = buf[offset + 1] ?? 0;
  let start = offset + 2;
  if (len >= 0x80) {
    const n = len & 0x7f;
    // 0x80 is BER's indefinite length; 3 length bytes already allow 16 MiB.
    if (n === 0 || n > 3) throw new DerError('unsupported length');
    if (start + n > limit) throw new DerError('truncated');
    if (buf[start] === 0) throw new DerError('non-minimal length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] ?? 0);
    if (len < 0x80) throw new DerError('non-minimal length');
    start += n;
  }
  const end = start + len;
  if (end > limit) throw new DerError('truncated');
  return { tag, offset, start, end };
}

/** The elements making up a constructed element's content, which they must fill exactly. */
export function children(buf: Uint8Array, parent: Element): Element[] {
  const out: Element[] = [];
  for (let p = parent.start; p < parent.end;) {
    const e = readElement(buf, p, parent.end);
    out.push(e);
    p = e.end;
  }
  return out;
}

function expect(e: Element | undefined, tag: number, what: string): Element {
  if (!e || e.tag !== tag) throw new DerError(`${what} expected`);
  return e;
}

const raw = (buf: Buffer, e: Element): Buffer => buf.subarray(e.offset, e.end);
const content = (buf: Buffer, e: Element): Buffer => buf.subarray(e.start, e.end);

/** The single element `bytes` must consist of. */
function only(bytes: Buffer, tag: number, what: string): Element {
  const e = expect(readElement(bytes, 0), tag, what);
  if (e.end !== bytes.length) throw new DerError(`data after the ${what}`);
  return e;
}

/** Dotted form of an OBJECT IDENTIFIER's content; minimal base-128 subidentifiers only. */
function oidText(bytes: Buffer): string {
  if (bytes.length === 0 || bytes.length > 64) throw new DerError('bad object identifier');
  const arcs: number[] = [];
  let v = 0;
  let fresh = true;
  for (const b of bytes) {
    if (fresh && b === 0x80) throw new DerError('bad object identifier');
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER) throw new DerError('bad object identifier');
    fresh = (b & 0x80) === 0;
    if (fresh) {
      arcs.push(v);
      v = 0;
    }
  }
  if (!fresh) throw new DerError('bad object identifier');
  const first = arcs[0] ?? 0;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

/** A Name: SEQUENCE OF non-empty SET OF SEQUENCE { type OID, one value }. Read for shape only. */
function checkName(buf: Buffer, name: Element): void {
  for (const rdn of children(buf, expect(name, T.SEQUENCE, 'Name'))) {
    const atvs = children(buf, expect(rdn, T.SET, 'RDN'));
    if (atvs.length === 0) throw new DerError('empty RDN');
    for (const atv of atvs) {
      const [type, value, ...more] = children(buf, expect(atv, T.SEQUENCE, 'attribute'));
      expect(type, T.OID, 'attribute type');
      if (!value || more.length > 0) throw new DerError('attribute must have one value');
    }
  }
}

/** A PKCS#10 request taken apart; nothing in it is trusted until the caller has verified `signature` over `info`. */
export interface CsrParts {
  /** certificationRequestInfo DER: the bytes the signature covers. */
  info: Buffer;
  /** SubjectPublicKeyInfo DER. */
  spki: Buffer;
  /** AlgorithmIdentifier DER of the signature. */
  signatureAlgorithm: Buffer;
  /** The signature (the BIT STRING's bytes). */
  signature: Buffer;
  /** Attributes in order: type as dotted OID, each value's DER. */
  attributes: { type: string; values: Buffer[] }[];
}

/** Takes a DER CertificationRequest apart (RFC 2986 §4), refusing anything not shaped like one, and any byte after it. */
export function parseCsr(der: Buffer): CsrParts {
  const outer = expect(readElement(der, 0), T.SEQUENCE, 'CertificationRequest');
  if (outer.end !== der.length) throw new DerError('trailing data after the request');
  const [infoEl, algEl, sigEl, ...extra] = children(der, outer);
  if (extra.length > 0) throw new DerError('extra fields in the request');
  const info = expect(infoEl, T.SEQUENCE, 'certificationRequestInfo');
  const alg = expect(algEl, T.SEQUENCE, 'signatureAlgorithm');
  const sig = expect(sigEl, T.BIT_STRING, 'signature');
  if (der[sig.start] !== 0 || sig.end - sig.start < 2) throw new DerError('signature is not whole bytes');

  const [version, subject, spkiEl, attrsEl, ...more] = children(der, info);
  if (more.length > 0) throw new DerError('extra fields in certificationRequestInfo');
  const v = expect(version, T.INTEGER, 'version');
  if (v.end - v.start !== 1 || der[v.start] !== 0) throw new DerError('version must be 1 (0)');
  checkName(der, expect(subject, T.SEQUENCE, 'subject'));
  const spki = expect(spkiEl, T.SEQUENCE, 'subjectPKInfo');
  const [keyAlg, keyBits, ...spkiMore] = children(der, spki);
  expect(keyAlg, T.SEQUENCE, 'key algorithm');
  expect(keyBits, T.BIT_STRING, 'subjectPublicKey');
  if (spkiMore.length > 0) throw new DerError('extra fields in subjectPKInfo');

  const attributes: CsrParts['attributes'] = [];
  // attributes is [0] IMPLICIT SET OF Attribute; encoders leave it out when empty.
  for (const a of attrsEl ? children(der, expect(attrsEl, 0xa0, 'attributes')) : []) {
    const [type, values, ...rest] = children(der, expect(a, T.SEQUENCE, 'attribute'));
    if (rest.length > 0) throw new DerError('extra fields in an attribute');
    attributes.push({
      type: oidText(content(der, expect(type, T.OID, 'attribute type'))),
      values: children(der, expect(values, T.SET, 'attribute values')).map((e) => raw(der, e)),
    });
  }
  return { info: raw(der, info), spki: raw(der, spki), signatureAlgorithm: raw(der, alg), signature: der.subarray(sig.start + 1, sig.end), attributes };
}

export interface ExtensionParts {
  /** Dotted OID. */
  id: string;
  critical: boolean;
  /** The extnValue OCTET STRING's content: the extension's own DER. */
  value: Buffer;
}

/** Extensions ::= SEQUENCE OF Extension (the value of a CSR's extensionRequest attribute). */
export function parseExtensions(der: Buffer): ExtensionParts[] {
  return children(der, only(der, T.SEQUENCE, 'Extensions')).map((x) => {
    const parts = children(der, expect(x, T.SEQUENCE, 'Extension'));
    const [idEl] = parts;
    let critical = false;
    let valueEl = parts[1];
    if (valueEl?.tag === T.BOOLEAN) {
      if (valueEl.end - valueEl.start !== 1) throw new DerError('bad BOOLEAN');
      // DER spells TRUE as 0xff; anything else non-zero is BER and refused. FALSE (the default) is tolerated.
      const b = der[valueEl.start];
      if (b !== 0x00 && b !== 0xff) throw new DerError('bad BOOLEAN');
      critical = b === 0xff;
      valueEl = parts[2];
      if (parts.length !== 3) throw new DerError('extra fields in an Extension');
    } else if (parts.length !== 2) {
      throw new DerError('extra fields in an Extension');
    }
    return { id: oidText(content(der, expect(idEl, T.OID, 'extnID'))), critical, value: content(der, expect(valueEl, T.OCTET_STRING, 'extnValue')) };
  });
}

/** basicConstraints' cA: true when the request asks to be a CA. A BER truthy byte counts as asking. */
export function readBasicConstraintsCa(value: Buffer): boolean {
  const [caEl, pathLen, ...more] = children(value, only(value, T.SEQUENCE, 'BasicConstraints'));
  if (more.length > 0) throw new DerError('extra fields in BasicConstraints');
  if (caEl === undefined) return false;
  if (caEl.tag === T.INTEGER) {
    if (pathLen !== undefined) throw new DerError('extra fields in BasicConstraints');
    return false;
  }
  expect(caEl, T.BOOLEAN, 'cA');
  if (caEl.end - caEl.start !== 1) throw new DerError('bad BOOLEAN');
  if (pathLen !== undefined) expect(pathLen, T.INTEGER, 'pathLenConstraint');
  return value[caEl.start] !== 0;
}

/** keyUsage as flags, bit i (1 << i) for named bit i (digitalSignature = 1, keyCertSign = 32, cRLSign = 64, ...). */
export function readKeyUsage(value: Buffer): number {
  const e = only(value, T.BIT_STRING, 'KeyUsage');
  const unused = value[e.start] ?? 0;
  const bytes = value.subarray(e.start + 1, e.end);
  if (e.end === e.start || unused > 7 || (bytes.length === 0 && unused !== 0) || bytes.length > 2) throw new DerError('bad KeyUsage');
  let flags = 0;
  for (let i = 0; i < bytes.length * 8; i++) if (((bytes[i >> 3] ?? 0) & (0x80 >> (i & 7))) !== 0) flags |= 1 << i;
  return flags;
}

/** GeneralNames: each name's tag (0x86 a URI, 0x82 a DNS name, ...) and content. */
export function readGeneralNames(value: Buffer): { tag: number; value: Buffer }[] {
  return children(value, only(value, T.SEQUENCE, 'GeneralNames')).map((e) => ({ tag: e.tag, value: content(value, e) }));
}

/** URI tag of a GeneralName. */
export const GENERAL_NAME_URI = GN.uri;

/** Checks an extKeyUsage value's shape: a non-empty SEQUENCE OF OID. */
export function checkExtKeyUsage(value: Buffer): void {
  const purposes = children(value, only(value, T.SEQUENCE, 'ExtKeyUsageSyntax'));
  if (purposes.length === 0) throw new DerError('empty ExtKeyUsageSyntax');
  for (const p of purposes) oidText(content(value, expect(p, T.OID, 'KeyPurposeId')));
}

/** Checks a subjectKeyIdentifier value's shape: an OCTET STRING. */
export function checkKeyIdentifier(value: Buffer): void {
  only(value, T.OCTET_STRING, 'KeyIdentifier');
}

/** The subject Name of a DER certificate, exactly as it is spelled there (the issuer of what it signs). */
export function certificateSubject(der: Buffer): Buffer {
  const cert = expect(readElement(der, 0), T.SEQUENCE, 'Certificate');
  const tbs = expect(children(der, cert)[0], T.SEQUENCE, 'tbsCertificate');
  const fields = children(der, tbs);
  // version [0] is present in v3 certificates; then serial, signature, issuer, validity, subject.
  const subject = fields[fields[0]?.tag === 0xa0 ? 5 : 4];
  return raw(der, expect(subject, T.SEQUENCE, 'subject'));
}

/** SubjectPublicKeyInfo of an ECDSA P-256 key, up to the point: id-ecPublicKey, prime256v1, BIT STRING of 66 bytes. */
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

/** The 65-byte uncompressed point when `spki` is exactly an ECDSA P-256 key in its usual (uncompressed) encoding. */
export function p256Point(spki: Buffer): Buffer | undefined {
  if (spki.length !== P256_SPKI_PREFIX.length + 65 || !spki.subarray(0, P256_SPKI_PREFIX.length).equals(P256_SPKI_PREFIX)) return undefined;
  const point = spki.subarray(P256_SPKI_PREFIX.length);
  return point[0] === 0x04 ? point : undefined;
}
