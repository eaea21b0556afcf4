// How Portcullis turns a request into a Cedar request, the same way at every place that decides:
// the gateway (a user calling a route), the sidecar (a workload calling an operation of a service)
// and the SDK (a user acting on a resource the service loaded). docs/policy.md documents the model
// for policy authors; this module is its only implementation.
import { isoTime } from '../core/clock.js';
import { rememberLast } from '../core/remember-last.js';
import type { AttrValue } from '../core/principal.js';
import type { AuthzRequest, CedarJson, EntityJson, EntityUid } from './cedar/types.js';

/** A user attribute as it travels in the token's `attrs` claim. */
export type UserAttr = AttrValue;

export interface UserPrincipal {
  sub: string;
  roles: readonly string[];
  attrs?: Readonly<Record<string, UserAttr>>;
}

/** Attribute names the model sets itself; a user attribute may not shadow them. */
const RESERVED_ATTRS = new Set(['roles']);

export const uid = (type: string, id: string): EntityUid => ({ type, id });

/** `User::"<sub>"` with its roles as parents (`principal in Role::"doctor"`) and as a set attribute. */
export function userEntities(p: UserPrincipal): EntityJson[] {
  const attrs: Record<string, CedarJson> = {};
  for (const [k, v] of Object.entries(p.attrs ?? {})) {
    if (!RESERVED_ATTRS.has(k)) attrs[k] = Array.isArray(v) ? [...v] : v;
  }
  attrs.roles = [...p.roles];
  return [
    { uid: uid('User', p.sub), attrs, parents: p.roles.map((r) => uid('Role', r)) },
    ...p.roles.map((r) => ({ uid: uid('Role', r), attrs: {}, parents: [] })),
  ];
}

/** `context.time`: hour, minute and weekday (0 = Sunday) in the configured time zone. */
export interface TimeOfDay {
  hour: number;
  minute: number;
  weekday: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** The UTC time of day of a minute since the epoch: the answer changes once a minute, so the last one is remembered. */
const utcTimeOfMinute = rememberLast((minute: number): TimeOfDay => {
  const d = new Date(minute * 60_000);
  return { hour: d.getUTCHours(), minute: d.getUTCMinutes(), weekday: d.getUTCDay() };
});

export function timeOfDay(nowMs: number, timeZone = 'UTC'): TimeOfDay {
  if (timeZone === 'UTC') return { ...utcTimeOfMinute(Math.floor(nowMs / 60_000)) }; // a copy: the caller may change it
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', hour: 'numeric', minute: 'numeric', weekday: 'short' });
    formatters.set(timeZone, f);
  }
  const parts = Object.fromEntries(f.formatToParts(nowMs).map((x) => [x.type, x.value]));
  return { hour: Number(parts.hour), minute: Number(parts.minute), weekday: WEEKDAYS.indexOf(parts.weekday ?? '') };
}

const extn = (fn: string, arg: string): CedarJson => ({ __extn: { fn, arg } });

export interface RouteRequestInput {
  route: { id: string; service: string };
  principal: UserPrincipal;
  method: string;
  /** The canonical path the gateway authorized and forwards. */
  path: string;
  params: Readonly<Record<string, string>>;
  /** Source address from the socket (or a trusted proxy). */
  sourceIp: string;
  nowMs: number;
  timeZone?: string;
}

/** The gateway's question: may this user call this route? Action and resource are the route. */
export function routeRequest(i: RouteRequestInput): { request: AuthzRequest; entities: EntityJson[] } {
  return { request: routeAuthzRequest(i, i.timeZone), entities: routeEntities(i.route, i.principal) };
}

/** The entities of a route request: the user, their roles, the route. The same for every call of one user to one route. */
export function routeEntities(route: RouteRequestInput['route'], principal: UserPrincipal): EntityJson[] {
  return [...userEntities(principal), { uid: uid('Route', route.id), attrs: { service: route.service }, parents: [] }];
}

/**
 * The request part of routeRequest: principal, action, resource and the context of this call. The
 * engine reads the context into values of its own, so `params` is passed as is, not copied.
 */
export function routeAuthzRequest(i: Omit<RouteRequestInput, 'timeZone'>, timeZone?: string): AuthzRequest {
  return {
    principal: uid('User', i.principal.sub),
    action: uid('Action', i.route.id),
    resource: uid('Route', i.route.id),
    context: {
      time: { ...timeOfDay(i.nowMs, timeZone) },
      now: extn('datetime', isoTime(i.nowMs)),
      sourceIp: extn('ip', i.sourceIp),
      method: i.method,
      path: i.path,
      params: i.params as Record<string, string>, // read, never written
    },
  };
}

/** Action group of an operation by its method: `action in Action::"read"` / `Action::"write"`. */
export function operationGroup(method: string): 'read' | 'write' {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS' ? 'read' : 'write';
}

/** The action id of a service operation: "METHOD /path/{pattern}" as declared in the config. */
export const operationId = (method: string, pattern: string): string => `${method} ${pattern}`;

export interface CallRequestInput {
  /** Called service name. */
  service: string;
  /** SPIFFE ID of the calling workload (from its certificate). */
  caller: string;
  method: string;
  /** The declared operation pattern the path matched, or undefined when it matched none. */
  pattern: string | undefined;
  path: string;
  params: Readonly<Record<string, string>>;
  /** The end user on whose behalf the gateway calls, when it does. */
  user?: string;
}

/** The sidecar's question: may this workload call this operation of this service? */
export function callRequest(i: CallRequestInput): { request: AuthzRequest; entities: EntityJson[] } {
  // An undeclared operation still gets an action (in its method's group), so forbid rules such as
  // "nothing may write to grades" hold for paths no one declared.
  const action = uid('Action', operationId(i.method, i.pattern ?? i.path));
  return {
    request: {
      principal: uid('Workload', i.caller),
      action,
      resource: uid('Service', i.service),
      context: { method: i.method, path: i.path, params: { ...i.params }, ...(i.user !== undefined ? { user: i.user } : {}) },
    },
    entities: [
      { uid: action, attrs: {}, parents: [uid('Action', operationGroup(i.method))] },
      { uid: uid('Action', 'read'), attrs: {}, parents: [] },
      { uid: uid('Action', 'write'), attrs: {}, parents: [] },
      { uid: uid('Workload', i.caller), attrs: {}, parents: [] },
      { uid: uid('Service', i.service), attrs: {}, parents: [] },
    ],
  };
}
