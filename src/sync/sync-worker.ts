import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { InjectQueue } from '@nestjs/bullmq';
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { DelayedError, type Job, type Queue, UnrecoverableError, Worker } from 'bullmq';
import { ArchivesRepository } from '../artifacts/archives.repository.js';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import { ARTIFACT_STORE } from '../artifacts/artifact-store.provider.js';
import { RevisionArchiver } from '../artifacts/revision-archiver.js';
import { ArchiveBaseCache } from './engine/archive-base.js';
import { SpawnHelper } from './git/spawn-helper.js';
import { CodeHosts } from '../hosts/code-hosts.js';
import { CompareDeltaUpdater } from './compare-delta-updater.js';
import { GRAPH_INDEX, type GraphIndex } from '../graph/graph-index.js';
import { GraphIndexing } from './graph-indexing.js';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { SecretBox } from '../common/secret-box.js';
import { RedisService } from '../redis/redis.service.js';
import { repositoryTokenContext } from '../repositories/repositories.service.js';
import { ConnectionTokens, ConnectionUnusable } from '../connections/connection-tokens.js';
import { GIT_TOKEN_USERNAME } from '../hosts/code-host.js';
import { HostRateLimited } from '../hosts/host-errors.js';
import { deferredByHost } from './host-rate-limit.js';
import {
  BranchSynchronizer,
  PermanentSyncError,
  SyncDeferred,
  describeSyncError,
} from './engine/branch-synchronizer.js';
import type { SyncRepository } from './engine/sync-types.js';
import { GitError, isRetryableGitError } from './git/git-errors.js';
import { GitMirror } from './git/git-mirror.js';
import { type GitCredentials, GitRunner } from './git/git-runner.js';
import { QueueSyncDispatcher } from './queue/queue-sync-dispatcher.js';
import {
  type ForgetRepositoryJob,
  type OnboardRepositoryJob,
  SYNC_QUEUE,
  type SyncBranchJob,
  SyncJobName,
  syncBranchJobId,
} from './queue/sync-jobs.js';
import { createRemoteGuard } from './remote-guard.js';
import { SyncStateRepository } from './sync-state.repository.js';
import { TenantSlots } from './tenant-slots.js';
import { killOrphanedGit } from './workspace/orphaned-git.js';
import { WorkspaceCache } from './workspace/workspace-cache.js';

/** Username git sends with a token, per host convention. */
const TOKEN_USERNAME: Record<SyncRepository['provider'], string> = {
  GITHUB: GIT_TOKEN_USERNAME.github,
  GITLAB: GIT_TOKEN_USERNAME.gitlab,
  GIT: 'git',
};

/** Longest a shutdown waits for running jobs and the queue connection. */
const SHUTDOWN_GRACE_MS = 30_000;

/** Delay before a job of a tenant at its cap tries again (plus jitter). */
const TENANT_BUSY_DELAY_MS = 1000;

/**
 * The BullMQ worker of the sync queue: a thin shell that maps jobs to the engine (BranchSynchronizer)
 * and the engine's results back to queue semantics (retry, no retry, follow-up).
 */
