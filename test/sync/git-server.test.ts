import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GitFixtureServer, runFixtureGit } from '../fixtures/git-server.js';

describe('GitFixtureServer', () => {
  let server: GitFixtureServer;
  let scratch: string;

  beforeAll(async () => {
    server = await GitFixtureServer.start();
    scratch = await mkdtemp(join(tmpdir(), 'reposync-git-server-test-'));
  });

  afterAll(async () => {
    await server.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  it('serves a repository that git clones over smart HTTP, with modes and symlinks intact', async () => {
    const repo = await server.createRepository('acme/clone-me');
    const sha = await repo.commit(
      {
        'README.md': '# hello\n',
        'bin/run': { content: '#!/bin/sh\necho run\n', executable: true },
        'docs/link': { symlink: '../README.md' },
        'with space "quoted".txt': Buffer.from([0, 1, 2, 255]),
      },
      { message: 'initial', date: new Date('2024-01-02T03:04:05Z') },
    );
    expect(sha).toMatch(/^[0-9a-f]{40}$/);
    expect(repo.url).toBe(`${server.baseUrl}/acme/clone-me.git`);

    const dest = join(scratch, 'clone-me');
    await runFixtureGit(['clone', '--quiet', repo.url, dest]);
    expect(await readFile(join(dest, 'README.md'), 'utf8')).toBe('# hello\n');
    expect((await stat(join(dest, 'bin/run'))).mode & 0o111).not.toBe(0);
    expect(await readlink(join(dest, 'docs/link'))).toBe('../README.md');
    expect(await readFile(join(dest, 'with space "quoted".txt'))).toEqual(Buffer.from([0, 1, 2, 255]));
    const { stdout } = await runFixtureGit(['rev-parse', 'HEAD'], { cwd: dest });
    expect(stdout.trim()).toBe(sha);
    expect(server.uploadPackRequests('acme/clone-me')).toBeGreaterThan(0);

    await rm(join(dest, '.git'), { recursive: true });
    expect(await repo.diffAgainstDirectory(sha, dest)).toEqual([]);
  });

  it('answers 401 without the right credentials and serves with them', async () => {
    const auth = { username: 'alice', password: 's3cret' };
    const repo = await server.createRepository('acme/private', { auth });
    await repo.commit({ 'a.txt': 'a' });

    await expect(
      runFixtureGit(['ls-remote', repo.url], { env: { GIT_ASKPASS: '/bin/false' } }),
    ).rejects.toThrow(/could not read Username|Authentication failed/);
    await expect(
      runFixtureGit(['ls-remote', repo.urlWithAuth({ ...auth, password: 'nope' })]),
    ).rejects.toThrow(/Authentication failed/);
    const { stdout } = await runFixtureGit(['ls-remote', repo.urlWithAuth(auth), 'refs/heads/main']);
    expect(stdout).toContain('refs/heads/main');
    expect(server.requests.some((r) => r.repository === 'acme/private' && r.status === 401)).toBe(true);
    expect(server.requests.some((r) => r.repository === 'acme/private' && r.user === 'alice')).toBe(true);
  });

  it('accepts pushes over HTTP and shows them in ls-remote', async () => {
    const repo = await server.createRepository('acme/push-me');
    await repo.commit({ 'a.txt': 'a\n' });
    const work = join(scratch, 'push-me');
    await runFixtureGit(['clone', '--quiet', repo.url, work]);
    await runFixtureGit(
      ['-c', 'user.name=T', '-c', 'user.email=t@t', 'commit', '--allow-empty', '-qm', 'pushed'],
      {
        cwd: work,
      },
    );
    await runFixtureGit(['push', '--quiet', 'origin', 'HEAD:refs/heads/feature'], { cwd: work });
    const local = (await runFixtureGit(['rev-parse', 'HEAD'], { cwd: work })).stdout.trim();

    const { stdout } = await runFixtureGit(['ls-remote', repo.url]);
    expect(stdout).toContain(`${local}\trefs/heads/feature`);
    expect(await repo.head('feature')).toBe(local);
  });

  it('writes branches, tags, alternative histories and renames the default branch', async () => {
    const repo = await server.createRepository('acme/history', { defaultBranch: 'trunk' });
    const date = new Date('2024-05-01T00:00:00Z');
    const first = await repo.commit({ 'a.txt': 'one' }, { date });
    const second = await repo.commit({ 'a.txt': 'two', 'b.txt': 'b' }, { date });
    const again = await (
      await server.createRepository('acme/history-copy')
    ).commit({ 'a.txt': 'one' }, { date });
    expect(again).toBe(first); // deterministic dates give deterministic SHAs

    await repo.commit({ 'feature.txt': 'f' }, { branch: 'feature' });
    expect((await repo.lsTree((await repo.head('feature')) ?? '')).map((e) => e.path)).toEqual([
      'a.txt',
      'b.txt',
      'feature.txt',
    ]);

    const alternative = await repo.commitOnto(first, { 'a.txt': 'rewritten', 'b.txt': null }, { date });
    expect(await repo.head('trunk')).toBe(second); // commitOnto moves no branch
    await repo.forcePush('trunk', alternative);
    expect(await repo.head('trunk')).toBe(alternative);

    await repo.tag('v1', first);
    await repo.tag('v2', second, { message: 'release 2' });
    await repo.createBranch('copy', first);
    await repo.deleteBranch('feature');
    await repo.renameDefaultBranch('main');

    const { stdout } = await runFixtureGit(['ls-remote', '--symref', repo.url]);
    expect(stdout).toContain('ref: refs/heads/main\tHEAD');
    expect(stdout).toContain(`${alternative}\trefs/heads/main`);
    expect(stdout).toContain(`${first}\trefs/tags/v1`);
    expect(stdout).toContain('refs/tags/v2^{}');
    expect(stdout).not.toContain('refs/heads/feature');
    expect(stdout).not.toContain('refs/heads/trunk');
    expect(stdout).not.toContain('refs/fixture');
  });

  it('generates large trees and long histories quickly', async () => {
    const repo = await server.createRepository('acme/generated');
    const started = Date.now();
    const treeSha = await repo.generateTree({ files: 5_000, bytesPerFile: 512 });
    const historySha = await repo.generateHistory({ commits: 300 });
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await repo.lsTree(treeSha)).toHaveLength(5_000);
    const { stdout } = await runFixtureGit(['rev-list', '--count', historySha], { gitDir: repo.bareDir });
    expect(Number(stdout.trim())).toBe(301);
  });

  it('delays upload-pack, injects failures and answers 404 for unknown repositories', async () => {
    const repo = await server.createRepository('acme/slow');
    await repo.commit({ 'a.txt': 'a' });
    server.setUploadPackDelay(400, 'acme/slow');
    const started = Date.now();
    await runFixtureGit(['clone', '--quiet', '--bare', repo.url, join(scratch, 'slow.git')]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    server.setUploadPackDelay(0, 'acme/slow');

    server.failNextRequests('acme/slow', 1, 503);
    await expect(runFixtureGit(['ls-remote', repo.url])).rejects.toThrow(/503/);
    await expect(runFixtureGit(['ls-remote', repo.url])).resolves.toBeDefined();
    await expect(runFixtureGit(['ls-remote', `${server.baseUrl}/acme/missing.git`])).rejects.toThrow(
      /not found/,
    );
  });
});
