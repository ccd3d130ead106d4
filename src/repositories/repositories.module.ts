import { Module } from '@nestjs/common';
import { ConnectionsModule } from '../connections/connections.module.js';
import { RepositoriesController } from './repositories.controller.js';
import { RepositoriesRepository } from './repositories.repository.js';
import { RepositoriesService } from './repositories.service.js';
import { RepositorySummaryRepository } from './repository-summary.repository.js';

@Module({
  imports: [ConnectionsModule],
  controllers: [RepositoriesController],
  providers: [RepositoriesRepository, RepositoriesService, RepositorySummaryRepository],
  exports: [RepositoriesService, RepositoriesRepository],
})
export class RepositoriesModule {}
