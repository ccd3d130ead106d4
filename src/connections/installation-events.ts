/**
 * GitHub App installation webhooks keep APP_INSTALLATION connections in step with GitHub: an uninstalled or
 * suspended installation stops giving tokens (with a message saying why), an unsuspended one or one whose
 * new permissions were accepted works again. Connections themselves are created by the setup callback,
 * where the installing user proves who they are; the webhook alone does not say which tenant it is for.
 */
import { Injectable, Logger } from '@nestjs/common';
import { CodeHosts } from '../hosts/code-hosts.js';
import { ConnectionsRepository } from './connections.repository.js';

export interface InstallationChange {
  installationId: string;
  action: string;
  accountLogin: string | null;
}

@Injectable()
export class InstallationEvents {
  private readonly logger = new Logger(InstallationEvents.name);

  constructor(
    private readonly connections: ConnectionsRepository,
    private readonly hosts: CodeHosts,
  ) {}

  /** Applies one installation event; returns how many connections it changed. */
  async apply(change: InstallationChange): Promise<number> {
    const { installationId, action } = change;
    const account = change.accountLogin ?? 'its account';
    let updated: number;
    switch (action) {
      case 'deleted':
        updated = await this.connections.updateInstallation(installationId, {
          suspendedAt: new Date(),
          lastError: `the GitHub App was uninstalled from ${account}: install it again and reconnect`,
        });
        this.hosts.githubApp?.forget(installationId);
        break;
      case 'suspend':
        updated = await this.connections.updateInstallation(installationId, {
          suspendedAt: new Date(),
          lastError: `the GitHub App installation on ${account} is suspended: unsuspend it on GitHub`,
        });
        this.hosts.githubApp?.forget(installationId);
        break;
      case 'unsuspend':
      case 'created':
      case 'new_permissions_accepted':
        updated = await this.connections.updateInstallation(installationId, {
          suspendedAt: null,
          lastError: null,
          ...(change.accountLogin ? { accountLogin: change.accountLogin } : {}),
        });
        break;
      default:
        return 0;
    }
    this.logger.log({ installationId, action, connections: updated }, 'installation event applied');
    return updated;
  }
}
