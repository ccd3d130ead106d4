import { BullModule } from '@nestjs/bullmq';
import { Global, Module } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { SYNC_DISPATCHER } from '../../repositories/sync-dispatcher.js';
import { QueueSyncDispatcher } from './queue-sync-dispatcher.js';
import { SYNC_QUEUE } from './sync-jobs.js';

/** The BullMQ connection and the sync queue, shared by the API (producer) and the worker (consumer). */
@Global()
@Module({
  imports: [
    BullModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        connection: { url: config.redis.url, maxRetriesPerRequest: null },
        prefix: config.redis.queuePrefix,
      }),
    }),
    BullModule.registerQueue({ name: SYNC_QUEUE }),
  ],
  providers: [QueueSyncDispatcher, { provide: SYNC_DISPATCHER, useExisting: QueueSyncDispatcher }],
  exports: [BullModule, SYNC_DISPATCHER, QueueSyncDispatcher],
})
export class SyncQueueModule {}
