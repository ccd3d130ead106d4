import type { Params } from 'nestjs-pino';
import type { AppConfig } from '../config/app-config.js';

/** Paths whose values never reach a log line (tokens, secrets, signatures, keys). */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-hub-signature"]',
  'req.headers["x-hub-signature-256"]',
  'req.headers["x-gitlab-token"]',
  'res.headers["set-cookie"]',
  '*.accessToken',
  '*.refreshToken',
  '*.token',
  '*.password',
  '*.secret',
  '*.key',
  '*.plaintextKey',
  'accessToken',
  'password',
  'token',
  'secret',
];

/** pino options shared by the API and the worker: JSON lines, secrets redacted. */
export function pinoOptions(config: AppConfig, name: string) {
  return {
    name,
    level: config.log.level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    transport: config.log.pretty ? { target: 'pino-pretty', options: { singleLine: true } } : undefined,
  };
}

/** A request URL fit for a log line: credentials and one-time values in the query are replaced. */
export function redactUrl(url: string): string {
  return url.replace(/([?&](?:token|code|state|access_token|refresh_token)=)[^&]*/gi, '$1[redacted]');
}

export function httpLoggerParams(config: AppConfig): Params {
  return {
    pinoHttp: {
      ...pinoOptions(config, 'reposync-api'),
      // The request id comes from Fastify (x-request-id or a generated uuid).
      genReqId: (req) => (req as { id?: string }).id ?? '',
      customProps: () => ({}),
      serializers: {
        req: (req: { id: string; method: string; url: string }) => ({
          id: req.id,
          method: req.method,
          url: redactUrl(req.url),
        }),
      },
      // One line per request comes from the Fastify onResponse hook in api.ts (the middleware route
      // binding does not reach Fastify routes here).
      autoLogging: false,
    },
  };
}
