// WebSocket through the data plane: an HTTP/1.1 `Upgrade: websocket` request is decided like any
// other request (the caller's `decide`: the gateway's pipeline up to the rate limit, the sidecar's
// caller check), its handshake is forwarded, and after the upstream's 101 the two connections are
// piped byte for byte. Only `websocket` is accepted: an upstream that answers 101 to `h2c` (or to
// anything else) would carry requests no policy ever saw. Nothing reaches the upstream before
// `decide` allows, and the client's first frames reach it only after its 101.
import { request as httpRequest, STATUS_CODES, validateHeaderName, validateHeaderValue, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { systemClock, type Clock } from '../core/clock.js';
import { asPortcullisError, PortcullisError } from '../core/errors.js';
import { newRequestId } from '../core/ids.js';
import { API_KEY_HEADER } from './api-key-auth.js';
import { handleCors, type CorsPolicy } from './cors.js';
import { assertSingleHeaders, forwardableResponseHeaders, REQUEST_ID_HEADER } from './headers.js';

/** Where an allowed upgrade goes. */
export interface UpgradeTarget {
  /** `https://host:port` (TLS, with `tls`) or `http://host:port` (plain: the sidecar's loopback hop). */
  origin: string;
  /** TLS client options for an https origin (the gateway's mTLS to a sidecar); default Node's own. */
  tls?: ConnectionOptions;
}

/** What `decide` returns for an allowed upgrade. */
export interface UpgradeDecision {
  target: UpgradeTarget;
  /** Path and query to request upstream, exactly as authorized; starts with `/`. */
  path: string;
  /**
   * Headers to forward: already filtered by the caller (`forwardableRequestHeaders`) plus its own
   * (principal, request id, trace). Hop-by-hop names and `Sec-WebSocket-*` given here are ignored:
   * the handshake's own are sent, with any `bearer.` subprotocol removed.
   */
  headers: Record<string, string | string[]>;
}

/** Per-upgrade state that `decide` may add to. */
export interface UpgradeContext {
  /** Sent back as `x-request-id`; `decide` may replace it (the sidecar keeps the gateway's). Default: a new id. */
  requestId: string;
  /** Extra headers on whatever the client gets back, refusal or 101 (rate-limit, CORS, security headers). Default none. */
  responseHeaders: Record<string, string>;
}

/**
 * Where an upgrade was refused: `handshake` (not a WebSocket handshake, or not one we accept: never
 * reached `decide`), `decide` (refused by it: it has recorded the refusal itself), `upstream` (allowed,
 * then the upstream could not be reached, timed out or answered 101 to something else).
 */
export type UpgradePhase = 'handshake' | 'decide' | 'upstream';

/** Why an open tunnel closed. */
export type TunnelCloseReason = 'client' | 'upstream' | 'idle';

export interface UpgradeOptions {
  /** Allows (resolves) or refuses (rejects, ideally with a PortcullisError) the upgrade request. */
  decide(req: IncomingMessage, ctx: UpgradeContext): Promise<UpgradeDecision>;
  /** Called once for every refusal, after the error response is written. Must not throw. */
  onRefused(err: PortcullisError, phase: UpgradePhase, ctx: UpgradeContext): void;
  /** Called once when an open tunnel closes. Default: nothing. */
  onClosed?(reason: TunnelCloseReason, ctx: UpgradeContext): void;
  /** From the upstream request to its response head (connect, TLS, handshake answer). */
  timeoutMs: number;
  /** An open tunnel with no byte in either direction for this long is closed. Default 300 000 (5 min). */
  idleTimeoutMs?: number;
  /** Default: the system clock. */
  clock?: Clock;
}

/** How the handshake ended: refused by us, the upstream's non-101 answer relayed, or a tunnel open. */
export interface UpgradeResult {
  outcome: 'refused' | 'relayed' | 'open';
  /** The status the client got (101 when open); 0 when the client left before any answer. */
  status: number;
}

/** Default idle timeout of an open tunnel. */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;

/** Subprotocol prefix that carries an access token from browsers (which cannot set Authorization on a WebSocket). */
export const BEARER_PROTOCOL_PREFIX = 'bearer.';

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/; // RFC 9110 §5.6.2 token
const WS_KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/; // base64 of 16 bytes (RFC 6455 §4.1)
const PATH = /^\/[\x21-\x7e]*$/; // no spaces, no controls: it becomes part of a request line

/** Hop-by-hop and framing headers of the forwarded handshake: set by us, never copied. */
const HANDSHAKE_OWN = new Set([
  'connection', 'upgrade', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'trailer',
  'proxy-authenticate', 'proxy-authorization', 'host', 'http2-settings', 'content-length',
]);

function list(value: string | string[] | undefined): string[] {
  return (Array.isArray(value) ? value.join(',') : value ?? '').split(',').map((t) => t.trim()).filter(Boolean);
}

/** The offered subprotocols, split into the `bearer.` entries and the rest (order kept). */
function splitProtocols(headers: IncomingMessage['headers']): { bearers: string[]; protocols: string[] } {
  const all = list(headers['sec-websocket-protocol']);
  return {
    bearers: all.filter((p) => p.toLowerCase().startsWith(BEARER_PROTOCOL_PREFIX)),
    protocols: all.filter((p) => !p.toLowerCase().startsWith(BEARER_PROTOCOL_PREFIX)),
  };
}

/**
 * Throws unless `req` is a WebSocket opening handshake we forward (RFC 6455 §4.1): `Upgrade:
 * websocket` alone (PCL_ERR_UPGRADE_UNSUPPORTED otherwise: `h2c` and every other protocol), over
 * HTTP/1.1 with GET (PCL_ERR_METHOD_NOT_ALLOWED), with `Connection: upgrade`, one well-formed
 * `Sec-WebSocket-Key`, version 13, token subprotocols, and no body (PCL_ERR_HEADER_INVALID).
 */
export function assertWebSocketHandshake(req: IncomingMessage): void {
  // Checked first, so an h2c attempt is named as such whatever else is wrong with it.
  assertSingleHeaders(req.rawHeaders, ['upgrade']);
  const upgrade = list(req.headers.upgrade).map((t) => t.toLowerCase());
  if (upgrade.length !== 1 || upgrade[0] !== 'websocket') {
    throw new PortcullisError('PCL_ERR_UPGRADE_UNSUPPORTED', `upgrade refused: only "websocket" is accepted (${upgrade.length} protocol(s) offered)`);
  }
  if (req.method !== 'GET') throw new PortcullisError('PCL_ERR_METHOD_NOT_ALLOWED', 'a WebSocket handshake is a GET');
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor < 1) throw new PortcullisError('PCL_ERR_HEADER_INVALID', 'a WebSocket handshake needs HTTP/1.1');
  assertSingleHeaders(req.rawHeaders, ['sec-websocket-key', 'sec-websocket-version', 'host', 'authorization', API_KEY_HEADER]);
  if (!list(req.headers.connection).some((t) => t.toLowerCase() === 'upgrade')) throw new PortcullisError('PCL_ERR_HEADER_INVALID', 'Connection does not list upgrade');
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || !WS_KEY.test(key)) throw new PortcullisError('PCL_ERR_HEADER_INVALID', 'Sec-WebSocket-Key missing or not 16 bytes of base64');
  if (req.headers['sec-websocket-version'] !== '13') throw new PortcullisError('PCL_ERR_HEADER_INVALID', 'Sec-WebSocket-Version is not 13');
  const offered = list(req.headers['sec-websocket-protocol']);
  const bad = offered.findIndex((p) => !TOKEN.test(p));
  if (bad !== -1) throw new PortcullisError('PCL_ERR_HEADER_INVALID', `Sec-WebSocket-Protocol entry ${bad} is not a token`);
  // Bytes after the head are WebSocket frames: a declared body would let two parsers disagree.
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) {
    throw new PortcullisError('PCL_ERR_HEADER_INVALID', 'a WebSocket handshake has no body');
  }
}

