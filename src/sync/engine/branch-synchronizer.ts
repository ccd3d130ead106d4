import {
  type FetchResult,
  type GitMirror,
  type SnapshotInspection,
  type TreeChanges,
  TreeChangesNotNeeded,
} from '../git/git-mirror.js';
import type { GitCredentials } from '../git/git-runner.js';
import { GitError, GitRemoteRefNotFoundError, isRetryableGitError } from '../git/git-errors.js';
import type { GraphIndexing } from '../graph-indexing.js';
import type { WorkspaceCache, WorkspaceLease } from '../workspace/workspace-cache.js';
import type {
  ClaimedBranch,
  PhaseTimings,
  GraphStep,
  RunOutcome,
  SyncRepository,
  SyncStateStore,
} from './sync-types.js';
import { settleAll } from '../settle-all.js';
import { SnapshotCapture, type SnapshotTarEntry } from '../../artifacts/reproducible-tarball.js';
import { buildTarImage, type TarImage, TarImageUnusable } from '../../artifacts/tar-image.js';
import {
  type ArchiveBase,
  ArchiveBaseMismatch,
  type ArchiveBaseCache,
  spliceTreeChanges,
} from './archive-base.js';
import { TreeChangesUnreadable } from '../git/tree-changes.js';

/** More changed paths than this between two revisions: the archive is made from the snapshot. */
const ARCHIVE_BASE_MAX_CHANGES = 50_000;

/** What the archive step reports. */
type ArchivedRevision = { archive: { sizeBytes: number }; reused: boolean };

/** Resolves the git credentials of a repository (decrypted in memory, never logged). */
export type CredentialSource = (repository: SyncRepository) => Promise<GitCredentials | undefined>;
/** Refuses remotes that resolve to internal addresses (SSRF), unless configured otherwise. */
export type RemoteGuard = (cloneUrl: string) => Promise<void>;

/** The archive step of a sync (RevisionArchiver), kept behind an interface so the engine stays storage-agnostic. */
export interface RevisionArchiving {
  archive(r: {
    tenantId: string;
    repositoryId: string;
    branchId: string;
    sha: string;
    snapshotDir: string;
    /** The snapshot's entries in tree order, when they are not read from `snapshotDir`. */
    entries?: () => AsyncIterable<readonly SnapshotTarEntry[]>;
    /** The snapshot's tar, when it is made already (then neither entries nor `snapshotDir` are read). */
    image?: TarImage;
    /** Collects the entries read from `snapshotDir`, when the archive is written (not reused). */
    capture?: SnapshotCapture;
    commitTime: Date;
  }): Promise<ArchivedRevision>;
  applyRetention(branchId: string): Promise<number>;
}

/**
 * The compare-delta step (no git): brings a branch's snapshot from its synced commit to a new one with the
 * host's compare API, proven by tree id. Kept behind an interface so the engine knows no host API.
 */
export interface DeltaUpdating {
  /** Why compare-delta cannot be tried for this repository and range, or null when it can. */
  blocker(repository: SyncRepository, fromSha: string): Promise<string | null>;
  /**
   * The snapshot of `toSha`, proven, as the entries of its archive; ok:false means fall back to git. After
   * ok:true the caller must `release()` once it has archived the entries (or given up).
   */
  update(r: { repository: SyncRepository; fromSha: string; toSha: string }): Promise<
    | {
        ok: true;
        filesChanged: number;
        bytesDownloaded: number;
        commitTime: Date;
        detail: string;
        entries: () => AsyncIterable<readonly SnapshotTarEntry[]>;
        release: () => Promise<void>;
      }
    | { ok: false; code: string; reason: string }
  >;
}

export interface SyncAttempt {
  branchId: string;
  /** The queue job's id (one per branch). */
  jobId: string;
  /**
   * Unique to this pickup of the job (`<jobId>:<queue lock token>`): the compare-and-set key of the branch
   * lock. A worker whose queue lock expired (paused, cut off) keeps its old token, so once another pickup
   * has taken the branch over, none of the stale worker's writes apply.
   */
  lockToken: string;
  /** 1-based attempt number of this job. */
  attempt: number;
  /** No retry follows a failure of this attempt. */
  lastAttempt: boolean;
}