@Injectable()
export class SyncWorker implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(SyncWorker.name);
  private worker?: Worker;
  private runner?: GitRunner;
  private readonly spawnHelper: SpawnHelper;
  private synchronizer!: BranchSynchronizer;
  private mirror!: GitMirror;
  private slots!: TenantSlots;
  /** The graph step, shared with the catch-up pass. */
  graphIndexing!: GraphIndexing;
  readonly workspaces: WorkspaceCache;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly state: SyncStateRepository,
    private readonly secrets: SecretBox,
    private readonly redis: RedisService,
    private readonly dispatcher: QueueSyncDispatcher,
    @InjectQueue(SYNC_QUEUE) private readonly queue: Queue,
    private readonly archiver: RevisionArchiver,
    @Inject(GRAPH_INDEX) private readonly graph: GraphIndex,
    private readonly connectionTokens: ConnectionTokens,
    private readonly hosts: CodeHosts,
    private readonly archives: ArchivesRepository,
    @Inject(ARTIFACT_STORE) private readonly store: ArtifactStore,
  ) {
    const root = resolve(config.sync.workspaceDir);
    // git and du start from a small helper process (started on first use): forking this one would stop
    // its event loop each time, and make its next writes to every page fault.
    this.spawnHelper = new SpawnHelper();
    this.workspaces = new WorkspaceCache({
      rootDir: root,
      maxBytes: config.sync.workspaceMaxBytes,
      log: (msg, fields) => this.logger.log(fields ?? {}, msg),
      spawn: this.spawnHelper.spawn,
    });
  }

  async onApplicationBootstrap(): Promise<void> {
    const cfg = this.config.sync;
    await killOrphanedGit(resolve(cfg.workspaceDir), (msg, fields) => this.logger.warn(fields ?? {}, msg));
    this.runner = new GitRunner({
      defaultTimeoutMs: cfg.gitTimeoutMs,
      askpassDir: resolve(cfg.workspaceDir, 'askpass'),
      spawn: this.spawnHelper.spawn,
    });
    this.mirror = new GitMirror({
      runner: this.runner,
      log: (msg, fields) => this.logger.debug(fields ?? {}, msg),
    });
    this.graphIndexing = new GraphIndexing(this.graph, this.mirror, (msg, fields) =>
      this.logger.warn(fields ?? {}, msg),
    );
    const deltaUpdater = new CompareDeltaUpdater({
      archives: this.archives,
      store: this.store,
      tokens: this.connectionTokens,
      hosts: this.hosts,
      workDir: resolve(cfg.workspaceDir, 'compare-delta'),
      concurrency: 8,
      log: (msg, fields) => this.logger.log(fields ?? {}, msg),
    });
    // Runs of a previous process (killed before their clean-up) may have left their copies behind.
    await deltaUpdater.removeLeftovers();
    this.synchronizer = new BranchSynchronizer(
      this.state,
      this.mirror,
      this.workspaces,
      (repo) => this.credentialsFor(repo),
      createRemoteGuard(this.config.repositories.allowInsecureUrls),
      (msg, fields) => this.logger.log(fields ?? {}, msg),
      this.archiver,
      this.graphIndexing,
      deltaUpdater,
      cfg.archiveBaseCacheBytes > 0 ? new ArchiveBaseCache(cfg.archiveBaseCacheBytes) : null,
    );
    this.slots = new TenantSlots(
      this.redis.client,
      this.config.redis.queuePrefix,
      cfg.tenantConcurrency,
      Math.max(cfg.lockDurationMs * 4, 60_000),
    );
    this.worker = new Worker(SYNC_QUEUE, (job, token) => this.process(job, token), {
      connection: { url: this.config.redis.url, maxRetriesPerRequest: null },
      prefix: this.config.redis.queuePrefix,
      concurrency: cfg.concurrency,
      lockDuration: cfg.lockDurationMs,
      stalledInterval: cfg.stalledIntervalMs,
      maxStalledCount: 3,
    });
    this.worker.on('error', (e) => this.logger.warn({ err: e.message }, 'sync worker connection error'));
    this.worker.on('failed', (job, e) => {
      this.logger.warn(
        { jobId: job?.id, job: job?.name, attempt: job?.attemptsMade, err: e.message },
        'sync job failed',
      );
    });
    this.logger.log(
      { concurrency: cfg.concurrency, tenantConcurrency: cfg.tenantConcurrency },
      'sync worker started',
    );
  }

  async onModuleDestroy(): Promise<void> {
    const worker = this.worker;
    if (worker) {
      // BullMQ's close() can wait forever while Redis is unreachable; shutdown must still end. Jobs cut
      // short here are picked up again through stalled-job recovery and the reconciler.
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = await Promise.race([
        worker.close().then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), SHUTDOWN_GRACE_MS);
        }),
      ]);
      clearTimeout(timer);
      if (gaveUp) {
        this.logger.warn(
          { graceMs: SHUTDOWN_GRACE_MS },
          'sync worker did not close in time; forcing shutdown',
        );
        void worker.close(true).catch(() => undefined);
        worker.disconnect().catch(() => undefined);
      }
    }
    this.runner?.terminateAll();
    this.spawnHelper.close();
  }

  private async process(job: Job, token?: string): Promise<void> {
    switch (job.name) {
      case SyncJobName.SyncBranch:
        return this.syncBranch(job as Job<SyncBranchJob>, token);
      case SyncJobName.OnboardRepository:
        return this.onboard(job as Job<OnboardRepositoryJob>, token);
      case SyncJobName.ForgetRepository:
        // Each worker has its own cache: this one is freed now, the others by LRU eviction.
        return this.forget((job as Job<ForgetRepositoryJob>).data);
      default:
        throw new UnrecoverableError(`unknown job ${job.name}`);
    }
  }

  private async syncBranch(job: Job<SyncBranchJob>, token?: string): Promise<void> {
    const { tenantId, branchId } = job.data;
    const jobId = job.id ?? syncBranchJobId(branchId);
    if (!(await this.slots.acquire(tenantId, jobId))) {
      // The tenant has its share of workers busy: step aside without spending an attempt.
      await job.moveToDelayed(Date.now() + TENANT_BUSY_DELAY_MS + Math.floor(Math.random() * 1000), token);
      throw new DelayedError();
    }
    const renew = setInterval(() => {
      this.slots.acquire(tenantId, jobId).catch(() => undefined);
    }, this.config.sync.lockDurationMs);
    let result;
    try {
      const attempt = job.attemptsMade + 1;
      result = await this.synchronizer.sync({
        branchId,
        jobId,
        lockToken: `${jobId}:${token ?? randomUUID()}`,
        attempt,
        lastAttempt: attempt >= (job.opts.attempts ?? 1),
      });
    } finally {
      clearInterval(renew);
      await this.slots.release(tenantId, jobId).catch(() => undefined);
    }
    if (result.kind === 'deferred') {
      // The host asked us to wait: the same job runs again then, without spending an attempt.
      await job.moveToDelayed(result.retryAt.getTime(), token);
      throw new DelayedError();
    }
    if (result.kind === 'failed') {
      if (result.retry) throw result.error;
      if (!result.followUp) throw new UnrecoverableError(result.error.message);
    }
    if (result.kind !== 'gone' && result.followUp) {
      // Triggers arrived during the run: exactly one follow-up, as the same job (its id stays reserved).
      await job.moveToDelayed(Date.now(), token);
      throw new DelayedError();
    }
  }

  private async onboard(job: Job<OnboardRepositoryJob>, token?: string): Promise<void> {
    const repo = await this.state.loadRepository(job.data.repositoryId);
    if (!repo) return;
    try {
      await createRemoteGuard(this.config.repositories.allowInsecureUrls)(repo.cloneUrl);
      const heads = await this.mirror.lsRemote(repo.cloneUrl, await this.credentialsFor(repo));
      const owed = await this.state.applyRemoteLayout(
        repo.id,
        heads.defaultBranch,
        new Set(heads.branches.keys()),
      );
      await this.state.refreshRepository(repo.id);
      await this.dispatcher.enqueueBranches(repo.tenantId, repo.id, owed);
    } catch (e) {
      if (e instanceof SyncDeferred) {
        this.logger.log({ repositoryId: repo.id, retryAt: e.retryAt.toISOString() }, 'onboarding deferred');
        await job.moveToDelayed(e.retryAt.getTime(), token);
        throw new DelayedError();
      }
      const permanent = e instanceof PermanentSyncError || (e instanceof GitError && !isRetryableGitError(e));
      const final = permanent || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      const code = e instanceof GitError || e instanceof PermanentSyncError ? e.code : 'ONBOARDING_FAILED';
      const message = describeSyncError(e);
      await this.state.recordOnboardingFailure(repo.id, code, message, final);
      if (permanent) throw new UnrecoverableError(message);
      throw e;
    }
  }

  private async forget({ tenantId, repositoryId }: ForgetRepositoryJob): Promise<void> {
    await this.workspaces.remove(repositoryId);
    await this.graph.removeRepository(tenantId, repositoryId).catch((e: unknown) => {
      // The graph keeps the rows; they are tenant-scoped and no longer reachable through the API.
      this.logger.warn(
        { repositoryId, err: e instanceof Error ? e.message : String(e) },
        'graph cleanup failed',
      );
    });
  }

  /** Credentials of a repository for git (for the catch-up pass). */
  async gitCredentials(repo: CredentialRef): Promise<GitCredentials | undefined> {
    return this.credentialsFor(repo);
  }

  /** The remote's branches and heads, with the repository's credentials and the SSRF guard. */
  async remoteBranches(repo: CredentialRef & { cloneUrl: string }): Promise<Map<string, string>> {
    await createRemoteGuard(this.config.repositories.allowInsecureUrls)(repo.cloneUrl);
    const heads = await this.mirror.lsRemote(repo.cloneUrl, await this.credentialsFor(repo));
    return heads.branches;
  }

  /**
   * The connection's current token (renewed or minted as needed), else the repository's own token. Read
   * for every git operation. A host rate limit defers the work; a connection needing a user is permanent.
   */
  private async credentialsFor(repo: CredentialRef): Promise<GitCredentials | undefined> {
    if (repo.connectionId) {
      try {
        const { token, gitUsername } = await this.connectionTokens.token(repo.tenantId, repo.connectionId);
        return { username: gitUsername, password: token };
      } catch (e) {
        if (e instanceof HostRateLimited) throw deferredByHost(e);
        if (e instanceof ConnectionUnusable) throw new PermanentSyncError(e.code, e.message);
        throw e;
      }
    }
    if (!repo.accessTokenEncrypted) return undefined;
    return {
      username: TOKEN_USERNAME[repo.provider],
      password: this.secrets.decrypt(repo.accessTokenEncrypted, repositoryTokenContext(repo.id)),
    };
  }
}

/** What locates a repository's git credentials. */
export interface CredentialRef {
  id: string;
  tenantId: string;
  provider: SyncRepository['provider'];
  accessTokenEncrypted: string | null;
  connectionId: string | null;
}
