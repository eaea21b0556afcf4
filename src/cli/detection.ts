// Threat detection in a running role: the detector over this process's audit events, alerting to
// the log, the audit log and (when configured) a signed webhook, and asking for blocks.
import type { PortcullisConfig } from '../core/config/types.js';
import { PortcullisError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import {
  AuditAlertSink, connectDetector, defaultDetectionConfig, Detector, LogAlertSink, WebhookAlertSink,
  type AlertSink, type BlockRequest, type ExpiringItem, type RuleConfig,
} from '../detect/index.js';

export interface DetectionHandle {
  detector: Detector;
  stop(): Promise<void>;
}

/** The webhook secret from its environment variable: `whsec_<base64>` (Standard Webhooks) or base64. */
export function webhookSecret(envName: string): Uint8Array {
  const raw = process.env[envName];
  if (!raw) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `detection.webhook.secretEnv names ${envName}, which is not set`);
  return Buffer.from(raw.startsWith('whsec_') ? raw.slice(6) : raw, 'base64');
}

export function startDetection(o: {
  config: PortcullisConfig;
  logger: Logger;
  clock?: Clock;
  block?: (b: BlockRequest) => void | Promise<void>;
  expiring?: () => ExpiringItem[];
}): DetectionHandle | undefined {
  const d = o.config.detection;
  if (!d.enabled) return undefined;
  const clock = o.clock ?? systemClock;
  const sinks: AlertSink[] = [new LogAlertSink(o.logger), new AuditAlertSink()];
  const webhook = d.webhook ? new WebhookAlertSink({ url: d.webhook.url, secret: webhookSecret(d.webhook.secretEnv), clock, logger: o.logger }) : undefined;
  if (webhook) sinks.push(webhook);
  const detector = new Detector({ rules: (d.rules as RuleConfig[] | undefined) ?? defaultDetectionConfig().rules }, {
    clock, sinks, gatewaySpiffeId: o.config.gateway.spiffeId, logger: o.logger,
    ...(o.block ? { block: o.block } : {}), ...(o.expiring ? { expiring: o.expiring } : {}),
  });
  const disconnect = connectDetector(detector, clock);
  return {
    detector,
    stop: async () => {
      disconnect();
      await webhook?.close();
    },
  };
}