export type SyncResult =
  | { kind: 'gone' }
  | { kind: 'done'; outcome: RunOutcome['status']; followUp: boolean; sha: string | null }
  | { kind: 'failed'; followUp: boolean; retry: boolean; error: Error }
  | { kind: 'deferred'; retryAt: Date };

/** What one attempt found and did, before it is recorded. */
interface AttemptOutcome {
  run: RunOutcome;
  sha: string | null;
  remoteSha: string | null;
  deleted?: boolean;
  /** The rest of the work, once the outcome is recorded: it holds the workspace lease and releases it. Never fails. */
  afterRecorded?: () => Promise<void>;
}

/** The host asked us to wait (API rate limit): not a failure; the job runs again at `retryAt`. */
export class SyncDeferred extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryAt: Date,
  ) {
    super(message);
    this.name = 'SyncDeferred';
  }
}

/** An error the queue must not retry (bad credentials, missing repository). */
export class PermanentSyncError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'PermanentSyncError';
  }
}

function errorCode(e: unknown): string {
  if (e instanceof GitError || e instanceof PermanentSyncError) return e.code;
  return 'SYNC_ERROR';
}

/** A message for users: what went wrong and what to do, never a credential. */
export function describeSyncError(e: unknown): string {
  if (e instanceof GitError) {
    switch (e.code) {
      case 'GIT_AUTH_FAILED':
        return 'authentication failed: the repository needs valid credentials (check the access token or connection)';
      case 'GIT_REPOSITORY_NOT_FOUND':
        return 'the repository was not found on the host (deleted, renamed, or not visible to these credentials)';
      case 'GIT_TIMEOUT':
        return `git timed out: ${e.message}`;
      default:
        return e.message;
    }
  }
  return e instanceof Error ? e.message : String(e);
}

/**
 * Brings one branch to its remote head: claim -> resolve (the fetch into a cached clone, else ls-remote)
 * -> (noop | clone | fetch) -> snapshot -> archive beside graph -> record.
 * Every step is safe to re-run: the lock is a compare-and-set keyed by the job id, runs are rows, and the
 * snapshot is rebuilt from the commit whatever state it was left in.
 */
export class BranchSynchronizer {
  constructor(
    private readonly store: SyncStateStore,
    private readonly mirror: GitMirror,
    private readonly workspaces: WorkspaceCache,
    private readonly credentials: CredentialSource,
    private readonly guardRemote: RemoteGuard,
    private readonly log: (msg: string, fields?: object) => void = () => undefined,
    private readonly archiver: RevisionArchiving | null = null,
    private readonly graph: GraphIndexing | null = null,
    private readonly delta: DeltaUpdating | null = null,
    /** Entries of each branch's last archive, from which the next one is made (null: always from the snapshot). */
    private readonly archiveBases: ArchiveBaseCache | null = null,
  ) {}

