import { Injectable } from '@nestjs/common';
import { PrismaService } from '../database/prisma.service.js';
import { RepositorySummaryRepository } from '../repositories/repository-summary.repository.js';
import type { SyncTrigger } from '../repositories/repositories.types.js';
import type {
  ClaimedBranch,
  PhaseTimings,
  RunOutcome,
  SyncRepository,
  SyncStateStore,
} from './engine/sync-types.js';

/** Longest error message kept on a row. */
const MAX_ERROR = 2000;

/** The claim statement's row: the branch and repository columns are null when the branch was not taken. */
interface ClaimRow {
  heldBy: string | null;
  found: number;
  abandoned: number;
  runId: string | null;
  tenantId: string | null;
  repositoryId: string | null;
  name: string | null;
  syncedSha: string | null;
  indexedSha: string | null;
  trigger: string | null;
  provider: string | null;
  host: string | null;
  owner: string | null;
  repositoryName: string | null;
  cloneUrl: string | null;
  syncStrategy: string | null;
  trackDefaultBranch: boolean | null;
  defaultBranch: string | null;
  accessTokenEncrypted: string | null;
  connectionId: string | null;
}

/** Postgres state of syncs: every transition is one conditional statement, safe to re-run. */
@Injectable()
export class SyncStateRepository implements SyncStateStore {
  constructor(
    private readonly prisma: PrismaService,
    private readonly summaries: RepositorySummaryRepository,
  ) {}

