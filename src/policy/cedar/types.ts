// The Cedar engine's public contract. Values, entities and requests use Cedar's own JSON forms —
// the shapes cedar-wasm's isAuthorized accepts — so a request can be handed to the reference
// unchanged (differential tests, fallback policies, the authz benchmark adapter).
import type { ParsedPolicy } from './parse.js';
import type { Decision } from '../decision.js';

export type { Decision };

export interface EntityUid {
  type: string;
  id: string;
}

/** A Cedar value in JSON form: `{ __entity: uid }` for entities, `{ __extn: { fn, arg } }` for
 *  ip/decimal/datetime/duration; arrays are sets; other objects are records. */
export type CedarJson =
  | boolean
  | number
  | string
  | CedarJson[]
  | { __entity: EntityUid }
  | { __extn: { fn: string; arg: string } }
  | { [attr: string]: CedarJson };

export interface EntityJson {
  uid: EntityUid;
  attrs?: Record<string, CedarJson>;
  parents?: EntityUid[];
  tags?: Record<string, CedarJson>;
}

export interface AuthzRequest {
  principal: EntityUid;
  action: EntityUid;
  resource: EntityUid;
  context?: Record<string, CedarJson>;
}

/** One policy file's text; `file` names it in errors (file:line:col). */
export interface PolicySource {
  text: string;
  file?: string;
}

/** A template linked to concrete entities (Cedar template links). */
export interface TemplateLink {
  /** Id of the template (its @id annotation). */
  template: string;
  /** Id of the resulting policy. */
  id: string;
  principal?: EntityUid;
  resource?: EntityUid;
}

export interface LoadOptions {
  sources: PolicySource[];
  /** Cedar schema (human-readable `.cedarschema` text); when given, policies are validated in strict mode. */
  schema?: PolicySource;
  links?: TemplateLink[];
  /** Load-time warnings, e.g. a policy the compiler could not compile and hands to cedar-wasm. */
  onWarning?: (message: string) => void;
  /**
   * The sources already parsed (by a control plane, with this same parser): skips cedar-wasm at
   * load, so a data plane that never needs the fallback never instantiates it.
   */
  parsed?: ParsedPolicy[];
}