  /** Runs one attempt for a branch and records its outcome. */
  async sync(attempt: SyncAttempt): Promise<SyncResult> {
    const branch = await this.store.claimBranch(
      attempt.branchId,
      attempt.lockToken,
      attempt.jobId,
      attempt.attempt,
    );
    if (!branch) return { kind: 'gone' };
    if (branch.tookOver)
      this.log('took over a branch whose previous worker stopped', { branchId: branch.branchId });
    const runId = branch.runId;
    const timings: PhaseTimings = {};
    const timed = async <T>(phase: string, step: () => Promise<T>): Promise<T> => {
      const started = performance.now();
      try {
        return await step();
      } finally {
        timings[phase] = Math.round((timings[phase] ?? 0) + performance.now() - started);
      }
    };

    try {
      const outcome = await this.attempt(branch, timed, (sha) =>
        this.store.setSyncTarget(branch.branchId, attempt.lockToken, sha),
      );
      let followUp = false;
      try {
        await this.store.finishRun(runId, branch.syncedSha, outcome.run, timings);
        if (outcome.deleted) {
          await this.store.markBranchDeleted(branch.branchId, attempt.lockToken);
          return { kind: 'done', outcome: 'NOOP', followUp: false, sha: null };
        }
        followUp = await this.store.completeBranch(
          branch.branchId,
          attempt.lockToken,
          outcome.sha,
          outcome.remoteSha,
          outcome.run.status === 'SUCCEEDED' ? (outcome.run.graph.indexedSha ?? undefined) : undefined,
        );
        // Once the branch is SYNCED: older archives are not what it waits for.
        if (this.archiver && outcome.run.status === 'SUCCEEDED') {
          await this.archiver.applyRetention(branch.branchId).catch((e: unknown) => {
            this.log('archive retention failed; retried later', {
              branchId: branch.branchId,
              err: String(e),
            });
          });
        }
      } finally {
        if (outcome.afterRecorded) {
          await outcome.afterRecorded();
          await this.store.recordPhaseTimings(runId, timings).catch((e: unknown) => {
            this.log('phase timings not recorded', { branchId: branch.branchId, err: String(e) });
          });
        }
      }
      // A trigger that came once the branch was recorded found its job still running, so it was not
      // queued (same job id): it is followed up here, as one that came during the run would be.
      // Should the check fail, the reconciler queues the branch later.
      followUp ||= await this.store.isOwed(branch.branchId).catch(() => false);
      return { kind: 'done', outcome: outcome.run.status, followUp, sha: outcome.sha };
    } catch (e) {
      if (e instanceof SyncDeferred) {
        await this.store.finishRun(
          runId,
          branch.syncedSha,
          { status: 'DEFERRED', errorCode: e.code, error: e.message },
          timings,
        );
        await this.store.deferBranch(branch.branchId, attempt.lockToken, e.code, e.message, branch.trigger);
        this.log('sync deferred', {
          branchId: branch.branchId,
          code: e.code,
          retryAt: e.retryAt.toISOString(),
        });
        return { kind: 'deferred', retryAt: e.retryAt };
      }
      const permanent = e instanceof PermanentSyncError || (e instanceof GitError && !isRetryableGitError(e));
      const final = permanent || attempt.lastAttempt;
      const code = errorCode(e);
      const message = describeSyncError(e);
      await this.store.finishRun(
        runId,
        branch.syncedSha,
        { status: 'FAILED', errorCode: code, error: message },
        timings,
      );
      const followUp = await this.store.failBranch(branch.branchId, attempt.lockToken, code, message, final);
      this.log('sync attempt failed', { branchId: branch.branchId, code, final, attempt: attempt.attempt });
      return {
        kind: 'failed',
        followUp,
        retry: !final,
        error: e instanceof Error ? e : new Error(String(e)),
      };
    }
  }

