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
 * Records a batch of deliveries in one statement (group commit: one round trip and one commit for all the
 * deliveries that arrived together). One row per delivery in arrays, in arrival order: $1 provider, $2
 * delivery id, $3 event, $4 outcome, $5 detail, $6 tenant id and $7 repository id (of the first target),
 * $8 branch name (null: the delivery marks no branch owed), $9 head the host reported (null: unknown or
 * deleted). The targets, flattened: $10 position of the delivery in the batch (1-based), $11 repository
 * id, $12 tenant id. $13 trigger, $14 lastWebhookAt resolution (s).
 *
 * A repeated delivery id (seen before, or earlier in the same batch) is not fresh and changes nothing:
 * the first of a batch is inserted, in (provider, delivery id) order so that two batches holding the same
 * ids wait for each other in one order rather than deadlock.
 *
 * A branch is owed unless the reported head is one we have or are syncing to. Postgres lets a statement
 * update a row only once, so each branch is decided once per batch, by its last fresh delivery (in arrival
 * order): that delivery's head is what the host has now, and every fresh delivery of the batch for that
 * branch reports the branch owed (changed or not) when it is. A branch already owed exactly as the batch
 * would leave it (OUTDATED, or SYNCING and dirty, at the same head, by a webhook) is reported but not
 * rewritten: rewriting it would change nothing but would make every delivery for a busy branch wait for
 * the previous one's row lock and commit. The repository row is written only when its status changes or
 * its `lastWebhookAt` is older than the resolution.
 *
 * Row locks: concurrent batches must not deadlock, so the rows to write are locked first, in one global
 * order (branches by id, then repositories by id), by `SELECT ... ORDER BY id FOR NO KEY UPDATE` (the lock
 * an UPDATE of non-key columns takes, so foreign-key checks of new runs are not blocked); the UPDATEs then
 * only write rows already locked. Before them come the delivery ids (inserted in key order), so the
 * stages are gated: the branches are locked only once every insert is done and the repositories only
 * once the branch UPDATE has run (an uncorrelated scalar subquery runs before the first row it filters).
 */
