import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { AdminTenantsController } from './admin-tenants.controller.js';
import { ApiKeysController } from './api-keys.controller.js';
import { AuthGuard } from './auth.guard.js';
import { TenancyRepository } from './tenancy.repository.js';
import { TenancyService } from './tenancy.service.js';

@Module({
  controllers: [AdminTenantsController, ApiKeysController],
  providers: [TenancyRepository, TenancyService, { provide: APP_GUARD, useClass: AuthGuard }],
  exports: [TenancyService],
})
export class TenancyModule {}