  private async attempt(
    branch: ClaimedBranch,
    timed: <T>(phase: string, step: () => Promise<T>) => Promise<T>,
    announceTarget: (sha: string | null) => Promise<void>,
  ): Promise<AttemptOutcome> {
    const repo = branch.repository;
    await this.guardRemote(repo.cloneUrl);
    // Re-read for every git operation: installation and OAuth tokens expire and are renewed meanwhile.
    const credentials = () => this.credentials(repo);
    // The synced SHA is recorded only once the revision's archive is, so a remote head equal to it means
    // nothing to do, whichever worker holds a clone (a snapshot left behind is updated by the next sync).
    const alreadySynced = (sha: string) => ({
      run: { status: 'NOOP' as const, strategyReason: 'already at the remote head', toSha: sha },
      sha,
      remoteSha: sha,
    });

    const lease = await timed('workspace', () => this.workspaces.acquire(repo.id));
    // The snapshot's in-place checks, started beside the fetch; settled before the clone is reset or the
    // lease ends, so no git runs in a workspace that is going away.
    let inspection: Promise<SnapshotInspection> | null = null;
    // git's changes from the synced commit to the fetched one, started with the fetch when the archive is
    // made from the last one's; stopped, like the inspection, before the clone is reset or the lease ends.
    let changesAhead: TreeChangesAhead | null = null;
    const settleBesideFetch = async (): Promise<void> => {
      await inspection?.catch(() => undefined);
      await changesAhead?.stop();
    };
    // Set once the lease is handed to the step after the branch is recorded, which releases it.
    let handedOver = false;
    // The synced revision's archive as kept in memory (its image held until this attempt ends).
    let base: ArchiveBase | null = null;
    try {
      const snapshotDir = lease.snapshotDir(branch.name);
      const plan = this.plan(repo, lease);
      // With the entries of the synced revision's archive at hand, the next archive is made from them and
      // git's changes: this sync does not read the snapshot, which is updated once the branch is recorded.
      base =
        this.archiver && plan.strategy === 'fetch' && branch.syncedSha
          ? (this.archiveBases?.get(branch.branchId, branch.syncedSha) ?? null)
          : null;
      let strategy = plan.strategy;
      let reason = plan.reason;
      let fetched: FetchResult | null = null;
      // COMPARE prefers the delta over a cached clone: resolve the head with ls-remote first.
      const deltaFirst = this.delta !== null && repo.syncStrategy === 'COMPARE';
      if (plan.strategy === 'fetch' && !deltaFirst) {
        // With a cached clone, fetching the branch is what resolves its head (no ls-remote first): a fetch
        // that brings nothing new is a no-op, and a branch the remote lacks is resolved below. When the
        // snapshot is read by this sync, its checks need no new objects, so they run meanwhile.
        if (base === null) {
          inspection = timed('inspect', () => this.mirror.inspectSnapshot(lease.gitDir, snapshotDir));
          inspection.catch(() => undefined);
        }
        if (base !== null && this.archiveBases) {
          changesAhead = this.startTreeChanges(
            lease.gitDir,
            branch.syncedSha!,
            this.archiveBases,
            credentials,
          );
        }
        const cached = await this.fetchIntoCache(lease, repo, branch.name, timed, credentials);
        if (cached === 'unusable') {
          // A broken cached clone must not fail the sync: start over from a fresh clone.
          await settleBesideFetch();
          inspection = null;
          changesAhead = null;
          await lease.reset();
          strategy = 'clone';
          reason = 'the cached clone was unusable';
        } else if (cached !== 'missing') {
          fetched = cached;
          await announceTarget(fetched.sha);
          if (fetched.sha === branch.syncedSha) return alreadySynced(fetched.sha);
        }
      }
      if (fetched === null) {
        // No usable clone, or the branch was not on the remote: ls-remote tells an empty repository, a
        // deleted branch and a branch that came back apart.
        const heads = await timed('resolve', async () =>
          this.mirror.lsRemote(repo.cloneUrl, await credentials()),
        );
        if (heads.branches.size === 0) {
          return {
            run: { status: 'NOOP', strategyReason: 'the repository is empty', toSha: null },
            sha: null,
            remoteSha: null,
          };
        }
        const remoteSha = heads.branches.get(branch.name);
        await announceTarget(remoteSha ?? null);
        if (!remoteSha) {
          return {
            run: {
              status: 'NOOP',
              strategyReason: `branch ${branch.name} no longer exists on the host`,
              toSha: null,
            },
            sha: branch.syncedSha,
            remoteSha: null,
            deleted: true,
          };
        }
        if (remoteSha === branch.syncedSha) return alreadySynced(remoteSha);
        const delta = await this.tryDelta(branch, snapshotDir, remoteSha, lease.ready, timed);
        if (delta.done) return delta.done;
        if (delta.reason) reason = `${reason}; ${delta.reason}`;
        if (lease.ready && strategy === 'fetch') {
          // The branch was recreated between the fetch and ls-remote.
          fetched = await timed('fetch', async () =>
            this.mirror.fetch(lease.gitDir, repo.cloneUrl, branch.name, await credentials()),
          );
        } else {
          await settleBesideFetch();
          inspection = null;
          changesAhead = null;
          if (lease.ready) await lease.reset();
          fetched = await timed('clone', async () =>
            this.mirror.clone(repo.cloneUrl, lease.gitDir, branch.name, await credentials()),
          );
        }
      }
      const sha = fetched.sha;
      // Only after a fetch, which brought the new blobs: a fresh blobless clone would fetch them one by one.
      const fromBase = base !== null && strategy === 'fetch' && branch.syncedSha !== sha;
      const indexing = this.graph?.enabled ? this.graph : null;

      // The checks beside the archive only read commits, which a blobless clone has; the graph step reads
      // history (git log), not the snapshot.
      const checkHistory = (): Promise<boolean> =>
        branch.syncedSha && branch.syncedSha !== sha
          ? timed('history', async () =>
              this.mirror.isAncestor(lease.gitDir, branch.syncedSha!, sha, await credentials()),
            )
          : Promise.resolve(true);
      const [ancestry, graph, made] = await settleAll([
        // Made from the previous archive, the new commit is read anyway: a parent that is the synced
        // commit makes it a fast-forward without one more git process beside the archive.
        fromBase ? Promise.resolve(null) : checkHistory(),
        indexing
          ? timed('graph', async () =>
              indexing.index({
                tenantId: branch.tenantId,
                repository: repo,
                branch: branch.name,
                fromSha: branch.indexedSha,
                toSha: sha,
                gitDir: lease.gitDir,
                credentials: await credentials(),
                onProgress: (done, total) =>
                  this.log('graph indexing progress', { branchId: branch.branchId, done, total }),
              }),
            )
          : Promise.resolve<GraphStep>({ status: 'disabled', commits: 0, indexedSha: null }),
        this.archiveRevision(
          branch,
          lease,
          sha,
          fromBase ? { base: base!, changes: changesAhead?.changesTo(sha) ?? null } : null,
          inspection,
          timed,
          credentials,
        ),
      ]);
      // The inspection, if any, was settled by the checkout.
      inspection = null;
      const fastForward =
        ancestry ?? (made.parents?.includes(branch.syncedSha!) === true || (await checkHistory()));
      if (!fastForward)
        reason = `${reason}; force-push: ${branch.syncedSha!.slice(0, 12)} is not an ancestor`;
      if (made.archived) {
        const source = made.archived.source === null ? '' : `, ${made.archived.source}`;
        reason = `${reason}; archive ${made.archived.reused ? 'reused' : 'stored'} (${made.archived.archive.sizeBytes} bytes${source})`;
      }
      handedOver = true;
      return {
        run: {
          status: 'SUCCEEDED',
          strategy,
          strategyReason: reason,
          toSha: sha,
          bytesFetched: fetched.bytesFetched,
          filesChanged: made.filesChanged,
          graph,
        },
        sha,
        remoteSha: sha,
        afterRecorded: () => this.afterRecorded(branch, lease, sha, made.snapshotUpdated, timed, credentials),
      };
    } finally {
      base?.image?.release();
      await settleBesideFetch();
      if (!handedOver) await lease.release();
    }
  }

