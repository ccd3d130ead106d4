import { Module } from '@nestjs/common';
import { HostsModule } from '../hosts/hosts.module.js';
import { ConnectionTokens } from './connection-tokens.js';
import { ConnectionsController } from './connections.controller.js';
import { ConnectionsRepository } from './connections.repository.js';
import { ConnectionsService } from './connections.service.js';
import { HostWebhooks } from './host-webhooks.js';
import { InstallationEvents } from './installation-events.js';

/** Connections to code hosts: onboarding flows, stored credentials and the tokens they give. */
@Module({
  imports: [HostsModule],
  controllers: [ConnectionsController],
  providers: [ConnectionsRepository, ConnectionTokens, ConnectionsService, HostWebhooks, InstallationEvents],
  exports: [ConnectionTokens, ConnectionsService, HostWebhooks, InstallationEvents, HostsModule],
})
export class ConnectionsModule {}

/** What a worker needs of connections: tokens for git, without the HTTP side. */
@Module({
  imports: [HostsModule],
  providers: [ConnectionsRepository, ConnectionTokens],
  exports: [ConnectionTokens, ConnectionsRepository, HostsModule],
})
export class ConnectionTokensModule {}
