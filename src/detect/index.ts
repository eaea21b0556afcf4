// Detection: rules over the audit event stream, alerts to sinks, optional block requests.
export { Detector, connectDetector, type DetectorDeps, type DetectorStats } from './detector.js';
export { RULE_DEFAULTS, defaultDetectionConfig, resolveDetectionConfig, type ResolvedRule } from './config.js';
export {
  AuditAlertSink, DETECT_COMPONENT, LogAlertSink, WebhookAlertSink, signWebhook, verifyWebhookSignature,
  type AlertSink, type WebhookAlertSinkOptions, type WebhookSinkStats,
} from './sinks.js';
export { matchSignatures } from '../core/attack-signatures.js';
export type { ExpiringItem } from './rules/index.js';
export * from './types.js';
