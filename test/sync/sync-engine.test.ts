import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { GitMirror } from '../../src/sync/git/git-mirror.js';
import type { TestTenant } from '../support/api-harness.js';
import { SyncHarness } from '../support/sync-harness.js';

interface RepoView {
  id: string;
  status: string;
  lastCommitSha: string | null;
  defaultBranch: string | null;
  branches: { id: string; name: string; status: string; syncedSha: string | null }[];
}

describe('sync engine (real Postgres, Redis, git over smart HTTP)', () => {
  let h: SyncHarness;
  let tenant: TestTenant;

  beforeAll(async () => {
    h = await SyncHarness.start();
    tenant = await h.api.createTenant('sync');
  });

  afterAll(async () => {
    await h.stop();
  });

  async function addRepository(body: Record<string, unknown>): Promise<RepoView> {
    const res = await h.api.request<RepoView>('POST', '/repositories', { token: tenant.apiKey, body });
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 201 });
    return res.body;
  }

  async function requestSync(id: string, branch?: string) {
    const res = await h.api.request('POST', `/repositories/${id}/sync`, {
      token: tenant.apiKey,
      body: branch ? { branch } : {},
    });
    expect(res.status).toBe(202);
  }

  it('onboards a repository onto its default branch, then follows pushes with fetch, not a re-clone', async () => {
    const remote = await h.git.createRepository('app');
    const first = await remote.commit({
      'README.md': '# app\n',
      'bin/run.sh': { content: '#!/bin/sh\necho hi\n', executable: true },
      'link-to-readme': { symlink: 'README.md' },
      'src/deep/nested/file.txt': 'nested\n',
    });
    const repo = await addRepository({ url: remote.url });

    const branch = await h.waitForBranch(repo.id, 'main', first);
    const runs1 = await h.runs(branch.id);
    expect(runs1).toEqual([
      expect.objectContaining({ status: 'SUCCEEDED', strategy: 'clone', toSha: first }),
    ]);
    expect(await remote.diffAgainstDirectory(first, await h.snapshotAt(repo.id, 'main', first))).toEqual([]);

    const view = await h.api.request<RepoView>('GET', `/repositories/${repo.id}`, { token: tenant.apiKey });
    expect(view.body).toMatchObject({ status: 'SYNCED', lastCommitSha: first, defaultBranch: 'main' });

    const readyMarker = join(h.workspaceDir, 'repos', repo.id, 'git', '.reposync-ready');
    const clonedAt = (await stat(readyMarker)).mtimeMs;
    const second = await remote.commit({ 'README.md': '# app v2\n', 'bin/run.sh': null, 'new.txt': 'new\n' });
    await requestSync(repo.id);
    await h.waitForBranch(repo.id, 'main', second);
    const runs2 = await h.runs(branch.id);
    expect(runs2[1]).toMatchObject({ status: 'SUCCEEDED', strategy: 'fetch', fromSha: first, toSha: second });
    expect(await remote.diffAgainstDirectory(second, await h.snapshotAt(repo.id, 'main', second))).toEqual(
      [],
    );
    // The cached clone was updated in place, not made again.
    expect((await stat(readyMarker)).mtimeMs).toBe(clonedAt);

    // Unchanged remote: a recorded no-op.
    await requestSync(repo.id);
    await h.waitFor('a no-op run', async () => {
      const runs = await h.runs(branch.id);
      return runs.length === 3 && runs[2]!.status === 'NOOP' ? runs : undefined;
    });
    await h.waitForBranch(repo.id, 'main', second);
  });

  it('resolves the head by fetching into the cached clone: no ls-remote for a new commit or a no-op', async () => {
    const remote = await h.git.createRepository('fetch-resolves');
    const first = await remote.commit({ 'a.txt': 'a\n' });
    const repo = await addRepository({ url: remote.url, branches: ['main'] });
    const branch = await h.waitForBranch(repo.id, 'main', first);

    const lsRemote = jest.spyOn(GitMirror.prototype, 'lsRemote');
    try {
      const second = await remote.commit({ 'a.txt': 'b\n' });
      await requestSync(repo.id, 'main');
      await h.waitForBranch(repo.id, 'main', second);
      await requestSync(repo.id, 'main');
      const runs = await h.waitFor('a no-op run', async () => {
        const all = await h.runs(branch.id);
        return all.length === 3 && all[2]!.status === 'NOOP' ? all : undefined;
      });
      expect(runs[1]).toMatchObject({
        status: 'SUCCEEDED',
        strategy: 'fetch',
        fromSha: first,
        toSha: second,
      });
      expect(runs[2]).toMatchObject({ strategyReason: 'already at the remote head', toSha: second });
      expect(lsRemote).not.toHaveBeenCalled();
      expect(await remote.diffAgainstDirectory(second, await h.snapshotAt(repo.id, 'main', second))).toEqual(
        [],
      );
    } finally {
      lsRemote.mockRestore();
    }
  });

  it('follows a force-push and records it', async () => {
    const remote = await h.git.createRepository('forced');
    const base = await remote.commit({ 'a.txt': 'a\n' });
    const tip = await remote.commit({ 'a.txt': 'a2\n', 'b.txt': 'b\n' });
    const repo = await addRepository({ url: remote.url, branches: ['main'] });
    const branch = await h.waitForBranch(repo.id, 'main', tip);

    const rewritten = await remote.commitOnto(base, { 'c.txt': 'c\n' }, { message: 'rewritten history' });
    await remote.forcePush('main', rewritten);
    await requestSync(repo.id);
    await h.waitForBranch(repo.id, 'main', rewritten);
    const runs = await h.runs(branch.id);
    expect(runs[runs.length - 1]).toMatchObject({ status: 'SUCCEEDED', strategy: 'fetch', toSha: rewritten });
    expect(runs[runs.length - 1]!.strategyReason).toMatch(/force-push/);
    expect(
      await remote.diffAgainstDirectory(rewritten, await h.snapshotAt(repo.id, 'main', rewritten)),
    ).toEqual([]);
  });

  it('marks a branch deleted on the host as deleted, without an error loop', async () => {
    const remote = await h.git.createRepository('branches');
    await remote.commit({ 'x.txt': 'x\n' });
    const featureSha = await remote.createBranch('feature');
    const repo = await addRepository({ url: remote.url, branches: ['main', 'feature'] });
    await h.waitForBranch(repo.id, 'feature', featureSha);

    // The worker holds a clone: the fetch of the missing branch fails, and ls-remote tells it was deleted.
    await remote.deleteBranch('feature');
    await requestSync(repo.id, 'feature');
    const deleted = await h.waitFor('feature marked deleted', async () => {
      const b = (await h.branches(repo.id)).find((x) => x.name === 'feature');
      return b?.deletedAt ? b : undefined;
    });
    expect(deleted.lastError).toBeNull();
    const runs = await h.runs(deleted.id);
    expect(runs[runs.length - 1]).toMatchObject({
      status: 'NOOP',
      strategyReason: 'branch feature no longer exists on the host',
    });
    expect(runs.filter((r) => r.status === 'FAILED')).toEqual([]);
    const view = await h.api.request<RepoView>('GET', `/repositories/${repo.id}`, { token: tenant.apiKey });
    expect(view.body.status).toBe('SYNCED');
  });

  it('syncs an empty repository as a no-op and picks up its first push', async () => {
    const remote = await h.git.createRepository('empty');
    const repo = await addRepository({ url: remote.url, branches: ['main'] });
    const branch = await h.waitForBranch(repo.id, 'main', null);
    expect((await h.runs(branch.id))[0]).toMatchObject({
      status: 'NOOP',
      strategyReason: 'the repository is empty',
    });
    const sha = await remote.commit({ 'first.txt': 'hello\n' });
    await requestSync(repo.id);
    await h.waitForBranch(repo.id, 'main', sha);
  });

  it('follows a renamed default branch', async () => {
    const remote = await h.git.createRepository('renamed');
    const sha = await remote.commit({ 'f.txt': 'f\n' });
    const repo = await addRepository({ url: remote.url });
    await h.waitForBranch(repo.id, 'main', sha);
    await remote.renameDefaultBranch('trunk');
    const next = await remote.commit({ 'f.txt': 'g\n' }, { branch: 'trunk' });
    await requestSync(repo.id);
    await h.waitForBranch(repo.id, 'trunk', next);
    const branches = await h.branches(repo.id);
    expect(branches.find((b) => b.name === 'main')?.deletedAt).not.toBeNull();
    const view = await h.api.request<RepoView>('GET', `/repositories/${repo.id}`, { token: tenant.apiKey });
    expect(view.body.defaultBranch).toBe('trunk');
  });

  it('syncs a private repository with its token and fails clearly, without retrying, with a wrong one', async () => {
    const token = 'tok-' + 'x'.repeat(20) + '-secret';
    const remote = await h.git.createRepository('private', { auth: { username: 'git', password: token } });
    const sha = await remote.commit({ 'secret.txt': 'classified\n' });
    const good = await addRepository({ url: remote.url, branches: ['main'], accessToken: token });
    await h.waitForBranch(good.id, 'main', sha);
    const config = await readFile(join(h.workspaceDir, 'repos', good.id, 'git', 'config'), 'utf8');
    expect(config).not.toContain(token);
    const { rows } = await h.db.query<{ row: string }>(
      'SELECT row_to_json(r)::text AS row FROM "Repository" r',
    );
    expect(rows.some((r) => r.row.includes(token))).toBe(false);

    const other = await h.git.createRepository('private2', { auth: { username: 'git', password: token } });
    await other.commit({ 'a.txt': 'a\n' });
    const bad = await addRepository({ url: other.url, branches: ['main'], accessToken: 'wrong-token' });
    const failed = await h.waitFor('branch FAILED', async () => {
      const b = (await h.branches(bad.id))[0];
      return b?.status === 'FAILED' ? b : undefined;
    });
    expect(failed.lastErrorCode).toBe('GIT_AUTH_FAILED');
    expect(failed.lastError).toMatch(/authentication failed/);
    expect(failed.lastError).not.toContain('wrong-token');
    const badView = await h.api.request<RepoView & { lastError: string }>('GET', `/repositories/${bad.id}`, {
      token: tenant.apiKey,
    });
    expect(badView.body).toMatchObject({
      status: 'FAILED',
      lastError: expect.stringMatching(/authentication failed/),
    });

    // The host revokes the token of the repository that worked: the next sync fails once, clearly, no retry.
    h.git.setAuth('private', { username: 'git', password: 'rotated-on-the-host' });
    await remote.commit({ 'secret.txt': 'more\n' });
    await requestSync(good.id);
    const revoked = await h.waitFor('branch FAILED after revocation', async () => {
      const b = (await h.branches(good.id))[0];
      return b?.status === 'FAILED' ? b : undefined;
    });
    expect(revoked).toMatchObject({ lastErrorCode: 'GIT_AUTH_FAILED', syncedSha: sha });
    await new Promise((r) => setTimeout(r, 1000));
    const runs = await h.runs(revoked.id);
    expect(runs.map((r) => r.status)).toEqual(['SUCCEEDED', 'FAILED']);
    expect(runs[1]!.error).not.toContain(token);
  });

  it('coalesces 50 triggers during a slow sync into at most two runs', async () => {
    const remote = await h.git.createRepository('busy');
    const sha1 = await remote.commit({ 'a.txt': '1\n' });
    const repo = await addRepository({ url: remote.url, branches: ['main'] });
    const branch = await h.waitForBranch(repo.id, 'main', sha1);
    const runsBefore = (await h.runs(branch.id)).length;

    const sha2 = await remote.commit({ 'a.txt': '2\n' });
    h.git.setUploadPackDelay(1500, 'busy');
    try {
      await requestSync(repo.id);
      await h.waitFor('sync running', async () => {
        const b = (await h.branches(repo.id))[0];
        return b?.status === 'SYNCING' ? b : undefined;
      });
      await Promise.all(Array.from({ length: 50 }, () => requestSync(repo.id)));
    } finally {
      h.git.setUploadPackDelay(0, 'busy');
    }
    await h.waitForBranch(repo.id, 'main', sha2);
    await h.waitFor('follow-up finished', async () => {
      const runs = await h.runs(branch.id);
      return runs.every((r) => r.status !== 'RUNNING') && runs.length > runsBefore + 1 ? runs : undefined;
    });
    await new Promise((r) => setTimeout(r, 500));
    const runs = (await h.runs(branch.id)).slice(runsBefore);
    expect(runs.length).toBeLessThanOrEqual(2);
    expect(runs[0]).toMatchObject({ status: 'SUCCEEDED', toSha: sha2 });
    expect(runs[1]).toMatchObject({ status: 'NOOP' });
  });

  it('updates the snapshot after SYNCED when the archive is made from the previous one, and follows up a trigger that came meanwhile', async () => {
    const remote = await h.git.createRepository('snapshot-after');
    const first = await remote.commit({ 'a.txt': '1\n', 'dir/b.txt': 'b\n' });
    const repo = await addRepository({ url: remote.url, branches: ['main'] });
    const branch = await h.waitForBranch(repo.id, 'main', first);

    // The snapshot update of the second commit waits until released: the branch is SYNCED before it.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const second = await remote.commit({ 'a.txt': '2\n', 'c.txt': 'c\n' });
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the mirror as `this` below
    const original = GitMirror.prototype.checkoutSnapshot;
    const checkout = jest.spyOn(GitMirror.prototype, 'checkoutSnapshot').mockImplementation(async function (
      this: GitMirror,
      ...args
    ) {
      if (args[2] === second) await released;
      return original.apply(this, args);
    });
    try {
      await requestSync(repo.id);
      await h.waitForBranch(repo.id, 'main', second);
      const runs = await h.runs(branch.id);
      expect(runs[1]).toMatchObject({ status: 'SUCCEEDED', strategy: 'fetch', toSha: second });
      expect(runs[1]!.strategyReason).toMatch(/from the previous archive's entries and \d+ changed paths/);
      // SYNCED, and the snapshot still holds the first commit: its update is what is left of the job.
      expect(await remote.diffAgainstDirectory(first, h.snapshotDir(repo.id, 'main'))).toEqual([]);

      // A push now finds the job still running, so the queue does not take it again: the job follows it up.
      const third = await remote.commit({ 'c.txt': null, 'd.txt': 'd\n' });
      await requestSync(repo.id);
      release();
      await h.waitForBranch(repo.id, 'main', third);
      expect(await remote.diffAgainstDirectory(third, await h.snapshotAt(repo.id, 'main', third))).toEqual(
        [],
      );
      const all = await h.runs(branch.id);
      expect(all.map((r) => [r.status, r.toSha])).toEqual([
        ['SUCCEEDED', first],
        ['SUCCEEDED', second],
        ['SUCCEEDED', third],
      ]);
      // The run as recorded, with the snapshot update timed on it once done.
      const { rows } = await h.db.query<Record<string, unknown>>(
        `SELECT "phaseTimings", "bytesFetched"::int AS "bytesFetched", "filesChanged", "graphStatus", "errorCode",
           "finishedAt" >= "startedAt" AS "finished" FROM "SyncRun" WHERE "id" = $1`,
        [all[1]!.id],
      );
      expect(rows[0]).toEqual({
        phaseTimings: expect.objectContaining({ fetch: expect.any(Number), checkout: expect.any(Number) }),
        bytesFetched: expect.any(Number),
        filesChanged: 2,
        graphStatus: 'disabled',
        errorCode: null,
        finished: true,
      });
      expect(rows[0]!.bytesFetched).toBeGreaterThan(0);
    } finally {
      release();
      checkout.mockRestore();
    }
  });

  it('re-enqueues what Postgres says is owed (Redis lost the job)', async () => {
    const remote = await h.git.createRepository('owed');
    const sha = await remote.commit({ 'a.txt': 'a\n' });
    await h.stopWorker();
    const repo = await addRepository({ url: remote.url, branches: ['main'] });
    // Lose every queued job, as if Redis had been flushed.
    const queue = h.api.config.redis.queuePrefix;
    const { Redis } = await import('ioredis');
    const redis = new Redis(h.api.config.redis.url);
    const keys = await redis.keys(`${queue}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await h.startWorker();
    await h.reconcile();
    await h.waitForBranch(repo.id, 'main', sha);
  });
});
