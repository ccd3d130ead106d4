import { Injectable } from '@nestjs/common';
import { type Cursor, type Page, encodeCursor } from '../common/cursor.js';
import { PrismaService } from '../database/prisma.service.js';

export interface ArchiveRecord {
  id: string;
  tenantId: string;
  repositoryId: string;
  branchId: string | null;
  sha: string;
  objectKey: string;
  sizeBytes: number;
  sha256: string;
  pinned: boolean;
  createdAt: Date;
}

type Row = {
  id: string;
  tenantId: string;
  repositoryId: string;
  branchId: string | null;
  sha: string;
  objectKey: string;
  sizeBytes: bigint;
  sha256: string;
  pinned: boolean;
  createdAt: Date;
};

const toRecord = (r: Row): ArchiveRecord => ({ ...r, sizeBytes: Number(r.sizeBytes) });

/** Archive rows. A row exists only for an object that was completely stored. */
@Injectable()
export class ArchivesRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** The live archive of a revision (not being deleted), if recorded. */
  async findLive(repositoryId: string, sha: string): Promise<ArchiveRecord | null> {
    const row = await this.prisma.archive.findFirst({ where: { repositoryId, sha, deletingAt: null } });
    return row ? toRecord(row) : null;
  }

  /** Records a stored archive (idempotent per repository and SHA). */
  async record(a: Omit<ArchiveRecord, 'id' | 'createdAt' | 'pinned'>): Promise<ArchiveRecord> {
    const row = await this.prisma.archive.upsert({
      where: { repositoryId_sha: { repositoryId: a.repositoryId, sha: a.sha } },
      create: { ...a, sizeBytes: BigInt(a.sizeBytes) },
      update: { objectKey: a.objectKey, sizeBytes: BigInt(a.sizeBytes), sha256: a.sha256, deletingAt: null },
    });
    return toRecord(row);
  }

  /**
   * Marks for deletion the archives of a branch beyond the newest `keep` (pinned ones never), and returns
   * every archive of the branch being deleted (including ones a failed earlier pass left).
   */
  async markBeyondRetention(branchId: string, keep: number): Promise<ArchiveRecord[]> {
    await this.prisma.$executeRaw`
      UPDATE "Archive" SET "deletingAt" = now()
      WHERE "id" IN (
        SELECT "id" FROM "Archive" WHERE "branchId" = ${branchId}::uuid AND "deletingAt" IS NULL AND NOT "pinned"
        ORDER BY "createdAt" DESC, "id" DESC OFFSET ${keep})`;
    const rows = await this.prisma.archive.findMany({
      where: { branchId, deletingAt: { not: null } },
      take: 1000,
    });
    return rows.map(toRecord);
  }

  /** Archives left mid-deletion anywhere (a crash between the object and the row), for retry. */
  async pendingDeletions(limit: number): Promise<ArchiveRecord[]> {
    const rows = await this.prisma.archive.findMany({ where: { deletingAt: { not: null } }, take: limit });
    return rows.map(toRecord);
  }

  async deleteRow(id: string): Promise<void> {
    await this.prisma.archive.deleteMany({ where: { id, deletingAt: { not: null } } });
  }

  // --- tenant-scoped reads for the API ---

  async list(
    tenantId: string,
    repositoryId: string,
    cursor: Cursor | null,
    limit: number,
  ): Promise<Page<ArchiveRecord>> {
    const rows = await this.prisma.archive.findMany({
      where: {
        tenantId,
        repositoryId,
        deletingAt: null,
        ...(cursor
          ? {
              OR: [
                { createdAt: { lt: cursor.createdAt } },
                { createdAt: cursor.createdAt, id: { lt: cursor.id } },
              ],
            }
          : {}),
      },
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      take: limit + 1,
    });
    const items = rows.slice(0, limit).map(toRecord);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
  }

  async get(tenantId: string, repositoryId: string, sha: string): Promise<ArchiveRecord | null> {
    const row = await this.prisma.archive.findFirst({
      where: { tenantId, repositoryId, sha, deletingAt: null },
    });
    return row ? toRecord(row) : null;
  }

  async setPinned(
    tenantId: string,
    repositoryId: string,
    sha: string,
    pinned: boolean,
  ): Promise<ArchiveRecord | null> {
    const { count } = await this.prisma.archive.updateMany({
      where: { tenantId, repositoryId, sha, deletingAt: null },
      data: { pinned },
    });
    return count ? this.get(tenantId, repositoryId, sha) : null;
  }

  /** Newest live archive of each of these branches. */
  async latestByBranch(tenantId: string, branchIds: string[]): Promise<Map<string, ArchiveRecord>> {
    if (!branchIds.length) return new Map();
    const rows = await this.prisma.archive.findMany({
      where: { tenantId, branchId: { in: branchIds }, deletingAt: null },
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      distinct: ['branchId'],
    });
    return new Map(rows.map((r) => [r.branchId!, toRecord(r)]));
  }
}
