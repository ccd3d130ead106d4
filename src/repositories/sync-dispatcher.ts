import type { BranchRecord } from './repositories.types.js';

/**
 * What the HTTP side needs from the sync engine, without knowing anything about queues or git:
 * hand over owed work, and forget a deleted repository.
 */
export interface SyncDispatcher {
  /** A repository was added or its tracked branches changed: resolve its branches and sync them. */
  onboard(tenantId: string, repositoryId: string): Promise<void>;
  /** These branches are owed a sync (already recorded in Postgres). */
  dispatch(tenantId: string, repositoryId: string, branches: BranchRecord[]): Promise<void>;
  /** Enqueues branches already marked owed in Postgres; false when the queue could not take them all. */
  enqueueOwed(branches: { id: string; tenantId: string; repositoryId: string }[]): Promise<boolean>;
  /** The repository was deleted: drop its queued work and cached data. */
  forget(tenantId: string, repositoryId: string): Promise<void>;
}

export const SYNC_DISPATCHER = Symbol('SYNC_DISPATCHER');
