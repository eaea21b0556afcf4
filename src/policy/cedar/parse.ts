// cedar-wasm at load time: the parser and validator we trust, wrapped so every failure becomes a
// PCL_ERR_POLICY_INVALID located as file:line:col, and every policy gets its JSON form (EST),
// its text, its id and its location.
//
// Policy ids: the `@id("...")` annotation when present, else `policy<N>`, N counting every
// policy and template across all sources in order from 0. cedar-wasm names the policies of a
// text `policy0`, `policy1`, ... in the same way (it ignores @id), so for a set without @id
// annotations the ids match cedar-wasm's for the concatenated sources.
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import type * as CedarWasm from '@cedar-policy/cedar-wasm/nodejs';
import { PortcullisError } from '../../core/errors.js';
import type { EntityUid, PolicySource, TemplateLink } from './types.js';

let loaded: typeof CedarWasm | undefined;

/** Whether this process has loaded cedar-wasm (a data plane on a parsed bundle should not have). */
export function cedarWasmLoaded(): boolean {
  return loaded !== undefined;
}

/**
 * cedar-wasm, loaded on first use: a data plane compiling a bundle its control plane already
 * parsed never needs it, and never pays its memory (tens of MB once the Wasm heap has grown).
 */
export const cedar = new Proxy({} as typeof CedarWasm, {
  get(_target, name) {
    if (!loaded) {
      // Node 20's V8 inlines JS→Wasm calls into optimized code, and deoptimizing such a frame
      // crashes the process ("unreachable code" in DoComputeBuiltinContinuation): seen here with
      // a hot loop of cedar-wasm calls, gone with this flag. Set before cedar-wasm is loaded.
      setFlagsFromString('--no-turbo-inline-js-wasm-calls');
      // cedar-wasm's Node build is CommonJS; `typeof` import keeps its declared types.
      loaded = createRequire(import.meta.url)('@cedar-policy/cedar-wasm/nodejs') as typeof CedarWasm;
    }
    return loaded[name as keyof typeof CedarWasm];
  },
});

export type PolicyJson = CedarWasm.PolicyJson;
export type Expr = CedarWasm.Expr;
export type CedarPolicySet = CedarWasm.PolicySet;
export type DetailedError = CedarWasm.DetailedError;
export type WasmEntityJson = CedarWasm.EntityJson;
export type WasmValueJson = CedarWasm.CedarValueJson;

export interface ParsedPolicy {
  id: string;
  kind: 'static' | 'template';
  /** The policy's own text, exactly as written (annotations included). */
  text: string;
  est: PolicyJson;
  annotations: Record<string, string>;
  file: string;
  line: number;
  col: number;
  /** Where the text starts in its source, in UTF-8 bytes (cedar-wasm's unit). */
  byteStart: number;
  source: string;
}

function invalid(message: string, cause?: unknown): PortcullisError {
  return new PortcullisError('PCL_ERR_POLICY_INVALID', message, cause === undefined ? undefined : { cause });
}

/** 1-based line and column of a UTF-8 byte offset; the column counts characters. */
export function locate(text: string, byteOffset: number): { line: number; col: number } {
  const buf = Buffer.from(text, 'utf8');
  const before = buf.subarray(0, Math.max(0, Math.min(byteOffset, buf.length))).toString('utf8');
  const nl = before.lastIndexOf('\n');
  let line = 1;
  for (let i = before.indexOf('\n'); i >= 0; i = before.indexOf('\n', i + 1)) line++;
  return { line, col: [...before.slice(nl + 1)].length + 1 };
}

function describe(e: DetailedError): string {
  return e.help ? `${e.message} (${e.help})` : e.message;
}

/** file:line:col: message for a cedar-wasm error whose offsets count from `base` in `text`. */
function located(file: string, text: string, e: DetailedError, base = 0): string {
  const off = e.sourceLocations?.[0]?.start;
  const { line, col } = off === undefined ? { line: 1, col: 1 } : locate(text, base + off);
  return `${file}:${line}:${col}: ${describe(e)}`;
}

/** Walks a source forwards, keeping byte offset, line and column (linear over a whole file). */
class Cursor {
  #pos = 0;
  #byte = 0;
  #line = 1;
  #lineStart = 0;
  constructor(private readonly text: string) {}

