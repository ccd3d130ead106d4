import { Injectable } from '@nestjs/common';
import { type Cursor, type Page, encodeCursor } from '../common/cursor.js';
import { Conflict, ValidationFailed } from '../common/errors.js';
import { PrismaService } from '../database/prisma.service.js';
import { RepositorySummaryRepository } from './repository-summary.repository.js';
import { Prisma } from '../generated/prisma/client.js';
import type {
  BranchRecord,
  Provider,
  RepositoryDetail,
  RepositoryFilter,
  RepositoryRecord,
  SyncRunRecord,
  SyncStrategy,
  SyncTrigger,
} from './repositories.types.js';

const RECENT_RUNS = 10;

const repositorySelect = {
  id: true,
  tenantId: true,
  projectId: true,
  connectionId: true,
  provider: true,
  host: true,
  owner: true,
  name: true,
  cloneUrl: true,
  defaultBranch: true,
  trackDefaultBranch: true,
  accessTokenEncrypted: true,
  webhookId: true,
  webhookError: true,
  syncStrategy: true,
  status: true,
  lastCommitSha: true,
  lastSyncedAt: true,
  lastError: true,
  createdAt: true,
  updatedAt: true,
} as const satisfies Prisma.RepositorySelect;

type RepositoryRow = Prisma.RepositoryGetPayload<{ select: typeof repositorySelect }>;
type BranchRow = Prisma.BranchGetPayload<object>;
type RunRow = Prisma.SyncRunGetPayload<object>;

function toRepository(row: RepositoryRow): RepositoryRecord {
  const { accessTokenEncrypted, ...rest } = row;
  return { ...rest, hasAccessToken: accessTokenEncrypted !== null };
}