  /**
   * The archive of `sha`, made from `from.base` (the synced revision's archive) and git's changes (`from.changes`
   * when they were started already) when given and they fit, otherwise from the snapshot once it is updated
   * to `sha`; and the number of paths that changed. `snapshotUpdated` is false when the snapshot was not
   * needed and still holds the old revision.
   */
  private async archiveRevision(
    branch: ClaimedBranch,
    lease: WorkspaceLease,
    sha: string,
    from: { base: ArchiveBase; changes: Promise<TreeChanges | null> | null } | null,
    inspection: Promise<SnapshotInspection> | null,
    timed: <T>(phase: string, step: () => Promise<T>) => Promise<T>,
    credentials: () => Promise<GitCredentials | undefined>,
  ): Promise<{
    /** `source`: how it was made when not from the snapshot (for the run's reason). */
    archived: (ArchivedRevision & { source: string | null }) | null;
    filesChanged: number;
    snapshotUpdated: boolean;
    /** The new commit's parents, when they were read on the way. */
    parents: string[] | null;
  }> {
    const fromBase = from
      ? await timed('archive', () =>
          this.archiveFromBase(branch, from.base, from.changes, branch.syncedSha!, sha, lease, credentials),
        )
      : null;
    if (fromBase) {
      const { parents, ...archived } = fromBase;
      return { archived, filesChanged: fromBase.filesChanged, snapshotUpdated: false, parents };
    }

    const archiver = this.archiver;
    const snapshotDir = lease.snapshotDir(branch.name);
    const [checkedOut, commitTime] = await settleAll([
      timed('checkout', async () =>
        this.mirror.checkoutSnapshot(lease.gitDir, snapshotDir, sha, {
          credentials: await credentials(),
          inspection: inspection ?? undefined,
        }),
      ),
      archiver ? this.mirror.commitTime(lease.gitDir, sha) : Promise.resolve(null),
    ]);
    const filesChanged =
      checkedOut.filesChanged ?? (await this.mirror.changedPathCount(lease.gitDir, branch.syncedSha!, sha));
    // The branch becomes SYNCED only once its archive is recorded: a failure here fails the attempt.
    const archived =
      archiver && commitTime
        ? await timed('archive', () =>
            this.archiveFromSnapshot(archiver, branch, sha, snapshotDir, commitTime),
          )
        : null;
    return { archived, filesChanged, snapshotUpdated: true, parents: null };
  }

