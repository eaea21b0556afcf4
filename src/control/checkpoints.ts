// The control plane as witness of every audit log's signed checkpoints. A log cut after its last
// checkpoint still verifies on its own (nothing signs the missing tail); a checkpoint held here,
// off the writer's machine, proves how far the log reached: `portcullis audit verify --witness`
// requires each log to contain the witnessed entry. A checkpoint older than the one held (a log
// rolled back or replaced) is kept too, and recorded in the audit log as `audit.checkpoint.regress`.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../core/clock.js';
import type { PortcullisConfig } from '../core/config/types.js';
import { PortcullisError } from '../core/errors.js';
import { publishAudit } from '../core/events.js';
import { NS, type Store } from '../store/store.js';
import type { AdminToken } from './admin-token.js';
import { readJsonObject, sendJson, stringField } from './http.js';

export const CHECKPOINTS_PATH = '/v1/audit/checkpoints';
export const ADMIN_CHECKPOINTS_PATH = '/v1/admin/audit/checkpoints';

export interface WitnessedCheckpoint {
  /** The log's name under `<dataDir>/audit/` (control, gateway, sidecar-<service>). */
  component: string;
  seq: number;
  hash: string;
  time: string;
  signer: string;
  signature: string;
  final: boolean;
  /** When the control plane received it (its own clock). */
  receivedAt: string;
  /** Who sent it: the workload's SPIFFE ID, or `control` for the control plane's own log. */
  by: string;
}

export class CheckpointWitness {
  constructor(private readonly store: Store, private readonly clock: Clock) {}

  async record(component: string, c: Omit<WitnessedCheckpoint, 'component' | 'receivedAt' | 'by'>, by: string): Promise<WitnessedCheckpoint> {
    const held = await this.store.get<WitnessedCheckpoint>(NS.auditCheckpoints, component);
    const next: WitnessedCheckpoint = { component, ...c, receivedAt: new Date(this.clock.now()).toISOString(), by };
    if (held && c.seq < held.seq) {
      publishAudit({
        type: 'admin', time: next.receivedAt, component: 'control', action: 'audit.checkpoint.regress', outcome: 'failure',
        who: { spiffeId: by }, detail: { log: component, heldSeq: held.seq, receivedSeq: c.seq },
      });
    }
    await this.store.put(NS.auditCheckpoints, component, next);
    return next;
  }

  async list(): Promise<WitnessedCheckpoint[]> {
    return (await this.store.list<WitnessedCheckpoint>(NS.auditCheckpoints)).map((r) => r.value).sort((a, b) => a.component.localeCompare(b.component));
  }
}

/** The audit log name of a data-plane workload, or undefined for a workload that keeps no log the config knows. */
export function logNameOf(config: PortcullisConfig, spiffeId: string): string | undefined {
  if (spiffeId === config.gateway.spiffeId) return 'gateway';
  const service = config.services.find((s) => s.spiffeId === spiffeId);
  return service ? `sidecar-${service.name}` : undefined;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** POST /v1/audit/checkpoints (a data plane, by its certificate); admin: GET /v1/admin/audit/checkpoints. */
export function createCheckpointApi(o: { witness: CheckpointWitness; admin: AdminToken; config: PortcullisConfig }) {
  return async (req: IncomingMessage, res: ServerResponse, ctx: { peerSpiffeId: string | undefined }): Promise<boolean> => {
    const path = new URL(req.url ?? '/', 'https://control.invalid').pathname;
    if (path === CHECKPOINTS_PATH && req.method === 'POST') {
      if (!ctx.peerSpiffeId) throw new PortcullisError('PCL_ERR_PEER_CERT_REQUIRED', 'checkpoints are published by data planes with their certificate');
      // The log is named by the certificate, never by the body: a workload can only speak for its own log.
      const own = logNameOf(o.config, ctx.peerSpiffeId);
      if (!own) throw new PortcullisError('PCL_ERR_PEER_IDENTITY', `${ctx.peerSpiffeId} keeps no audit log this control plane knows`);
      const body = await readJsonObject(req, 16 * 1024);
      // A replica names its own log (`gateway-b`), always under the name its certificate gives.
      const component = typeof body.log === 'string' ? body.log : own;
      if (component !== own && !(component.startsWith(`${own}-`) && /^[a-z0-9-]{1,32}$/.test(component.slice(own.length + 1)))) {
        throw new PortcullisError('PCL_ERR_PEER_IDENTITY', `${ctx.peerSpiffeId} may publish checkpoints of ${own} (or ${own}-<instance>) only`);
      }
      const seq = body.seq;
      const hash = stringField(body, 'hash', 64);
      const time = stringField(body, 'time', 64);
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'seq must be a positive integer');
      if (!HEX64.test(hash)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'hash must be 64 hex digits');
      if (Number.isNaN(Date.parse(time))) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'time must be an ISO 8601 time');
      const saved = await o.witness.record(component, {
        seq, hash, time, signer: stringField(body, 'signer', 512), signature: stringField(body, 'signature', 2048), final: body.final === true,
      }, ctx.peerSpiffeId);
      sendJson(res, 200, { component: saved.component, seq: saved.seq });
      return true;
    }
    if (path === ADMIN_CHECKPOINTS_PATH && req.method === 'GET') {
      o.admin.check(req.headers.authorization);
      sendJson(res, 200, { checkpoints: await o.witness.list() });
      return true;
    }
    return false;
  };
}