  advance(to: number): { byteStart: number; line: number; col: number } {
    const piece = this.text.slice(this.#pos, to);
    this.#byte += Buffer.byteLength(piece, 'utf8');
    for (let i = piece.indexOf('\n'); i >= 0; i = piece.indexOf('\n', i + 1)) {
      this.#line++;
      this.#lineStart = this.#pos + i + 1;
    }
    this.#pos = to;
    return { byteStart: this.#byte, line: this.#line, col: [...this.text.slice(this.#lineStart, to)].length + 1 };
  }
}

interface Chunk {
  text: string;
  start: number;
}

/** Unicode White_Space, what Cedar's lexer skips (U+FEFF is not in it). */
const WHITESPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/;

/** Splits a policy file that cedar-wasm accepted into its policies. A policy ends at the first
 *  `;` outside string literals and `//` comments; leading blanks and comments are not part of it,
 *  matching the text cedar-wasm keeps for each policy. */
function splitPolicies(src: string): Chunk[] {
  const out: Chunk[] = [];
  let start = -1;
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === '/' && src[i + 1] === '/') {
      while (i < src.length && src[i] !== '\n' && src[i] !== '\r') i++; // Cedar ends a comment at either
      continue;
    }
    if (WHITESPACE.test(c ?? '')) {
      i++;
      continue;
    }
    if (start < 0) start = i;
    if (c === '"') {
      i++;
      while (i < src.length && src[i] !== '"') i += src[i] === '\\' ? 2 : 1;
      i++;
      continue;
    }
    if (c === ';') {
      out.push({ text: src.slice(start, i + 1), start });
      start = -1;
    }
    i++;
  }
  return out;
}

/** Parses every source; throws PCL_ERR_POLICY_INVALID with file:line:col on any error. */
export function parseSources(sources: readonly PolicySource[]): ParsedPolicy[] {
  const out: ParsedPolicy[] = [];
  const seen = new Map<string, ParsedPolicy>();
  sources.forEach((src, si) => {
    const file = src.file ?? `<policy source ${si}>`;
    const parts = cedar.policySetTextToParts(src.text);
    if (parts.type === 'failure') {
      const first = parts.errors[0];
      throw invalid(first ? located(file, src.text, first) : `${file}:1:1: policy text does not parse`);
    }
    const chunks = splitPolicies(src.text);
    const statics = new Map<string, number>();
    const templates = new Map<string, number>();
    for (const t of parts.policies) statics.set(t, (statics.get(t) ?? 0) + 1);
    for (const t of parts.policy_templates) templates.set(t, (templates.get(t) ?? 0) + 1);
    if (chunks.length !== parts.policies.length + parts.policy_templates.length) {
      throw invalid(`${file}:1:1: internal error: policy boundaries disagree with cedar-wasm`);
    }
    const cursor = new Cursor(src.text);
    for (const chunk of chunks) {
      const { byteStart, line, col } = cursor.advance(chunk.start);
      const where = `${file}:${line}:${col}`;
      let kind: 'static' | 'template';
      if ((statics.get(chunk.text) ?? 0) > 0) {
        kind = 'static';
        statics.set(chunk.text, (statics.get(chunk.text) ?? 0) - 1);
      } else if ((templates.get(chunk.text) ?? 0) > 0) {
        kind = 'template';
        templates.set(chunk.text, (templates.get(chunk.text) ?? 0) - 1);
      } else {
        throw invalid(`${where}: internal error: policy text disagrees with cedar-wasm`);
      }
      const json = kind === 'static' ? cedar.policyToJson(chunk.text) : cedar.templateToJson(chunk.text);
      if (json.type === 'failure') {
        const first = json.errors[0];
        throw invalid(first ? located(file, src.text, first, byteStart) : `${where}: policy does not parse`);
      }
      const annotations: Record<string, string> = {};
      for (const [k, v] of Object.entries(json.json.annotations ?? {})) annotations[k] = v ?? '';
      const n = out.length;
      let id = `policy${n}`;
      if (Object.hasOwn(annotations, 'id')) {
        id = annotations.id ?? '';
        if (id === '') throw invalid(`${where}: @id needs a non-empty value`);
      }
      const prior = seen.get(id);
      if (prior) throw invalid(`${where}: duplicate policy id "${id}" (first at ${prior.file}:${prior.line}:${prior.col})`);
      const est = exactIntegers(json.json, chunk.text);
      const p: ParsedPolicy = { id, kind, text: chunk.text, est, annotations, file, line, col, byteStart, source: src.text };
      seen.set(id, p);
      out.push(p);
    }
  });
  return out;
}

/** The integer literals of a policy's text (strings, comments and identifiers skipped). */
function integerTokens(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 47 && text.charCodeAt(i + 1) === 47) {
      while (i < text.length && text[i] !== '\n' && text[i] !== '\r') i++;
    } else if (c === 34) {
      i++;
      while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
    } else if (c >= 48 && c <= 57) {
      const start = i;
      while (i < text.length && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
      out.push(text.slice(start, i));
    } else if (c === 95 || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)) {
      while (i < text.length && /[_a-zA-Z0-9]/.test(text[i] ?? '')) i++;
    } else i++;
  }
  return out;
}

