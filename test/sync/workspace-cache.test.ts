import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  READY_MARKER,
  WorkspaceCache,
  directorySize,
  walkDirectorySize,
  markReady,
  snapshotKey,
} from '../../src/sync/workspace/workspace-cache.js';
import type { SpawnFunction } from '../../src/sync/git/git-runner.js';
import { SpawnHelper } from '../../src/sync/git/spawn-helper.js';

describe('WorkspaceCache', () => {
  let root: string;
  const logs: string[] = [];
  const log = (msg: string): void => {
    logs.push(msg);
  };

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'reposync-workspace-'));
    logs.length = 0;
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** Fills a leased workspace with a "completed clone" of about `bytes` bytes. */
  async function fakeClone(gitDir: string, bytes: number): Promise<void> {
    await mkdir(join(gitDir, 'objects', 'pack'), { recursive: true });
    await writeFile(join(gitDir, 'objects', 'pack', 'pack-1.pack'), Buffer.alloc(bytes, 1));
    await markReady(gitDir);
  }

  it('lays out one directory per repository and serialises leases of the same repository', async () => {
    const cache = new WorkspaceCache({ rootDir: root, maxBytes: 1e9, log });
    const first = await cache.acquire('repo-1');
    expect(first.dir).toBe(join(root, 'repos', 'repo-1'));
    expect(first.gitDir).toBe(join(root, 'repos', 'repo-1', 'git'));
    expect(first.ready).toBe(false);
    expect(first.snapshotDir('feature/x')).toBe(join(first.dir, 'snapshots', snapshotKey('feature/x')));

    let secondAcquired = false;
    const second = cache.acquire('repo-1').then((lease) => {
      secondAcquired = true;
      return lease;
    });
    const other = await cache.acquire('repo-2'); // other repositories are not blocked
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(secondAcquired).toBe(false);

    await fakeClone(first.gitDir, 1000);
    await first.release();
    await first.release(); // idempotent
    const lease = await second;
    expect(lease.ready).toBe(true);
    await lease.release();
    await other.release();
    await expect(cache.acquire('../escape')).rejects.toThrow(/invalid repository id/);
  });

  it('gives up waiting when the signal aborts', async () => {
    const cache = new WorkspaceCache({ rootDir: root, maxBytes: 1e9 });
    const held = await cache.acquire('repo');
    const controller = new AbortController();
    const waiting = cache.acquire('repo', { signal: controller.signal });
    controller.abort(new Error('shutting down'));
    await expect(waiting).rejects.toThrow('shutting down');
    await held.release();
    const again = await cache.acquire('repo'); // the aborted waiter left no trace in the queue
    await again.release();
  });

  it('removes stale git lock files of a completed clone on acquire', async () => {
    const cache = new WorkspaceCache({ rootDir: root, maxBytes: 1e9, log });
    const lease = await cache.acquire('repo');
    await fakeClone(lease.gitDir, 10);
    await lease.release();

    const { gitDir } = lease;
    const stale = [
      'index.lock',
      'shallow.lock',
      'HEAD.lock',
      'packed-refs.lock',
      'config.lock',
      'refs/remotes/origin/feature/x.lock',
      'reposync/index/abc.lock',
      'objects/info/commit-graphs/commit-graph-chain.lock',
      'objects/pack/pack-2.keep',
      'objects/pack/tmp_pack_123',
    ];
    for (const path of stale) {
      await mkdir(join(gitDir, path, '..'), { recursive: true });
      await writeFile(join(gitDir, path), '');
    }
    await mkdir(join(gitDir, 'objects', 'ab'), { recursive: true });
    await writeFile(join(gitDir, 'objects', 'ab', 'cdef'), 'loose object');

    const again = await cache.acquire('repo');
    expect(again.ready).toBe(true);
    for (const path of stale) expect(existsSync(join(gitDir, path))).toBe(false);
    expect(existsSync(join(gitDir, 'objects', 'pack', 'pack-1.pack'))).toBe(true);
    expect(existsSync(join(gitDir, 'objects', 'ab', 'cdef'))).toBe(true);
    expect(existsSync(join(gitDir, READY_MARKER))).toBe(true);
    expect(logs).toContain('removed stale git lock files');
    await again.release();
  });

  it('wipes a workspace whose clone never completed', async () => {
    const half = join(root, 'repos', 'repo', 'git', 'objects');
    await mkdir(half, { recursive: true });
    await writeFile(join(half, 'partial'), 'x');
    await mkdir(join(root, 'repos', 'repo', 'snapshots', 'main'), { recursive: true });

    const cache = new WorkspaceCache({ rootDir: root, maxBytes: 1e9, log });
    const lease = await cache.acquire('repo');
    expect(lease.ready).toBe(false);
    expect(await readdir(lease.dir)).toEqual(['.reposync-used']);
    expect(logs).toContain('workspace incomplete, wiping it');

    await fakeClone(lease.gitDir, 10);
    await lease.reset(); // e.g. the engine found the clone corrupt
    expect(lease.ready).toBe(false);
    expect(existsSync(lease.gitDir)).toBe(false);
    await lease.release();
    await expect(lease.reset()).rejects.toThrow(/already released/);
  });

  it('evicts least recently used workspaces, never a leased one nor the most recent', async () => {
    const cache = new WorkspaceCache({ rootDir: root, maxBytes: 250_000, log });
    const leased = await cache.acquire('leased');
    await fakeClone(leased.gitDir, 100_000);

    for (const id of ['oldest', 'older', 'recent']) {
      const lease = await cache.acquire(id);
      await fakeClone(lease.gitDir, 100_000);
      await lease.release();
      await new Promise((resolve) => setTimeout(resolve, 5)); // distinct last-use times
    }
    await cache.idle();
    // leased is still held, so its size is not known yet: 300 KB known, over the budget by one.
    expect(existsSync(join(root, 'repos', 'oldest'))).toBe(false);
    expect(existsSync(join(root, 'repos', 'older'))).toBe(true);
    expect(existsSync(join(root, 'repos', 'recent'))).toBe(true);

    await leased.release();
    await cache.idle();
    // Now 300 KB again: 'older' is the least recently used and goes; 'leased' was just used.
    expect(existsSync(join(root, 'repos', 'older'))).toBe(false);
    expect(existsSync(join(root, 'repos', 'recent'))).toBe(true);
    expect(existsSync(join(root, 'repos', 'leased'))).toBe(true);
    expect(cache.totalBytes()).toBeLessThanOrEqual(250_000);
    expect(logs.filter((msg) => msg === 'workspace evicted')).toHaveLength(2);
  });

  it('skips a leased workspace even when it is the least recently used', async () => {
    const cache = new WorkspaceCache({ rootDir: root, maxBytes: 150_000 });
    const first = await cache.acquire('first');
    await fakeClone(first.gitDir, 100_000);
    await first.release();
    const held = await cache.acquire('first'); // least recently used, but in use again

    for (const id of ['second', 'third']) {
      const lease = await cache.acquire(id);
      await fakeClone(lease.gitDir, 100_000);
      await lease.release();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await cache.idle();
    expect(existsSync(join(root, 'repos', 'first'))).toBe(true);
    expect(existsSync(join(root, 'repos', 'second'))).toBe(false);
    expect(existsSync(join(root, 'repos', 'third'))).toBe(true);
    await held.release();
  });

  it('takes workspaces left by an earlier process into account, oldest first', async () => {
    for (const [id, ageSeconds] of [
      ['old', 3600],
      ['new', 60],
    ] as const) {
      const gitDir = join(root, 'repos', id, 'git');
      await fakeClone(gitDir, 100_000);
      const used = join(root, 'repos', id, '.reposync-used');
      await writeFile(used, '');
      const when = new Date(Date.now() - ageSeconds * 1000);
      await utimes(used, when, when);
    }
    await mkdir(join(root, 'trash', 'leftover.123'), { recursive: true });

    const cache = new WorkspaceCache({ rootDir: root, maxBytes: 250_000 });
    const lease = await cache.acquire('fresh');
    await fakeClone(lease.gitDir, 100_000);
    await lease.release();
    await cache.idle();
    expect(existsSync(join(root, 'repos', 'old'))).toBe(false);
    expect(existsSync(join(root, 'repos', 'new'))).toBe(true);
    expect(existsSync(join(root, 'repos', 'fresh'))).toBe(true);
    expect(await readdir(join(root, 'trash'))).toEqual([]);
  });

  it('removes a workspace after its lease ends', async () => {
    const cache = new WorkspaceCache({ rootDir: root, maxBytes: 1e9 });
    const lease = await cache.acquire('repo');
    await fakeClone(lease.gitDir, 10);
    const removed = cache.remove('repo');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(existsSync(lease.dir)).toBe(true); // waits for the lease
    await lease.release();
    await removed;
    expect(existsSync(lease.dir)).toBe(false);
    expect(cache.totalBytes()).toBe(0);
  });
});

