import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { LoggerModule } from 'nestjs-pino';
import type { AppConfig } from './config/app-config.js';
import { ConfigModule } from './config/config.module.js';
import { ConnectionsModule } from './connections/connections.module.js';
import { CryptoModule } from './common/crypto.module.js';
import { HttpErrorFilter } from './common/http-error.filter.js';
import { httpLoggerParams } from './common/logging.js';
import { DatabaseModule } from './database/database.module.js';
import { HealthModule } from './health/health.controller.js';
import { ProjectsModule } from './projects/projects.js';
import { RedisModule } from './redis/redis.module.js';
import { RepositoriesModule } from './repositories/repositories.module.js';
import { SyncQueueModule } from './sync/queue/sync-queue.module.js';
import { TenancyModule } from './tenancy/tenancy.module.js';
import { ArchivesApiModule } from './artifacts/archives.controller.js';
import { ArtifactsModule } from './artifacts/artifacts.module.js';
import { GraphModule } from './graph/graph.module.js';
import { WebhooksModule } from './webhooks/webhooks.module.js';

/** The HTTP API: REST for tenants, repositories and health. Produces sync jobs, never runs them. */
@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggerModule.forRoot(httpLoggerParams(config)),
        DatabaseModule,
        RedisModule,
        CryptoModule,
        SyncQueueModule,
        TenancyModule,
        ProjectsModule,
        ConnectionsModule,
        RepositoriesModule,
        ArtifactsModule,
        ArchivesApiModule,
        GraphModule.forRoot(config.graph),
        WebhooksModule,
        HealthModule,
      ],
      providers: [{ provide: APP_FILTER, useClass: HttpErrorFilter }],
    };
  }
}
