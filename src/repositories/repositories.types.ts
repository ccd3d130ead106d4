export type Provider = 'GITHUB' | 'GITLAB' | 'GIT';
export type SyncStrategy = 'AUTO' | 'FETCH' | 'COMPARE' | 'FULL';
export type SyncStatus = 'PENDING' | 'SYNCING' | 'SYNCED' | 'OUTDATED' | 'FAILED';
export type SyncTrigger = 'WEBHOOK' | 'POLL' | 'MANUAL' | 'ONBOARD' | 'RECONCILE';
export type RunStatus = 'RUNNING' | 'SUCCEEDED' | 'NOOP' | 'FAILED' | 'ABANDONED' | 'DEFERRED';

export const PROVIDERS: Provider[] = ['GITHUB', 'GITLAB', 'GIT'];
export const SYNC_STRATEGIES: SyncStrategy[] = ['AUTO', 'FETCH', 'COMPARE', 'FULL'];
export const SYNC_STATUSES: SyncStatus[] = ['PENDING', 'SYNCING', 'SYNCED', 'OUTDATED', 'FAILED'];

export interface BranchRecord {
  id: string;
  repositoryId: string;
  name: string;
  status: SyncStatus;
  remoteHeadSha: string | null;
  syncedSha: string | null;
  dirty: boolean;
  failureCount: number;
  lastError: string | null;
  lastErrorCode: string | null;
  lastSyncedAt: Date | null;
  deletedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface SyncRunRecord {
  id: string;
  branchId: string;
  trigger: SyncTrigger;
  strategy: string | null;
  strategyReason: string | null;
  fromSha: string | null;
  toSha: string | null;
  status: RunStatus;
  attempt: number;
  phaseTimings: Record<string, number>;
  bytesFetched: number | null;
  filesChanged: number | null;
  errorCode: string | null;
  error: string | null;
  startedAt: Date;
  finishedAt: Date | null;
}

export interface RepositoryRecord {
  id: string;
  tenantId: string;
  projectId: string | null;
  connectionId: string | null;
  provider: Provider;
  host: string;
  owner: string;
  name: string;
  cloneUrl: string;
  defaultBranch: string | null;
  trackDefaultBranch: boolean;
  hasAccessToken: boolean;
  webhookId: string | null;
  webhookError: string | null;
  syncStrategy: SyncStrategy;
  status: SyncStatus;
  lastCommitSha: string | null;
  lastSyncedAt: Date | null;
  lastError: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface BranchArchive {
  sha: string;
  sizeBytes: number;
  sha256: string;
  createdAt: Date;
}

export interface RepositoryDetail extends RepositoryRecord {
  branches: (BranchRecord & { archive: BranchArchive | null })[];
  recentRuns: SyncRunRecord[];
}

export interface RepositoryFilter {
  status?: SyncStatus;
  provider?: Provider;
  projectId?: string;
  q?: string;
}

/** Summarises branch states into the repository's status (worst first). */
export function summariseStatus(statuses: SyncStatus[]): SyncStatus {
  if (statuses.length === 0) return 'PENDING';
  for (const s of ['FAILED', 'SYNCING', 'OUTDATED', 'PENDING'] as const) {
    if (statuses.includes(s)) return s;
  }
  return 'SYNCED';
}
