/**
 * Webhook auto-setup: a repository added through a connection gets a webhook on its host, with its own
 * random secret (stored encrypted), pointing at our receiver with ?repository=<id>. A failure is reported
 * on the repository and its branches fall back to polling; it never fails the add.
 */
import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { DomainError } from '../common/errors.js';
import { SecretBox } from '../common/secret-box.js';
import { CodeHosts } from '../hosts/code-hosts.js';
import { webhookSecretContext } from '../webhooks/webhook-signature.js';
import { ConnectionTokens } from './connection-tokens.js';
import { ConnectionsRepository } from './connections.repository.js';

export interface HookTarget {
  id: string;
  owner: string;
  name: string;
  connectionId: string;
}

export type HookSetup =
  | { status: 'created'; webhookId: string; secretEncrypted: string }
  | { status: 'not-needed'; reason: string }
  | { status: 'failed'; error: string };

@Injectable()
export class HostWebhooks {
  private readonly logger = new Logger(HostWebhooks.name);

  constructor(
    private readonly connections: ConnectionsRepository,
    private readonly tokens: ConnectionTokens,
    private readonly hosts: CodeHosts,
    private readonly secrets: SecretBox,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * Creates the repository's webhook on its host. `storeSecret` runs before the host is asked: hosts
   * deliver a ping (and soon pushes) at once, and those must find the secret already stored.
   */
  async install(
    tenantId: string,
    repo: HookTarget,
    storeSecret: (secretEncrypted: string) => Promise<void>,
  ): Promise<HookSetup> {
    const connection = await this.connections.get(tenantId, repo.connectionId);
    if (connection?.kind === 'APP_INSTALLATION') {
      return {
        status: 'not-needed',
        reason: "the GitHub App's own webhook delivers this repository's pushes",
      };
    }
    const secret = randomBytes(32).toString('base64url');
    const secretEncrypted = this.secrets.encrypt(secret, webhookSecretContext(repo.id));
    await storeSecret(secretEncrypted);
    try {
      const { provider, token } = await this.tokens.token(tenantId, repo.connectionId);
      const webhookId = await this.hosts.get(provider).createWebhook(token, repo.owner, repo.name, {
        url: `${this.config.webhooks.publicUrl}/webhooks/${provider}?repository=${repo.id}`,
        secret,
        events: ['push', 'tag_push'],
      });
      this.logger.log({ tenantId, repositoryId: repo.id, webhookId }, 'host webhook created');
      return { status: 'created', webhookId, secretEncrypted };
    } catch (e) {
      const error = `the webhook could not be created (${describe(e)}); changes are found by polling until it exists`;
      this.logger.warn({ tenantId, repositoryId: repo.id, err: describe(e) }, 'host webhook not created');
      return { status: 'failed', error };
    }
  }

  /** Deletes the repository's webhook from its host; a hook already gone is fine. */
  async remove(tenantId: string, repo: HookTarget & { webhookId: string }): Promise<void> {
    const { provider, token } = await this.tokens.token(tenantId, repo.connectionId);
    await this.hosts.get(provider).deleteWebhook(token, repo.owner, repo.name, repo.webhookId);
    this.logger.log({ tenantId, repositoryId: repo.id, webhookId: repo.webhookId }, 'host webhook deleted');
  }
}

function describe(e: unknown): string {
  if (e instanceof DomainError) return e.message;
  return e instanceof Error ? e.message : String(e);
}