  async claimBranch(
    branchId: string,
    lockedBy: string,
    jobId: string,
    attempt: number,
  ): Promise<(ClaimedBranch & { runId: string }) | null> {
    // One statement, so one round trip and one commit: the branch row is locked first (cur); a trigger
    // arriving meanwhile waits and then sees SYNCING (and marks the branch dirty). Compare-and-set: SYNCING
    // held by another job is not ours to take; an earlier pickup of this job (its worker died or lost the
    // queue lock) is, and its token stops working from now on, its run marked ABANDONED.
    const rows = await this.prisma.$queryRaw<ClaimRow[]>`
      WITH cur AS (
        SELECT "id", "status", "lockedBy", "pendingTrigger", "remoteHeadSha" FROM "Branch"
        WHERE "id" = ${branchId}::uuid AND "deletedAt" IS NULL FOR UPDATE
      ), ok AS (
        SELECT * FROM cur
        WHERE NOT ("status" = 'SYNCING' AND "lockedBy" IS DISTINCT FROM ${lockedBy}
          AND "lockedBy" IS NOT NULL AND NOT starts_with("lockedBy", ${`${jobId}:`}))
      ), abandoned AS (
        UPDATE "SyncRun" SET "status" = 'ABANDONED', "finishedAt" = now(),
          "error" = 'the worker stopped during this run'
        WHERE "branchId" = (SELECT "id" FROM ok) AND "status" = 'RUNNING'
        RETURNING 1
      ), claimed AS (
        UPDATE "Branch" b SET "status" = 'SYNCING', "lockedBy" = ${lockedBy}, "dirty" = false,
          "pendingTrigger" = NULL, "updatedAt" = now(),
          -- The head the host last reported is what this sync will reach (at least): deliveries naming it
          -- while the sync starts owe no follow-up. The fetch or ls-remote then records the exact target.
          "syncTargetSha" = ok."remoteHeadSha"
        FROM ok WHERE b."id" = ok."id"
        RETURNING b."id", b."tenantId", b."repositoryId", b."name", b."syncedSha", b."indexedSha",
          COALESCE(ok."pendingTrigger", 'RECONCILE'::"SyncTrigger") AS "trigger"
      ), repo AS (
        UPDATE "Repository" r SET "status" = 'SYNCING', "updatedAt" = now()
        FROM claimed WHERE r."id" = claimed."repositoryId"
        RETURNING r."id", r."tenantId", r."provider", r."host", r."owner", r."name", r."cloneUrl",
          r."syncStrategy", r."trackDefaultBranch", r."defaultBranch", r."accessTokenEncrypted", r."connectionId"
      ), run AS (
        INSERT INTO "SyncRun" ("id", "tenantId", "repositoryId", "branchId", "trigger", "fromSha", "attempt", "jobId")
        SELECT gen_random_uuid(), c."tenantId", c."repositoryId", c."id", c."trigger", c."syncedSha", ${attempt}, ${jobId}
        FROM claimed c
        RETURNING "id"
      )
      SELECT (SELECT "lockedBy" FROM cur) AS "heldBy", (SELECT count(*) FROM cur)::int AS "found",
        (SELECT count(*) FROM abandoned)::int AS "abandoned", (SELECT "id" FROM run)::text AS "runId",
        c."tenantId"::text AS "tenantId", c."repositoryId"::text AS "repositoryId", c."name",
        c."syncedSha", c."indexedSha", c."trigger"::text AS "trigger",
        r."provider"::text AS "provider", r."host", r."owner", r."name" AS "repositoryName", r."cloneUrl",
        r."syncStrategy"::text AS "syncStrategy", r."trackDefaultBranch", r."defaultBranch",
        r."accessTokenEncrypted", r."connectionId"::text AS "connectionId"
      FROM (SELECT 1) one LEFT JOIN claimed c ON true LEFT JOIN repo r ON true`;
    const row = rows[0];
    if (!row || row.found === 0) return null;
    if (row.runId === null || row.tenantId === null || row.cloneUrl === null) {
      throw new Error(`branch ${branchId} is being synced by ${row.heldBy}`);
    }
    return {
      runId: row.runId,
      branchId,
      tenantId: row.tenantId,
      repositoryId: row.repositoryId!,
      name: row.name!,
      syncedSha: row.syncedSha,
      indexedSha: row.indexedSha,
      trigger: row.trigger as SyncTrigger,
      tookOver: row.abandoned > 0,
      repository: {
        id: row.repositoryId!,
        tenantId: row.tenantId,
        provider: row.provider as SyncRepository['provider'],
        host: row.host!,
        owner: row.owner!,
        name: row.repositoryName!,
        cloneUrl: row.cloneUrl,
        syncStrategy: row.syncStrategy as SyncRepository['syncStrategy'],
        trackDefaultBranch: row.trackDefaultBranch!,
        defaultBranch: row.defaultBranch,
        accessTokenEncrypted: row.accessTokenEncrypted,
        connectionId: row.connectionId,
      },
    };
  }

  async finishRun(
    runId: string,
    fromSha: string | null,
    outcome: RunOutcome,
    timings: PhaseTimings,
  ): Promise<void> {
    const done = outcome.status === 'SUCCEEDED' ? outcome : null;
    const noop = outcome.status === 'NOOP' ? outcome : null;
    const failed = outcome.status === 'FAILED' || outcome.status === 'DEFERRED' ? outcome : null;
    // One plain statement (this is on the way to SYNCED). Only a RUNNING run is finished: one abandoned by
    // a takeover stays ABANDONED.
    await this.prisma.$executeRaw`
      UPDATE "SyncRun" SET
        "status" = ${outcome.status}::"RunStatus", "finishedAt" = now(),
        "phaseTimings" = ${JSON.stringify(timings)}::jsonb, "fromSha" = ${fromSha},
        "strategy" = ${done?.strategy ?? (noop ? 'noop' : null)},
        "strategyReason" = ${done?.strategyReason ?? noop?.strategyReason ?? null},
        "toSha" = ${done?.toSha ?? noop?.toSha ?? null},
        "bytesFetched" = ${done ? BigInt(done.bytesFetched) : null}::bigint,
        "filesChanged" = ${done?.filesChanged ?? null}::int,
        "graphStatus" = ${done?.graph.status ?? null}, "graphCommits" = ${done?.graph.commits ?? null}::int,
        "errorCode" = ${failed?.errorCode ?? null}, "error" = ${failed ? failed.error.slice(0, MAX_ERROR) : null}
      WHERE "id" = ${runId}::uuid AND "status" = 'RUNNING'`;
  }

