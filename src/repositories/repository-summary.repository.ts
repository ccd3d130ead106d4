import { Injectable } from '@nestjs/common';
import { PrismaService } from '../database/prisma.service.js';

/** The repository row's summary of its branches: the one statement both the API and the engine use. */
@Injectable()
export class RepositorySummaryRepository {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * Status (worst live branch first: FAILED, SYNCING, OUTDATED, PENDING, else SYNCED), the default (or newest)
   * branch's synced commit, the latest sync time and the error of a failed branch. A repository without
   * live branches keeps its own error (e.g. onboarding could not read it).
   */
  async refresh(repositoryId: string): Promise<void> {
    await this.prisma.$executeRaw`
      UPDATE "Repository" r SET
        "status" = COALESCE((
          SELECT CASE
            WHEN count(*) = 0 THEN 'PENDING'
            WHEN bool_or(b."status" = 'FAILED') THEN 'FAILED'
            WHEN bool_or(b."status" = 'SYNCING') THEN 'SYNCING'
            WHEN bool_or(b."status" = 'OUTDATED') THEN 'OUTDATED'
            WHEN bool_or(b."status" = 'PENDING') THEN 'PENDING'
            ELSE 'SYNCED' END::"SyncStatus"
          FROM "Branch" b WHERE b."repositoryId" = r."id" AND b."deletedAt" IS NULL), 'PENDING'::"SyncStatus"),
        "lastCommitSha" = COALESCE((
          SELECT b."syncedSha" FROM "Branch" b
          WHERE b."repositoryId" = r."id" AND b."deletedAt" IS NULL AND b."syncedSha" IS NOT NULL
          ORDER BY (b."name" = r."defaultBranch") DESC, b."lastSyncedAt" DESC NULLS LAST LIMIT 1), r."lastCommitSha"),
        "lastSyncedAt" = (SELECT max(b."lastSyncedAt") FROM "Branch" b WHERE b."repositoryId" = r."id"),
        "lastError" = CASE
          WHEN EXISTS (SELECT 1 FROM "Branch" b WHERE b."repositoryId" = r."id" AND b."deletedAt" IS NULL)
          THEN (SELECT b."lastError" FROM "Branch" b
            WHERE b."repositoryId" = r."id" AND b."deletedAt" IS NULL AND b."status" = 'FAILED' LIMIT 1)
          ELSE r."lastError" END,
        "updatedAt" = now()
      WHERE r."id" = ${repositoryId}::uuid`;
  }
}
