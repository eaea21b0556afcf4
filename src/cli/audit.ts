// `portcullis audit verify`: checks every component's hash-chained audit log in a data directory
// against the trust anchors kept there (the CA bundle for workload-signed checkpoints, the
// control plane's published audit keys for KMS-signed ones). `portcullis audit query` and
// `portcullis audit tail` search the control plane's audit store through its admin API.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { verifyAuditLog, type VerifyResult } from '../audit/verify.js';
import type { ChainHead } from '../audit/format.js';
import { ADMIN_CHECKPOINTS_PATH } from '../control/checkpoints.js';
import { loadConfig } from '../core/config/load.js';
import { PortcullisError } from '../core/errors.js';
import type { AuditEvent } from '../core/events.js';
import type { StoredAuditEvent } from '../store/store.js';
import { AUDIT_EVENTS_PATH, AUDIT_HASH_PATH, MAX_AUDIT_LIMIT, parseAuditQuery } from '../control/audit-api.js';
import { AdminClient } from './admin-client.js';

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** An ISO 8601 time, or a time relative to `now` such as -15m, -2h, -30s, -1d. */
export function parseTimeArg(v: string, now = Date.now()): string {
  const rel = /^-?(\d{1,6})([smhd])$/.exec(v);
  if (rel?.[1] && rel[2]) return new Date(now - Number(rel[1]) * (UNITS[rel[2]] ?? 0)).toISOString();
  const t = Date.parse(v);
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(t)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `not a time: ${v} (ISO 8601, or relative like -15m)`);
  return new Date(t).toISOString();
}

interface QueryOpts {
  config: string;
  dataDir?: string;
  principal?: string;
  workload?: string;
  route?: string;
  decision?: string;
  policy?: string;
  component?: string;
  since?: string;
  until?: string;
  limit?: string;
  json?: boolean;
}

/** The admin API query string for the CLI's filters (times resolved to ISO). */
export function auditQueryString(o: QueryOpts, overrides: Record<string, string> = {}): string {
  const p = new URLSearchParams();
  for (const k of ['principal', 'workload', 'route', 'decision', 'policy', 'component', 'limit'] as const) {
    const v = o[k];
    if (v !== undefined) p.set(k, v);
  }
  if (o.since !== undefined) p.set('since', parseTimeArg(o.since));
  if (o.until !== undefined) p.set('until', parseTimeArg(o.until));
  for (const [k, v] of Object.entries(overrides)) p.set(k, v);
  parseAuditQuery(p); // the server's own checks, here for a message that names the bad option
  const s = p.toString();
  return s ? `${AUDIT_EVENTS_PATH}?${s}` : AUDIT_EVENTS_PATH;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer); // stdin yields Buffers without an encoding set
  return Buffer.concat(chunks).toString('utf8');
}

function adminClient(o: QueryOpts): AdminClient {
  const config = loadConfig(o.config);
  return AdminClient.fromDataDir(config.control.url, o.dataDir ? resolve(o.dataDir) : config.control.dataDir);
}

const COLUMNS = ['TIME', 'COMPONENT', 'DECISION', 'STATUS', 'PRINCIPAL', 'ROUTE/ACTION', 'REQUEST', 'REASONS'] as const;

function row(e: AuditEvent): string[] {
  const who = e.who.sub ?? e.who.clientId ?? e.who.spiffeId ?? '-';
  if (e.type === 'decision') {
    return [e.time, e.component, e.decision, String(e.status), who, e.what.route ?? '-', `${e.what.method} ${e.what.path}`, e.reasons.join(',') || (e.code ?? '-')];
  }
  return [e.time, e.component, e.outcome, '-', who, e.action, e.requestId ?? '-', Object.entries(e.detail).map(([k, v]) => `${k}=${String(v)}`).join(' ').slice(0, 80) || '-'];
}

