import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { decodeCursor, type Page } from '../common/cursor.js';
import { NotFound, ValidationFailed } from '../common/errors.js';
import { SecretBox } from '../common/secret-box.js';
import { ConnectionsService } from '../connections/connections.service.js';
import { HostWebhooks } from '../connections/host-webhooks.js';
import type { CreateRepositoryDto, ListRepositoriesQuery, UpdateRepositoryDto } from './repositories.dto.js';
import { RepositoriesRepository } from './repositories.repository.js';
import type { BranchRecord, RepositoryDetail, RepositoryRecord, SyncTrigger } from './repositories.types.js';
import { SYNC_DISPATCHER, type SyncDispatcher } from './sync-dispatcher.js';
import {
  checkBranchName,
  locateByName,
  parseRepositoryUrl,
  type RepositoryLocation,
} from './repository-url.js';

/** Encryption context of a repository's own access token (binds the ciphertext to its row). */
export const repositoryTokenContext = (repositoryId: string) => `repository:${repositoryId}:access-token`;

@Injectable()
export class RepositoriesService {
  private readonly logger = new Logger(RepositoriesService.name);

  constructor(
    private readonly repositories: RepositoriesRepository,
    private readonly secrets: SecretBox,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(SYNC_DISPATCHER) private readonly dispatcher: SyncDispatcher,
    private readonly connections: ConnectionsService,
    private readonly hostWebhooks: HostWebhooks,
  ) {}

  private locate(input: CreateRepositoryDto): RepositoryLocation {
    const policy = { allowInsecure: this.config.repositories.allowInsecureUrls };
    if (input.url !== undefined) {
      if (input.owner !== undefined || input.name !== undefined) {
        throw ValidationFailed.field('url', 'give either url, or provider + owner + name, not both');
      }
      return parseRepositoryUrl(input.url, policy, input.provider);
    }
    if (input.provider !== 'GITHUB' && input.provider !== 'GITLAB') {
      throw ValidationFailed.field(
        'provider',
        'must be GITHUB or GITLAB when the repository is given by owner and name',
      );
    }
    return locateByName(input.provider, input.owner!, input.name!, input.host, policy);
  }

  async create(tenantId: string, input: CreateRepositoryDto): Promise<RepositoryDetail> {
    if (input.connectionId !== undefined && input.accessToken !== undefined) {
      throw ValidationFailed.field('accessToken', 'give either a connectionId or an accessToken, not both');
    }
    const location = input.connectionId
      ? (await this.connections.locateRepository(tenantId, input.connectionId, input)).location
      : this.locate(input);
    input.branches?.forEach((b, i) => checkBranchName(b, `branches.${i}`));
    const id = randomUUID();
    const repository = await this.repositories.create(
      tenantId,
      {
        id,
        ...location,
        projectId: input.projectId ?? null,
        connectionId: input.connectionId ?? null,
        trackDefaultBranch: !input.branches?.length,
        syncStrategy: input.syncStrategy ?? 'AUTO',
        accessTokenEncrypted: input.accessToken
          ? this.secrets.encrypt(input.accessToken, repositoryTokenContext(id))
          : null,
      },
      input.branches ?? [],
    );
    this.logger.log({ tenantId, repositoryId: id, host: location.host }, 'repository added');
    if (input.connectionId) {
      const hook = await this.hostWebhooks.install(
        tenantId,
        { id, owner: location.owner, name: location.name, connectionId: input.connectionId },
        (secretEncrypted) =>
          this.repositories.setWebhook(tenantId, id, {
            webhookId: null,
            webhookSecretEncrypted: secretEncrypted,
            webhookError: null,
          }),
      );
      await this.repositories.setWebhook(tenantId, id, {
        webhookId: hook.status === 'created' ? hook.webhookId : null,
        webhookSecretEncrypted: hook.status === 'created' ? hook.secretEncrypted : null,
        webhookError: hook.status === 'failed' ? hook.error : null,
      });
    }
    await this.dispatcher.onboard(tenantId, id);
    return (await this.repositories.get(tenantId, id)) ?? repository;
  }

  async list(tenantId: string, query: ListRepositoriesQuery): Promise<Page<RepositoryRecord>> {
    const cursor = query.cursor ? decodeCursor(query.cursor) : null;
    return this.repositories.list(
      tenantId,
      { status: query.status, provider: query.provider, projectId: query.projectId, q: query.q },
      cursor,
      query.limit ?? 20,
    );
  }

  async get(tenantId: string, id: string): Promise<RepositoryDetail> {
    const repository = await this.repositories.get(tenantId, id);
    if (!repository) throw new NotFound('Repository', id);
    return repository;
  }

  async update(tenantId: string, id: string, patch: UpdateRepositoryDto): Promise<RepositoryDetail> {
    if (patch.branches) {
      if (patch.branches.length === 0) {
        throw ValidationFailed.field(
          'branches',
          'must list at least one branch, or be null to follow the default branch',
        );
      }
      patch.branches.forEach((b, i) => checkBranchName(b, `branches.${i}`));
    }
    const updated = await this.repositories.update(tenantId, id, patch);
    if (!updated) throw new NotFound('Repository', id);
    if (patch.branches !== undefined) await this.dispatcher.onboard(tenantId, id);
    return updated;
  }

  async delete(tenantId: string, id: string): Promise<void> {
    const repository = await this.repositories.get(tenantId, id);
    if (!repository) throw new NotFound('Repository', id);
    const deleted = await this.repositories.delete(tenantId, id);
    if (!deleted) throw new NotFound('Repository', id);
    await this.dispatcher.forget(tenantId, id);
    this.logger.log({ tenantId, repositoryId: id }, 'repository deleted');
    const { connectionId, webhookId } = repository;
    if (connectionId && webhookId) {
      // The repository is gone either way; a hook left behind only brings deliveries we answer "not tracked".
      await this.hostWebhooks
        .remove(tenantId, { id, owner: repository.owner, name: repository.name, connectionId, webhookId })
        .catch((e: unknown) => {
          this.logger.warn(
            { tenantId, repositoryId: id, webhookId, err: e instanceof Error ? e.message : String(e) },
            'host webhook could not be deleted; remove it on the host',
          );
        });
    }
  }

  /** Records that a sync is wanted and hands the owed branches to the dispatcher. */
  async requestSync(
    tenantId: string,
    id: string,
    trigger: SyncTrigger,
    branchName?: string,
  ): Promise<BranchRecord[]> {
    const repository = await this.repositories.syncTarget(tenantId, id);
    if (!repository) throw new NotFound('Repository', id);
    if (branchName !== undefined && !repository.branches.includes(branchName)) {
      throw new NotFound('Branch', `${branchName} of repository ${id}`);
    }
    const branches = await this.repositories.markSyncRequested(tenantId, id, trigger, branchName);
    if (repository.trackDefaultBranch && branchName === undefined) {
      // The default branch may have been renamed or is not known yet: resolve it first.
      await this.dispatcher.onboard(tenantId, id);
    }
    await this.dispatcher.dispatch(tenantId, id, branches);
    // The repository's summary of its branches, once the work is queued (a worker may already have
    // claimed a branch: the summary is computed from the branches as they are then).
    await this.repositories.refreshStatus(tenantId, id);
    return branches;
  }
}