  /**
   * After the branch is recorded: brings the snapshot to `sha` when this sync did not need it, repacks
   * when due, and releases the lease. Never fails: a snapshot left behind is updated by the next sync
   * (its ref says which commit it holds), and the clone is repacked then.
   */
  private async afterRecorded(
    branch: ClaimedBranch,
    lease: WorkspaceLease,
    sha: string,
    snapshotUpdated: boolean,
    timed: <T>(phase: string, step: () => Promise<T>) => Promise<T>,
    credentials: () => Promise<GitCredentials | undefined>,
  ): Promise<void> {
    try {
      if (!snapshotUpdated) {
        await timed('checkout', async () =>
          this.mirror.checkoutSnapshot(lease.gitDir, lease.snapshotDir(branch.name), sha, {
            credentials: await credentials(),
            countChanges: false,
          }),
        );
      }
      await timed('gc', () => this.mirror.collectGarbage(lease.gitDir));
    } catch (e) {
      this.log('snapshot update after the sync failed; the next sync makes it again', {
        branchId: branch.branchId,
        err: e instanceof Error ? e.message : String(e),
      });
    } finally {
      await lease.release();
    }
  }

  /**
   * git's changes from `fromSha` to a commit a fetch is about to bring: the processes start now and read
   * the commit once it is given, so after the fetch only their work is left to wait for.
   */
  private startTreeChanges(
    gitDir: string,
    fromSha: string,
    bases: ArchiveBaseCache,
    credentials: () => Promise<GitCredentials | undefined>,
  ): TreeChangesAhead {
    let target!: { resolve: (sha: string) => void; reject: (reason: Error) => void };
    const to = new Promise<string>((resolve, reject) => (target = { resolve, reject }));
    // Refused before git was started (the credentials still to come): nobody else may be listening yet.
    to.catch(() => undefined);
    const changes = (async () =>
      this.mirror.treeChanges(gitDir, fromSha, to, treeChangeLimits(bases), await credentials()))();
    // Awaited by whoever takes them, or by stop().
    changes.catch(() => undefined);
    return {
      changesTo: (sha) => {
        target.resolve(sha);
        return changes;
      },
      stop: async () => {
        target.reject(new TreeChangesNotNeeded());
        await changes.catch(() => undefined);
      },
    };
  }

