import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { PeriodicTask, errorMessage } from './periodic-task.js';
import { type GraphLag, SyncStateRepository } from './sync-state.repository.js';
import { SyncWorker } from './sync-worker.js';

const BATCH = 20;

/**
 * Retries the graph step of synced branches whose graph index fell behind (Neo4j was down during their
 * sync), from the last indexed commit. Only branches whose clone this worker holds are indexed; the others
 * catch up with their next sync. No runs are recorded and nothing is queued.
 */
@Injectable()
export class GraphCatchUp implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(GraphCatchUp.name);
  private readonly task = new PeriodicTask(
    () => this.catchUp().then(() => undefined),
    (e) => this.logger.warn({ err: errorMessage(e) }, 'graph catch-up failed'),
  );

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly state: SyncStateRepository,
    private readonly worker: SyncWorker,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.config.graph) return;
    this.task.start(this.config.graph.catchUpIntervalMs);
  }

  async onModuleDestroy(): Promise<void> {
    await this.task.stop();
  }

  /** One pass; returns how many branches were brought up to date in the graph. */
  async catchUp(): Promise<number> {
    if (!this.worker.graphIndexing.enabled) return 0;
    let done = 0;
    for (const lag of await this.state.branchesBehindInGraph(BATCH)) {
      if (await this.catchUpBranch(lag)) done++;
      else break; // the graph is still unreachable: try again next time
    }
    return done;
  }

  private async catchUpBranch(lag: GraphLag): Promise<boolean> {
    const lease = await this.worker.workspaces.acquire(lag.repositoryId);
    try {
      if (!lease.ready) return true; // another worker holds this clone; its next sync indexes it
      const repository = await this.state.loadRepository(lag.repositoryId);
      if (!repository) return true;
      const step = await this.worker.graphIndexing.index({
        tenantId: lag.tenantId,
        repository: { id: lag.repositoryId, host: lag.host, owner: lag.owner, name: lag.repositoryName },
        branch: lag.name,
        fromSha: lag.indexedSha,
        toSha: lag.syncedSha,
        gitDir: lease.gitDir,
        credentials: await this.worker.gitCredentials(repository),
      });
      if (step.status !== 'indexed' || !step.indexedSha) return false;
      await this.state.setIndexedSha(lag.branchId, lag.syncedSha, step.indexedSha);
      return true;
    } finally {
      await lease.release();
    }
  }
}
