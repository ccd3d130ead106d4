import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Logger as NestLogger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyInstance } from 'fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { Logger } from 'nestjs-pino';
import { AppModule } from './app.module.js';
import type { AppConfig } from './config/app-config.js';
import { redactUrl } from './common/logging.js';
import { createValidationPipe } from './common/validation.js';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
/** Largest JSON body of a REST request; webhooks get BODY_LIMIT_BYTES (hosts send up to 25 MB). */
const API_BODY_LIMIT_BYTES = 1024 * 1024;

class BodyError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * One JSON parser for every route: webhook bodies stay raw bytes (their signature is checked over exactly
 * what was sent, before any parsing); everything else is parsed with a 1 MB limit.
 */
function installJsonParser(fastify: FastifyInstance, webhookLimit: number): void {
  fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser(
    'application/json',
    { parseAs: 'buffer', bodyLimit: webhookLimit },
    (request, body, done) => {
      const raw = body as Buffer;
      if (request.url.startsWith('/webhooks/')) return done(null, raw);
      if (raw.length > API_BODY_LIMIT_BYTES) {
        return done(
          new BodyError(413, 'FST_ERR_CTP_BODY_TOO_LARGE', 'the request body is larger than 1 MB'),
          undefined,
        );
      }
      if (raw.length === 0) return done(null, undefined);
      try {
        done(null, JSON.parse(raw.toString('utf8')));
      } catch {
        done(
          new BodyError(400, 'FST_ERR_CTP_INVALID_JSON_BODY', 'the request body is not valid JSON'),
          undefined,
        );
      }
    },
  );
}

/** Builds the HTTP API application (not listening yet): used by main.ts and the e2e tests. */
export async function createApi(config: AppConfig): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    bodyLimit: config.http.bodyLimitBytes,
    trustProxy: true,
    // Callers may pass their own request id; anything odd is replaced by a fresh uuid.
    genReqId: (req: IncomingMessage) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config), adapter, {
    bufferLogs: true,
    // Our own JSON parser (installJsonParser) replaces Nest's: webhook bodies must stay raw.
    bodyParser: false,
  });
  app.useLogger(app.get(Logger));
  app.useGlobalPipes(createValidationPipe());
  app.enableShutdownHooks();
  const fastify = app.getHttpAdapter().getInstance();
  installJsonParser(fastify, config.http.bodyLimitBytes);
  fastify.addHook('onSend', async (request, reply) => {
    void reply.header('x-request-id', request.id);
  });
  const requests = new NestLogger('HttpRequest');
  fastify.addHook('onResponse', async (request, reply) => {
    if (request.url.startsWith('/health/')) return;
    requests.log(
      {
        requestId: request.id,
        method: request.method,
        url: redactUrl(request.url),
        statusCode: reply.statusCode,
        responseTimeMs: Math.round(reply.elapsedTime),
      },
      'request completed',
    );
  });

  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('reposync')
      .setDescription('Repository sync service: add repositories, follow their sync status and history.')
      .setVersion('1')
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'A tenant API key (rsk_...)' })
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs/openapi.json' });
  return app;
}
