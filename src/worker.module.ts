import { type DynamicModule, Module } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import type { AppConfig } from './config/app-config.js';
import { ConfigModule } from './config/config.module.js';
import { ConnectionTokensModule } from './connections/connections.module.js';
import { CryptoModule } from './common/crypto.module.js';
import { pinoOptions } from './common/logging.js';
import { DatabaseModule } from './database/database.module.js';
import { RedisModule } from './redis/redis.module.js';
import { ArtifactsModule } from './artifacts/artifacts.module.js';
import { RepositorySummaryRepository } from './repositories/repository-summary.repository.js';
import { GraphModule } from './graph/graph.module.js';
import { GraphCatchUp } from './sync/graph-catch-up.js';
import { SyncQueueModule } from './sync/queue/sync-queue.module.js';
import { PollScheduler } from './sync/poll-scheduler.js';
import { SyncReconciler } from './sync/sync-reconciler.js';
import { SyncStateRepository } from './sync/sync-state.repository.js';
import { SyncWorker } from './sync/sync-worker.js';

/** The worker process: consumes sync jobs and runs the schedulers. No HTTP server. */
@Module({})
export class WorkerModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: WorkerModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggerModule.forRoot({ pinoHttp: pinoOptions(config, 'reposync-worker') }),
        DatabaseModule,
        RedisModule,
        CryptoModule,
        SyncQueueModule,
        ArtifactsModule,
        GraphModule.forRoot(config.graph),
        ConnectionTokensModule,
      ],
      providers: [
        RepositorySummaryRepository,
        SyncStateRepository,
        SyncWorker,
        SyncReconciler,
        PollScheduler,
        GraphCatchUp,
      ],
    };
  }
}
