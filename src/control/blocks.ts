// Temporary blocks of an address, a user or a workload: the automatic response of detection rules
// (a data plane's detector asks, with its workload certificate) and the operator's own
// (`portcullis block`). Active blocks travel to every data plane in the snapshot; each block and
// each early removal is an audit entry of its own. A block always expires.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Clock } from '../core/clock.js';
import type { PortcullisConfig } from '../core/config/types.js';
import { PortcullisError } from '../core/errors.js';
import { publishAudit } from '../core/events.js';
import { NS, type Store } from '../store/store.js';
import type { AdminToken } from './admin-token.js';
import { logNameOf } from './checkpoints.js';
import { readJsonObject, sendJson, stringField } from './http.js';

export type BlockKind = 'address' | 'principal' | 'workload';
const KINDS: readonly BlockKind[] = ['address', 'principal', 'workload'];
const MAX_SECONDS = 7 * 24 * 3600;
const MAX_ACTIVE = 10_000;

export interface Block {
  kind: BlockKind;
  value: string;
  /** ISO 8601 expiry. */
  until: string;
  /** Rule id, or `operator`. */
  rule: string;
  alertId?: string;
  by: string;
}

export class BlockList {
  private active = new Map<string, Block>();

  private constructor(private readonly o: { store: Store; clock: Clock; protectedWorkloads: ReadonlySet<string> }) {}

  static async open(o: { store: Store; clock: Clock; protectedWorkloads: ReadonlySet<string> }): Promise<BlockList> {
    const b = new BlockList(o);
    for (const { key, value } of await o.store.list<Block>(NS.blocks)) b.active.set(key, value);
    await b.expire();
    return b;
  }

  /** Active blocks, for the snapshot. */
  list(): Block[] {
    const now = this.o.clock.now();
    return [...this.active.values()].filter((b) => Date.parse(b.until) > now);
  }

