import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  GitAuthFailedError,
  GitError,
  GitInvalidArgumentError,
  GitRefNotFoundError,
  GitRepositoryNotFoundError,
  GitTimeoutError,
} from '../../src/sync/git/git-errors.js';
import { GitMirror } from '../../src/sync/git/git-mirror.js';
import { GitRunner, type GitRunOptions, type GitRunResult } from '../../src/sync/git/git-runner.js';
import { READY_MARKER } from '../../src/sync/workspace/workspace-cache.js';
import { GitFixtureServer, runFixtureGit, type FixtureRepository } from '../fixtures/git-server.js';

const DATE = new Date('2024-03-01T12:00:00Z');

describe('GitMirror', () => {
  let server: GitFixtureServer;
  let scratch: string;
  let runner: GitRunner;
  let mirror: GitMirror;
  let counter = 0;

  beforeAll(async () => {
    server = await GitFixtureServer.start();
    scratch = await mkdtemp(join(tmpdir(), 'reposync-git-mirror-'));
    runner = new GitRunner({ defaultTimeoutMs: 30_000, askpassDir: join(scratch, 'askpass') });
    mirror = new GitMirror({ runner });
  });

  afterAll(async () => {
    await server.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  /** Fresh git dir and snapshot dir paths for one test. */
  function workspace(): { gitDir: string; snapshotDir: string } {
    counter++;
    return {
      gitDir: join(scratch, `ws-${counter}`, 'git'),
      snapshotDir: join(scratch, `ws-${counter}`, 'snap'),
    };
  }

  async function expectSnapshotEquals(
    repo: FixtureRepository,
    sha: string,
    snapshotDir: string,
  ): Promise<void> {
    expect(await repo.diffAgainstDirectory(sha, snapshotDir)).toEqual([]);
    expect(existsSync(join(snapshotDir, '.git'))).toBe(false);
  }

  it('clones a branch and checks out a snapshot identical to the commit tree', async () => {
    const repo = await server.createRepository('mirror/basic');
    const sha = await repo.commit(
      {
        'README.md': '# basic\n',
        'src/index.ts': 'export const x = 1;\n',
        'src/deep/nested/file.txt': 'deep\n',
        'bin/tool': { content: '#!/bin/sh\necho tool\n', executable: true },
        'link-to-readme': { symlink: 'README.md' },
        'dangling-link': { symlink: '../outside/nowhere' },
        // Attributes that would alter a normal checkout: the snapshot must still be byte-exact.
        '.gitattributes': '* text eol=crlf\n*.txt ident\n',
        'lf.txt': 'line one\nline two $Id$\n',
        '.gitignore': '*.log\n',
        'tracked.log': 'tracked despite the ignore rule\n',
        'binary.bin': Buffer.from([0, 255, 13, 10, 0]),
      },
      { date: DATE },
    );
    const { gitDir, snapshotDir } = workspace();

    const cloned = await mirror.clone(repo.url, gitDir, 'main');
    expect(cloned.sha).toBe(sha);
    expect(cloned.bytesFetched).toBeGreaterThan(0);
    expect(existsSync(join(gitDir, READY_MARKER))).toBe(true);

    const { filesChanged } = await mirror.checkoutSnapshot(gitDir, snapshotDir, sha);
    expect(filesChanged).toBe(0);
    await expectSnapshotEquals(repo, sha, snapshotDir);
    expect(await readFile(join(snapshotDir, 'lf.txt'), 'utf8')).toBe('line one\nline two $Id$\n');

    expect(await mirror.treeId(gitDir, sha)).toBe(await repo.treeId(sha));
    expect(await mirror.revParse(gitDir, 'refs/remotes/origin/main')).toBe(sha);
    await expect(mirror.revParse(gitDir, 'refs/remotes/origin/nope')).rejects.toBeInstanceOf(
      GitRefNotFoundError,
    );

    // A partial clone: the layout documented in git-mirror.ts.
    const config = await readFile(join(gitDir, 'config'), 'utf8');
    expect(config).toContain('partialclonefilter = blob:none');
    expect(config).toContain('fetch = +refs/heads/main:refs/remotes/origin/main');
    expect(config).toContain(`url = ${repo.url}`);
  });

  it('fetches a new commit with few bytes and moves the snapshot', async () => {
    const repo = await server.createRepository('mirror/incremental');
    await repo.generateTree({ files: 2_000, bytesPerFile: 200, date: DATE });
    const first = await repo.commit(
      { 'keep.txt': 'keep', 'change.txt': 'v1', 'remove.txt': 'bye' },
      { date: DATE },
    );
    const { gitDir, snapshotDir } = workspace();
    const cloned = await mirror.clone(repo.url, gitDir, 'main');
    await mirror.checkoutSnapshot(gitDir, snapshotDir, first);

    const unchanged = await mirror.fetch(gitDir, repo.url, 'main');
    expect(unchanged).toEqual({ sha: first, bytesFetched: 0 });

    const second = await repo.commit({ 'change.txt': 'v2', 'remove.txt': null, 'added/new.txt': 'new' });
    const fetched = await mirror.fetch(gitDir, repo.url, 'main');
    expect(fetched.sha).toBe(second);
    expect(fetched.bytesFetched).toBeGreaterThan(0);
    expect(fetched.bytesFetched).toBeLessThan(4_096);
    expect(fetched.bytesFetched * 10).toBeLessThan(cloned.bytesFetched);

    const { filesChanged } = await mirror.checkoutSnapshot(gitDir, snapshotDir, second);
    expect(filesChanged).toBe(3);
    await expectSnapshotEquals(repo, second, snapshotDir);
    expect(await mirror.isAncestor(gitDir, first, second)).toBe(true);
    expect(await mirror.isAncestor(gitDir, second, first)).toBe(false);
  });

  it('reports tree changes with new contents, and none beyond the limits', async () => {
    const repo = await server.createRepository('mirror/tree-changes');
    const first = await repo.commit({ 'a.txt': 'a1', 'gone/b.txt': 'b', link: { symlink: 'a.txt' } });
    const { gitDir } = workspace();
    await mirror.clone(repo.url, gitDir, 'main');
    const second = await repo.commit({
      'a.txt': 'a2',
      'gone/b.txt': null,
      link: { symlink: 'new/c.txt' },
      'new/c.txt': 'c',
    });
    await mirror.fetch(gitDir, repo.url, 'main');

    const limits = { maxChanges: 100, maxBytes: 1024 };
    const result = await mirror.treeChanges(gitDir, first, second, limits);
    expect(result?.commitTime).toEqual(await mirror.commitTime(gitDir, second));
    expect(
      result?.changes.map((c) => [c.status, c.path, c.newMode, c.data?.toString('utf8') ?? null]),
    ).toEqual([
      ['M', 'a.txt', '100644', 'a2'],
      ['D', 'gone', '000000', null],
      ['D', 'gone/b.txt', '000000', null],
      ['M', 'link', '120000', 'new/c.txt'],
      ['A', 'new', '040000', null],
      ['A', 'new/c.txt', '100644', 'c'],
    ]);
    expect(await mirror.treeChanges(gitDir, first, second, { ...limits, maxChanges: 5 })).toBeNull();
    expect(await mirror.treeChanges(gitDir, first, second, { ...limits, maxBytes: 11 })).toBeNull();
    expect((await mirror.treeChanges(gitDir, second, second, limits))?.changes).toEqual([]);
    // The new commit's parents come with it: the first commit has none.
    expect(result?.parents).toEqual([first]);
    expect((await mirror.treeChanges(gitDir, second, first, limits))?.parents).toEqual([]);
  });

  it('starts tree changes before the commit they go to is fetched, and stops them when it is refused', async () => {
    const repo = await server.createRepository('mirror/tree-changes-ahead');
    const first = await repo.commit({ 'a.txt': 'a1', 'keep/b.txt': 'b' });
    const { gitDir } = workspace();
    await mirror.clone(repo.url, gitDir, 'main');
    const limits = { maxChanges: 100, maxBytes: 1024 };

    let give!: (sha: string) => void;
    const ahead = mirror.treeChanges(
      gitDir,
      first,
      new Promise<string>((resolve) => (give = resolve)),
      limits,
    );
    // Both git processes wait for the commit while the fetch brings it.
    for (let i = 0; i < 200 && runner.runningCount < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(runner.runningCount).toBe(2);
    const second = await repo.commit({ 'a.txt': 'a2', 'new/c.txt': 'c' });
    const fetched = await mirror.fetch(gitDir, repo.url, 'main');
    expect(fetched.sha).toBe(second);
    give(fetched.sha);
    const result = await ahead;
    expect(result?.changes.map((c) => [c.status, c.path, c.data?.toString('utf8') ?? null])).toEqual([
      ['M', 'a.txt', 'a2'],
      ['A', 'new', null],
      ['A', 'new/c.txt', 'c'],
    ]);
    expect(result).toEqual(await mirror.treeChanges(gitDir, first, second, limits));

    // Refused, or not a commit id: git is stopped with that error and nothing is left running.
    const refused = mirror.treeChanges(
      gitDir,
      first,
      Promise.reject(new Error('no commit after all')),
      limits,
    );
    await expect(refused).rejects.toThrow('no commit after all');
    await expect(mirror.treeChanges(gitDir, first, Promise.resolve('HEAD'), limits)).rejects.toThrow(
      /not a full commit SHA/,
    );
    expect(runner.runningCount).toBe(0);
  });

  it('repacks once a clone holds more packs than git gc --auto allows, and not before', async () => {
    const repo = await server.createRepository('mirror/gc');
    await repo.commit({ 'f.txt': '0' });
    const { gitDir } = workspace();
    await mirror.clone(repo.url, gitDir, 'main');
    const packs = async () =>
      (await readdir(join(gitDir, 'objects', 'pack'))).filter((name) => name.endsWith('.pack')).length;
    // Every fetch keeps its pack.
    const addPack = async (i: number) => {
      await repo.commit({ 'f.txt': String(i) });
      await mirror.fetch(gitDir, repo.url, 'main');
    };
    for (let i = 1; i <= 10; i++) await addPack(i);
    await mirror.collectGarbage(gitDir);
    expect(await packs()).toBe(11);
    for (let i = 11; i <= 50; i++) await addPack(i);
    await mirror.collectGarbage(gitDir);
    // Repacked (objects from the remote kept apart in their promisor pack); the clone is still whole.
    expect(await packs()).toBeLessThanOrEqual(2);
    await runFixtureGit(['fsck', '--connectivity-only', '--no-dangling'], { gitDir });
  });

  it('repairs a snapshot that was tampered with', async () => {
    const repo = await server.createRepository('mirror/self-heal');
    const sha = await repo.commit({ 'a.txt': 'a', 'dir/b.txt': 'b', 'file-or-dir': 'file' }, { date: DATE });
    const { gitDir, snapshotDir } = workspace();
    await mirror.clone(repo.url, gitDir, 'main');
    await mirror.checkoutSnapshot(gitDir, snapshotDir, sha);

    await writeFile(join(snapshotDir, 'a.txt'), 'modified');
    await unlink(join(snapshotDir, 'dir', 'b.txt'));
    await writeFile(join(snapshotDir, 'untracked.txt'), 'junk');
    await mkdir(join(snapshotDir, 'untracked-dir', 'deeper'), { recursive: true });
    await writeFile(join(snapshotDir, 'untracked-dir', 'deeper', 'x.log'), 'junk');
    await rm(join(snapshotDir, 'file-or-dir'));
    await mkdir(join(snapshotDir, 'file-or-dir'));
    await writeFile(join(snapshotDir, 'file-or-dir', 'inside'), 'junk');
    await symlink('/etc', join(snapshotDir, 'evil-link'));
    await mkdir(join(snapshotDir, 'nested-repo', '.git'), { recursive: true });

    expect(await mirror.checkoutSnapshot(gitDir, snapshotDir, sha)).toEqual({ filesChanged: 0 });
    await expectSnapshotEquals(repo, sha, snapshotDir);
  });

  describe('incremental snapshot updates', () => {
    /** A runner that records the argv of every git command (after the global options). */
    class RecordingRunner extends GitRunner {
      readonly commands: string[][] = [];
      override async run(args: readonly string[], opts?: GitRunOptions): Promise<GitRunResult> {
        this.commands.push([...args]);
        return super.run(args, opts);
      }
      /** The read-tree invocations recorded since the last call, as their flags. */
      takeReadTrees(): string[] {
        const found = this.commands
          .filter((argv) => argv.includes('read-tree'))
          .map((argv) =>
            argv
              .slice(argv.indexOf('read-tree') + 1, -1)
              .join(' ')
              .replace(/ [0-9a-f]{40}$/, ''),
          );
        this.commands.length = 0;
        return found;
      }
    }
    let recorder: RecordingRunner;
    let recorded: GitMirror;

    beforeAll(() => {
      recorder = new RecordingRunner({ defaultTimeoutMs: 30_000, askpassDir: join(scratch, 'askpass-rec') });
      recorded = new GitMirror({ runner: recorder });
    });

    /** A clone with a snapshot at `first`, then `second` fetched. */
    async function updatedRepository(name: string): Promise<{
      repo: FixtureRepository;
      gitDir: string;
      snapshotDir: string;
      first: string;
      second: string;
    }> {
      const repo = await server.createRepository(name);
      const first = await repo.commit(
        {
          'same.txt': 'same',
          'changes.txt': 'v1',
          'goes.txt': 'bye',
          'bin/tool': { content: '#!/bin/sh\n', executable: true },
          link: { symlink: 'same.txt' },
          'dir/deep/file.txt': 'deep',
        },
        { date: DATE },
      );
      const { gitDir, snapshotDir } = workspace();
      await recorded.clone(repo.url, gitDir, 'main');
      await recorded.checkoutSnapshot(gitDir, snapshotDir, first);
      const second = await repo.commit(
        { 'changes.txt': 'v2', 'goes.txt': null, 'new/file.txt': 'new', link: { symlink: 'dir' } },
        { date: DATE },
      );
      await recorded.fetch(gitDir, repo.url, 'main');
      recorder.takeReadTrees();
      return { repo, gitDir, snapshotDir, first, second };
    }

    it('merges from the previous commit, leaving unchanged files untouched', async () => {
      const { repo, gitDir, snapshotDir, second } = await updatedRepository('mirror/in-place');
      const before = await stat(join(snapshotDir, 'same.txt'));

      expect(await recorded.checkoutSnapshot(gitDir, snapshotDir, second)).toEqual({ filesChanged: 4 });
      await expectSnapshotEquals(repo, second, snapshotDir);
      expect(recorder.takeReadTrees()).toEqual(['-m -u']);
      const after = await stat(join(snapshotDir, 'same.txt'));
      expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);

      // Checking out the same commit again only checks the snapshot.
      expect(await recorded.checkoutSnapshot(gitDir, snapshotDir, second)).toEqual({ filesChanged: 0 });
      expect(recorder.takeReadTrees()).toEqual([]);
      await expectSnapshotEquals(repo, second, snapshotDir);
    });

    it('takes the checks run beside the fetch (before the new commit is there) and merges in place', async () => {
      const repo = await server.createRepository('mirror/inspected-early');
      const first = await repo.commit({ 'a.txt': 'a1', 'b/c.txt': 'c', 'gone.txt': 'x' }, { date: DATE });
      const { gitDir, snapshotDir } = workspace();
      await recorded.clone(repo.url, gitDir, 'main');
      await recorded.checkoutSnapshot(gitDir, snapshotDir, first);
      await writeFile(join(snapshotDir, 'untracked.txt'), 'junk');
      const second = await repo.commit({ 'a.txt': 'a2', 'gone.txt': null, 'new/d.txt': 'd' }, { date: DATE });
      recorder.takeReadTrees();

      const inspection = recorded.inspectSnapshot(gitDir, snapshotDir);
      const fetched = await recorded.fetch(gitDir, repo.url, 'main');
      expect(fetched.sha).toBe(second);
      expect(await inspection).toEqual({ previous: first, problem: null });
      expect(await recorded.checkoutSnapshot(gitDir, snapshotDir, second, { inspection })).toEqual({
        filesChanged: 3,
      });
      await expectSnapshotEquals(repo, second, snapshotDir);
      expect(recorder.takeReadTrees()).toEqual(['-m -u']);

      // A snapshot found tampered with is checked out in full.
      await writeFile(join(snapshotDir, 'a.txt'), 'edited');
      const tampered = recorded.inspectSnapshot(gitDir, snapshotDir);
      expect((await tampered).problem).toEqual(expect.any(String));
      expect(await recorded.checkoutSnapshot(gitDir, snapshotDir, second, { inspection: tampered })).toEqual({
        filesChanged: 0,
      });
      await expectSnapshotEquals(repo, second, snapshotDir);
      expect(recorder.takeReadTrees()).toEqual(['--reset -u']);
    });

    it.each<[string, (snapshotDir: string) => Promise<void>]>([
      ['an unchanged file modified', (dir) => writeFile(join(dir, 'same.txt'), 'edited')],
      ['a changed file modified', (dir) => writeFile(join(dir, 'changes.txt'), 'edited')],
      ['an unchanged file deleted', (dir) => unlink(join(dir, 'dir', 'deep', 'file.txt'))],
      ['an executable bit dropped', (dir) => chmod(join(dir, 'bin', 'tool'), 0o644)],
      [
        'a symlink replaced by a file',
        (dir) => unlink(join(dir, 'link')).then(() => writeFile(join(dir, 'link'), 'x')),
      ],
      [
        'a directory replaced by a file',
        (dir) => rm(join(dir, 'dir'), { recursive: true }).then(() => writeFile(join(dir, 'dir'), 'x')),
      ],
    ])('checks out in full when the snapshot was tampered with: %s', async (_what, tamper) => {
      const { repo, gitDir, snapshotDir, second } = await updatedRepository(`mirror/tampered-${++counter}`);
      await tamper(snapshotDir);
      await writeFile(join(snapshotDir, 'untracked.txt'), 'junk');

      expect(await recorded.checkoutSnapshot(gitDir, snapshotDir, second)).toEqual({ filesChanged: 4 });
      await expectSnapshotEquals(repo, second, snapshotDir);
      expect(recorder.takeReadTrees()).toEqual(['--reset -u']);
    });

    it('removes untracked files, even in the way of new paths, without a full checkout', async () => {
      const { repo, gitDir, snapshotDir, second } = await updatedRepository('mirror/untracked');
      await mkdir(join(snapshotDir, 'new', 'file.txt', 'inside'), { recursive: true });
      await writeFile(join(snapshotDir, 'new', 'file.txt', 'inside', 'x.log'), 'junk');
      await mkdir(join(snapshotDir, 'nested-repo', '.git'), { recursive: true });
      await symlink('/etc', join(snapshotDir, 'evil-link'));

      expect(await recorded.checkoutSnapshot(gitDir, snapshotDir, second)).toEqual({ filesChanged: 4 });
      await expectSnapshotEquals(repo, second, snapshotDir);
      expect(recorder.takeReadTrees()).toEqual(['-m -u']);
    });

    it('does not trust an index left at another commit (a crash before the snapshot ref moved)', async () => {
      const { repo, gitDir, snapshotDir, first, second } = await updatedRepository('mirror/crashed');
      // As if a checkout of `second` had crashed after writing index and files, before update-ref.
      await runFixtureGit(
        [
          '--git-dir',
          gitDir,
          '--work-tree',
          snapshotDir,
          '-c',
          'core.bare=false',
          'read-tree',
          '-m',
          '-u',
          first,
          second,
        ],
        { env: { GIT_INDEX_FILE: snapshotIndex(gitDir, snapshotDir) } },
      );
      // From `first`, changes.txt is unchanged: a merge trusting the index would keep its v2.
      const third = await repo.commit({ 'changes.txt': 'v1', 'same.txt': 'same, changed' }, { date: DATE });
      await recorded.fetch(gitDir, repo.url, 'main');
      recorder.takeReadTrees();

      await recorded.checkoutSnapshot(gitDir, snapshotDir, third);
      await expectSnapshotEquals(repo, third, snapshotDir);
      expect(recorder.takeReadTrees()).toEqual(['--reset -u']);
    });

    it('checks out in full when the index file is gone', async () => {
      const { repo, gitDir, snapshotDir, second } = await updatedRepository('mirror/no-index');
      await rm(snapshotIndex(gitDir, snapshotDir));

      await recorded.checkoutSnapshot(gitDir, snapshotDir, second);
      await expectSnapshotEquals(repo, second, snapshotDir);
      expect(recorder.takeReadTrees()).toEqual(['--reset -u']);
    });
  });

  it('follows a force-push to an unrelated history', async () => {
    const repo = await server.createRepository('mirror/force');
    const base = await repo.commit({ 'a.txt': 'a', 'b.txt': 'b' }, { date: DATE });
    const tip = await repo.commit({ 'a.txt': 'a2', 'c.txt': 'c' }, { date: DATE });
    const { gitDir, snapshotDir } = workspace();
    await mirror.clone(repo.url, gitDir, 'main');
    await mirror.checkoutSnapshot(gitDir, snapshotDir, tip);

    const rewritten = await repo.commitOnto(base, { 'b.txt': 'b-rewritten', 'd.txt': 'd' }, { date: DATE });
    await repo.forcePush('main', rewritten);
    const fetched = await mirror.fetch(gitDir, repo.url, 'main');
    expect(fetched.sha).toBe(rewritten);
    expect(await mirror.isAncestor(gitDir, tip, rewritten)).toBe(false);
    expect(await mirror.isAncestor(gitDir, base, rewritten)).toBe(true);

    // a.txt back to "a", b.txt changed, c.txt gone, d.txt new.
    expect(await mirror.checkoutSnapshot(gitDir, snapshotDir, rewritten)).toEqual({ filesChanged: 4 });
    await expectSnapshotEquals(repo, rewritten, snapshotDir);

    const orphan = await repo.commitOnto(null, { 'only.txt': 'root' }, { date: DATE });
    await repo.forcePush('main', orphan);
    expect((await mirror.fetch(gitDir, repo.url, 'main')).sha).toBe(orphan);
    await mirror.checkoutSnapshot(gitDir, snapshotDir, orphan);
    await expectSnapshotEquals(repo, orphan, snapshotDir);
    // A commit that exists nowhere cannot be an ancestor.
    expect(await mirror.isAncestor(gitDir, 'f'.repeat(40), orphan)).toBe(false);
  });

  it('tracks several branches in one clone, each with its own snapshot', async () => {
    const repo = await server.createRepository('mirror/branches');
    const mainSha = await repo.commit({ 'shared.txt': 'shared', 'main.txt': 'main' }, { date: DATE });
    const featureSha = await repo.commit({ 'feature.txt': 'feature' }, { branch: 'feature/x', date: DATE });
    const { gitDir } = workspace();
    await mirror.clone(repo.url, gitDir, 'main');
    expect(await mirror.fetch(gitDir, repo.url, 'feature/x')).toMatchObject({ sha: featureSha });

    const mainDir = join(gitDir, '..', 'snapshots', 'main');
    const featureDir = join(gitDir, '..', 'snapshots', 'feature');
    await mirror.checkoutSnapshot(gitDir, mainDir, mainSha);
    await mirror.checkoutSnapshot(gitDir, featureDir, featureSha);
    await expectSnapshotEquals(repo, mainSha, mainDir);
    await expectSnapshotEquals(repo, featureSha, featureDir);

    const config = await readFile(join(gitDir, 'config'), 'utf8');
    expect(config).toContain('+refs/heads/main:refs/remotes/origin/main');
    expect(config).toContain('+refs/heads/feature/x:refs/remotes/origin/feature/x');
  });

  it('lists branches and HEAD, and forgets deleted branches', async () => {
    const repo = await server.createRepository('mirror/ls-remote', { defaultBranch: 'trunk' });
    const trunk = await repo.commit({ 'a.txt': 'a' }, { date: DATE });
    const gone = await repo.commit({ 'b.txt': 'b' }, { branch: 'to-delete', date: DATE });
    await repo.tag('v1', trunk);

    const before = await mirror.lsRemote(repo.url);
    expect(before.headSymref).toBe('refs/heads/trunk');
    expect(before.defaultBranch).toBe('trunk');
    expect(before.branches).toEqual(
      new Map([
        ['to-delete', gone],
        ['trunk', trunk],
      ]),
    );

    await repo.deleteBranch('to-delete');
    const after = await mirror.lsRemote(repo.url);
    expect([...after.branches.keys()]).toEqual(['trunk']);

    const { gitDir } = workspace();
    await mirror.clone(repo.url, gitDir, 'trunk');
    await expect(mirror.fetch(gitDir, repo.url, 'to-delete')).rejects.toBeInstanceOf(GitRefNotFoundError);
  });

  it('reports an empty repository as having no branches', async () => {
    const repo = await server.createRepository('mirror/empty');
    const heads = await mirror.lsRemote(repo.url);
    expect(heads.branches.size).toBe(0);
    await expect(mirror.clone(repo.url, workspace().gitDir, 'main')).rejects.toBeInstanceOf(
      GitRefNotFoundError,
    );
  });

  it('maps a missing repository and bad arguments to typed errors', async () => {
    await expect(mirror.lsRemote(`${server.baseUrl}/mirror/missing.git`)).rejects.toBeInstanceOf(
      GitRepositoryNotFoundError,
    );
    const repo = await server.createRepository('mirror/arguments');
    await repo.commit({ 'a.txt': 'a' });
    const { gitDir, snapshotDir } = workspace();
    await expect(mirror.clone(repo.url, gitDir, '--upload-pack=evil')).rejects.toBeInstanceOf(
      GitInvalidArgumentError,
    );
    await expect(mirror.clone(repo.url, gitDir, 'a:refs/heads/b')).rejects.toBeInstanceOf(
      GitInvalidArgumentError,
    );
    await expect(mirror.lsRemote('--upload-pack=touch /tmp/x')).rejects.toBeInstanceOf(
      GitInvalidArgumentError,
    );
    await expect(mirror.checkoutSnapshot(gitDir, snapshotDir, 'HEAD')).rejects.toBeInstanceOf(
      GitInvalidArgumentError,
    );
  });

  it('times out a slow fetch and leaves a workspace the next fetch can use', async () => {
    const repo = await server.createRepository('mirror/slow');
    const first = await repo.commit({ 'a.txt': 'a' }, { date: DATE });
    const { gitDir } = workspace();
    await mirror.clone(repo.url, gitDir, 'main');
    const second = await repo.commit({ 'a.txt': 'b' }, { date: DATE });

    server.setUploadPackDelay(5_000, 'mirror/slow');
    const impatient = new GitMirror({ runner, timeouts: { fetchMs: 500 } });
    const started = Date.now();
    await expect(impatient.fetch(gitDir, repo.url, 'main')).rejects.toBeInstanceOf(GitTimeoutError);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(runner.runningCount).toBe(0);
    expect(await mirror.revParse(gitDir, 'refs/remotes/origin/main')).toBe(first);

    server.setUploadPackDelay(0, 'mirror/slow');
    expect((await mirror.fetch(gitDir, repo.url, 'main')).sha).toBe(second);
  });

  describe('private repositories', () => {
    const auth = { username: 'x-access-token', password: 'ghs_S3cr3t-t0ken/with:odd@chars' };
    let repo: FixtureRepository;
    let spyLog: string;
    let spyMirror: GitMirror;

    beforeAll(async () => {
      repo = await server.createRepository('mirror/private', { auth });
      await repo.commit({
        'secret-plans.txt': 'world domination\n',
        'bin/x': { content: 'x', executable: true },
      });
      // A stand-in git that records every argv and the names of its environment, then runs real git.
      spyLog = join(scratch, 'git-spy.log');
      const spy = join(scratch, 'git-spy.sh');
      await writeFile(
        spy,
        [
          '#!/bin/sh',
          '{',
          `  printf 'argv:'; for a in "$@"; do printf ' [%s]' "$a"; done`,
          `  printf '\\nenv: %s\\n' "$(env | cut -d= -f1 | tr '\\n' ' ')"`,
          `} >> '${spyLog}'`,
          'exec git "$@"',
          '',
        ].join('\n'),
        { mode: 0o755 },
      );
      spyMirror = new GitMirror({
        runner: new GitRunner({
          gitBinary: spy,
          defaultTimeoutMs: 30_000,
          askpassDir: join(scratch, 'askpass-spy'),
        }),
      });
    });

    it('works with the right credentials, which never reach argv, config or disk', async () => {
      const { gitDir, snapshotDir } = workspace();
      const heads = await spyMirror.lsRemote(repo.url, auth);
      const sha = heads.branches.get('main');
      expect(sha).toBeDefined();
      await spyMirror.clone(repo.url, gitDir, 'main', auth);
      // The checkout downloads the blobs lazily, so it needs the credentials as well.
      await spyMirror.checkoutSnapshot(gitDir, snapshotDir, sha ?? '', { credentials: auth });
      await expectSnapshotEquals(repo, sha ?? '', snapshotDir);
      await spyMirror.fetch(gitDir, repo.url, 'main', auth);

      const log = await readFile(spyLog, 'utf8');
      expect(log).toContain('[ls-remote]');
      expect(log).toContain('[read-tree]');
      expect(log).not.toContain(auth.password);
      expect(log).not.toContain(encodeURIComponent(auth.password));
      // Network commands got the credentials, through the environment only.
      const networkLines = log
        .split('\n')
        .filter((line, i, lines) => /\[(ls-remote|fetch)\]/.test(lines[i - 1] ?? ''));
      expect(networkLines.length).toBeGreaterThanOrEqual(3);
      for (const line of networkLines) expect(line).toContain('REPOSYNC_GIT_PASSWORD');

      expect(await readFile(join(gitDir, 'config'), 'utf8')).not.toContain(auth.password);
      expect(await filesContaining(join(gitDir, '..'), auth.password)).toEqual([]);
    });

    it('fails with GitAuthFailedError for wrong or missing credentials, without echoing them', async () => {
      const wrong = { username: auth.username, password: 'wrong-Pa55word' };
      const lsError = await mirror.lsRemote(repo.url, wrong).catch((e: unknown) => e);
      expect(lsError).toBeInstanceOf(GitAuthFailedError);
      const { gitDir } = workspace();
      const cloneError = await mirror.clone(repo.url, gitDir, 'main', wrong).catch((e: unknown) => e);
      expect(cloneError).toBeInstanceOf(GitAuthFailedError);
      for (const error of [lsError, cloneError] as GitError[]) {
        expect(error.message).not.toContain(wrong.password);
        expect(error.stderr).not.toContain(wrong.password);
        expect(JSON.stringify(error)).not.toContain(wrong.password);
      }
      expect(existsSync(join(gitDir, READY_MARKER))).toBe(false);
      await expect(mirror.lsRemote(repo.url)).rejects.toBeInstanceOf(GitAuthFailedError);
    });

    it('needs the credentials for the lazy blob download of a checkout', async () => {
      const { gitDir, snapshotDir } = workspace();
      const { sha } = await mirror.clone(repo.url, gitDir, 'main', auth);
      await expect(mirror.checkoutSnapshot(gitDir, snapshotDir, sha)).rejects.toBeInstanceOf(
        GitAuthFailedError,
      );
      await mirror.checkoutSnapshot(gitDir, snapshotDir, sha, { credentials: auth });
      await expectSnapshotEquals(repo, sha, snapshotDir);
    });

    it('refuses URLs that carry credentials', async () => {
      await expect(mirror.lsRemote(repo.urlWithAuth(auth))).rejects.toBeInstanceOf(GitInvalidArgumentError);
      await expect(mirror.clone(repo.urlWithAuth(auth), workspace().gitDir, 'main')).rejects.toBeInstanceOf(
        GitInvalidArgumentError,
      );
    });
  });

  it('leaves the fixture able to clone with plain git too (sanity)', async () => {
    const repo = await server.createRepository('mirror/sanity');
    const sha = await repo.commit({ 'a.txt': 'a' });
    const dest = join(scratch, 'sanity');
    await runFixtureGit(['clone', '--quiet', '--bare', repo.url, dest]);
    expect((await runFixtureGit(['rev-parse', 'main'], { gitDir: dest })).stdout.trim()).toBe(sha);
  });
});

/** The index file of a snapshot dir, where GitMirror keeps it (see the layout in git-mirror.ts). */
function snapshotIndex(gitDir: string, snapshotDir: string): string {
  const key = createHash('sha256').update(resolve(snapshotDir)).digest('hex').slice(0, 16);
  return join(gitDir, 'reposync', 'index', key);
}

/** Paths of regular files under `dir` whose bytes contain `needle`. */
async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  const walk = async (path: string): Promise<void> => {
    for (const entry of await readdir(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile() && (await readFile(full)).includes(needle)) hits.push(full);
    }
  };
  await walk(dir);
  return hits;
}
