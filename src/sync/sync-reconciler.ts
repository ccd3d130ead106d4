import { InjectQueue } from '@nestjs/bullmq';
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import type { Queue } from 'bullmq';
import { RevisionArchiver } from '../artifacts/revision-archiver.js';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { PeriodicTask, errorMessage } from './periodic-task.js';
import { QueueSyncDispatcher } from './queue/queue-sync-dispatcher.js';
import { SYNC_QUEUE, syncBranchJobId } from './queue/sync-jobs.js';
import { SyncStateRepository } from './sync-state.repository.js';
import { ConnectionsRepository } from '../connections/connections.repository.js';

const BATCH = 500;
/** Job states in which a job will still run (or is running) by itself. */
const LIVE_STATES = new Set(['active', 'waiting', 'waiting-children', 'delayed', 'prioritized']);

/**
 * Makes Redis agree with Postgres, at start-up and then periodically: every branch Postgres says is owed
 * a sync gets a job, a branch left SYNCING by a job that no longer exists goes back to OUTDATED and is
 * re-enqueued, and repositories still waiting for onboarding are onboarded. Safe to run on every worker:
 * job ids are deterministic and every state change is a compare-and-set.
 */
@Injectable()
export class SyncReconciler implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(SyncReconciler.name);
  private readonly task = new PeriodicTask(
    () =>
      this.reconcile().then((counts) => {
        if (counts.orphans || counts.owed || counts.onboarding) this.logger.log(counts, 'reconciled');
      }),
    (e) => this.logger.warn({ err: errorMessage(e) }, 'reconcile pass failed; retrying later'),
  );

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly state: SyncStateRepository,
    private readonly dispatcher: QueueSyncDispatcher,
    @InjectQueue(SYNC_QUEUE) private readonly queue: Queue,
    private readonly archiver: RevisionArchiver,
    private readonly connections: ConnectionsRepository,
  ) {}

  onApplicationBootstrap(): void {
    this.task.start(this.config.sync.reconcileIntervalMs, true);
  }

  async onModuleDestroy(): Promise<void> {
    await this.task.stop();
  }

  /** One pass; returns how many items of each kind it handed to the queue. */
  async reconcile(): Promise<{ orphans: number; owed: number; onboarding: number; deliveries: number }> {
    let orphans = 0;
    // Taken before the owed pass: once that pass has queued every owed branch, these are covered.
    const deliveries = await this.state.unenqueuedDeliveries(2_000, BATCH);
    // A claim commits within a second; older SYNCING rows without a live job lost their worker and job.
    for (const branch of await this.state.syncingBranches(5_000, BATCH)) {
      const jobState = await this.queue.getJobState(syncBranchJobId(branch.id));
      if (LIVE_STATES.has(jobState)) continue;
      if (await this.state.releaseOrphan(branch.id, branch.lockedBy, branch.updatedAt)) orphans++;
    }
    const owed = await this.state.owedBranches(BATCH);
    let allQueued = true;
    for (const branch of owed) {
      const queued = await this.dispatcher.enqueueBranches(branch.tenantId, branch.repositoryId, [branch.id]);
      allQueued = queued && allQueued;
    }
    if (allQueued) await this.state.markDeliveriesEnqueued(deliveries);
    await this.state.pruneDeliveries(this.config.webhooks.retentionDays);
    await this.connections.pruneStates();
    await this.archiver.retryPendingDeletions();
    const waiting = await this.state.repositoriesAwaitingOnboarding(
      this.config.sync.reconcileIntervalMs,
      BATCH,
    );
    for (const repo of waiting) await this.dispatcher.onboard(repo.tenantId, repo.id);
    return {
      orphans,
      owed: owed.length,
      onboarding: waiting.length,
      deliveries: allQueued ? deliveries.length : 0,
    };
  }
}