const BINARY = new Set(['==', '!=', 'in', '<', '<=', '>', '>=', '&&', '||', '+', '-', '*', 'contains', 'containsAll', 'containsAny', 'getTag', 'hasTag']);

function hasNumber(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  if (typeof (e as { Value?: unknown }).Value === 'number') return true;
  return Object.values(e).some(hasNumber);
}

/** The number nodes of an expression in source order, or undefined when that order is lost
 *  (cedar-wasm sorts record keys, so two numbered fields of one record). */
function numbersInOrder(e: unknown, out: Array<{ Value: number }>): boolean {
  if (typeof e !== 'object' || e === null) return true;
  const [op, node] = Object.entries(e)[0] ?? [];
  const n = node as Record<string, unknown>;
  if (op === 'Value') {
    if (typeof node === 'number') out.push(e as { Value: number });
    return true;
  }
  if (op === undefined || op === 'Var' || op === 'Slot') return true;
  const children = (...keys: string[]) => keys.every((k) => numbersInOrder(n[k], out));
  if (BINARY.has(op)) return children('left', 'right');
  switch (op) {
    case '!':
    case 'neg':
    case 'isEmpty':
      return children('arg');
    case '.':
    case 'has':
    case 'like':
      return children('left');
    case 'is':
      return children('left', 'in');
    case 'if-then-else':
      return children('if', 'then', 'else');
    case 'Record':
      return Object.values(n).filter(hasNumber).length <= 1 && Object.values(n).every((x) => numbersInOrder(x, out));
    default:
      // Sets and extension calls (receiver first) keep source order.
      return Array.isArray(node) && node.every((x) => numbersInOrder(x, out));
  }
}

/**
 * The EST carries numbers as JS numbers, so a literal beyond 2^53 arrives rounded; its exact
 * value is recovered from the policy's text and the node becomes `{ Long: "<digits>" }`. First by
 * value: the one literal that rounds to it. When two literals round to the same number, by
 * position: the number nodes and the literals, both in source order, must pair up. Otherwise the
 * EST is left as it is and the compiler hands the policy to cedar-wasm.
 */
export function exactIntegers(est: PolicyJson, text: string): PolicyJson {
  const tokens = integerTokens(text);
  const candidates = new Map<number, Set<bigint>>();
  for (const tok of tokens) {
    const f = Number(tok);
    if (Number.isSafeInteger(f)) continue;
    let set = candidates.get(f);
    if (!set) candidates.set(f, (set = new Set()));
    set.add(BigInt(tok));
  }
  if (candidates.size === 0) return est;
  const exact = new Map<object, bigint>();
  const all: Array<{ Value: number }> = [];
  const collect = (e: unknown): void => {
    if (typeof e !== 'object' || e === null) return;
    if (typeof (e as { Value?: unknown }).Value === 'number') all.push(e as { Value: number });
    else for (const x of Object.values(e)) collect(x);
  };
  est.conditions.forEach((c) => collect(c.body));
  const ordered: Array<{ Value: number }> = [];
  const inOrder =
    est.conditions.every((c) => numbersInOrder(c.body, ordered)) &&
    ordered.length === tokens.length &&
    ordered.every((node, i) => Number(tokens[i]) === Math.abs(node.Value));
  for (const node of all) {
    const v = node.Value;
    if (Number.isSafeInteger(v)) continue;
    const byValue = candidates.get(Math.abs(v));
    let magnitude: bigint | undefined;
    if (byValue?.size === 1) [magnitude] = byValue;
    else if (inOrder) {
      const tok = tokens[ordered.indexOf(node)];
      if (tok !== undefined && Number(tok) === Math.abs(v)) magnitude = BigInt(tok);
    }
    if (magnitude !== undefined) exact.set(node, v < 0 ? -magnitude : magnitude);
  }
  if (exact.size === 0) return est;
  const walk = (e: unknown): unknown => {
    if (typeof e !== 'object' || e === null) return e;
    const x = exact.get(e);
    if (x !== undefined) return { Long: String(x) };
    if (Array.isArray(e)) return e.map(walk);
    return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, walk(v)]));
  };
  return { ...est, conditions: est.conditions.map((c) => ({ ...c, body: walk(c.body) as Expr })) };
}

export interface ResolvedLink {
  link: TemplateLink;
  template: ParsedPolicy;
}

