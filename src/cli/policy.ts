// `portcullis policy validate | test | explain | reload | dry-run`: the policy set of a config,
// checked, tested and explained with the engine the data planes run.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type { Command } from 'commander';
import { parse } from 'yaml';
import { SEGMENT_FILE } from '../audit/format.js';
import { loadConfig } from '../core/config/load.js';
import { PortcullisError } from '../core/errors.js';
import type { DecisionEvent } from '../core/events.js';
import { PolicySet } from '../policy/policy-set.js';
import { caseRequest, readPolicyTestFile, runPolicyTests, type PolicyTestCase, type PolicyTestFile } from '../policy/policy-test.js';
import { loadDemoUsers } from './system.js';
import { AdminClient } from './admin-client.js';

function compile(configFile: string): PolicySet {
  const config = loadConfig(configFile);
  return PolicySet.fromConfig(config, (m) => console.error(`warning: ${m}`));
}

/** Summary of a compiled set: how many policies, how many fell back to the reference engine. */
function describe(set: PolicySet): string {
  const all = set.engine.policies;
  const fallback = all.filter((p) => !p.compiled).length;
  return `${all.length} policies (${all.length - fallback} compiled${fallback ? `, ${fallback} evaluated by cedar-wasm` : ''}), version ${set.version}`;
}