/** A readable table: a header and one line per event, columns padded to their widest cell. */
export function formatAuditTable(events: AuditEvent[], header = true): string {
  const rows = events.map(row);
  const all = header ? [[...COLUMNS], ...rows] : rows;
  const widths = COLUMNS.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

function addFilters(c: Command, defaultConfig: string): Command {
  return c
    .option('-c, --config <file>', 'config file (control.url and control.dataDir)', defaultConfig)
    .option('--data-dir <dir>', "the control plane's data directory (admin token, CA bundle)")
    .option('--principal <sub>', 'user subject or client id')
    .option('--workload <spiffeId>', 'calling workload (SPIFFE ID)')
    .option('--route <id>', 'gateway route id')
    .option('--decision <allow|deny>', 'only allowed or only refused calls')
    .option('--policy <id>', 'a rule among the decision\'s reasons')
    .option('--component <name>', 'recording component (gateway, control, sidecar:<service>:inbound, ...)')
    .option('--json', 'JSON instead of a table');
}

/**
 * `witnessed`: the checkpoints the control plane holds (component → head); each such log must
 * contain that exact entry, so a log cut back behind a published checkpoint fails.
 */
export async function verifyDataDir(dataDir: string, o: { component?: string; requireClosed?: boolean; witnessed?: ReadonlyMap<string, ChainHead> } = {}): Promise<{ component: string; result: VerifyResult }[]> {
  const root = join(dataDir, 'audit');
  if (!existsSync(root)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no audit logs in ${root}`);
  const caFile = join(dataDir, 'ca.pem');
  const keysFile = join(root, 'control-keys.json');
  const caPem = existsSync(caFile) ? readFileSync(caFile, 'utf8') : undefined;
  const kmsPublicKeys = existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, 'utf8')) as { keyring: string; version: number; pem: string }[] : undefined; // written by the control plane
  const components = readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).filter((n) => !o.component || n === o.component).sort();
  if (components.length === 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no audit log${o.component ? ` for ${o.component}` : ''} in ${root}`);
  const out: { component: string; result: VerifyResult }[] = [];
  for (const component of components) {
    const expect = o.witnessed?.get(component);
    out.push({ component, result: await verifyAuditLog(join(root, component), { ...(caPem ? { caPem } : {}), ...(kmsPublicKeys ? { kmsPublicKeys } : {}), ...(o.requireClosed ? { requireClosed: true } : {}), ...(expect ? { expect } : {}) }) });
  }
  return out;
}

export function registerAuditCommands(cli: Command, defaultConfig: string): void {
  const audit = cli.command('audit').description('the tamper-evident audit logs');
  audit.command('verify')
    .description('verify the hash chains and signed checkpoints; exits non-zero naming the first bad entry')
    .option('-c, --config <file>', 'config file (its control.dataDir)', defaultConfig)
    .option('--data-dir <dir>', 'the data directory to verify')
    .option('--component <name>', 'only this component (e.g. gateway, control, sidecar-orders)')
    .option('--require-closed', 'the writers have stopped: each log must end with its closing checkpoint')
    .option('--witness', 'also require each log to contain the newest checkpoint it published to the control plane (catches truncation); needs the control plane and its admin token')
    .action(async (o: { config: string; dataDir?: string; component?: string; requireClosed?: boolean; witness?: boolean }) => {
      const dataDir = o.dataDir ? resolve(o.dataDir) : loadConfig(o.config).control.dataDir;
      let witnessed: Map<string, ChainHead> | undefined;
      if (o.witness) {
        const client = adminClient({ config: o.config });
        try {
          const { checkpoints } = await client.call<{ checkpoints: { component: string; seq: number; hash: string }[] }>('GET', ADMIN_CHECKPOINTS_PATH);
          witnessed = new Map(checkpoints.map((c) => [c.component, { seq: c.seq, hash: c.hash }]));
        } finally {
          await client.close();
        }
      }
      let bad = 0;
      for (const { component, result: r } of await verifyDataDir(dataDir, { ...o, ...(witnessed ? { witnessed } : {}) })) {
        if (!r.ok) {
          bad++;
          const f = r.firstBad;
          console.log(`${component}: TAMPERED${f ? ` at ${f.file}:${f.line}${f.seq !== undefined ? ` (seq ${f.seq})` : ''}: ${f.reason}` : ''}`);
          continue;
        }
        const cp = r.lastCheckpoint;
        const w = witnessed?.get(component);
        console.log(`${component}: ok, ${r.entries} entries in ${r.segments} segment(s)${cp ? `; last checkpoint seq ${cp.seq} at ${cp.time} signed by ${cp.signer}` : '; no checkpoint yet'}`);
        if (w) console.log(`  contains checkpoint seq ${w.seq} witnessed by the control plane`);
        if (r.uncovered > 0) console.log(`  warning: ${r.uncovered} newest entries are not yet covered by a signed checkpoint`);
        for (const g of r.gaps) console.log(`  warning: ${g.torn ? 'torn last line' : 'damaged bytes'} in ${g.file} at offset ${g.offset} (${g.bytes} bytes): ${g.reason}`);
      }
      if (bad > 0) process.exitCode = 1;
    });

  addFilters(audit.command('query'), defaultConfig)
    .description('search the audit store (newest first)')
    .option('--since <time>', 'ISO 8601 or relative (-15m, -2h, -1d)')
    .option('--until <time>', 'ISO 8601 or relative')
    .option('--limit <n>', `at most n events (1..${MAX_AUDIT_LIMIT})`, '50')
    .action(async (o: QueryOpts) => {
      const path = auditQueryString(o);
      const client = adminClient(o);
      try {
        const { events } = await client.call<{ events: StoredAuditEvent[] }>('GET', path);
        if (o.json) console.log(JSON.stringify(events.map((e) => e.event), null, 2));
        else if (events.length === 0) console.log('no matching audit events');
        else console.log(formatAuditTable(events.map((e) => e.event)));
      } finally {
        await client.close();
      }
    });

  audit.command('hash')
    .description('the keyed hash (hmac:…) that audit events record for a typed identifier, e.g. an unknown login name; "-" reads it from stdin, keeping it out of shell history')
    .argument('<value>', 'the value as typed, or - to read one line from stdin')
    .option('-c, --config <file>', 'config file (control.url and control.dataDir)', defaultConfig)
    .option('--data-dir <dir>', "the control plane's data directory (admin token, CA bundle)")
    .action(async (value: string, o: QueryOpts) => {
      const typed = value === '-' ? (await readStdin()).replace(/\r?\n$/, '') : value;
      const client = adminClient(o);
      try {
        console.log((await client.call<{ hash: string }>('POST', AUDIT_HASH_PATH, { value: typed })).hash);
      } finally {
        await client.close();
      }
    });

  addFilters(audit.command('tail'), defaultConfig)
    .description('follow new audit events as they are stored, until Ctrl-C')
    .option('--since <time>', 'start from this time (default: the last 10 events)')
    .action(async (o: QueryOpts) => {
      const firstPath = auditQueryString({ ...o, limit: o.since ? String(MAX_AUDIT_LIMIT) : '10' });
      const client = adminClient(o);
      let stop = false;
      process.once('SIGINT', () => { stop = true; });
      const print = (events: AuditEvent[], header: boolean): void => {
        if (events.length === 0) return;
        if (o.json) for (const e of events) console.log(JSON.stringify(e));
        else console.log(formatAuditTable(events, header));
      };
      try {
        const first = await client.call<{ events: StoredAuditEvent[] }>('GET', firstPath);
        const shown = first.events.reverse();
        print(shown.map((e) => e.event), true);
        // Polls with `since` = the newest time seen (inclusive); ids already shown at that time are skipped.
        let since = shown.at(-1)?.event.time ?? new Date().toISOString();
        let seen = new Set(shown.filter((e) => e.event.time === since).map((e) => e.id));
        while (!stop) {
          await new Promise((r) => setTimeout(r, 1000));
          if (stop) break;
          const { events } = await client.call<{ events: StoredAuditEvent[] }>('GET', auditQueryString({ ...o, since: undefined }, { since, limit: String(MAX_AUDIT_LIMIT) }));
          const fresh = events.reverse().filter((e) => !seen.has(e.id));
          print(fresh.map((e) => e.event), false);
          const newest = fresh.at(-1)?.event.time;
          if (newest !== undefined && newest !== since) {
            since = newest;
            seen = new Set();
          }
          for (const e of fresh) if (e.event.time === since) seen.add(e.id);
        }
      } finally {
        await client.close();
      }
    });
}