function slotsOf(est: PolicyJson): Set<string> {
  const slots = new Set<string>();
  for (const c of [est.principal, est.resource]) {
    if ('slot' in c) slots.add(c.slot);
    if (c.op === 'is' && c.in && 'slot' in c.in) slots.add(c.in.slot);
  }
  return slots;
}

function validUid(u: EntityUid | undefined): boolean {
  return (
    u !== undefined &&
    typeof u.type === 'string' &&
    typeof u.id === 'string' &&
    u.type.split('::').every((p) => /^[_a-zA-Z][_a-zA-Z0-9]*$/.test(p))
  );
}

/** Checks each link names a template, fills exactly its slots, and has a fresh id. */
export function resolveLinks(policies: readonly ParsedPolicy[], links: readonly TemplateLink[]): ResolvedLink[] {
  const byId = new Map(policies.map((p) => [p.id, p]));
  const linkIds = new Set<string>();
  return links.map((link, i) => {
    const template = byId.get(link.template);
    const at = template ? `${template.file}:${template.line}:${template.col}` : `<links>:${i + 1}:1`;
    const fail = (m: string) => invalid(`${at}: template link "${link.id}": ${m}`);
    if (!template) throw fail(`no template with id "${link.template}"`);
    if (template.kind !== 'template') throw fail(`"${link.template}" is a static policy, not a template`);
    if (typeof link.id !== 'string' || link.id === '') throw fail('the link needs an id');
    if (byId.has(link.id) || linkIds.has(link.id)) throw fail(`id "${link.id}" is already in use`);
    linkIds.add(link.id);
    const slots = slotsOf(template.est);
    for (const slot of ['?principal', '?resource'] as const) {
      const value = slot === '?principal' ? link.principal : link.resource;
      if (slots.has(slot) && value === undefined) throw fail(`slot ${slot} needs a value`);
      if (!slots.has(slot) && value !== undefined) throw fail(`the template has no slot ${slot}`);
      if (value !== undefined && !validUid(value)) throw fail(`slot ${slot} is not a valid entity uid`);
    }
    return { link, template };
  });
}

/** The policy set in cedar-wasm's form, under our ids. */
export function toCedarPolicySet(policies: readonly ParsedPolicy[], links: readonly ResolvedLink[]): CedarPolicySet {
  const staticPolicies: Record<string, string> = {};
  const templates: Record<string, string> = {};
  for (const p of policies) (p.kind === 'static' ? staticPolicies : templates)[p.id] = p.text;
  const templateLinks = links.map(({ link }) => {
    const values: Record<string, EntityUid> = {};
    if (link.principal) values['?principal'] = { type: link.principal.type, id: link.principal.id };
    if (link.resource) values['?resource'] = { type: link.resource.type, id: link.resource.id };
    return { templateId: link.template, newId: link.id, values };
  });
  return { staticPolicies, templates, templateLinks };
}

/** Asks cedar-wasm to build the set as a last check (links, ids). */
export function checkPolicySet(set: CedarPolicySet): void {
  const r = cedar.checkParsePolicySet(set);
  if (r.type === 'failure') throw invalid(`<policy set>:1:1: ${r.errors.map(describe).join('; ')}`);
}

/** Strict validation against a Cedar schema; any validation error refuses the set. */
export function validateStrict(schema: PolicySource, set: CedarPolicySet, policies: readonly ParsedPolicy[], links: readonly ResolvedLink[]): void {
  const schemaFile = schema.file ?? '<schema>';
  const r = cedar.validate({ schema: schema.text, policies: set, validationSettings: { mode: 'strict' } });
  if (r.type === 'failure') {
    const first = r.errors[0];
    throw invalid(first ? located(schemaFile, schema.text, first) : `${schemaFile}:1:1: schema does not parse`);
  }
  if (r.validationErrors.length === 0) return;
  const byId = new Map<string, ParsedPolicy>(policies.map((p) => [p.id, p]));
  for (const l of links) byId.set(l.link.id, l.template);
  const messages = r.validationErrors.map((v) => {
    const p = byId.get(v.policyId);
    if (!p) return { key: [Infinity, 0] as const, text: `<policy set>:1:1: ${describe(v.error)}` };
    const off = v.error.sourceLocations?.[0]?.start ?? 0;
    return { key: [policies.indexOf(p), off] as const, text: located(p.file, p.source, v.error, p.byteStart) };
  });
  messages.sort((a, b) => a.key[0] - b.key[0] || a.key[1] - b.key[1]);
  throw invalid(messages.map((m) => m.text).join('\n'));
}
