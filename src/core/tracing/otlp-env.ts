// Trace export is configured the OpenTelemetry way, by environment variables, so the same
// collector settings work for Portcullis and for the services behind it. Every value is checked;
// a bad one stops the process at start rather than silently losing traces.
import { PortcullisError } from '../errors.js';
import type { OtlpExporterOptions } from './otlp-exporter.js';

/** Defaults of the OpenTelemetry batch span processor (OTEL_BSP_*), as its specification sets them. */
export const OTLP_DEFAULTS = {
  maxQueueSize: 2048,
  maxBatchSize: 512,
  scheduleDelayMs: 5000,
  /** OTEL_EXPORTER_OTLP_TIMEOUT's default: an export abandoned after this costs its spans, never a request. */
  timeoutMs: 10_000,
} as const;

type Env = Readonly<Record<string, string | undefined>>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${name} must be an integer from ${min} to ${max}`);
  return n;
}

function httpUrl(name: string, raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${name} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${name} must be an http:// or https:// URL`);
  if (url.username || url.password) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${name} must not carry credentials; use OTEL_EXPORTER_OTLP_HEADERS`);
  return url;
}

/** `k1=v1,k2=v2` with percent-encoded values (the OTLP exporter spec); values never appear in errors. */
function parseHeaders(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!raw) return out;
  for (const pair of raw.split(',')) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    const key = pair.slice(0, eq).trim().toLowerCase();
    if (eq < 1 || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(key)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'OTEL_EXPORTER_OTLP_HEADERS must be a list of name=value pairs');
    let value: string;
    try {
      value = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OTEL_EXPORTER_OTLP_HEADERS: the value of ${key} is not percent-encoded correctly`);
    }
    if (/[\r\n\0]/.test(value)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OTEL_EXPORTER_OTLP_HEADERS: the value of ${key} contains a control character`);
    out[key] = value;
  }
  return out;
}

/**
 * The exporter's options from the environment, or undefined when trace export is off: neither
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) nor OTEL_EXPORTER_OTLP_ENDPOINT (to which
 * `/v1/traces` is appended) is set, or OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none.
 * Only OTLP/HTTP with JSON bodies is spoken; `warnings` says when the environment asks for more.
 */
export function otlpOptionsFromEnv(env: Env, defaultServiceName: string): { options?: Omit<OtlpExporterOptions, 'logger'>; warnings: string[] } {
  const warnings: string[] = [];
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true' || env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === 'none') return { warnings };
  const tracesEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  const endpoint = env.OTEL_EXPORTER_OTLP_ENDPOINT;
  let url: URL;
  if (tracesEndpoint) {
    url = httpUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', tracesEndpoint);
  } else if (endpoint) {
    url = httpUrl('OTEL_EXPORTER_OTLP_ENDPOINT', endpoint);
    url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/traces`;
  } else {
    return { warnings };
  }
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL;
  if (protocol !== undefined && protocol !== '' && protocol !== 'http/json') {
    warnings.push(`OTLP protocol "${protocol.slice(0, 32)}" requested, but Portcullis exports OTLP/HTTP with JSON bodies only (the collector's HTTP receiver accepts it)`);
  }
  const maxQueueSize = integer(env, 'OTEL_BSP_MAX_QUEUE_SIZE', OTLP_DEFAULTS.maxQueueSize, 1, 1_000_000);
  const options: Omit<OtlpExporterOptions, 'logger'> = {
    url: url.toString(),
    headers: { ...parseHeaders(env.OTEL_EXPORTER_OTLP_HEADERS), ...parseHeaders(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS) },
    serviceName: env.OTEL_SERVICE_NAME?.trim() || defaultServiceName,
    maxQueueSize,
    // The spec caps a batch at the queue size.
    maxBatchSize: Math.min(maxQueueSize, integer(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', OTLP_DEFAULTS.maxBatchSize, 1, 1_000_000)),
    scheduleDelayMs: integer(env, 'OTEL_BSP_SCHEDULE_DELAY', OTLP_DEFAULTS.scheduleDelayMs, 1, 3_600_000),
    timeoutMs: integer(env, 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', integer(env, 'OTEL_EXPORTER_OTLP_TIMEOUT', OTLP_DEFAULTS.timeoutMs, 1, 600_000), 1, 600_000),
  };
  return { options, warnings };
}