/**
 * For a route that opts in to tokens in the subprotocol: moves the token of a `bearer.<token>`
 * entry of `Sec-WebSocket-Protocol` into `Authorization: Bearer <token>`, so authentication reads it
 * like any bearer token. Returns true when it did, false when no such entry was offered. Throws
 * PCL_ERR_HEADER_INVALID when the entry comes more than once, next to an `Authorization` or API-key
 * header (two credentials), or as the only subprotocol (the upstream could then select none, and
 * browsers fail such a handshake: offer the application's own subprotocol too). The entry itself
 * is never forwarded, whether or not it was adopted.
 */
export function adoptProtocolBearer(req: IncomingMessage): boolean {
  const { bearers, protocols } = splitProtocols(req.headers);
  const first = bearers[0];
  if (first === undefined) return false;
  if (bearers.length > 1) throw new PortcullisError('PCL_ERR_HEADER_INVALID', 'more than one bearer subprotocol');
  if (req.headers.authorization !== undefined || req.headers[API_KEY_HEADER] !== undefined) {
    throw new PortcullisError('PCL_ERR_HEADER_INVALID', 'a bearer subprotocol next to another credential');
  }
  if (protocols.length === 0) throw new PortcullisError('PCL_ERR_HEADER_INVALID', 'a bearer subprotocol needs the application subprotocol next to it');
  // IncomingMessage caches its parsed headers object: later readers (authentication) see this.
  req.headers.authorization = `Bearer ${first.slice(BEARER_PROTOCOL_PREFIX.length)}`;
  return true;
}

