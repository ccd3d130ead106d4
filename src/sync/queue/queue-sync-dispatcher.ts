import { InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import type { BranchRecord } from '../../repositories/repositories.types.js';
import type { SyncDispatcher } from '../../repositories/sync-dispatcher.js';
import {
  SYNC_QUEUE,
  SyncJobName,
  type SyncJobPayloads,
  forgetJobId,
  onboardJobId,
  syncBranchJobId,
  syncJobOptions,
} from './sync-jobs.js';

/** How long an HTTP request waits for Redis before leaving the work to the reconciler. */
const ENQUEUE_TIMEOUT_MS = 2000;

/**
 * Puts owed work on the BullMQ queue. Postgres already holds the owed state, so a failure here loses
 * nothing: the reconciler enqueues whatever is owed once Redis answers again.
 */
@Injectable()
export class QueueSyncDispatcher implements SyncDispatcher, OnModuleInit {
  private readonly logger = new Logger(QueueSyncDispatcher.name);
  private lastConnectionWarning = 0;

  constructor(
    @InjectQueue(SYNC_QUEUE) private readonly queue: Queue,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    // Redis outages are expected and survivable: one warning a minute instead of one per reconnect attempt.
    this.queue.on('error', (e: Error) => {
      const now = Date.now();
      if (now - this.lastConnectionWarning < 60_000) return;
      this.lastConnectionWarning = now;
      this.logger.warn({ err: e.message }, 'queue connection error; owed work stays recorded in Postgres');
    });
  }

  async onboard(tenantId: string, repositoryId: string): Promise<void> {
    await this.add(SyncJobName.OnboardRepository, { tenantId, repositoryId }, onboardJobId(repositoryId));
  }

  async dispatch(tenantId: string, repositoryId: string, branches: BranchRecord[]): Promise<void> {
    await this.enqueueBranches(
      tenantId,
      repositoryId,
      branches.map((b) => b.id),
    );
  }

  async enqueueOwed(branches: { id: string; tenantId: string; repositoryId: string }[]): Promise<boolean> {
    let all = true;
    for (const b of branches) {
      all =
        (await this.add(
          SyncJobName.SyncBranch,
          { tenantId: b.tenantId, repositoryId: b.repositoryId, branchId: b.id },
          syncBranchJobId(b.id),
        )) && all;
    }
    return all;
  }

  /** Enqueues sync jobs for branches by id (duplicates of queued or running jobs are ignored by BullMQ). */
  async enqueueBranches(tenantId: string, repositoryId: string, branchIds: string[]): Promise<boolean> {
    let all = true;
    for (const branchId of branchIds) {
      const added = await this.add(
        SyncJobName.SyncBranch,
        { tenantId, repositoryId, branchId },
        syncBranchJobId(branchId),
      );
      all = added && all;
    }
    return all;
  }

  /**
   * Drops the repository's queued onboarding and asks a worker to delete its cached clone. Queued branch
   * jobs need no removal: their branch rows are gone, so they end at once.
   */
  async forget(tenantId: string, repositoryId: string): Promise<void> {
    try {
      await this.withTimeout(this.queue.remove(onboardJobId(repositoryId)));
    } catch (e) {
      this.logger.warn(
        { tenantId, repositoryId, err: e instanceof Error ? e.message : String(e) },
        'could not remove the queued onboarding job; it will find nothing',
      );
    }
    await this.add(SyncJobName.ForgetRepository, { tenantId, repositoryId }, forgetJobId(repositoryId));
  }

  /** Adds a job; false (and a warning) when Redis did not take it: Postgres still says it is owed. */
  private async add<N extends keyof SyncJobPayloads>(
    name: N,
    data: SyncJobPayloads[N],
    jobId: string,
  ): Promise<boolean> {
    try {
      await this.withTimeout(
        this.queue.add(name, data, {
          ...syncJobOptions(this.config.sync.maxAttempts, this.config.sync.backoffMs),
          jobId,
        }),
      );
      return true;
    } catch (e) {
      this.logger.warn(
        { jobId, err: e instanceof Error ? e.message : String(e) },
        'enqueue failed; the reconciler will enqueue it when Redis is back',
      );
      return false;
    }
  }

  private async withTimeout<T>(promise: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        promise,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`Redis did not answer within ${ENQUEUE_TIMEOUT_MS} ms`)),
            ENQUEUE_TIMEOUT_MS,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}