  async isOwed(branchId: string): Promise<boolean> {
    const owed = await this.prisma.branch.count({
      where: { id: branchId, deletedAt: null, status: { in: ['OUTDATED', 'PENDING'] } },
    });
    return owed > 0;
  }

  async recordPhaseTimings(runId: string, timings: PhaseTimings): Promise<void> {
    await this.prisma.syncRun.updateMany({ where: { id: runId }, data: { phaseTimings: timings } });
  }

  async setSyncTarget(branchId: string, lockedBy: string, sha: string | null): Promise<void> {
    await this.prisma.branch.updateMany({
      where: { id: branchId, lockedBy, status: 'SYNCING' },
      data: { syncTargetSha: sha, remoteHeadSha: sha },
    });
  }

  async completeBranch(
    branchId: string,
    lockedBy: string,
    sha: string | null,
    remoteHeadSha: string | null,
    indexedSha?: string,
  ): Promise<boolean> {
    const rows = await this.prisma.$queryRaw<{ followUp: boolean; repositoryId: string; tenantId: string }[]>`
      UPDATE "Branch" b SET
        "status" = CASE WHEN old."dirty" THEN 'OUTDATED'::"SyncStatus" ELSE 'SYNCED'::"SyncStatus" END,
        "dirty" = false, "lockedBy" = NULL, "syncTargetSha" = NULL, "syncedSha" = ${sha}, "remoteHeadSha" = ${remoteHeadSha},
        "failureCount" = 0, "lastError" = NULL, "lastErrorCode" = NULL,
        "lastSyncedAt" = now(), "updatedAt" = now(),
        "headChangedAt" = CASE WHEN b."syncedSha" IS DISTINCT FROM ${sha} THEN now() ELSE b."headChangedAt" END,
        "indexedSha" = COALESCE(${indexedSha ?? null}, b."indexedSha")
      FROM (SELECT "id", "dirty" FROM "Branch" WHERE "id" = ${branchId}::uuid FOR UPDATE) old
      WHERE b."id" = old."id" AND b."lockedBy" = ${lockedBy}
      RETURNING old."dirty" AS "followUp", b."repositoryId", b."tenantId"`;
    const row = rows[0];
    if (!row) return false;
    await this.refreshRepository(row.repositoryId);
    return row.followUp;
  }

  async failBranch(
    branchId: string,
    lockedBy: string,
    code: string,
    message: string,
    final: boolean,
  ): Promise<boolean> {
    const status = final ? 'FAILED' : 'OUTDATED';
    const rows = await this.prisma.$queryRaw<{ followUp: boolean; repositoryId: string }[]>`
      UPDATE "Branch" b SET
        "status" = CASE WHEN old."dirty" THEN 'OUTDATED'::"SyncStatus" ELSE ${status}::"SyncStatus" END,
        "dirty" = false, "lockedBy" = NULL, "syncTargetSha" = NULL, "failureCount" = b."failureCount" + 1,
        "lastError" = ${message.slice(0, MAX_ERROR)}, "lastErrorCode" = ${code}, "updatedAt" = now()
      FROM (SELECT "id", "dirty" FROM "Branch" WHERE "id" = ${branchId}::uuid FOR UPDATE) old
      WHERE b."id" = old."id" AND b."lockedBy" = ${lockedBy}
      RETURNING old."dirty" AS "followUp", b."repositoryId"`;
    const row = rows[0];
    if (!row) return false;
    await this.refreshRepository(row.repositoryId);
    return row.followUp;
  }