describe('directorySize', () => {
  it('counts allocated bytes without following symlinks', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reposync-size-'));
    try {
      await writeFile(join(dir, 'a'), Buffer.alloc(10_000));
      await mkdir(join(dir, 'sub'));
      await writeFile(join(dir, 'sub', 'b'), Buffer.alloc(10_000));
      await symlink('/usr', join(dir, 'link-to-usr'));
      for (const measure of [directorySize, walkDirectorySize]) {
        const size = await measure(dir);
        expect(size).toBeGreaterThanOrEqual(20_000);
        expect(size).toBeLessThan(100_000);
        expect(await measure(join(dir, 'missing'))).toBe(0);
      }
      // du (in a child process) and the walk count the same blocks, du also those of the directory itself.
      const difference = (await directorySize(dir)) - (await walkDirectorySize(dir));
      expect(difference).toBeGreaterThanOrEqual(0);
      expect(difference).toBeLessThanOrEqual(8192);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs du through the spawn function it is given, as the worker does with its helper process', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reposync-size-'));
    const helper = new SpawnHelper();
    const started: string[] = [];
    const spawn: SpawnFunction = (command, args, options) => {
      started.push([command, ...args].join(' '));
      return helper.spawn(command, args, options);
    };
    try {
      await writeFile(join(dir, 'a'), Buffer.alloc(10_000));
      expect(await directorySize(dir, spawn)).toBe(await directorySize(dir));
      expect(await directorySize(join(dir, 'missing'), spawn)).toBe(0);
      expect(started).toEqual([`du -sk -- ${dir}`, `du -sk -- ${join(dir, 'missing')}`]);
      // No du at all: the directory is walked instead.
      const noDu: SpawnFunction = (_command, args, options) => helper.spawn('no-such-du', args, options);
      expect(await directorySize(dir, noDu)).toBe(await walkDirectorySize(dir));
    } finally {
      helper.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('snapshotKey', () => {
  it('is a safe directory name and distinguishes similar branches', () => {
    expect(snapshotKey('feature/x')).toMatch(/^feature_x-[0-9a-f]{10}$/);
    expect(snapshotKey('feature/x')).not.toBe(snapshotKey('feature_x'));
    expect(snapshotKey('..')).not.toMatch(/^\./);
  });
});