/**
 * CORS for a WebSocket (cross-site WebSocket hijacking): browsers keep no WebSocket message from a
 * page, whatever its origin, so an upgrade carrying an `Origin` is checked like a state-changing
 * request: allowed when the origin is in `gateway.cors.origins` or is the gateway's own
 * (`https://` + Host); otherwise PCL_ERR_CORS. No `Origin` (not a browser): passes.
 */
export function checkUpgradeOrigin(headers: IncomingMessage['headers'], policy: CorsPolicy | undefined): void {
  handleCors('POST', headers, policy); // POST: the rules of a request whose answer the page would read
}

/** The handshake request headers sent upstream: the decision's, then the handshake's own. */
function upstreamHeaders(req: IncomingMessage, decided: Record<string, string | string[]>, host: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(decided)) {
    const n = name.toLowerCase();
    if (HANDSHAKE_OWN.has(n) || n.startsWith('sec-websocket-')) continue;
    out[n] = value;
  }
  out.host = host;
  out.connection = 'Upgrade';
  out.upgrade = 'websocket';
  for (const n of ['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions']) {
    const v = req.headers[n];
    if (v !== undefined) out[n] = v;
  }
  // Credentials end here: a `bearer.` entry never reaches the service.
  const { protocols } = splitProtocols(req.headers);
  if (protocols.length > 0) out['sec-websocket-protocol'] = protocols.join(', ');
  return out;
}