export function toBranch(row: BranchRow): BranchRecord {
  return {
    id: row.id,
    repositoryId: row.repositoryId,
    name: row.name,
    status: row.status,
    remoteHeadSha: row.remoteHeadSha,
    syncedSha: row.syncedSha,
    dirty: row.dirty,
    failureCount: row.failureCount,
    lastError: row.lastError,
    lastErrorCode: row.lastErrorCode,
    lastSyncedAt: row.lastSyncedAt,
    deletedAt: row.deletedAt,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export function toRun(row: RunRow): SyncRunRecord {
  return {
    id: row.id,
    branchId: row.branchId,
    trigger: row.trigger,
    strategy: row.strategy,
    strategyReason: row.strategyReason,
    fromSha: row.fromSha,
    toSha: row.toSha,
    status: row.status,
    attempt: row.attempt,
    phaseTimings: (row.phaseTimings ?? {}) as Record<string, number>,
    bytesFetched: row.bytesFetched === null ? null : Number(row.bytesFetched),
    filesChanged: row.filesChanged,
    errorCode: row.errorCode,
    error: row.error,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
  };
}

export interface NewRepository {
  id: string;
  projectId: string | null;
  connectionId: string | null;
  provider: Provider;
  host: string;
  owner: string;
  name: string;
  cloneUrl: string;
  trackDefaultBranch: boolean;
  accessTokenEncrypted: string | null;
  syncStrategy: SyncStrategy;
}

export interface RepositoryPatch {
  syncStrategy?: SyncStrategy;
  projectId?: string | null;
  /** null: follow the default branch. */
  branches?: string[] | null;
}

/** Database access for repositories and their branches. Every method takes the tenant id first. */
@Injectable()
export class RepositoriesRepository {
  constructor(
    private readonly prisma: PrismaService,
    private readonly summaries: RepositorySummaryRepository,
  ) {}

  private async assertReferences(
    tx: Prisma.TransactionClient,
    tenantId: string,
    refs: { projectId?: string | null; connectionId?: string | null },
  ): Promise<void> {
    if (refs.projectId) {
      const project = await tx.project.findFirst({
        where: { tenantId, id: refs.projectId },
        select: { id: true },
      });
      if (!project)
        throw ValidationFailed.field('projectId', 'no project with this id exists in your tenant');
    }
    if (refs.connectionId) {
      const connection = await tx.connection.findFirst({
        where: { tenantId, id: refs.connectionId },
        select: { id: true },
      });
      if (!connection)
        throw ValidationFailed.field('connectionId', 'no connection with this id exists in your tenant');
    }
  }

  async create(tenantId: string, data: NewRepository, branches: string[]): Promise<RepositoryDetail> {
    try {
      const id = await this.prisma.$transaction(async (tx) => {
        await this.assertReferences(tx, tenantId, data);
        const created = await tx.repository.create({ data: { ...data, tenantId }, select: { id: true } });
        if (branches.length) {
          await tx.branch.createMany({
            data: branches.map((name) => ({ tenantId, repositoryId: created.id, name })),
          });
        }
        return created.id;
      });
      return (await this.get(tenantId, id))!;
    } catch (e) {
      if (e instanceof Prisma.PrismaClientKnownRequestError && e.code === 'P2002') {
        throw new Conflict(
          'REPOSITORY_EXISTS',
          `repository ${data.host}/${data.owner}/${data.name} is already added; update or delete the existing one`,
        );
      }
      throw e;
    }
  }

  /** What a sync request needs to know of a repository (one query): null when the tenant has no such one. */
  async syncTarget(
    tenantId: string,
    id: string,
  ): Promise<{ trackDefaultBranch: boolean; branches: string[] } | null> {
    const row = await this.prisma.repository.findFirst({
      where: { tenantId, id },
      select: { trackDefaultBranch: true, branches: { where: { deletedAt: null }, select: { name: true } } },
    });
    return row && { trackDefaultBranch: row.trackDefaultBranch, branches: row.branches.map((b) => b.name) };
  }

  async get(tenantId: string, id: string): Promise<RepositoryDetail | null> {
    const row = await this.prisma.repository.findFirst({
      where: { tenantId, id },
      select: {
        ...repositorySelect,
        branches: { orderBy: { name: 'asc' } },
        syncRuns: { orderBy: [{ startedAt: 'desc' }, { id: 'desc' }], take: RECENT_RUNS },
      },
    });
    if (!row) return null;
    const { branches, syncRuns, ...repo } = row;
    // Each branch's archive is the one of the commit it is synced at.
    const shas = branches.map((b) => b.syncedSha).filter((sha): sha is string => sha !== null);
    const archives = shas.length
      ? await this.prisma.archive.findMany({
          where: { tenantId, repositoryId: id, sha: { in: shas }, deletingAt: null },
          select: { sha: true, sizeBytes: true, sha256: true, createdAt: true },
        })
      : [];
    const bySha = new Map(archives.map((a) => [a.sha, { ...a, sizeBytes: Number(a.sizeBytes) }]));
    return {
      ...toRepository(repo),
      branches: branches.map((b) => ({
        ...toBranch(b),
        archive: (b.syncedSha && bySha.get(b.syncedSha)) || null,
      })),
      recentRuns: syncRuns.map(toRun),
    };
  }

  async list(
    tenantId: string,
    filter: RepositoryFilter,
    cursor: Cursor | null,
    limit: number,
  ): Promise<Page<RepositoryRecord>> {
    const where: Prisma.RepositoryWhereInput = { tenantId };
    if (filter.status) where.status = filter.status;
    if (filter.provider) where.provider = filter.provider;
    if (filter.projectId) where.projectId = filter.projectId;
    if (filter.q) {
      where.OR = [
        { name: { contains: filter.q, mode: 'insensitive' } },
        { owner: { contains: filter.q, mode: 'insensitive' } },
        { host: { contains: filter.q, mode: 'insensitive' } },
      ];
    }
    const after: Prisma.RepositoryWhereInput | undefined = cursor
      ? {
          OR: [
            { createdAt: { lt: cursor.createdAt } },
            { createdAt: cursor.createdAt, id: { lt: cursor.id } },
          ],
        }
      : undefined;
    const rows = await this.prisma.repository.findMany({
      where: after ? { AND: [where, after] } : where,
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      take: limit + 1,
      select: repositorySelect,
    });
    const items = rows.slice(0, limit).map(toRepository);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
  }

  /** Records the host webhook of a repository (or why it could not be created). */
  async setWebhook(
    tenantId: string,
    id: string,
    hook: { webhookId: string | null; webhookSecretEncrypted: string | null; webhookError: string | null },
  ): Promise<void> {
    await this.prisma.repository.updateMany({ where: { tenantId, id }, data: hook });
  }

  async update(tenantId: string, id: string, patch: RepositoryPatch): Promise<RepositoryDetail | null> {
    const found = await this.prisma.$transaction(async (tx) => {
      const repo = await tx.repository.findFirst({
        where: { tenantId, id },
        select: { id: true, defaultBranch: true },
      });
      if (!repo) return false;
      await this.assertReferences(tx, tenantId, { projectId: patch.projectId });
      const data: Prisma.RepositoryUpdateInput = {};
      if (patch.syncStrategy) data.syncStrategy = patch.syncStrategy;
      if (patch.projectId !== undefined) {
        data.project = patch.projectId ? { connect: { id: patch.projectId } } : { disconnect: true };
      }
      if (patch.branches !== undefined) {
        const wanted = patch.branches ?? (repo.defaultBranch ? [repo.defaultBranch] : []);
        data.trackDefaultBranch = patch.branches === null;
        await tx.branch.deleteMany({ where: { tenantId, repositoryId: id, name: { notIn: wanted } } });
        await tx.branch.createMany({
          data: wanted.map((name) => ({ tenantId, repositoryId: id, name })),
          skipDuplicates: true,
        });
      }
      await tx.repository.update({ where: { id }, data });
      return true;
    });
    if (!found) return null;
    await this.refreshStatus(tenantId, id);
    return this.get(tenantId, id);
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    const { count } = await this.prisma.repository.deleteMany({ where: { tenantId, id } });
    return count > 0;
  }

  /**
   * Records that a sync is owed for the repository's live branches (all, or the named one), in one statement
   * per row: a branch that is syncing right now is marked dirty (one follow-up), any other becomes OUTDATED.
   * The repository's summary is left to refreshStatus.
   */
  async markSyncRequested(
    tenantId: string,
    repositoryId: string,
    trigger: SyncTrigger,
    branchName?: string,
  ): Promise<BranchRecord[]> {
    const rows = await this.prisma.$queryRaw<BranchRow[]>`
      UPDATE "Branch" SET
        "dirty" = ("status" = 'SYNCING') OR "dirty",
        "status" = CASE WHEN "status" = 'SYNCING' THEN "status" ELSE 'OUTDATED'::"SyncStatus" END,
        "pendingTrigger" = ${trigger}::"SyncTrigger",
        "updatedAt" = now()
      WHERE "tenantId" = ${tenantId}::uuid AND "repositoryId" = ${repositoryId}::uuid
        AND "deletedAt" IS NULL
        AND (${branchName ?? null}::text IS NULL OR "name" = ${branchName ?? null}::text)
      RETURNING *`;
    return rows.map(toBranch).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Recomputes the repository's summary of its branches (tenant-checked). */
  async refreshStatus(tenantId: string, repositoryId: string): Promise<void> {
    const owned = await this.prisma.repository.count({ where: { tenantId, id: repositoryId } });
    if (owned) await this.summaries.refresh(repositoryId);
  }
}
