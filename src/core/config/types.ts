// The validated, frozen shape of portcullis.yaml. The JSON Schema in schema/portcullis.schema.json
// is the source of truth for what a file may contain; loadConfig() fills defaults and freezes.

export type Credential = 'jwt';

export interface ServiceConfig {
  /** Unique name, also the DNS-like label other services use to call it through their sidecar. */
  name: string;
  /** spiffe://<trustDomain>/...; exactly the URI SAN of its workload certificate. */
  spiffeId: string;
  /** Where the service itself listens, plain HTTP on loopback, e.g. http://127.0.0.1:9101. */
  upstream: string;
  sidecar: {
    /** Inbound mTLS listener (host:port) that callers reach. */
    listen: string;
    /** Plain HTTP loopback listener (host:port) for the service's own outbound calls. */
    outbound: string;
  };
}

export interface RouteConfig {
  /** Stable id, used as the rule name in audit events. */
  id: string;
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path pattern; `{name}` matches one non-empty segment. */
  path: string;
  /** Name of the service the route forwards to. */
  service: string;
  /** Credentials accepted on this route; default [jwt]. */
  auth: Credential[];
  /** Roles any one of which may call; empty (the default) means any authenticated principal. */
  roles: string[];
}

export interface CallRuleConfig {
  /** Calling service name. */
  from: string;
  /** Called service name. */
  to: string;
  /** Operations allowed, each "METHOD /path/pattern". */
  operations: string[];
}

export interface PortcullisConfig {
  /** File the config came from (for messages). */
  source: string;
  /** SPIFFE trust domain; every spiffeId is under spiffe://<trustDomain>/. */
  trustDomain: string;
  control: {
    /** host:port the control plane listens on (HTTPS); default 127.0.0.1:8444. */
    listen: string;
    /** URL data planes and clients use to reach the control plane; default https://<control.listen>. */
    url: string;
    /** Directory of the embedded store, keys and logs: absolute, resolved against the config file's directory; default .portcullis. */
    dataDir: string;
  };
  tokens: {
    /** `iss` of access tokens; defaults to control.url. */
    issuer: string;
    /** `aud` the gateway requires; defaults to the gateway's public URL, https://<gateway.listen>. */
    audience: string;
    /** Access-token lifetime in seconds, 60..86400; default 900. */
    accessTokenTtl: number;
    /** Accepted clock skew in seconds for exp/nbf, 0..300; default 30. */
    clockSkew: number;
  };
  gateway: {
    /** host:port of the gateway's HTTPS listener; default 127.0.0.1:8443. */
    listen: string;
    /** Workload identity of the gateway; default spiffe://<trustDomain>/gateway. */
    spiffeId: string;
    /** DNS names and IP addresses the gateway's TLS certificate is valid for; default [localhost, 127.0.0.1]. */
    serverNames: string[];
    /** Upstream request timeout in milliseconds, 100..600000; default 15000. */
    upstreamTimeout: number;
  };
  /** At least one; names, spiffeIds and listen addresses are unique. */
  services: ServiceConfig[];
  /** Public routes of the gateway; default []. No two share a method and a path shape. */
  routes: RouteConfig[];
  /** Service-to-service calls allowed; default []. */
  calls: CallRuleConfig[];
}
