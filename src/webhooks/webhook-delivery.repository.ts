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

/** A branch owed a sync after a delivery. */
export interface OwedBranch {
  id: string;
  tenantId: string;
  repositoryId: string;
  /**
   * true: this delivery made the branch owed (or moved its head, trigger or dirty flag). false: the branch
   * was already owed exactly so, and its row was left untouched; whoever made it owed enqueued its job
   * (or the reconciler will).
   */
  changed: boolean;
}

export interface RecordedDelivery {
  /** false: this delivery id was seen before; nothing changed. */
  fresh: boolean;
  deliveryRowId: string | null;
  /** Branches owed a sync, to enqueue after the commit. */
  owed: OwedBranch[];
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

/** How stale a repository's `lastWebhookAt` may get: the poller only asks whether it is within a day. */
export const LAST_WEBHOOK_AT_RESOLUTION_S = 60;

const WEBHOOK_TRIGGER: SyncTrigger = 'WEBHOOK';

/*
 * The intake's statements go straight to the pg pool the Prisma adapter runs on, as named (per-connection
 * prepared) statements: through Prisma each cost about 1 ms of CPU, ten times the query itself, and the
 * intake runs them on every delivery.
 */

const TARGET_SQL = `SELECT "id", "tenantId", "provider", "webhookSecretEncrypted" FROM "Repository" WHERE "id" = $1::uuid`;

/*
 * $1 provider, $2 delivery id, $3 event, $4 outcome, $5 detail, $6 tenant id, $7 repository id (of the
 * first target), $8 whether branches are marked owed, $9 repository ids, $10 tenant ids, $11 branch name,
 * $12 head the host reported (null: unknown or deleted), $13 trigger, $14 lastWebhookAt resolution (s).
 *
 * A branch is owed unless the reported head is one we have or are syncing to. A branch already owed
 * exactly as this delivery would leave it (OUTDATED, or SYNCING and dirty, at the same head, by a webhook)
 * is reported but not rewritten: rewriting it would change nothing but would make every delivery for a busy
 * branch wait for the previous one's row lock and commit. The repository row is written only when its
 * status changes or its `lastWebhookAt` is older than the resolution.
 */
const RECORD_SQL = `
WITH ins AS (
  INSERT INTO "WebhookDelivery"
    ("id", "provider", "deliveryId", "event", "outcome", "detail", "tenantId", "repositoryId", "receivedAt")
  -- The repository may have been deleted since its secret was looked up (and cached): record it without.
  VALUES (gen_random_uuid(), $1::"Provider", $2, $3, $4::"DeliveryOutcome", $5, $6::uuid,
    (SELECT "id" FROM "Repository" WHERE "id" = $7::uuid), now())
  ON CONFLICT ("provider", "deliveryId") DO NOTHING
  RETURNING "id"
), matched AS (
  SELECT "id", "tenantId", "repositoryId" FROM "Branch"
  WHERE EXISTS (SELECT 1 FROM ins) AND $8::boolean
    AND "repositoryId" = ANY($9::uuid[]) AND "tenantId" = ANY($10::uuid[])
    AND "name" = $11 AND "deletedAt" IS NULL
    AND ($12::text IS NULL
         OR ("status" = 'SYNCING' AND "syncTargetSha" IS DISTINCT FROM $12::text)
         OR ("status" <> 'SYNCING' AND ("status" <> 'SYNCED' OR "syncedSha" IS DISTINCT FROM $12::text)))
), changed AS (
  UPDATE "Branch" SET
    "dirty" = ("status" = 'SYNCING') OR "dirty",
    "status" = CASE WHEN "status" = 'SYNCING' THEN "status" ELSE 'OUTDATED'::"SyncStatus" END,
    "pendingTrigger" = $13::"SyncTrigger",
    "remoteHeadSha" = COALESCE($12::text, "remoteHeadSha"),
    "updatedAt" = now()
  WHERE EXISTS (SELECT 1 FROM ins) AND $8::boolean
    AND "repositoryId" = ANY($9::uuid[]) AND "tenantId" = ANY($10::uuid[])
    AND "name" = $11 AND "deletedAt" IS NULL
    AND ($12::text IS NULL
         OR ("status" = 'SYNCING' AND "syncTargetSha" IS DISTINCT FROM $12::text)
         OR ("status" <> 'SYNCING' AND ("status" <> 'SYNCED' OR "syncedSha" IS DISTINCT FROM $12::text)))
    AND NOT (("status" = 'OUTDATED' OR ("status" = 'SYNCING' AND "dirty"))
             AND "pendingTrigger" IS NOT DISTINCT FROM $13::"SyncTrigger"
             AND ($12::text IS NULL OR "remoteHeadSha" IS NOT DISTINCT FROM $12::text))
  RETURNING "id", "tenantId", "repositoryId"
), repos AS (
  UPDATE "Repository" r SET
    "lastWebhookAt" = now(),
    "status" = CASE WHEN r."status" IN ('SYNCED', 'PENDING')
        AND EXISTS (SELECT 1 FROM matched m WHERE m."repositoryId" = r."id")
      THEN 'OUTDATED'::"SyncStatus" ELSE r."status" END
  WHERE EXISTS (SELECT 1 FROM ins) AND r."id" = ANY($9::uuid[]) AND r."tenantId" = ANY($10::uuid[])
    AND (r."lastWebhookAt" IS NULL
         OR r."lastWebhookAt" < now() - make_interval(secs => $14::int)
         OR (r."status" IN ('SYNCED', 'PENDING') AND EXISTS (SELECT 1 FROM matched m WHERE m."repositoryId" = r."id")))
  RETURNING r."id"
), owed AS (
  SELECT "id", "tenantId", "repositoryId", true AS "changed" FROM changed
  UNION ALL
  SELECT "id", "tenantId", "repositoryId", false FROM matched m
  WHERE NOT EXISTS (SELECT 1 FROM changed c WHERE c."id" = m."id")
)
SELECT (SELECT "id" FROM ins) AS "deliveryRowId",
  COALESCE((SELECT json_agg(json_build_object(
    'id', "id", 'tenantId', "tenantId", 'repositoryId', "repositoryId", 'changed', "changed")) FROM owed), '[]'::json) AS "owed",
  (SELECT count(*) FROM repos) AS "repositories"`;

const MARK_ENQUEUED_SQL = `UPDATE "WebhookDelivery" SET "enqueuedAt" = now() WHERE "id" = ANY($1::uuid[]) AND "enqueuedAt" IS NULL`;

/** The delivery log and the branch marking it implies, in one statement. */
@Injectable()
export class WebhookDeliveryRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** A repository's webhook secret, looked up by its id (from the webhook URL). */
  async target(repositoryId: string): Promise<WebhookTarget | null> {
    const { rows } = await this.prisma.pool.query<WebhookTarget>({
      name: 'webhook-target',
      text: TARGET_SQL,
      values: [repositoryId],
    });
    return rows[0] ?? null;
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
    const update = d.outcome === 'ACCEPTED' ? d.branchUpdate : null;
    const { rows } = await this.prisma.pool.query<{
      deliveryRowId: string | null;
      owed: OwedBranch[];
    }>({
      name: 'webhook-record',
      text: RECORD_SQL,
      values: [
        d.provider,
        d.deliveryId,
        d.event,
        d.outcome,
        d.detail.slice(0, 500),
        d.repositories[0]?.tenantId ?? null,
        d.repositories[0]?.id ?? null,
        update !== null,
        d.repositories.map((r) => r.id),
        [...new Set(d.repositories.map((r) => r.tenantId))],
        update?.branch ?? '',
        update?.after ?? null,
        WEBHOOK_TRIGGER,
        LAST_WEBHOOK_AT_RESOLUTION_S,
      ],
    });
    const row = rows[0];
    if (!row?.deliveryRowId) return { fresh: false, deliveryRowId: null, owed: [] };
    return { fresh: true, deliveryRowId: row.deliveryRowId, owed: row.owed };
  }

  /** Marks deliveries whose owed jobs are in the queue (or that owed none), in one statement. */
  async markEnqueued(deliveryRowIds: string[]): Promise<void> {
    if (!deliveryRowIds.length) return;
    await this.prisma.pool.query({
      name: 'webhook-mark-enqueued',
      text: MARK_ENQUEUED_SQL,
      values: [deliveryRowIds],
    });
  }
}