  async deferBranch(
    branchId: string,
    lockedBy: string,
    code: string,
    message: string,
    trigger: SyncTrigger,
  ): Promise<void> {
    const rows = await this.prisma.$queryRaw<{ repositoryId: string }[]>`
      UPDATE "Branch" SET "status" = 'OUTDATED', "dirty" = false, "lockedBy" = NULL, "syncTargetSha" = NULL,
        "pendingTrigger" = COALESCE("pendingTrigger", ${trigger}::"SyncTrigger"),
        "lastError" = ${message.slice(0, MAX_ERROR)}, "lastErrorCode" = ${code}, "updatedAt" = now()
      WHERE "id" = ${branchId}::uuid AND "lockedBy" = ${lockedBy}
      RETURNING "repositoryId"`;
    if (rows[0]) await this.refreshRepository(rows[0].repositoryId);
  }

  async markBranchDeleted(branchId: string, lockedBy: string): Promise<void> {
    const updated = await this.prisma.branch.updateMany({
      where: { id: branchId, lockedBy },
      data: { deletedAt: new Date(), status: 'SYNCED', dirty: false, lockedBy: null, lastError: null },
    });
    if (updated.count) {
      const b = await this.prisma.branch.findUnique({
        where: { id: branchId },
        select: { repositoryId: true },
      });
      if (b) await this.refreshRepository(b.repositoryId);
    }
  }

  /** Repository summary: worst branch status; the default (or newest) branch's commit and sync time. */
  async refreshRepository(repositoryId: string): Promise<void> {
    await this.summaries.refresh(repositoryId);
  }

  // --- onboarding and reconciling ---

  async loadRepository(repositoryId: string) {
    return this.prisma.repository.findUnique({
      where: { id: repositoryId },
      include: { branches: { select: { id: true, name: true, deletedAt: true, status: true } } },
    });
  }

  /**
   * Applies what ls-remote said about a repository: its default branch, the tracked default branch row
   * (created, revived or replaced after a rename), and which live branches are owed a sync.
   * Returns the ids of the branches to enqueue.
   */
  async applyRemoteLayout(repositoryId: string, defaultBranch: string | null, remoteBranches: Set<string>) {
    return this.prisma.$transaction(async (tx) => {
      const repo = await tx.repository.findUnique({
        where: { id: repositoryId },
        include: { branches: true },
      });
      if (!repo) return [];
      await tx.repository.update({
        where: { id: repositoryId },
        data: {
          defaultBranch,
          lastError: defaultBranch === null && remoteBranches.size === 0 ? 'the repository is empty' : null,
        },
      });
      if (repo.trackDefaultBranch && defaultBranch) {
        const existing = repo.branches.find((b) => b.name === defaultBranch);
        if (!existing) {
          await tx.branch.create({
            data: {
              tenantId: repo.tenantId,
              repositoryId,
              name: defaultBranch,
              status: 'OUTDATED',
              pendingTrigger: 'ONBOARD',
            },
          });
        } else if (existing.deletedAt) {
          await tx.branch.update({
            where: { id: existing.id },
            data: { deletedAt: null, status: 'OUTDATED', pendingTrigger: 'ONBOARD' },
          });
        }
        // The default branch was renamed: the old one is no longer tracked.
        await tx.branch.updateMany({
          where: { repositoryId, name: { not: defaultBranch }, deletedAt: null, status: { not: 'SYNCING' } },
          data: { deletedAt: new Date() },
        });
      }
      await tx.branch.updateMany({
        where: { repositoryId, status: 'PENDING', deletedAt: null },
        data: { status: 'OUTDATED', pendingTrigger: 'ONBOARD' },
      });
      const owed = await tx.branch.findMany({
        where: { repositoryId, deletedAt: null, status: { in: ['OUTDATED', 'FAILED'] } },
        select: { id: true, status: true },
      });
      return owed.filter((b) => b.status === 'OUTDATED').map((b) => b.id);
    });
  }

