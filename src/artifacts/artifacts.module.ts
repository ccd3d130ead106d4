import { Global, Logger, Module } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import type { ArtifactStore } from './artifact-store.js';
import { ARTIFACT_STORE, createArtifactStore } from './artifact-store.provider.js';
import { ArchivesRepository } from './archives.repository.js';
import { RevisionArchiver } from './revision-archiver.js';

/** The artifact store (S3 or filesystem), archive rows and the archiver, for the API and the worker. */
@Global()
@Module({
  providers: [
    ArchivesRepository,
    {
      provide: ARTIFACT_STORE,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => createArtifactStore(config),
    },
    {
      provide: RevisionArchiver,
      inject: [ARTIFACT_STORE, ArchivesRepository, APP_CONFIG],
      useFactory: (store: ArtifactStore, records: ArchivesRepository, config: AppConfig) => {
        const logger = new Logger(RevisionArchiver.name);
        return new RevisionArchiver(
          store,
          records,
          config.archives.prefix,
          config.archives.retention,
          (msg, fields) => logger.warn(fields ?? {}, msg),
          config.archives.gzipLevel,
        );
      },
    },
  ],
  exports: [ARTIFACT_STORE, ArchivesRepository, RevisionArchiver],
})
export class ArtifactsModule {}