  /**
   * The archive of `sha` made from the entries of the synced revision's archive and git's changes between
   * the two commits; null when the changes are too large to hold or do not fit the entries (the archive is
   * then made from the snapshot). Keeps the new entries for the next revision.
   */
  private async archiveFromBase(
    branch: ClaimedBranch,
    base: ArchiveBase,
    changesAhead: Promise<TreeChanges | null> | null,
    fromSha: string,
    sha: string,
    lease: WorkspaceLease,
    credentials: () => Promise<GitCredentials | undefined>,
  ): Promise<(ArchivedRevision & { source: string; filesChanged: number; parents: string[] }) | null> {
    const archiver = this.archiver;
    const bases = this.archiveBases;
    if (!archiver || !bases) return null;
    let changes: TreeChanges | null;
    let image: TarImage;
    try {
      changes = await (changesAhead ??
        this.mirror.treeChanges(lease.gitDir, fromSha, sha, treeChangeLimits(bases), await credentials()));
      if (changes === null) return null;
      const spliced = spliceTreeChanges(base.entries, changes.changes);
      // With the previous tar at hand, the unchanged entries are copied from it.
      image = await buildTarImage(
        spliced.entries,
        { mtime: changes.commitTime, commitId: sha },
        bases.buffers,
        base.image ? { image: base.image, sources: spliced.sources } : undefined,
      );
    } catch (e) {
      if (!(
        e instanceof ArchiveBaseMismatch ||
        e instanceof TarImageUnusable ||
        e instanceof TreeChangesUnreadable ||
        e instanceof GitError
      ))
        throw e;
      // Not this branch's tree after all, or git could not tell: the snapshot is archived instead.
      bases.delete(branch.branchId);
      this.log('archive not made from the previous one; archiving the snapshot', {
        branchId: branch.branchId,
        reason: e.message,
      });
      return null;
    }
    let archived: ArchivedRevision;
    try {
      archived = await archiver.archive({
        tenantId: branch.tenantId,
        repositoryId: branch.repository.id,
        branchId: branch.branchId,
        sha,
        // Not read: the image is the snapshot.
        snapshotDir: lease.snapshotDir(branch.name),
        image,
        commitTime: changes.commitTime,
      });
    } catch (e) {
      image.release();
      throw e;
    }
    bases.setImage(branch.branchId, sha, image);
    return {
      ...archived,
      source: `from the previous archive's ${base.image ? 'tar' : 'entries'} and ${changes.changes.length} changed paths`,
      filesChanged: changes.filesChanged,
      parents: changes.parents,
    };
  }

  /** The archive of `sha` read from the updated snapshot; its entries are kept for the next revision. */
  private async archiveFromSnapshot(
    archiver: RevisionArchiving,
    branch: ClaimedBranch,
    sha: string,
    snapshotDir: string,
    commitTime: Date,
  ): Promise<ArchivedRevision & { source: null }> {
    const capture = this.archiveBases ? new SnapshotCapture(this.archiveBases.maxBytes) : undefined;
    const archived = await archiver.archive({
      tenantId: branch.tenantId,
      repositoryId: branch.repository.id,
      branchId: branch.branchId,
      sha,
      snapshotDir,
      capture,
      commitTime,
    });
    const captured = archived.reused ? null : capture?.result();
    if (captured) this.archiveBases?.set(branch.branchId, sha, captured.entries, captured.bytes);
    else this.archiveBases?.delete(branch.branchId);
    return { ...archived, source: null };
  }