  /** Branches that Postgres says are owed a sync (OUTDATED or PENDING), oldest first. */
  async owedBranches(limit: number): Promise<{ id: string; tenantId: string; repositoryId: string }[]> {
    return this.prisma.branch.findMany({
      where: { deletedAt: null, status: { in: ['OUTDATED', 'PENDING'] } },
      orderBy: { updatedAt: 'asc' },
      take: limit,
      select: { id: true, tenantId: true, repositoryId: true },
    });
  }

  /** Branches in SYNCING whose row has not moved for `olderThanMs`. */
  async syncingBranches(olderThanMs: number, limit: number) {
    return this.prisma.branch.findMany({
      where: { status: 'SYNCING', updatedAt: { lt: new Date(Date.now() - olderThanMs) } },
      take: limit,
      select: { id: true, tenantId: true, repositoryId: true, lockedBy: true, updatedAt: true },
    });
  }

  /** SYNCING -> OUTDATED for a branch whose job is gone, only if nothing changed meanwhile. */
  async releaseOrphan(branchId: string, lockedBy: string | null, updatedAt: Date): Promise<boolean> {
    const { count } = await this.prisma.branch.updateMany({
      where: { id: branchId, status: 'SYNCING', lockedBy, updatedAt },
      data: { status: 'OUTDATED', lockedBy: null, pendingTrigger: 'RECONCILE' },
    });
    return count > 0;
  }

  /** Repositories following their default branch that have no live branch yet (onboarding owed). */
  async repositoriesAwaitingOnboarding(olderThanMs: number, limit: number) {
    return this.prisma.repository.findMany({
      where: {
        trackDefaultBranch: true,
        updatedAt: { lt: new Date(Date.now() - olderThanMs) },
        branches: { none: { deletedAt: null } },
      },
      take: limit,
      select: { id: true, tenantId: true },
    });
  }

  /**
   * Onboarding could not read the repository. Recorded on the repository; when no retry follows, its
   * never-synced branches become FAILED with the same error so the status says what is wrong.
   */
  async recordOnboardingFailure(
    repositoryId: string,
    code: string,
    message: string,
    final: boolean,
  ): Promise<void> {
    const error = message.slice(0, MAX_ERROR);
    await this.prisma.repository.updateMany({ where: { id: repositoryId }, data: { lastError: error } });
    if (!final) return;
    await this.prisma.branch.updateMany({
      where: { repositoryId, deletedAt: null, status: 'PENDING' },
      data: { status: 'FAILED', lastError: error, lastErrorCode: code, failureCount: { increment: 1 } },
    });
    await this.refreshRepository(repositoryId);
    await this.prisma.repository.updateMany({
      where: { id: repositoryId, branches: { none: { deletedAt: null } } },
      data: { status: 'FAILED', lastError: error },
    });
  }

  /** Accepted webhook deliveries not yet confirmed in the queue (Redis was down when they arrived). */
  async unenqueuedDeliveries(olderThanMs: number, limit: number): Promise<string[]> {
    const rows = await this.prisma.webhookDelivery.findMany({
      where: {
        outcome: 'ACCEPTED',
        enqueuedAt: null,
        receivedAt: { lt: new Date(Date.now() - olderThanMs) },
      },
      orderBy: { receivedAt: 'asc' },
      take: limit,
      select: { id: true },
    });
    return rows.map((r) => r.id);
  }

  async markDeliveriesEnqueued(ids: string[]): Promise<void> {
    if (ids.length) {
      await this.prisma.webhookDelivery.updateMany({
        where: { id: { in: ids } },
        data: { enqueuedAt: new Date() },
      });
    }
  }

  /** Forgets delivery ids older than the retention; returns how many were removed. */
  async pruneDeliveries(olderThanDays: number): Promise<number> {
    const { count } = await this.prisma.webhookDelivery.deleteMany({
      where: { receivedAt: { lt: new Date(Date.now() - olderThanDays * 24 * 3600 * 1000) } },
    });
    return count;
  }