const RECORD_BATCH_SQL = `
WITH d AS (
  SELECT * FROM unnest($1::"Provider"[], $2::text[], $3::text[], $4::"DeliveryOutcome"[], $5::text[],
    $6::uuid[], $7::uuid[], $8::text[], $9::text[])
    WITH ORDINALITY AS d("provider", "deliveryId", "event", "outcome", "detail", "tenantId", "repositoryId",
      "branch", "after", "ord")
), firsts AS (
  SELECT DISTINCT ON ("provider", "deliveryId") * FROM d ORDER BY "provider", "deliveryId", "ord"
), ins AS (
  INSERT INTO "WebhookDelivery"
    ("id", "provider", "deliveryId", "event", "outcome", "detail", "tenantId", "repositoryId", "receivedAt")
  -- The repository may have been deleted since its secret was looked up (and cached): record it without.
  SELECT gen_random_uuid(), f."provider", f."deliveryId", f."event", f."outcome", f."detail", f."tenantId",
    r."id", now()
  FROM firsts f LEFT JOIN "Repository" r ON r."id" = f."repositoryId"
  ORDER BY f."provider", f."deliveryId"
  ON CONFLICT ("provider", "deliveryId") DO NOTHING
  RETURNING "id", "provider", "deliveryId"
), fresh AS (
  SELECT f."ord", i."id", f."branch", f."after"
  FROM ins i JOIN firsts f ON f."provider" = i."provider" AND f."deliveryId" = i."deliveryId"
), targets AS (
  SELECT DISTINCT t."ord", t."repositoryId", t."tenantId" FROM unnest($10::int[], $11::uuid[], $12::uuid[])
    AS t("ord", "repositoryId", "tenantId")
  WHERE t."ord" IN (SELECT "ord" FROM fresh)
), hits AS (
  -- Each fresh delivery's tracked branches (one per target repository at most).
  SELECT f."ord", f."after", b."id"
  FROM fresh f JOIN targets t ON t."ord" = f."ord"
  JOIN "Branch" b ON b."repositoryId" = t."repositoryId" AND b."tenantId" = t."tenantId"
    AND b."name" = f."branch" AND b."deletedAt" IS NULL
), last AS (
  SELECT DISTINCT ON ("id") "id", "after" FROM hits ORDER BY "id", "ord" DESC
), matched AS (
  SELECT b."id", b."tenantId", b."repositoryId"
  FROM "Branch" b JOIN last l ON l."id" = b."id"
  WHERE l."after" IS NULL
    OR (b."status" = 'SYNCING' AND b."syncTargetSha" IS DISTINCT FROM l."after")
    OR (b."status" <> 'SYNCING' AND (b."status" <> 'SYNCED' OR b."syncedSha" IS DISTINCT FROM l."after"))
), locked AS (
  SELECT b."id", l."after"
  FROM "Branch" b JOIN last l ON l."id" = b."id"
  WHERE (SELECT count(*) FROM ins) >= 0
    AND b."deletedAt" IS NULL
    AND (l."after" IS NULL
         OR (b."status" = 'SYNCING' AND b."syncTargetSha" IS DISTINCT FROM l."after")
         OR (b."status" <> 'SYNCING' AND (b."status" <> 'SYNCED' OR b."syncedSha" IS DISTINCT FROM l."after")))
    AND NOT ((b."status" = 'OUTDATED' OR (b."status" = 'SYNCING' AND b."dirty"))
             AND b."pendingTrigger" IS NOT DISTINCT FROM $13::"SyncTrigger"
             AND (l."after" IS NULL OR b."remoteHeadSha" IS NOT DISTINCT FROM l."after"))
  ORDER BY b."id"
  FOR NO KEY UPDATE OF b
), changed AS (
  UPDATE "Branch" b SET
    "dirty" = (b."status" = 'SYNCING') OR b."dirty",
    "status" = CASE WHEN b."status" = 'SYNCING' THEN b."status" ELSE 'OUTDATED'::"SyncStatus" END,
    "pendingTrigger" = $13::"SyncTrigger",
    "remoteHeadSha" = COALESCE(l."after", b."remoteHeadSha"),
    "updatedAt" = now()
  FROM locked l WHERE b."id" = l."id"
  RETURNING b."id", b."tenantId", b."repositoryId"
), touched AS (
  SELECT DISTINCT t."repositoryId", t."tenantId" FROM targets t
), repos_locked AS (
  SELECT r."id"
  FROM "Repository" r JOIN touched t ON t."repositoryId" = r."id" AND t."tenantId" = r."tenantId"
  WHERE (SELECT count(*) FROM changed) >= 0
    AND (r."lastWebhookAt" IS NULL
         OR r."lastWebhookAt" < now() - make_interval(secs => $14::int)
         OR (r."status" IN ('SYNCED', 'PENDING')
             AND EXISTS (SELECT 1 FROM matched m WHERE m."repositoryId" = r."id")))
  ORDER BY r."id"
  FOR NO KEY UPDATE OF r
), repos AS (
  UPDATE "Repository" r SET
    "lastWebhookAt" = now(),
    "status" = CASE WHEN r."status" IN ('SYNCED', 'PENDING')
        AND EXISTS (SELECT 1 FROM matched m WHERE m."repositoryId" = r."id")
      THEN 'OUTDATED'::"SyncStatus" ELSE r."status" END
  FROM repos_locked l WHERE r."id" = l."id"
  RETURNING r."id"
), owed AS (
  SELECT "id", "tenantId", "repositoryId", true AS "changed" FROM changed
  UNION ALL
  SELECT "id", "tenantId", "repositoryId", false FROM matched m
  WHERE NOT EXISTS (SELECT 1 FROM changed c WHERE c."id" = m."id")
)
SELECT f."ord", f."id" AS "deliveryRowId", o."id" AS "branchId", o."tenantId", o."repositoryId", o."changed"
FROM fresh f LEFT JOIN (hits h JOIN owed o ON o."id" = h."id") ON h."ord" = f."ord"`;

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
   * Records deliveries (in arrival order) and, atomically with them (one statement, so a burst needs no
   * pooled transaction), marks the affected tracked branches owed (OUTDATED, or dirty while syncing) with
   * the head the host reported. A repeated delivery id changes nothing. One result per delivery, in order.
   */
  async recordBatch(ds: readonly DeliveryRecord[]): Promise<RecordedDelivery[]> {
    const c = {
      provider: [] as Provider[],
      deliveryId: [] as string[],
      event: [] as string[],
      outcome: [] as DeliveryOutcome[],
      detail: [] as string[],
      tenantId: [] as (string | null)[],
      repositoryId: [] as (string | null)[],
      branch: [] as (string | null)[],
      after: [] as (string | null)[],
      targetOrd: [] as number[],
      targetRepositoryId: [] as string[],
      targetTenantId: [] as string[],
    };
    ds.forEach((d, i) => {
      const update = d.outcome === 'ACCEPTED' ? d.branchUpdate : null;
      c.provider.push(d.provider);
      c.deliveryId.push(d.deliveryId);
      c.event.push(d.event);
      c.outcome.push(d.outcome);
      c.detail.push(d.detail.slice(0, 500));
      c.tenantId.push(d.repositories[0]?.tenantId ?? null);
      c.repositoryId.push(d.repositories[0]?.id ?? null);
      c.branch.push(update?.branch ?? null);
      c.after.push(update?.after ?? null);
      for (const r of d.repositories) {
        c.targetOrd.push(i + 1);
        c.targetRepositoryId.push(r.id);
        c.targetTenantId.push(r.tenantId);
      }
    });
    const { rows } = await this.prisma.pool.query<{
      ord: string;
      deliveryRowId: string;
      branchId: string | null;
      tenantId: string | null;
      repositoryId: string | null;
      changed: boolean | null;
    }>({
      name: 'webhook-record-batch',
      text: RECORD_BATCH_SQL,
      values: [
        c.provider,
        c.deliveryId,
        c.event,
        c.outcome,
        c.detail,
        c.tenantId,
        c.repositoryId,
        c.branch,
        c.after,
        c.targetOrd,
        c.targetRepositoryId,
        c.targetTenantId,
        WEBHOOK_TRIGGER,
        LAST_WEBHOOK_AT_RESOLUTION_S,
      ],
    });
    const results: RecordedDelivery[] = ds.map(() => ({ fresh: false, deliveryRowId: null, owed: [] }));
    for (const row of rows) {
      const result = results[Number(row.ord) - 1];
      if (!result) continue;
      result.fresh = true;
      result.deliveryRowId = row.deliveryRowId;
      if (row.branchId !== null && row.tenantId !== null && row.repositoryId !== null) {
        result.owed.push({
          id: row.branchId,
          tenantId: row.tenantId,
          repositoryId: row.repositoryId,
          changed: row.changed === true,
        });
      }
    }
    return results;
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