  /** Adds or extends a block (a later expiry wins); refuses what must never be blocked. */
  async add(req: { kind: string; value: string; seconds: number; rule: string; alertId?: string; by: string }, requestId?: string): Promise<Block> {
    if (!KINDS.includes(req.kind as BlockKind)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `kind must be one of ${KINDS.join(', ')}`);
    const kind = req.kind as BlockKind; // checked above
    if (!Number.isInteger(req.seconds) || req.seconds < 1 || req.seconds > MAX_SECONDS) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `seconds must be 1..${MAX_SECONDS}`);
    if (req.value.length === 0 || req.value.length > 2048) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'value must be 1-2048 characters');
    if (kind === 'address' && isIP(req.value) === 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'an address block needs an IP address');
    if (kind === 'workload' && this.o.protectedWorkloads.has(req.value)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${req.value} cannot be blocked: every request passes through it`);
    await this.expire();
    const key = `${kind}:${req.value}`;
    const until = new Date(this.o.clock.now() + req.seconds * 1000).toISOString();
    const existing = this.active.get(key);
    if (!existing && this.active.size >= MAX_ACTIVE) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `too many active blocks (${MAX_ACTIVE})`);
    const block: Block = existing && existing.until >= until ? existing : { kind, value: req.value, until, rule: req.rule, by: req.by, ...(req.alertId ? { alertId: req.alertId } : {}) };
    if (block !== existing) {
      this.active.set(key, block);
      await this.o.store.put(NS.blocks, key, block);
      publishAudit({
        type: 'admin', time: new Date(this.o.clock.now()).toISOString(), ...(requestId ? { requestId } : {}), component: 'control', action: 'block.add', outcome: 'success',
        who: req.by.startsWith('spiffe://') ? { spiffeId: req.by } : { sub: req.by },
        detail: { kind, value: req.value, until, rule: req.rule, ...(req.alertId ? { alertId: req.alertId } : {}) },
      });
    }
    return block;
  }

  async remove(kind: string, value: string, by: string, requestId?: string): Promise<boolean> {
    const key = `${kind}:${value}`;
    if (!this.active.delete(key)) return false;
    await this.o.store.delete(NS.blocks, key);
    publishAudit({
      type: 'admin', time: new Date(this.o.clock.now()).toISOString(), ...(requestId ? { requestId } : {}), component: 'control', action: 'block.remove', outcome: 'success',
      who: { sub: by }, detail: { kind, value },
    });
    return true;
  }

  /** Drops expired blocks (they stop applying at `until` in any case). */
  async expire(): Promise<void> {
    const now = this.o.clock.now();
    for (const [key, b] of this.active) {
      if (Date.parse(b.until) > now) continue;
      this.active.delete(key);
      await this.o.store.delete(NS.blocks, key);
    }
  }
}

/** Block requests a data plane may make per minute: detection raises few alerts; a flood is a compromised workload. */
export const WORKLOAD_BLOCKS_PER_MINUTE = 30;

/**
 * POST /v1/blocks (a data plane's detector, by its certificate: only the gateway and the sidecars
 * of the config, at most WORKLOAD_BLOCKS_PER_MINUTE each); admin: GET/POST/DELETE /v1/admin/blocks.
 */
export function createBlockApi(o: { blocks: BlockList; admin: AdminToken; config: PortcullisConfig; clock: Clock }) {
  const recent = new Map<string, number[]>();
  const withinRate = (spiffeId: string): boolean => {
    const now = o.clock.now();
    const times = (recent.get(spiffeId) ?? []).filter((t) => now - t < 60_000);
    if (times.length >= WORKLOAD_BLOCKS_PER_MINUTE) return false;
    times.push(now);
    recent.set(spiffeId, times);
    return true;
  };
  return async (req: IncomingMessage, res: ServerResponse, ctx: { peerSpiffeId: string | undefined; requestId: string }): Promise<boolean> => {
    const path = new URL(req.url ?? '/', 'https://control.invalid').pathname;
    const route = `${req.method} ${path}`;
    const addFrom = async (by: string): Promise<void> => {
      const body = await readJsonObject(req);
      const seconds = body.seconds;
      const block = await o.blocks.add({
        kind: stringField(body, 'kind', 16), value: stringField(body, 'value', 2048), seconds: typeof seconds === 'number' ? seconds : NaN,
        rule: typeof body.rule === 'string' ? body.rule.slice(0, 64) : 'operator', ...(typeof body.alertId === 'string' ? { alertId: body.alertId.slice(0, 64) } : {}), by,
      }, ctx.requestId);
      sendJson(res, 201, block);
    };
    if (route === 'POST /v1/blocks') {
      if (!ctx.peerSpiffeId) throw new PortcullisError('PCL_ERR_PEER_CERT_REQUIRED', 'blocks are requested by workloads or the admin');
      // Only a data plane runs a detector; any other workload of the trust domain asking is refused.
      if (!logNameOf(o.config, ctx.peerSpiffeId)) throw new PortcullisError('PCL_ERR_PEER_IDENTITY', `${ctx.peerSpiffeId} is not a data plane of this config`);
      if (!withinRate(ctx.peerSpiffeId)) throw new PortcullisError('PCL_ERR_RATE_LIMITED', `${ctx.peerSpiffeId} asked for more than ${WORKLOAD_BLOCKS_PER_MINUTE} blocks in a minute`);
      await addFrom(ctx.peerSpiffeId);
      return true;
    }
    if (route === 'GET /v1/admin/blocks') {
      o.admin.check(req.headers.authorization);
      sendJson(res, 200, { blocks: o.blocks.list() });
      return true;
    }
    if (route === 'POST /v1/admin/blocks') {
      o.admin.check(req.headers.authorization);
      await addFrom('admin');
      return true;
    }
    const m = /^\/v1\/admin\/blocks\/(address|principal|workload)\/(.+)$/.exec(path);
    if (req.method === 'DELETE' && m?.[1] && m[2]) {
      o.admin.check(req.headers.authorization);
      const removed = await o.blocks.remove(m[1], decodeURIComponent(m[2]), 'admin', ctx.requestId);
      if (!removed) throw new PortcullisError('PCL_ERR_ROUTE_NOT_FOUND', 'no such block');
      sendJson(res, 200, { removed: true });
      return true;
    }
    return false;
  };
}
