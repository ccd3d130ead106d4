import type { Provider, SyncStrategy, SyncTrigger } from '../../repositories/repositories.types.js';

/** What the engine needs to know about a branch it is syncing (read when the branch is claimed). */
export interface ClaimedBranch {
  branchId: string;
  tenantId: string;
  repositoryId: string;
  name: string;
  syncedSha: string | null;
  /** Last commit written to the graph index for this branch. */
  indexedSha: string | null;
  trigger: SyncTrigger;
  /** A previous holder of the lock died mid-sync (its run was marked ABANDONED). */
  tookOver: boolean;
  repository: SyncRepository;
}

export interface SyncRepository {
  id: string;
  tenantId: string;
  provider: Provider;
  host: string;
  owner: string;
  name: string;
  cloneUrl: string;
  syncStrategy: SyncStrategy;
  trackDefaultBranch: boolean;
  defaultBranch: string | null;
  accessTokenEncrypted: string | null;
  /** Connection whose token git uses (takes precedence over accessTokenEncrypted). */
  connectionId: string | null;
}

export interface GraphStep {
  status: 'indexed' | 'pending' | 'disabled';
  commits: number;
  /** The branch head now in the graph (set when indexed). */
  indexedSha: string | null;
}

export type RunOutcome =
  | {
      status: 'SUCCEEDED';
      strategy: string;
      strategyReason: string;
      toSha: string;
      bytesFetched: number;
      filesChanged: number;
      graph: GraphStep;
    }
  | { status: 'NOOP'; strategyReason: string; toSha: string | null }
  | { status: 'FAILED'; errorCode: string; error: string }
  | { status: 'DEFERRED'; errorCode: string; error: string };

export type PhaseTimings = Record<string, number>;

/** Postgres side of the engine: claims, runs and branch state, all by compare-and-set. */
export interface SyncStateStore {
  /**
   * Takes the branch for `lockedBy` (status -> SYNCING), also from an earlier pickup of the same job
   * (`<jobId>:...`, whose worker lost its queue lock), and starts the attempt's run (`runId`), at once;
   * null when the branch no longer exists.
   */
  claimBranch(
    branchId: string,
    lockedBy: string,
    jobId: string,
    attempt: number,
  ): Promise<(ClaimedBranch & { runId: string }) | null>;
  finishRun(runId: string, fromSha: string | null, outcome: RunOutcome, timings: PhaseTimings): Promise<void>;
  /** Replaces a finished run's phase timings: with the steps that run after the branch is recorded. */
  recordPhaseTimings(runId: string, timings: PhaseTimings): Promise<void>;
  /** Records the head the running sync resolved (deliveries reporting it need no follow-up). */
  setSyncTarget(branchId: string, lockedBy: string, sha: string | null): Promise<void>;
  /**
   * The branch reached `sha` (null: empty repository), and the graph `indexedSha` when given. Returns
   * whether a follow-up sync is owed.
   */
  completeBranch(
    branchId: string,
    lockedBy: string,
    sha: string | null,
    remoteHeadSha: string | null,
    indexedSha?: string,
  ): Promise<boolean>;
  /** The attempt failed; `final` means no retry follows. Returns whether a follow-up sync is owed. */
  failBranch(
    branchId: string,
    lockedBy: string,
    code: string,
    message: string,
    final: boolean,
  ): Promise<boolean>;
  /**
   * The host asked us to wait: the branch is owed again (same trigger), without counting a failure; the
   * message says until when.
   */
  deferBranch(
    branchId: string,
    lockedBy: string,
    code: string,
    message: string,
    trigger: SyncTrigger,
  ): Promise<void>;
  /** Whether the branch is owed a sync (OUTDATED or PENDING, not deleted). */
  isOwed(branchId: string): Promise<boolean>;
  /** The branch no longer exists on the host. */
  markBranchDeleted(branchId: string, lockedBy: string): Promise<void>;
}
