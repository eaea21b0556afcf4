// JSON logs (pino). Redaction is a second line of defence: code must not log secrets at all.
import { pino, type Logger } from 'pino';

export type { Logger };

const REDACT = [
  'authorization', '*.authorization', 'headers.authorization', 'headers.cookie',
  'token', '*.token', 'password', '*.password', 'secret', '*.secret', 'privateKey', '*.privateKey',
  'code_verifier', '*.code_verifier', 'client_secret', '*.client_secret',
];

export function createLogger(component: string, level = process.env.PORTCULLIS_LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { component, pid: process.pid },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** A logger that drops everything, for tests and library callers that bring none. */
export const silentLogger: Logger = pino({ level: 'silent' });
