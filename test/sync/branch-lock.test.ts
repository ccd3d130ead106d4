import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { PrismaService } from '../../src/database/prisma.service.js';
import { RepositorySummaryRepository } from '../../src/repositories/repository-summary.repository.js';
import { SyncStateRepository } from '../../src/sync/sync-state.repository.js';
import { type TestDatabase, createTestDatabase } from '../setup/test-database.js';
import { testConfig } from '../support/test-config.js';

describe('branch lock (compare-and-set in Postgres)', () => {
  let db: TestDatabase;
  let prisma: PrismaService;
  let state: SyncStateRepository;

  beforeAll(async () => {
    db = await createTestDatabase();
    prisma = new PrismaService(testConfig(db.url));
    state = new SyncStateRepository(prisma, new RepositorySummaryRepository(prisma));
  });

  afterAll(async () => {
    await prisma.$disconnect();
    await db.drop();
  });

  async function newBranch(): Promise<string> {
    const tenant = await prisma.tenant.create({ data: { name: 't', slug: `t-${randomUUID()}` } });
    const repo = await prisma.repository.create({
      data: {
        tenantId: tenant.id,
        provider: 'GIT',
        host: 'git.example.com',
        owner: 'o',
        name: randomUUID(),
        cloneUrl: 'https://git.example.com/o/r.git',
      },
    });
    const branch = await prisma.branch.create({
      data: { tenantId: tenant.id, repositoryId: repo.id, name: 'main', status: 'OUTDATED' },
    });
    return branch.id;
  }

  it('lets a later pickup of the same job take over, after which the stale pickup writes nothing', async () => {
    const id = await newBranch();
    const job = `sync-branch-${id}`;
    const stale = `${job}:token-a`;
    const fresh = `${job}:token-b`;
    const first = await state.claimBranch(id, stale, job, 1);
    expect(first).toMatchObject({ branchId: id, name: 'main', trigger: 'RECONCILE', tookOver: false });
    expect(first!.repository).toMatchObject({ host: 'git.example.com', owner: 'o', syncStrategy: 'AUTO' });
    const runA = await prisma.syncRun.findUniqueOrThrow({ where: { id: first!.runId } });
    expect(runA).toMatchObject({ status: 'RUNNING', attempt: 1, jobId: job, branchId: id, fromSha: null });
    const repository = await prisma.repository.findUniqueOrThrow({ where: { id: first!.repositoryId } });
    expect(repository.status).toBe('SYNCING');

    const taken = await state.claimBranch(id, fresh, job, 2);
    expect(taken?.tookOver).toBe(true);
    expect((await prisma.syncRun.findUniqueOrThrow({ where: { id: runA.id } })).status).toBe('ABANDONED');
    expect(await prisma.syncRun.findUniqueOrThrow({ where: { id: taken!.runId } })).toMatchObject({
      status: 'RUNNING',
      attempt: 2,
    });

    // The stale worker wakes up and tries to finish: nothing it writes applies.
    await state.setSyncTarget(id, stale, 'b'.repeat(40));
    expect(await state.completeBranch(id, stale, 'b'.repeat(40), 'b'.repeat(40))).toBe(false);
    expect(await state.failBranch(id, stale, 'X', 'stale', true)).toBe(false);
    await state.markBranchDeleted(id, stale);
    let row = await prisma.branch.findUniqueOrThrow({ where: { id } });
    expect(row).toMatchObject({ status: 'SYNCING', lockedBy: fresh, syncedSha: null, deletedAt: null });

    await state.completeBranch(id, fresh, 'c'.repeat(40), 'c'.repeat(40));
    row = await prisma.branch.findUniqueOrThrow({ where: { id } });
    expect(row).toMatchObject({ status: 'SYNCED', lockedBy: null, syncedSha: 'c'.repeat(40) });
  });

  it('refuses a branch held by another job, changing nothing', async () => {
    const id = await newBranch();
    await state.claimBranch(id, 'other-job:t', 'other-job', 1);
    await expect(state.claimBranch(id, `sync-branch-${id}:t`, `sync-branch-${id}`, 1)).rejects.toThrow(
      /being synced by other-job:t/,
    );
    expect(await prisma.branch.findUniqueOrThrow({ where: { id } })).toMatchObject({
      status: 'SYNCING',
      lockedBy: 'other-job:t',
    });
    expect(await prisma.syncRun.findMany({ where: { branchId: id } })).toEqual([
      expect.objectContaining({ status: 'RUNNING', jobId: 'other-job' }),
    ]);
  });

  it('takes the trigger that is owed and finds no branch that is gone', async () => {
    const id = await newBranch();
    await prisma.branch.update({
      where: { id },
      data: { pendingTrigger: 'WEBHOOK', remoteHeadSha: 'd'.repeat(40) },
    });
    const claimed = await state.claimBranch(id, `sync-branch-${id}:t`, `sync-branch-${id}`, 1);
    expect(claimed?.trigger).toBe('WEBHOOK');
    expect(await prisma.branch.findUniqueOrThrow({ where: { id } })).toMatchObject({
      pendingTrigger: null,
      syncTargetSha: 'd'.repeat(40),
      dirty: false,
    });
    expect((await prisma.syncRun.findUniqueOrThrow({ where: { id: claimed!.runId } })).trigger).toBe(
      'WEBHOOK',
    );

    const gone = await newBranch();
    await prisma.branch.update({ where: { id: gone }, data: { deletedAt: new Date() } });
    expect(await state.claimBranch(gone, `sync-branch-${gone}:t`, `sync-branch-${gone}`, 1)).toBeNull();
    expect(await state.claimBranch(randomUUID(), 'x:t', 'x', 1)).toBeNull();
    expect(await prisma.syncRun.count({ where: { branchId: gone } })).toBe(0);
  });
});
