import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * The one root logger. Modules take `logger.child({ component })`; client data goes under the
 * `client` key. Redact paths are fixed and explicit (wildcards cost more per line).
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  'token',
  'config.admin.tokens',
  'config.store.redis',
  'redis',
];

export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const config: LoggerOptions = {
    level: options.level ?? 'info',
    base: { service: 'portcullis' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return options.destination === undefined ? pino(config) : pino(config, options.destination);
}

/** For tests and one-shot commands that must print nothing but their result. */
export const silentLogger: Logger = pino({ level: 'silent' });