  /**
   * Claims up to `limit` branches due for a poll (settled ones only: owed or running work needs no poll),
   * leasing them for `leaseMs` so other workers skip them.
   */
  async claimDuePolls(limit: number, leaseMs: number): Promise<DuePoll[]> {
    return this.prisma.$queryRaw<DuePoll[]>`
      WITH due AS (
        SELECT b."id" FROM "Branch" b
        WHERE b."deletedAt" IS NULL AND b."status" IN ('SYNCED', 'FAILED')
          AND (b."nextPollAt" IS NULL OR b."nextPollAt" <= now())
        ORDER BY b."nextPollAt" ASC NULLS FIRST
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED)
      UPDATE "Branch" b SET "nextPollAt" = now() + make_interval(secs => ${leaseMs / 1000})
      FROM due, "Repository" r
      WHERE b."id" = due."id" AND r."id" = b."repositoryId"
      RETURNING b."id", b."tenantId", b."repositoryId", b."name", b."syncedSha", b."headChangedAt", b."createdAt",
        r."cloneUrl", r."provider", r."accessTokenEncrypted", r."connectionId", r."lastWebhookAt"`;
  }

  async schedulePoll(branchId: string, at: Date): Promise<void> {
    await this.prisma.branch.updateMany({ where: { id: branchId }, data: { nextPollAt: at } });
  }

  /** Marks settled branches owed (OUTDATED) for a trigger; returns those that changed. */
  async markOwed(
    branchIds: string[],
    trigger: SyncTrigger,
  ): Promise<{ id: string; tenantId: string; repositoryId: string }[]> {
    if (!branchIds.length) return [];
    const rows = await this.prisma.$queryRaw<{ id: string; tenantId: string; repositoryId: string }[]>`
      UPDATE "Branch" SET
        "dirty" = ("status" = 'SYNCING') OR "dirty",
        "status" = CASE WHEN "status" = 'SYNCING' THEN "status" ELSE 'OUTDATED'::"SyncStatus" END,
        "pendingTrigger" = ${trigger}::"SyncTrigger", "updatedAt" = now()
      WHERE "id" = ANY(${branchIds}::uuid[]) AND "deletedAt" IS NULL
      RETURNING "id", "tenantId", "repositoryId"`;
    for (const repositoryId of new Set(rows.map((r) => r.repositoryId)))
      await this.refreshRepository(repositoryId);
    return rows;
  }

  /** Synced branches whose graph index lags behind (Neo4j was down), for the catch-up pass. */
  async branchesBehindInGraph(limit: number) {
    return this.prisma.$queryRaw<GraphLag[]>`
      SELECT b."id" AS "branchId", b."tenantId", b."repositoryId", b."name", b."syncedSha", b."indexedSha",
        r."host", r."owner", r."name" AS "repositoryName"
      FROM "Branch" b JOIN "Repository" r ON r."id" = b."repositoryId"
      WHERE b."deletedAt" IS NULL AND b."status" = 'SYNCED' AND b."syncedSha" IS NOT NULL
        AND b."indexedSha" IS DISTINCT FROM b."syncedSha"
      ORDER BY b."updatedAt" ASC
      LIMIT ${limit}`;
  }

  /** Records the graph head of a branch, if the branch is still at that commit. */
  async setIndexedSha(branchId: string, syncedSha: string, indexedSha: string): Promise<void> {
    await this.prisma.branch.updateMany({ where: { id: branchId, syncedSha }, data: { indexedSha } });
  }
}

export interface GraphLag {
  branchId: string;
  tenantId: string;
  repositoryId: string;
  name: string;
  syncedSha: string;
  indexedSha: string | null;
  host: string;
  owner: string;
  repositoryName: string;
}

export interface DuePoll {
  id: string;
  tenantId: string;
  repositoryId: string;
  name: string;
  syncedSha: string | null;
  headChangedAt: Date | null;
  createdAt: Date;
  cloneUrl: string;
  provider: 'GITHUB' | 'GITLAB' | 'GIT';
  accessTokenEncrypted: string | null;
  connectionId: string | null;
  lastWebhookAt: Date | null;
}
