import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { PrismaService } from '../../src/database/prisma.service.js';
import { DeliveryBatcher } from '../../src/webhooks/delivery-recorder.js';
import {
  type DeliveryRecord,
  WebhookDeliveryRepository,
} from '../../src/webhooks/webhook-delivery.repository.js';
import { type TestDatabase, createTestDatabase } from '../setup/test-database.js';
import { testConfig } from '../support/test-config.js';

const sha = (c: string) => c.repeat(40);

describe('recording deliveries in batches (group commit, real Postgres)', () => {
  let db: TestDatabase;
  let prisma: PrismaService;
  let repository: WebhookDeliveryRepository;

  beforeAll(async () => {
    Logger.overrideLogger(false); // the failed batch's warning is expected
    db = await createTestDatabase();
    prisma = new PrismaService(testConfig(db.url));
    repository = new WebhookDeliveryRepository(prisma);
  });

  afterAll(async () => {
    await prisma.onModuleDestroy();
    await db.drop();
  });

  /** A batcher with one statement slot: every call made in the same event-loop turn goes in one batch. */
  function batcher(slots = 1) {
    return new DeliveryBatcher((ds) => repository.recordBatch(ds), slots);
  }

  /** Counts the record statements sent to Postgres while `run` runs (the calls go through unchanged). */
  async function countStatements<T>(run: () => Promise<T>): Promise<{ result: T; statements: number }> {
    const spy = jest.spyOn(prisma.pool, 'query');
    try {
      const result = await run();
      const calls = spy.mock.calls as unknown[][];
      const statements = calls.filter(
        ([config]) => (config as { name?: string } | null)?.name === 'webhook-record-batch',
      ).length;
      return { result, statements };
    } finally {
      spy.mockRestore();
    }
  }

  async function tenant() {
    return prisma.tenant.create({ data: { name: 't', slug: `t-${randomUUID()}` } });
  }

  async function trackedRepository(tenantId: string, name: string = randomUUID(), branches = ['main']) {
    const repo = await prisma.repository.create({
      data: {
        tenantId,
        provider: 'GITHUB',
        host: 'github.com',
        owner: 'o',
        name,
        cloneUrl: `https://github.com/o/${name}.git`,
        status: 'SYNCED',
      },
    });
    const ids: Record<string, string> = {};
    for (const branch of branches) {
      const row = await prisma.branch.create({
        data: {
          tenantId,
          repositoryId: repo.id,
          name: branch,
          status: 'SYNCED',
          syncedSha: sha('a'),
          remoteHeadSha: sha('a'),
        },
      });
      ids[branch] = row.id;
    }
    return { id: repo.id, tenantId, branches: ids };
  }

  function push(
    repositories: { id: string; tenantId: string }[],
    branch: string,
    after: string | null,
    deliveryId: string = randomUUID(),
  ): DeliveryRecord {
    return {
      provider: 'GITHUB',
      deliveryId,
      event: after === null ? 'delete' : 'push',
      outcome: 'ACCEPTED',
      detail: after === null ? `branch ${branch} deleted` : `branch ${branch} at ${after}`,
      repositories: repositories.map((r) => ({ id: r.id, tenantId: r.tenantId })),
      branchUpdate: { branch, after, deleted: after === null },
    };
  }

  async function branchRow(id: string) {
    return prisma.branch.findUniqueOrThrow({ where: { id } });
  }

  async function deliveryRows(deliveryIds: string[]) {
    const { rows } = await prisma.pool.query<{
      deliveryId: string;
      tenantId: string | null;
      repositoryId: string | null;
      xmin: string;
    }>(
      `SELECT "deliveryId", "tenantId", "repositoryId", "xmin"::text AS "xmin" FROM "WebhookDelivery"
       WHERE "deliveryId" = ANY($1::text[])`,
      [deliveryIds],
    );
    return rows;
  }

  it('records deliveries that arrive together in one statement and one transaction', async () => {
    const t = await tenant();
    const repos = await Promise.all([1, 2, 3].map(() => trackedRepository(t.id)));
    const b = batcher();
    const records = Array.from({ length: 30 }, (_, i) => push([repos[i % 3]!], 'main', sha('b')));
    const { result, statements } = await countStatements(() => Promise.all(records.map((r) => b.record(r))));
    expect(statements).toBe(1);
    expect(result.every((r) => r.fresh && r.deliveryRowId !== null)).toBe(true);
    expect(new Set(result.map((r) => r.deliveryRowId)).size).toBe(30);
    const rows = await deliveryRows(records.map((r) => r.deliveryId));
    expect(rows).toHaveLength(30);
    expect(new Set(rows.map((r) => r.xmin)).size).toBe(1);
    // Each delivery reports its own repository's branch.
    result.forEach((r, i) => {
      expect(r.owed).toEqual([
        { id: repos[i % 3]!.branches.main, tenantId: t.id, repositoryId: repos[i % 3]!.id, changed: true },
      ]);
    });
  });

  it('sends a delivery at once when a slot is free, and holds the rest for the next statement', async () => {
    const t = await tenant();
    const repo = await trackedRepository(t.id);
    const b = batcher();
    const { result, statements } = await countStatements(async () => {
      const first = b.record(push([repo], 'main', sha('c')));
      // Next turn: the first statement is in flight and takes the only slot.
      await new Promise((res) => setImmediate(res));
      const later = Array.from({ length: 10 }, () => b.record(push([repo], 'main', sha('c'))));
      return Promise.all([first, ...later]);
    });
    expect(statements).toBe(2);
    expect(result.every((r) => r.fresh)).toBe(true);
    expect(result[0].owed).toEqual([expect.objectContaining({ changed: true })]);
    // The second batch found the branch owed exactly so: reported, not rewritten.
    for (const r of result.slice(1)) expect(r.owed).toEqual([expect.objectContaining({ changed: false })]);
  });

  it('caps a batch', async () => {
    const t = await tenant();
    const repo = await trackedRepository(t.id);
    const b = new DeliveryBatcher((ds) => repository.recordBatch(ds), 1, 4);
    const { result, statements } = await countStatements(() =>
      Promise.all(Array.from({ length: 10 }, () => b.record(push([repo], 'main', sha('d'))))),
    );
    expect(statements).toBe(3);
    expect(result.filter((r) => r.fresh)).toHaveLength(10);
  });

  it('records a repeated delivery id once, within a batch and across batches; duplicates change nothing', async () => {
    const t = await tenant();
    const repo = await trackedRepository(t.id);
    const b = batcher();
    const id = randomUUID();
    const [first, again, other] = await Promise.all([
      b.record(push([repo], 'main', sha('b'), id)),
      b.record(push([repo], 'main', sha('c'), id)),
      b.record({ ...push([repo], 'main', sha('b'), id), provider: 'GITLAB' }),
    ]);
    expect(first).toMatchObject({ fresh: true, owed: [{ id: repo.branches.main, changed: true }] });
    expect(again).toEqual({ fresh: false, deliveryRowId: null, owed: [] });
    expect(other).toMatchObject({ fresh: true }); // another host's id space
    // The duplicate's head was not applied: the first delivery's is.
    expect(await branchRow(repo.branches.main!)).toMatchObject({
      status: 'OUTDATED',
      remoteHeadSha: sha('b'),
    });

    const before = await branchRow(repo.branches.main!);
    const later = await Promise.all([
      b.record(push([repo], 'main', sha('e'), id)),
      b.record(push([repo], 'main', null, id)),
    ]);
    expect(later).toEqual([
      { fresh: false, deliveryRowId: null, owed: [] },
      { fresh: false, deliveryRowId: null, owed: [] },
    ]);
    expect(await branchRow(repo.branches.main!)).toEqual(before);
    expect(await deliveryRows([id])).toHaveLength(2); // GitHub's and GitLab's
  });

  it('decides a branch once per batch: the last delivery head wins and every delivery reports it owed', async () => {
    const t = await tenant();
    const repo = await trackedRepository(t.id, undefined, ['main', 'dev']);
    const b = batcher();
    const heads = ['b', 'c', 'd', 'e', 'f'].map(sha);
    const result = await Promise.all([
      ...heads.map((head) => b.record(push([repo], 'main', head))),
      b.record(push([repo], 'dev', sha('a'))), // the head we have: owes nothing
    ]);
    const main = await branchRow(repo.branches.main!);
    expect(main).toMatchObject({ status: 'OUTDATED', remoteHeadSha: sha('f'), pendingTrigger: 'WEBHOOK' });
    for (const r of result.slice(0, 5)) {
      expect(r.owed).toEqual([
        { id: repo.branches.main, tenantId: t.id, repositoryId: repo.id, changed: true },
      ]);
    }
    expect(result[5]).toMatchObject({ fresh: true, owed: [] });
    expect(await branchRow(repo.branches.dev!)).toMatchObject({ status: 'SYNCED', remoteHeadSha: sha('a') });
    expect((await prisma.repository.findUniqueOrThrow({ where: { id: repo.id } })).status).toBe('OUTDATED');

    // Back to the head we have, last in the batch: nothing is owed, the branch row is left alone.
    const synced = await prisma.branch.update({
      where: { id: repo.branches.main },
      data: { status: 'SYNCED', syncedSha: sha('f'), pendingTrigger: null },
    });
    const back = await Promise.all([
      b.record(push([repo], 'main', sha('9'))),
      b.record(push([repo], 'main', sha('f'))),
    ]);
    expect(back.map((r) => [r.fresh, r.owed])).toEqual([
      [true, []],
      [true, []],
    ]);
    expect(await branchRow(repo.branches.main!)).toEqual(synced);
  });

  it('marks a syncing branch dirty, and a deleted branch owed whatever its head', async () => {
    const t = await tenant();
    const repo = await trackedRepository(t.id, undefined, ['main', 'gone']);
    await prisma.branch.update({
      where: { id: repo.branches.main },
      data: { status: 'SYNCING', syncTargetSha: sha('b'), lockedBy: 'job' },
    });
    const b = batcher();
    const [target, moved, deleted] = await Promise.all([
      b.record(push([repo], 'main', sha('b'))), // the head being synced to...
      b.record(push([repo], 'main', sha('c'))), // ...then a newer one: owed after the sync
      b.record(push([repo], 'gone', null)),
    ]);
    for (const r of [target, moved]) expect(r.owed).toEqual([expect.objectContaining({ changed: true })]);
    expect(await branchRow(repo.branches.main!)).toMatchObject({
      status: 'SYNCING',
      dirty: true,
      remoteHeadSha: sha('c'),
      lockedBy: 'job',
    });
    expect(deleted.owed).toEqual([
      { id: repo.branches.gone, tenantId: t.id, repositoryId: repo.id, changed: true },
    ]);
    expect(await branchRow(repo.branches.gone!)).toMatchObject({
      status: 'OUTDATED',
      remoteHeadSha: sha('a'), // a deletion reports no head: the last known one stays
    });
    // Deleted again: already owed exactly so, reported but not rewritten.
    const again = await b.record(push([repo], 'gone', null));
    expect(again.owed).toEqual([expect.objectContaining({ id: repo.branches.gone, changed: false })]);
  });

  it('records a delivery for several repositories (app hooks) against the first, and marks each owed', async () => {
    const [t1, t2] = await Promise.all([tenant(), tenant()]);
    const name = `shared-${randomUUID()}`;
    const a = await trackedRepository(t1.id, name);
    const c = await trackedRepository(t2.id, name);
    const untargeted = await trackedRepository(t2.id);
    const b = batcher();
    const both = push([a, c], 'main', sha('b'));
    const [multi, none, alsoA] = await Promise.all([
      b.record(both),
      b.record({ ...push([], 'main', null), outcome: 'IGNORED', detail: 'not tracked', branchUpdate: null }),
      b.record(push([a], 'main', sha('c'))),
    ]);
    const [row] = await deliveryRows([both.deliveryId]);
    expect(row).toMatchObject({ tenantId: t1.id, repositoryId: a.id });
    expect(multi.owed).toEqual(
      expect.arrayContaining([
        { id: a.branches.main, tenantId: t1.id, repositoryId: a.id, changed: true },
        { id: c.branches.main, tenantId: t2.id, repositoryId: c.id, changed: true },
      ]),
    );
    expect(multi.owed).toHaveLength(2);
    expect(none).toMatchObject({ fresh: true, owed: [] });
    expect(alsoA.owed).toEqual([{ id: a.branches.main, tenantId: t1.id, repositoryId: a.id, changed: true }]);
    // a's branch took the last head of the batch; c's the only one it was sent.
    expect(await branchRow(a.branches.main!)).toMatchObject({ remoteHeadSha: sha('c') });
    expect(await branchRow(c.branches.main!)).toMatchObject({ status: 'OUTDATED', remoteHeadSha: sha('b') });
    expect(await branchRow(untargeted.branches.main!)).toMatchObject({ status: 'SYNCED' });
  });

  it('keeps tenants apart: a target pairs a repository with its own tenant only', async () => {
    const [t1, t2] = await Promise.all([tenant(), tenant()]);
    const repo = await trackedRepository(t1.id);
    const result = await batcher().record(push([{ id: repo.id, tenantId: t2.id }], 'main', sha('b')));
    expect(result).toMatchObject({ fresh: true, owed: [] });
    expect(await branchRow(repo.branches.main!)).toMatchObject({ status: 'SYNCED' });
    expect((await prisma.repository.findUniqueOrThrow({ where: { id: repo.id } })).lastWebhookAt).toBeNull();
  });

  it('fails only the delivery Postgres refuses when a batch fails', async () => {
    const t = await tenant();
    const repo = await trackedRepository(t.id);
    const b = batcher();
    const good = Array.from({ length: 5 }, () => push([repo], 'main', sha('b')));
    const bad = { ...push([repo], 'main', sha('c')), detail: 'a NUL \u0000 Postgres will not store' };
    const { result, statements } = await countStatements(() =>
      Promise.allSettled([...good.slice(0, 2), bad, ...good.slice(2)].map((r) => b.record(r))),
    );
    expect(statements).toBe(7); // the batch, then each delivery alone
    expect(result.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
      'fulfilled',
    ]);
    expect(await deliveryRows(good.map((r) => r.deliveryId))).toHaveLength(5);
    expect(await deliveryRows([bad.deliveryId])).toHaveLength(0);
    expect(await branchRow(repo.branches.main!)).toMatchObject({
      status: 'OUTDATED',
      remoteHeadSha: sha('b'),
    });
  });

  it('does not deadlock when concurrent batches hold the same branches, repositories and ids in opposite orders', async () => {
    const t = await tenant();
    const names = Array.from({ length: 12 }, (_, i) => `b${i}`);
    const repos = await Promise.all([1, 2, 3].map(() => trackedRepository(t.id, undefined, names)));
    const pairs = repos.flatMap((repo) => names.map((name) => ({ repo, name })));
    // A realistic table, so that branches are looked up by index in the order of the batch (in a small
    // one the planner scans the table and finds the rows in one order whatever the batch's).
    const filler = await trackedRepository(t.id, undefined, []);
    await prisma.pool.query(
      `INSERT INTO "Branch" ("id", "tenantId", "repositoryId", "name", "status", "updatedAt")
       SELECT gen_random_uuid(), $1, $2, 'filler-' || i, 'SYNCED', now() FROM generate_series(1, 20000) i`,
      [t.id, filler.id],
    );
    await prisma.pool.query('ANALYZE "Branch"');
    for (let round = 0; round < 15; round++) {
      // Make every row writable again: heads move, and the repositories' lastWebhookAt is stale.
      await prisma.repository.updateMany({
        where: { id: { in: repos.map((r) => r.id) } },
        data: { lastWebhookAt: null },
      });
      const head = sha(round.toString(16));
      const ids: string[] = pairs.map(() => randomUUID());
      const forward = pairs.map(({ repo, name }, i) => push([repo], name, head, ids[i]));
      const backward = [...pairs].reverse().map(({ repo, name }, i) => {
        // Half the ids are the other batch's (a redelivery), the rest new.
        const shared = i % 2 === 0 ? ids[pairs.length - 1 - i] : randomUUID();
        return push([repo], name, sha(((round + 1) % 16).toString(16)), shared);
      });
      const results = await Promise.all([
        repository.recordBatch(forward),
        repository.recordBatch(backward),
        repository.recordBatch([...forward].reverse().map((r) => ({ ...r, deliveryId: randomUUID() }))),
      ]);
      const [f, bw] = results;
      // A shared id is fresh in exactly one of the two batches.
      backward.forEach((r, i) => {
        const j = ids.indexOf(r.deliveryId);
        if (j >= 0) expect(Number(f[j]!.fresh) + Number(bw[i]!.fresh)).toBe(1);
      });
    }
  });
});