/** A response head; names and values checked, so nothing from the upstream can inject a line. */
function responseHead(status: number, headers: OutgoingHttpHeaders): Buffer {
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}`];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [String(value)]) {
      validateHeaderName(name);
      validateHeaderValue(name, v);
      lines.push(`${name}: ${v}`);
    }
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

/** A refusal on the raw socket: status line, the public JSON body (like sendError), then close. */
function writeRefusal(socket: Duplex, err: PortcullisError, ctx: UpgradeContext): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify(err.toPublicJSON());
  const headers: OutgoingHttpHeaders = {
    ...ctx.responseHeaders,
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    [REQUEST_ID_HEADER]: ctx.requestId,
    connection: 'close',
  };
  // RFC 6750 §3, as sendError does: how to authenticate, without echoing anything sent.
  if (err.status === 401) headers['www-authenticate'] = err.code === 'PCL_ERR_TOKEN_MISSING' ? 'Bearer' : 'Bearer error="invalid_token"';
  let head: Buffer;
  try {
    head = responseHead(err.status, headers);
  } catch {
    head = responseHead(err.status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), connection: 'close' });
  }
  socket.end(Buffer.concat([head, Buffer.from(body)]), () => socket.destroy());
}

/** The http(s) request options for the upstream handshake; throws for an origin we cannot use. */
function requestOptions(d: UpgradeDecision): { url: URL; options: RequestOptions & ConnectionOptions } {
  const url = new URL(d.target.origin);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new PortcullisError('PCL_ERR_INTERNAL', `upgrade target ${url.protocol} is not http(s)`);
  if (url.protocol === 'http:' && d.target.tls) throw new PortcullisError('PCL_ERR_INTERNAL', 'TLS options given for a plain http upgrade target');
  if (!PATH.test(d.path)) throw new PortcullisError('PCL_ERR_PATH_INVALID', 'upgrade path is not an absolute path');
  return {
    url,
    options: {
      ...(url.protocol === 'https:' ? d.target.tls : {}),
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
      method: 'GET',
      path: d.path,
      agent: false, // one connection per tunnel, never pooled
      ...(url.protocol === 'https:' ? { ALPNProtocols: ['http/1.1'] } : {}),
    },
  };
}

/**
 * Proxies one upgrade request (the `upgrade` event of an HTTP/1.1 server). Refusals get a JSON
 * error answer with `Connection: close` and the socket is closed; the upstream is contacted only
 * after `decide` allows. Anything but 101 from the upstream is relayed and both sides closed; a 101
 * opens a byte tunnel closed when either side closes or errs, or after `idleTimeoutMs` of silence.
 * Never rejects.
 */
export async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, o: UpgradeOptions): Promise<UpgradeResult> {
  const ctx: UpgradeContext = { requestId: newRequestId(), responseHeaders: {} };
  // Node removed its own listeners when it handed the socket over: an unhandled error would crash.
  socket.on('error', () => socket.destroy());
  let phase: UpgradePhase = 'handshake';
  try {
    assertWebSocketHandshake(req);
    phase = 'decide';
    const decided = await o.decide(req, ctx);
    phase = 'upstream';
    if (socket.destroyed) return { outcome: 'refused', status: 0 }; // the client left: the upstream is never contacted
    return await forward(req, socket, head, decided, ctx, o);
  } catch (e) {
    const err = asPortcullisError(e);
    writeRefusal(socket, err, ctx);
    try {
      o.onRefused(err, phase, ctx);
    } catch {
      // a failing observer must not change the answer already written
    }
    return { outcome: 'refused', status: socket.destroyed && !socket.writableFinished ? 0 : err.status };
  }
}

/** Sends the handshake upstream; resolves once the client has its answer, rejects before any is written. */
function forward(req: IncomingMessage, socket: Duplex, head: Buffer, d: UpgradeDecision, ctx: UpgradeContext, o: UpgradeOptions): Promise<UpgradeResult> {
  const clock = o.clock ?? systemClock;
  const { url, options } = requestOptions(d);
  options.headers = upstreamHeaders(req, d.headers, url.host);
  return new Promise<UpgradeResult>((resolve, reject) => {
    let settled = false;
    let up: ClientRequest;
    try {
      up = url.protocol === 'https:' ? httpsRequest(options) : httpRequest(options);
    } catch (err) {
      // Node refuses a header name or value it cannot send: none of it left.
      reject(new PortcullisError('PCL_ERR_HEADER_INVALID', `upgrade header refused by the HTTP client: ${err instanceof Error ? err.message : String(err)}`));
      return;
    }
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      socket.off('close', clientGone);
      fn();
    };
    const fail = (err: PortcullisError): void => settle(() => {
      up.destroy();
      reject(err);
    });
    const clientGone = (): void => settle(() => {
      up.destroy();
      resolve({ outcome: 'refused', status: 0 });
    });
    const timer = clock.setTimer(o.timeoutMs, () => fail(new PortcullisError('PCL_ERR_UPSTREAM_TIMEOUT', `upstream ${url.origin} gave no handshake answer within ${o.timeoutMs} ms`)));
    socket.once('close', clientGone);
    up.on('error', (err) => fail(new PortcullisError('PCL_ERR_UPSTREAM_UNAVAILABLE', `upstream ${url.origin} failed: ${err.message}`, { cause: err })));
    up.on('response', (res) => settle(() => {
      relayAnswer(res, socket, ctx);
      resolve({ outcome: 'relayed', status: res.statusCode ?? 502 });
    }));
    up.on('upgrade', (res: IncomingMessage, upSocket: Socket, upHead: Buffer) => {
      upSocket.on('error', () => upSocket.destroy());
      if (settled) {
        upSocket.destroy(); // timed out or the client left meanwhile
        return;
      }
      const protocol = list(res.headers.upgrade).map((t) => t.toLowerCase());
      if (protocol.length !== 1 || protocol[0] !== 'websocket') {
        upSocket.destroy();
        fail(new PortcullisError('PCL_ERR_UPSTREAM_UNAVAILABLE', `upstream ${url.origin} switched to another protocol than websocket`));
        return;
      }
      let answer: Buffer;
      try {
        answer = responseHead(101, { ...forwardableResponseHeaders(res.headers), ...ctx.responseHeaders, [REQUEST_ID_HEADER]: ctx.requestId, upgrade: 'websocket', connection: 'Upgrade' });
      } catch {
        upSocket.destroy();
        fail(new PortcullisError('PCL_ERR_UPSTREAM_UNAVAILABLE', `upstream ${url.origin} sent a header that cannot be relayed`));
        return;
      }
      settle(() => {
        tunnel(socket, upSocket, answer, upHead, head, ctx, o, clock);
        resolve({ outcome: 'open', status: 101 });
      });
    });
    up.end();
  });
}

/** The upstream's non-101 answer, relayed with its body (delimited by closing), then both closed. */
function relayAnswer(res: IncomingMessage, socket: Duplex, ctx: UpgradeContext): void {
  const status = res.statusCode ?? 502;
  let answer: Buffer;
  try {
    answer = responseHead(status, { ...forwardableResponseHeaders(res.headers), ...ctx.responseHeaders, [REQUEST_ID_HEADER]: ctx.requestId, connection: 'close' });
  } catch {
    res.destroy();
    writeRefusal(socket, new PortcullisError('PCL_ERR_UPSTREAM_UNAVAILABLE', 'upstream answer cannot be relayed'), ctx);
    return;
  }
  const done = (): void => {
    res.destroy();
    socket.destroy();
  };
  res.once('error', done);
  socket.once('close', done);
  socket.write(answer);
  res.pipe(socket); // ends the client socket once the body is in
  socket.once('finish', done);
}

/** Both ways, byte for byte: the 101 and the upstream's early bytes to the client, the client's early frames upstream. */
function tunnel(socket: Duplex, upSocket: Socket, answer: Buffer, upHead: Buffer, head: Buffer, ctx: UpgradeContext, o: UpgradeOptions, clock: Clock): void {
  const idleMs = o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  let last = clock.now();
  let closed = false;
  const touch = (): void => { last = clock.now(); };
  const close = (reason: TunnelCloseReason): void => {
    if (closed) return;
    closed = true;
    idle.cancel();
    socket.destroy();
    upSocket.destroy();
    o.onClosed?.(reason, ctx);
  };
  // One timer per tunnel, re-armed for the remainder, rather than a new timer per chunk.
  const arm = (ms: number): ReturnType<Clock['setTimer']> => clock.setTimer(ms, () => {
    const quiet = clock.now() - last;
    if (quiet >= idleMs) close('idle');
    else idle = arm(idleMs - quiet);
  });
  let idle = arm(idleMs);
  if (socket.destroyed) {
    close('client'); // gone between the upstream's 101 and now: its 'close' may already be past
    return;
  }
  upSocket.setNoDelay(true);
  if ('setNoDelay' in socket && typeof socket.setNoDelay === 'function') socket.setNoDelay(true);
  socket.on('data', touch);
  upSocket.on('data', touch);
  socket.once('close', () => close('client'));
  upSocket.once('close', () => close('upstream'));
  socket.write(answer);
  if (upHead.length > 0) socket.write(upHead);
  if (head.length > 0) upSocket.write(head);
  socket.pipe(upSocket);
  upSocket.pipe(socket);
}
