import { randomUUID } from 'node:crypto';
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
 * deliveries that arrived together). The deliveries, in arrival order: $1 row id, $2 provider, $3
 * delivery id, $4 event, $5 outcome, $6 detail, $7 tenant id and $8 repository id (of the first target).
 * Their targets, one row per delivery and repository: $9 row id of the delivery, $10 its position in the
 * batch, $11 repository id, $12 tenant id, $13 branch name (null: the delivery marks no branch owed), $14
 * head the host reported (null: unknown or deleted). $15 trigger, $16 lastWebhookAt resolution (s).
 *
 * The planner cannot size the arrays (it assumes a few rows), and a nested loop between two of them costs
 * the square of the batch: so the row ids come from the caller (no join back from the inserted rows), the
 * targets are matched to the inserted rows once (IN), each branch is reduced to its last delivery by a sort
 * before it is looked up, and which delivery owes which branch is worked out by the caller.
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
  SELECT * FROM unnest($1::uuid[], $2::"Provider"[], $3::text[], $4::text[], $5::"DeliveryOutcome"[],
    $6::text[], $7::uuid[], $8::uuid[])
    WITH ORDINALITY AS d("id", "provider", "deliveryId", "event", "outcome", "detail", "tenantId",
      "repositoryId", "ord")
), ins AS (
  INSERT INTO "WebhookDelivery"
    ("id", "provider", "deliveryId", "event", "outcome", "detail", "tenantId", "repositoryId", "receivedAt")
  -- The repository may have been deleted since its secret was looked up (and cached): record it without.
  SELECT d."id", d."provider", d."deliveryId", d."event", d."outcome", d."detail", d."tenantId", r."id", now()
  FROM d LEFT JOIN "Repository" r ON r."id" = d."repositoryId"
  ORDER BY d."provider", d."deliveryId", d."ord"
  ON CONFLICT ("provider", "deliveryId") DO NOTHING
  RETURNING "id"
), targets AS (
  SELECT t."ord", t."repositoryId", t."tenantId", t."branch", t."after"
  FROM unnest($9::uuid[], $10::int[], $11::uuid[], $12::uuid[], $13::text[], $14::text[])
    AS t("deliveryRowId", "ord", "repositoryId", "tenantId", "branch", "after")
  WHERE (SELECT count(*) FROM ins) >= 0 AND t."deliveryRowId" IN (SELECT "id" FROM ins)
), last AS (
  SELECT DISTINCT ON ("repositoryId", "tenantId", "branch") "repositoryId", "tenantId", "branch", "after"
  FROM targets WHERE "branch" IS NOT NULL
  ORDER BY "repositoryId", "tenantId", "branch", "ord" DESC
), matched AS (
  SELECT b."id", b."tenantId", b."repositoryId", b."name"
  FROM last l JOIN "Branch" b
    ON b."repositoryId" = l."repositoryId" AND b."name" = l."branch" AND b."tenantId" = l."tenantId"
  WHERE b."deletedAt" IS NULL
    AND (l."after" IS NULL
         OR (b."status" = 'SYNCING' AND b."syncTargetSha" IS DISTINCT FROM l."after")
         OR (b."status" <> 'SYNCING' AND (b."status" <> 'SYNCED' OR b."syncedSha" IS DISTINCT FROM l."after")))
), locked AS (
  -- The owed test again, here on the row as locked: a concurrent batch may have changed it meanwhile, and
  -- Postgres re-checks a locking query's own conditions on the newest row version.
  SELECT b."id", l."after"
  FROM last l JOIN "Branch" b
    ON b."repositoryId" = l."repositoryId" AND b."name" = l."branch" AND b."tenantId" = l."tenantId"
  WHERE b."deletedAt" IS NULL
    AND (l."after" IS NULL
         OR (b."status" = 'SYNCING' AND b."syncTargetSha" IS DISTINCT FROM l."after")
         OR (b."status" <> 'SYNCING' AND (b."status" <> 'SYNCED' OR b."syncedSha" IS DISTINCT FROM l."after")))
    AND NOT ((b."status" = 'OUTDATED' OR (b."status" = 'SYNCING' AND b."dirty"))
             AND b."pendingTrigger" IS NOT DISTINCT FROM $15::"SyncTrigger"
             AND (l."after" IS NULL OR b."remoteHeadSha" IS NOT DISTINCT FROM l."after"))
  ORDER BY b."id"
  FOR NO KEY UPDATE OF b
), changed AS (
  UPDATE "Branch" b SET
    "dirty" = (b."status" = 'SYNCING') OR b."dirty",
    "status" = CASE WHEN b."status" = 'SYNCING' THEN b."status" ELSE 'OUTDATED'::"SyncStatus" END,
    "pendingTrigger" = $15::"SyncTrigger",
    "remoteHeadSha" = COALESCE(l."after", b."remoteHeadSha"),
    "updatedAt" = now()
  FROM locked l WHERE b."id" = l."id"
  RETURNING b."id", b."tenantId", b."repositoryId", b."name"
), repos_locked AS (
  SELECT r."id"
  FROM (SELECT DISTINCT "repositoryId", "tenantId" FROM targets) t
  JOIN "Repository" r ON r."id" = t."repositoryId" AND r."tenantId" = t."tenantId"
  WHERE (SELECT count(*) FROM changed) >= 0
    AND (r."lastWebhookAt" IS NULL
         OR r."lastWebhookAt" < now() - make_interval(secs => $16::int)
         OR (r."status" IN ('SYNCED', 'PENDING') AND r."id" IN (SELECT "repositoryId" FROM matched)))
  ORDER BY r."id"
  FOR NO KEY UPDATE OF r
), repos AS (
  UPDATE "Repository" r SET
    "lastWebhookAt" = now(),
    "status" = CASE WHEN r."status" IN ('SYNCED', 'PENDING') AND r."id" IN (SELECT "repositoryId" FROM matched)
      THEN 'OUTDATED'::"SyncStatus" ELSE r."status" END
  FROM repos_locked l WHERE r."id" = l."id"
  RETURNING r."id"
)
SELECT 'recorded' AS "row", "id", NULL::uuid AS "tenantId", NULL::uuid AS "repositoryId", NULL AS "name"
FROM ins
UNION ALL
SELECT 'owed', "id", "tenantId", "repositoryId", "name" FROM matched
UNION ALL
SELECT 'changed', "id", "tenantId", "repositoryId", "name" FROM changed`;

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
    const rowIds = ds.map(() => randomUUID());
    const t = {
      deliveryRowId: [] as string[],
      ord: [] as number[],
      repositoryId: [] as string[],
      tenantId: [] as string[],
      branch: [] as (string | null)[],
      after: [] as (string | null)[],
    };
    ds.forEach((d, i) => {
      const update = d.outcome === 'ACCEPTED' ? d.branchUpdate : null;
      for (const r of d.repositories) {
        t.deliveryRowId.push(rowIds[i]!);
        t.ord.push(i + 1);
        t.repositoryId.push(r.id);
        t.tenantId.push(r.tenantId);
        t.branch.push(update?.branch ?? null);
        t.after.push(update?.after ?? null);
      }
    });
    const { rows } = await this.prisma.pool.query<{
      row: 'recorded' | 'owed' | 'changed';
      id: string;
      tenantId: string | null;
      repositoryId: string | null;
      name: string | null;
    }>({
      name: 'webhook-record-batch',
      text: RECORD_BATCH_SQL,
      values: [
        rowIds,
        ds.map((d) => d.provider),
        ds.map((d) => d.deliveryId),
        ds.map((d) => d.event),
        ds.map((d) => d.outcome),
        ds.map((d) => d.detail.slice(0, 500)),
        ds.map((d) => d.repositories[0]?.tenantId ?? null),
        ds.map((d) => d.repositories[0]?.id ?? null),
        t.deliveryRowId,
        t.ord,
        t.repositoryId,
        t.tenantId,
        t.branch,
        t.after,
        WEBHOOK_TRIGGER,
        LAST_WEBHOOK_AT_RESOLUTION_S,
      ],
    });
    const recorded = new Set<string>();
    // Owed branches by repository and name (unique among live branches).
    const owed = new Map<string, OwedBranch>();
    for (const row of rows) {
      if (row.row === 'recorded') {
        recorded.add(row.id);
      } else if (row.tenantId !== null && row.repositoryId !== null && row.name !== null) {
        const key = `${row.repositoryId}/${row.name}`;
        const changed = row.row === 'changed' || owed.get(key)?.changed === true;
        owed.set(key, { id: row.id, tenantId: row.tenantId, repositoryId: row.repositoryId, changed });
      }
    }
    return ds.map((d, i) => {
      const deliveryRowId = rowIds[i]!;
      if (!recorded.has(deliveryRowId)) return { fresh: false, deliveryRowId: null, owed: [] };
      const branches: OwedBranch[] = [];
      const update = d.outcome === 'ACCEPTED' ? d.branchUpdate : null;
      for (const r of update ? d.repositories : []) {
        const branch = owed.get(`${r.id}/${update?.branch}`);
        // Each delivery gets its own objects (the handoff keeps them).
        if (branch?.tenantId === r.tenantId) branches.push({ ...branch });
      }
      return { fresh: true, deliveryRowId, owed: branches };
    });
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