  /**
   * Compare-delta when it applies (no usable clone under AUTO, or preferred under COMPARE, a previous
   * archive, a host API): the finished run, or why git is used instead.
   */
  private async tryDelta(
    branch: ClaimedBranch,
    snapshotDir: string,
    toSha: string,
    hasClone: boolean,
    timed: <T>(phase: string, step: () => Promise<T>) => Promise<T>,
  ): Promise<{
    done?: { run: RunOutcome; sha: string; remoteSha: string };
    reason?: string;
  }> {
    const repo = branch.repository;
    const delta = this.delta;
    if (!delta || !branch.syncedSha) return {};
    if (repo.syncStrategy === 'FULL' || repo.syncStrategy === 'FETCH') return {};
    if (repo.syncStrategy === 'AUTO' && hasClone) return {};
    if (repo.syncStrategy === 'AUTO' && this.graph?.enabled) {
      // The graph index reads history from a clone; a delta brings none, so AUTO keeps cloning.
      return { reason: 'compare-delta not used: the graph index needs the history a clone brings' };
    }
    const fromSha = branch.syncedSha;
    const blocker = await delta.blocker(repo, fromSha);
    if (blocker !== null) return { reason: `compare-delta not used: ${blocker}` };
    const result = await timed('delta', () => delta.update({ repository: repo, fromSha, toSha }));
    if (!result.ok) {
      this.log('compare-delta fell back to git', { branchId: branch.branchId, code: result.code });
      return { reason: `compare-delta fell back (${result.code}): ${result.reason}` };
    }
    let reason = `no cached clone needed: ${result.detail}`;
    try {
      if (this.archiver) {
        const archiver = this.archiver;
        const archived = await timed('archive', () =>
          archiver.archive({
            tenantId: branch.tenantId,
            repositoryId: repo.id,
            branchId: branch.branchId,
            sha: toSha,
            snapshotDir,
            entries: result.entries,
            commitTime: result.commitTime,
          }),
        );
        reason = `${reason}; archive ${archived.reused ? 'reused' : 'stored'} (${archived.archive.sizeBytes} bytes)`;
      }
    } finally {
      await result.release();
    }
    return {
      done: {
        run: {
          status: 'SUCCEEDED',
          strategy: 'compare-delta',
          strategyReason: reason,
          toSha,
          bytesFetched: result.bytesDownloaded,
          filesChanged: result.filesChanged,
          // Only COMPARE gets here with the graph on: it catches up once a worker holds a clone.
          graph: { status: this.graph?.enabled ? 'pending' : 'disabled', commits: 0, indexedSha: null },
        },
        sha: toSha,
        remoteSha: toSha,
      },
    };
  }

  /**
   * Fetches the branch into the cached clone: its new head, `missing` when the remote has no such branch,
   * or `unusable` when the clone is damaged (the caller wipes it, for a fresh clone).
   */
  private async fetchIntoCache(
    lease: WorkspaceLease,
    repo: SyncRepository,
    branchName: string,
    timed: <T>(phase: string, step: () => Promise<T>) => Promise<T>,
    credentials: () => Promise<GitCredentials | undefined>,
  ): Promise<FetchResult | 'missing' | 'unusable'> {
    try {
      return await timed('fetch', async () =>
        this.mirror.fetch(lease.gitDir, repo.cloneUrl, branchName, await credentials()),
      );
    } catch (e) {
      if (e instanceof GitRemoteRefNotFoundError) return 'missing';
      // A broken cached clone must not fail the sync: start over from a fresh clone.
      if (e instanceof GitError && (isRetryableGitError(e) || !isLocalCorruption(e))) throw e;
      this.log('cached clone unusable, re-cloning', { repositoryId: repo.id, code: errorCode(e) });
      return 'unusable';
    }
  }

  /** fetch into the cached clone when there is one; clone otherwise or when the repository forces it. */
  private plan(repo: SyncRepository, lease: WorkspaceLease): { strategy: 'fetch' | 'clone'; reason: string } {
    if (repo.syncStrategy === 'FULL')
      return { strategy: 'clone', reason: 'the repository forces a full clone' };
    if (!lease.ready) return { strategy: 'clone', reason: 'no cached clone on this worker' };
    return { strategy: 'fetch', reason: 'cached clone present' };
  }
}

/** git's changes started before the commit they go to is known (see startTreeChanges). */
interface TreeChangesAhead {
  /** The changes to `sha`, the fetched commit. */
  changesTo(sha: string): Promise<TreeChanges | null>;
  /** Not needed after all: git is stopped (no-op once changesTo was called), and waited for. */
  stop(): Promise<void>;
}

/** What an archive made from the last one can take: beyond it, the snapshot is archived instead. */
function treeChangeLimits(bases: ArchiveBaseCache): { maxChanges: number; maxBytes: number } {
  return { maxChanges: ARCHIVE_BASE_MAX_CHANGES, maxBytes: bases.maxBytes };
}

/** Git failures that mean the local clone is damaged rather than the remote refusing us. */
function isLocalCorruption(e: GitError): boolean {
  return e.code === 'GIT_COMMAND_FAILED' || e.code === 'GIT_REF_NOT_FOUND';
}
