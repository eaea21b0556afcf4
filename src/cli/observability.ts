// Metrics and trace export for one long-running role. Both subscribe to the event channels the
// pipeline publishes on; neither exists unless asked for (a metricsListen in the config, an OTLP
// endpoint in the environment), so an unobserved process pays nothing for them.
import type { PortcullisConfig } from '../core/config/types.js';
import type { Logger } from '../core/log.js';
import { PortcullisMetrics } from '../core/metrics/metrics.js';
import { startMetricsServer, type MetricsServer } from '../core/metrics/server.js';
import { otlpOptionsFromEnv } from '../core/tracing/otlp-env.js';
import { OtlpTraceExporter } from '../core/tracing/otlp-exporter.js';
import { isLoopback } from '../dataplane/addr.js';
import type { WorkloadCredentials } from '../dataplane/workload-identity.js';

/** What the expiry gauge needs of a WorkloadIdentity. */
export interface RotatingIdentity {
  current(): WorkloadCredentials;
  on(event: 'rotated', listener: (c: WorkloadCredentials) => void): unknown;
}

export interface Observability {
  /** Present when the role has a metrics listener. */
  metrics: PortcullisMetrics | undefined;
  /** The port /metrics is served on (the configured one, or the one picked for port 0). */
  metricsPort: number | undefined;
  /** Present when an OTLP endpoint is configured. */
  exporter: OtlpTraceExporter | undefined;
  /** Keeps the certificate expiry gauge current: now and on every rotation. */
  watchIdentity(identity: RotatingIdentity): void;
  close(): Promise<void>;
}

export interface ObservabilityOptions {
  config: PortcullisConfig;
  /** `control`, `gateway` or `sidecar-<service>`: the default OTEL service.name is `portcullis-<role>`. */
  role: string;
  /** host:port of the /metrics listener; undefined = no metrics. */
  metricsListen: string | undefined;
  logger: Logger;
  env?: Readonly<Record<string, string | undefined>>;
}

export async function startObservability(o: ObservabilityOptions): Promise<Observability> {
  const { logger } = o;
  // The environment is checked first, so a bad OTEL_* value stops the role before it binds a port.
  const { options, warnings } = otlpOptionsFromEnv(o.env ?? process.env, `portcullis-${o.role}`);
  let metrics: PortcullisMetrics | undefined;
  let server: MetricsServer | undefined;
  if (o.metricsListen !== undefined) {
    metrics = new PortcullisMetrics({ config: o.config });
    try {
      server = await startMetricsServer(o.metricsListen, metrics);
    } catch (err) {
      metrics.close();
      throw err;
    }
    if (!isLoopback(server.host)) {
      logger.warn({ metricsListen: o.metricsListen }, 'the /metrics listener is not on loopback: it is plain HTTP without authentication; expose it to the scraper only');
    }
    const host = server.host.includes(':') ? `[${server.host}]` : server.host;
    logger.info({ metrics: `http://${host}:${server.port}/metrics` }, 'metrics listener ready');
  }

  let exporter: OtlpTraceExporter | undefined;
  for (const w of warnings) logger.warn(w);
  if (options) {
    exporter = new OtlpTraceExporter({ ...options, logger });
    exporter.start();
    const running = exporter;
    metrics?.watchSpanExport(() => running.stats());
    const u = new URL(options.url);
    logger.info({ collector: `${u.origin}${u.pathname}`, serviceName: options.serviceName }, 'trace export on (OTLP/HTTP JSON)');
  }

  return {
    metrics,
    metricsPort: server?.port,
    exporter,
    watchIdentity(identity) {
      if (!metrics) return;
      const m = metrics;
      const c = identity.current();
      m.setCertificateExpiry(c.spiffeId, c.notAfter);
      identity.on('rotated', (next) => m.setCertificateExpiry(next.spiffeId, next.notAfter));
    },
    async close() {
      await exporter?.shutdown();
      await server?.close();
      metrics?.close();
    },
  };
}
