import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { Logger } from 'nestjs-pino';
import { ConfigError, loadConfigFromProcess, type AppConfig } from './config/app-config.js';
import { WorkerModule } from './worker.module.js';

/** Starts the queue workers and schedulers (an application context: no HTTP server). */
export async function startWorker(config: AppConfig) {
  const app = await NestFactory.createApplicationContext(WorkerModule.forRoot(config), { bufferLogs: true });
  app.useLogger(app.get(Logger));
  app.enableShutdownHooks();
  await app.init();
  return app;
}

// Run directly (node dist/worker.js), not when imported by all-in-one.ts or tests.
if (import.meta.url === `file://${process.argv[1]}`) {
  loadConfigFromProcess()
    .then(startWorker)
    .catch((e: unknown) => {
      console.error(e instanceof ConfigError ? e.message : e);
      process.exit(1);
    });
}