export function registerPolicyCommands(cli: Command, defaultConfig: string): void {
  const policy = cli.command('policy').description('Cedar policies: validate, test, explain, reload, dry-run (docs/policy.md)');

  policy.command('validate')
    .description('parse and (with policies.schema) strictly validate the policy set; exits non-zero with file:line:col')
    .option('-c, --config <file>', 'config file', defaultConfig)
    .action((o: { config: string }) => {
      console.log(`ok: ${describe(compile(o.config))}`);
    });

  policy.command('test')
    .description('run policy test files (default: policies.tests of the config); exits non-zero on any failure')
    .option('-c, --config <file>', 'config file', defaultConfig)
    .argument('[files...]', 'test files (YAML)')
    .action((files: string[], o: { config: string }) => {
      const config = loadConfig(o.config);
      const set = PolicySet.fromConfig(config, (m) => console.error(`warning: ${m}`));
      const list = files.length > 0 ? files.map((f) => resolve(f)) : config.policies.tests;
      if (list.length === 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'no test files: name them, or list them in policies.tests');
      let passed = 0;
      let failed = 0;
      for (const file of list) {
        console.log(relative(process.cwd(), file) || file);
        for (const r of runPolicyTests(set, readPolicyTestFile(file))) {
          if (r.passed) passed++;
          else failed++;
          const got = `${r.actual.decision}${r.actual.reasons.length ? ` by ${r.actual.reasons.join(', ')}` : ''}`;
          console.log(`  ${r.passed ? 'ok  ' : 'FAIL'} ${r.name}${r.passed ? '' : `\n       expected ${r.expected.decision}${r.expected.reasons ? ` by ${r.expected.reasons.join(', ')}` : ''}, got ${got}`}`);
          for (const e of r.passed ? [] : r.actual.errors) console.log(`       error: ${e}`);
        }
      }
      console.log(`${passed} passed, ${failed} failed`);
      if (failed > 0) process.exitCode = 1;
    });

  policy.command('explain')
    .description('show which policies decide a request, and why: the request is one test case (YAML/JSON)')
    .option('-c, --config <file>', 'config file', defaultConfig)
    .requiredOption('--case <yaml>', 'the case, e.g. \'{route: shop.orders.get, user: alice, params: {id: o-1}}\'')
    .option('--users <file>', 'a test file (or users.yaml) giving the users and shared entities')
    .action((o: { config: string; case: string; users?: string }) => {
      const set = compile(o.config);
      const c = { expect: 'allow', name: 'explain', ...(parse(o.case) as object) } as PolicyTestCase;
      const context = o.users ? loadUsersAndEntities(o.users) : { users: {}, entities: [] };
      const { request, entities } = caseRequest(set, { ...context, cases: [c] }, c);
      const { decision, policies } = set.engine.explain(request, entities);
      console.log(`decision: ${decision.decision}${decision.reasons.length ? ` (by ${decision.reasons.join(', ')})` : ' (no policy permits: deny by default)'}`);
      console.log(`request: ${request.principal.type}::${JSON.stringify(request.principal.id)} → ${request.action.type}::${JSON.stringify(request.action.id)} on ${request.resource.type}::${JSON.stringify(request.resource.id)}`);
      for (const p of policies) {
        const where = p.file ? ` ${p.file}${p.line ? `:${p.line}` : ''}` : '';
        const state = p.error ? `error: ${p.error}` : p.satisfied ? 'satisfied' : 'not satisfied';
        console.log(`  ${p.effect.padEnd(6)} ${p.id.padEnd(40)} ${state}${where}`);
      }
      if (policies.length === 0) console.log('  no policy applies to this principal, action and resource');
    });

  policy.command('reload')
    .description('make the running control plane re-read its policy files; an invalid set is refused and the active one stays')
    .option('-c, --config <file>', 'config file', defaultConfig)
    .option('--data-dir <dir>', 'data directory holding the admin token')
    .action(async (o: { config: string; dataDir?: string }) => {
      const config = loadConfig(o.config);
      const client = AdminClient.fromDataDir(config.control.url, o.dataDir ? resolve(o.dataDir) : config.control.dataDir);
      try {
        const r = await client.call<{ version: string; changed: boolean; activateAt?: string }>('POST', '/v1/admin/policies/reload', {});
        console.log(r.changed ? `staged policy version ${r.version}: every data plane switches to it at ${r.activateAt ?? '?'}` : `unchanged: version ${r.version}${r.activateAt ? ` is staged for ${r.activateAt}` : ' is active'}`);
      } finally {
        await client.close();
      }
    });

  policy.command('dry-run')
    .description('report what the candidate set (policies.shadow) would have decided differently, from the audit logs')
    .option('-c, --config <file>', 'config file (its control.dataDir)', defaultConfig)
    .option('--data-dir <dir>', 'the data directory whose audit logs to read')
    .action((o: { config: string; dataDir?: string }) => {
      const dataDir = o.dataDir ? resolve(o.dataDir) : loadConfig(o.config).control.dataDir;
      const { decisions, changes } = shadowReport(join(dataDir, 'audit'));
      console.log(`${decisions} decisions read, ${[...changes.values()].reduce((a, n) => a + n, 0)} would change`);
      for (const [change, n] of [...changes].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(6)}  ${change}`);
    });
}

/** Users (and shared entities) for explain: a policy test file's, or an example's users.yaml. */
function loadUsersAndEntities(file: string): Pick<PolicyTestFile, 'users' | 'entities'> {
  const doc = parse(readFileSync(file, 'utf8')) as { users?: unknown; entities?: unknown } | null;
  if (doc && typeof doc === 'object' && 'users' in doc) {
    const t = readPolicyTestFile(file);
    return { users: t.users, entities: t.entities };
  }
  return { users: loadDemoUsers(file), entities: [] };
}

/** Decisions whose shadow (candidate) decision differs, grouped by where and what changed. */
export function shadowReport(auditDir: string): { decisions: number; changes: Map<string, number> } {
  const changes = new Map<string, number>();
  let decisions = 0;
  if (!existsSync(auditDir)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no audit logs in ${auditDir}`);
  for (const component of readdirSync(auditDir)) {
    const dir = join(auditDir, component);
    let names: string[];
    try { names = readdirSync(dir).filter((n) => SEGMENT_FILE.test(n)).sort(); } catch { continue; }
    for (const name of names) {
      for (const line of readFileSync(join(dir, name), 'utf8').split('\n')) {
        if (!line.startsWith('{')) continue;
        let e: DecisionEvent | undefined;
        try { e = (JSON.parse(line) as { event?: DecisionEvent }).event; } catch { continue; } // a torn line: verify reports it
        if (e?.type !== 'decision') continue;
        decisions++;
        if (!e.shadow) continue;
        const key = `${e.component} ${e.what.route ?? `${e.what.method} ${e.what.path}`}: ${e.decision}${e.reasons.length ? ` (${e.reasons.join(', ')})` : ''}`;
        const shadow = `${e.shadow.decision}${e.shadow.reasons.length ? ` (${e.shadow.reasons.join(', ')})` : ''}`;
        changes.set(`${key}  →  ${shadow}`, (changes.get(`${key}  →  ${shadow}`) ?? 0) + 1);
      }
    }
  }
  return { decisions, changes };
}
