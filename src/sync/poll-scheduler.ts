import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { PeriodicTask, errorMessage } from './periodic-task.js';
import { nextPollDelay } from './poll-interval.js';
import { QueueSyncDispatcher } from './queue/queue-sync-dispatcher.js';
import { type DuePoll, SyncStateRepository } from './sync-state.repository.js';
import { SyncWorker } from './sync-worker.js';

/** A claimed poll is ours for this long; a worker that dies mid-poll frees it by itself. */
const POLL_LEASE_MS = 5 * 60_000;

/**
 * The polling fallback: hosts drop webhooks (pushes of many refs, outages), so every settled branch is
 * checked with ls-remote on an adaptive interval, one ls-remote per repository, and a changed head
 * becomes an owed sync. Safe on many workers: due branches are claimed with SKIP LOCKED.
 */
@Injectable()
export class PollScheduler implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(PollScheduler.name);
  private readonly task = new PeriodicTask(
    () => this.pollDue().then(() => undefined),
    (e) => this.logger.warn({ err: errorMessage(e) }, 'poll pass failed; retrying later'),
  );

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly state: SyncStateRepository,
    private readonly worker: SyncWorker,
    private readonly dispatcher: QueueSyncDispatcher,
  ) {}

  onApplicationBootstrap(): void {
    this.task.start(this.config.polling.tickMs);
  }

  async onModuleDestroy(): Promise<void> {
    await this.task.stop();
  }

  /** One pass over the branches due for a poll; returns how many were found changed. */
  async pollDue(): Promise<number> {
    const due = await this.state.claimDuePolls(this.config.polling.batch, POLL_LEASE_MS);
    const byRepository = new Map<string, DuePoll[]>();
    for (const b of due) byRepository.set(b.repositoryId, [...(byRepository.get(b.repositoryId) ?? []), b]);
    let changed = 0;
    for (const branches of byRepository.values()) {
      changed += await this.pollRepository(branches);
    }
    return changed;
  }

  private async pollRepository(branches: DuePoll[]): Promise<number> {
    const first = branches[0]!;
    const now = Date.now();
    let heads: Map<string, string> | null = null;
    try {
      heads = await this.worker.remoteBranches({
        id: first.repositoryId,
        tenantId: first.tenantId,
        connectionId: first.connectionId,
        provider: first.provider,
        cloneUrl: first.cloneUrl,
        accessTokenEncrypted: first.accessTokenEncrypted,
      });
    } catch (e) {
      // Unreachable now: try again at the next interval; a sync would fail the same way.
      this.logger.debug(
        { repositoryId: first.repositoryId, err: e instanceof Error ? e.message : String(e) },
        'poll failed',
      );
    }
    const stale = heads
      ? branches.filter((b) => (heads.get(b.name) ?? null) !== b.syncedSha).map((b) => b.id)
      : [];
    const owed = await this.state.markOwed(stale, 'POLL');
    if (owed.length) {
      await this.dispatcher.enqueueOwed(owed);
      this.logger.log({ repositoryId: first.repositoryId, branches: owed.length }, 'poll found new commits');
    }
    for (const b of branches) {
      const delay = nextPollDelay({
        now,
        lastChangeAt: (b.headChangedAt ?? b.createdAt).getTime(),
        lastWebhookAt: b.lastWebhookAt?.getTime() ?? null,
        minMs: this.config.polling.minIntervalMs,
        maxMs: this.config.polling.maxIntervalMs,
        random: Math.random(),
      });
      await this.state.schedulePoll(b.id, new Date(now + delay));
    }
    return owed.length;
  }
}
