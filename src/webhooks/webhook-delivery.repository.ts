import { Injectable } from '@nestjs/common';
import { PrismaService } from '../database/prisma.service.js';
import type { Provider, SyncTrigger } from '../repositories/repositories.types.js';

export type DeliveryOutcome = 'ACCEPTED' | 'IGNORED' | 'DUPLICATE' | 'FAILED';

export interface WebhookTarget {
  id: string;
  tenantId: string;
  provider: Provider;
  webhookSecretEncrypted: string | null;
}

export interface RecordedDelivery {
  /** false: this delivery id was seen before; nothing changed. */
  fresh: boolean;
  deliveryRowId: string | null;
  /** Branches marked owed, to enqueue after the commit. */
  owed: { id: string; tenantId: string; repositoryId: string }[];
}

export interface DeliveryRecord {
  provider: Provider;
  deliveryId: string;
  event: string;
  outcome: DeliveryOutcome;
  detail: string;
  /** The repositories this delivery is about (verified), with what to do to their branches. */
  repositories: { id: string; tenantId: string }[];
  branchUpdate: { branch: string; after: string | null; deleted: boolean } | null;
}

/** The delivery log and the branch marking it implies, in one transaction. */
@Injectable()
export class WebhookDeliveryRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** A repository's webhook secret, looked up by its id (from the webhook URL). */
  async target(repositoryId: string): Promise<WebhookTarget | null> {
    return this.prisma.repository.findUnique({
      where: { id: repositoryId },
      select: { id: true, tenantId: true, provider: true, webhookSecretEncrypted: true },
    });
  }

  /** Stores a new webhook secret for a tenant's repository; false when the tenant has no such repository. */
  async setWebhookSecret(tenantId: string, repositoryId: string, encrypted: string): Promise<boolean> {
    const { count } = await this.prisma.repository.updateMany({
      where: { tenantId, id: repositoryId },
      data: { webhookSecretEncrypted: encrypted, webhookError: null },
    });
    return count > 0;
  }

  /** Repositories (of any tenant) on a host with this owner/name: targets of app and system hooks. */
  async repositoriesNamed(provider: Provider, host: string, owner: string, name: string) {
    return this.prisma.repository.findMany({
      where: { provider, host, owner, name },
      select: { id: true, tenantId: true },
      take: 1000,
    });
  }

  /**
   * Records the delivery and, atomically with it (one statement, so a burst needs no pooled transaction),
   * marks the affected tracked branches owed (OUTDATED, or dirty while syncing) with the head the host
   * reported. A repeated delivery id changes nothing.
   */
  async record(d: DeliveryRecord): Promise<RecordedDelivery> {
    const repositoryIds = d.repositories.map((r) => r.id);
    const tenantIds = [...new Set(d.repositories.map((r) => r.tenantId))];
    const update = d.outcome === 'ACCEPTED' ? d.branchUpdate : null;
    const trigger: SyncTrigger = 'WEBHOOK';
    const rows = await this.prisma.$queryRaw<
      { deliveryRowId: string | null; owed: RecordedDelivery['owed'] }[]
    >`
      WITH ins AS (
        INSERT INTO "WebhookDelivery"
          ("id", "provider", "deliveryId", "event", "outcome", "detail", "tenantId", "repositoryId", "receivedAt")
        VALUES (gen_random_uuid(), ${d.provider}::"Provider", ${d.deliveryId}, ${d.event}, ${d.outcome}::"DeliveryOutcome",
          ${d.detail.slice(0, 500)}, ${d.repositories[0]?.tenantId ?? null}::uuid, ${d.repositories[0]?.id ?? null}::uuid, now())
        ON CONFLICT ("provider", "deliveryId") DO NOTHING
        RETURNING "id"
      ), owed AS (
        UPDATE "Branch" SET
          "dirty" = ("status" = 'SYNCING') OR "dirty",
          "status" = CASE WHEN "status" = 'SYNCING' THEN "status" ELSE 'OUTDATED'::"SyncStatus" END,
          "pendingTrigger" = ${trigger}::"SyncTrigger",
          "remoteHeadSha" = COALESCE(${update?.after ?? null}::text, "remoteHeadSha"),
          "updatedAt" = now()
        WHERE EXISTS (SELECT 1 FROM ins)
          AND ${update !== null}
          AND "repositoryId" = ANY(${repositoryIds}::uuid[]) AND "tenantId" = ANY(${tenantIds}::uuid[])
          AND "name" = ${update?.branch ?? ''} AND "deletedAt" IS NULL
          -- A head we have, or that the running sync is bringing us to, owes nothing.
          AND (${update?.after ?? null}::text IS NULL
               OR ("status" = 'SYNCING' AND "syncTargetSha" IS DISTINCT FROM ${update?.after ?? null}::text)
               OR ("status" <> 'SYNCING' AND ("status" <> 'SYNCED' OR "syncedSha" IS DISTINCT FROM ${update?.after ?? null}::text)))
        RETURNING "id", "tenantId", "repositoryId"
      ), repos AS (
        UPDATE "Repository" r SET
          "lastWebhookAt" = now(),
          "status" = CASE WHEN r."status" IN ('SYNCED', 'PENDING') AND EXISTS (SELECT 1 FROM owed WHERE owed."repositoryId" = r."id")
            THEN 'OUTDATED'::"SyncStatus" ELSE r."status" END
        WHERE EXISTS (SELECT 1 FROM ins) AND r."id" = ANY(${repositoryIds}::uuid[])
        RETURNING r."id"
      )
      SELECT (SELECT "id" FROM ins) AS "deliveryRowId",
        COALESCE((SELECT json_agg(json_build_object('id', "id", 'tenantId', "tenantId", 'repositoryId', "repositoryId")) FROM owed), '[]'::json) AS "owed",
        (SELECT count(*) FROM repos) AS "repositories"`;
    const row = rows[0];
    if (!row?.deliveryRowId) return { fresh: false, deliveryRowId: null, owed: [] };
    return { fresh: true, deliveryRowId: row.deliveryRowId, owed: row.owed };
  }

  async markEnqueued(deliveryRowId: string): Promise<void> {
    await this.prisma.webhookDelivery.updateMany({
      where: { id: deliveryRowId },
      data: { enqueuedAt: new Date() },
    });
  }
}
