// host:port parsing for listen addresses from the config.
import { PortcullisError } from '../core/errors.js';

export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `not a host:port address: ${s}`);
  return { host: (m[1] ?? '').replace(/^\[|\]$/g, ''), port };
}

/** The https:// origin of a host:port listen address (IPv6 hosts bracketed). */
export function httpsOrigin(listen: string): string {
  const { host, port } = parseHostPort(listen);
  return `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost' || /^127\./.test(host);
}
