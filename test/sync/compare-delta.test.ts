/**
 * CompareDeltaStrategy against real commits: a fixture repository served by the git fixture server, the
 * fake GitHub and GitLab APIs computing their answers from it, archives in a filesystem artifact store.
 * A successful delta must leave a snapshot whose reproducible archive is byte-identical to the archive of
 * a fresh checkout of the new commit; every reason to fall back must give `ok: false` with its code.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { Redis } from 'ioredis';
import { ArtifactNotFound, archiveKey } from '../../src/artifacts/artifact-store.js';
import { FilesystemArtifactStore } from '../../src/artifacts/filesystem-artifact-store.js';
import {
  createReproducibleTarball,
  createTarballOfEntries,
  TARBALL_CONTENT_TYPE,
} from '../../src/artifacts/reproducible-tarball.js';
import type { CodeHost } from '../../src/hosts/code-host.js';
import { GitHubHost } from '../../src/hosts/github-host.js';
import { GitLabHost } from '../../src/hosts/gitlab-host.js';
import { HostApiBudget } from '../../src/hosts/host-budget.js';
import { HostRateLimited } from '../../src/hosts/host-errors.js';
import {
  CompareDeltaStrategy,
  type CompareDeltaOutcome,
} from '../../src/sync/delta/compare-delta-strategy.js';
import { GitFixtureServer, runFixtureGit, type FixtureRepository } from '../fixtures/git-server.js';
import { HostApiServer, type HostApiProvider } from '../fixtures/host-api-server.js';
import { TEST_REDIS_URL } from '../setup/test-env.js';

const TENANT = '3c0d8a52-1f0e-4b7e-9d1a-0c5e7a9b2d41';
const REPOSITORY = 'b7e2f9c4-6a1d-4e3b-8f2a-5d9c0e1b7a36';
const PROVIDERS: HostApiProvider[] = ['github', 'gitlab'];
const BINARY_V1 = Buffer.from([0, 1, 2, 3, 255, 254, 0, 10, 13, 0x89, 0x50, 0x4e, 0x47]);
const BINARY_V2 = Buffer.concat([BINARY_V1, Buffer.from([0, 0, 7, 200])]);
const APP_SOURCE = Array.from({ length: 40 }, (_, i) => `export const value${i} = ${i};`).join('\n') + '\n';
// Highest-precedence attributes: checkouts are the bytes of the tree, whatever .gitattributes says.
const EXACT_CHECKOUT_ATTRIBUTES = '* -text -eol -ident -filter -working-tree-encoding\n';

interface HostileEntry {
  path: string;
  type: 'File' | 'SymbolicLink';
  body?: string;
  linkpath?: string;
}

/** A tar.gz with exactly these entries, paths as given (no tool would write them). */
function hostileTarball(entries: HostileEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const body = Buffer.from(entry.body ?? '');
    const header = Buffer.alloc(512);
    new Header({
      path: entry.path,
      type: entry.type,
      mode: entry.type === 'File' ? 0o644 : 0o777,
      size: body.length,
      mtime: new Date('2024-05-01T00:00:00Z'),
      linkpath: entry.linkpath ?? '',
      uid: 0,
      gid: 0,
    }).encode(header, 0);
    blocks.push(header, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

interface Commits {
  a: string;
  b: string;
  c: string;
  d: string;
}

describe('CompareDeltaStrategy over real commits, the fake GitHub and GitLab, and stored archives', () => {
  let git: GitFixtureServer;
  let api: HostApiServer;
  let repo: FixtureRepository;
  let redis: Redis;
  let keyPrefix: string;
  let root: string;
  let store: FilesystemArtifactStore;
  let commits: Commits;
  const hosts = {} as Record<HostApiProvider, CodeHost>;

  async function commitTime(sha: string): Promise<Date> {
    const { stdout } = await runFixtureGit(['show', '-s', '--format=%ct', sha], { gitDir: repo.bareDir });
    return new Date(Number(stdout.trim()) * 1000);
  }

  /** A fresh checkout of `sha` (no .git), the way the engine's snapshots hold a commit. */
  async function checkout(sha: string): Promise<string> {
    const dir = join(root, `checkout-${randomUUID()}`);
    await mkdir(dir, { recursive: true });
    await runFixtureGit(
      [
        '-c',
        'core.bare=false',
        '-c',
        'core.symlinks=true',
        '-c',
        'core.autocrlf=false',
        '--work-tree',
        dir,
        'read-tree',
        '--reset',
        '-u',
        sha,
      ],
      { gitDir: repo.bareDir, env: { GIT_INDEX_FILE: join(root, `index-${randomUUID()}`) } },
    );
    return dir;
  }

  async function tarballSha256(dir: string, sha: string): Promise<string> {
    const tarball = createReproducibleTarball(dir, { mtime: await commitTime(sha), commitId: sha });
    const hash = createHash('sha256');
    for await (const chunk of tarball.stream as AsyncIterable<Buffer>) hash.update(chunk);
    return hash.digest('hex');
  }

  /** Stores the archive of a fresh checkout of `sha` (under `asSha`'s key, to plant a wrong one). */
  async function archive(sha: string, asSha: string = sha): Promise<void> {
    const dir = await checkout(sha);
    const tarball = createReproducibleTarball(dir, { mtime: await commitTime(sha), commitId: sha });
    await store.put(archiveKey('archives', TENANT, REPOSITORY, asSha), tarball.stream, {
      contentType: TARBALL_CONTENT_TYPE,
    });
  }

  async function openArchive(repositoryId: string, sha: string): Promise<Readable | null> {
    try {
      return await store.open(archiveKey('archives', TENANT, repositoryId, sha));
    } catch (error) {
      if (error instanceof ArtifactNotFound) return null;
      throw error;
    }
  }

  function strategy(
    provider: HostApiProvider,
    opts: { host?: CodeHost; token?: string } = {},
  ): CompareDeltaStrategy {
    const token = opts.token ?? api.issueToken(provider);
    return new CompareDeltaStrategy({
      repositoryId: REPOSITORY,
      openArchive,
      hostAccess: {
        host: opts.host ?? hosts[provider],
        token: () => Promise.resolve(token),
        owner: 'acme',
        name: 'delta',
      },
      concurrency: 4,
      log: (msg, fields) => {
        if (process.env.DEBUG_DELTA) console.log(msg, fields);
      },
    });
  }

  async function runDelta(
    provider: HostApiProvider,
    fromSha: string,
    toSha: string,
    opts: { host?: CodeHost; token?: string } = {},
  ): Promise<{ outcome: CompareDeltaOutcome; workDir: string }> {
    const workDir = join(root, `work-${randomUUID()}`);
    const outcome = await strategy(provider, opts).run({ workDir, fromSha, toSha, provider });
    return { outcome, workDir };
  }

  /**
   * The delta result is the commit: the archive of its entries (with the commit time it found) equals, byte
   * for byte, the archive of a fresh checkout, and unpacks to exactly the commit's files.
   */
  async function expectExactSnapshot(outcome: CompareDeltaOutcome, sha: string): Promise<void> {
    if (!outcome.ok) throw new Error(`the delta failed: ${outcome.reason}`);
    const tarball = createTarballOfEntries(outcome.entries(), { mtime: outcome.commitTime, commitId: sha });
    const bytes: Buffer[] = [];
    for await (const chunk of tarball.stream as AsyncIterable<Buffer>) bytes.push(chunk);
    const archived = Buffer.concat(bytes);
    expect(createHash('sha256').update(archived).digest('hex')).toBe(
      await tarballSha256(await checkout(sha), sha),
    );
    const unpacked = join(root, `unpacked-${randomUUID()}`);
    await mkdir(unpacked);
    await untar(archived, unpacked);
    expect(await repo.diffAgainstDirectory(sha, unpacked)).toEqual([]);
  }

  /** A commit on top of `parent` with a gitlink (submodule) at `path`; no branch moves. */
  async function commitWithSubmodule(parent: string, path: string): Promise<string> {
    const options = { gitDir: repo.bareDir, env: { GIT_INDEX_FILE: join(root, `index-${randomUUID()}`) } };
    await runFixtureGit(['read-tree', parent], options);
    await runFixtureGit(
      ['update-index', '--add', '--cacheinfo', `160000,${'5'.repeat(40)},${path}`],
      options,
    );
    const tree = (await runFixtureGit(['write-tree'], options)).stdout.trim();
    const env = {
      ...options.env,
      GIT_AUTHOR_NAME: 'Fixture Author',
      GIT_AUTHOR_EMAIL: 'author@fixture.test',
      GIT_COMMITTER_NAME: 'Fixture Author',
      GIT_COMMITTER_EMAIL: 'author@fixture.test',
    };
    const { stdout } = await runFixtureGit(['commit-tree', tree, '-p', parent, '-m', 'add a submodule'], {
      gitDir: repo.bareDir,
      env,
    });
    return stdout.trim();
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'compare-delta-'));
    store = new FilesystemArtifactStore(join(root, 'store'));
    git = await GitFixtureServer.start();
    api = await HostApiServer.start();
    repo = await git.createRepository('acme/delta');
    await mkdir(join(repo.bareDir, 'info'), { recursive: true });
    await writeFile(join(repo.bareDir, 'info', 'attributes'), EXACT_CHECKOUT_ATTRIBUTES);
    api.addRepository(repo);
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    keyPrefix = `rstest-delta-${randomBytes(4).toString('hex')}`;
    const budget = new HostApiBudget({ redis, keyPrefix });
    hosts.github = new GitHubHost({ apiBaseUrl: api.githubApiUrl, budget });
    hosts.gitlab = new GitLabHost({ baseUrl: api.gitlabUrl, budget });

    const a = await repo.commit(
      {
        'README.md': '# delta\n',
        'src/app.ts': APP_SOURCE,
        'src/util.ts': 'export const util = 1;\n',
        'docs/old.md': 'old docs\n',
        'scripts/run.sh': '#!/bin/sh\necho run\n',
        'scripts/build.sh': { content: '#!/bin/sh\necho build\n', executable: true },
        'assets/logo.bin': BINARY_V1,
        link: { symlink: 'README.md' },
        // git stores symlink targets as they are: outside the tree, absolute, dangling.
        'up/keep-link': { symlink: '../keep.txt' },
        'abs-link': { symlink: '/etc/hostname' },
        'keep.txt': 'unchanged\n',
      },
      { message: 'A: base layout', date: new Date('2024-05-01T10:00:00Z') },
    );
    const b = await repo.commit(
      {
        'README.md': '# delta\n\nNow with notes.\n',
        'notes/new.txt': 'a new file\n',
        'docs/old.md': null,
        'src/app.ts': null,
        'lib/app.ts': APP_SOURCE.replace('value0 = 0', 'value0 = 100'),
        'assets/logo.bin': BINARY_V2,
        'deep/a/b/c/d/e/file.txt': 'deep down\n',
        link: { symlink: 'keep.txt' },
        'scripts/build.sh': { content: '#!/bin/sh\necho build all\n', executable: true },
      },
      {
        message: 'B: edit, add, delete, rename, binary, deep dir, symlink',
        date: new Date('2024-05-02T10:00:00Z'),
      },
    );
    const c = await repo.commit(
      {
        'scripts/run.sh': { content: '#!/bin/sh\necho run\n', executable: true },
        'bin/tool': { content: '#!/bin/sh\necho tool\n', executable: true },
        'new-link': { symlink: 'notes/new.txt' },
      },
      { message: 'C: chmod +x, a new executable, a new symlink', date: new Date('2024-05-03T10:00:00Z') },
    );
    const d = await repo.commit(
      {
        'README.md': '# delta\n\nNow with notes and tools.\n',
        'bin/other': { content: '#!/bin/sh\necho other\n', executable: true },
      },
      { message: 'D: an edit and a new executable', date: new Date('2024-05-04T10:00:00Z') },
    );
    commits = { a, b, c, d };
    for (const sha of [a, b, c]) await archive(sha);
  });

  afterAll(async () => {
    const keys = await redis.keys(`${keyPrefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    await api.stop();
    await git.stop();
    await rm(root, { recursive: true, force: true });
  });

  describe.each(PROVIDERS)('%s', (provider) => {
    it('A -> B (edits, adds, deletes, a rename, a binary, a deep new directory, a symlink): byte-identical archive', async () => {
      const { outcome } = await runDelta(provider, commits.a, commits.b);
      expect(outcome).toMatchObject({ ok: true, treeId: await repo.treeId(commits.b) });
      if (!outcome.ok) return;
      // README, notes/new.txt, docs/old.md, the rename, logo.bin, the deep file, link, build.sh.
      expect(outcome.filesChanged).toBe(8);
      expect(outcome.archiveBytes).toBeGreaterThan(0);
      expect(outcome.bytesDownloaded).toBeGreaterThan(0);
      await expectExactSnapshot(outcome, commits.b);
    });

    it('refuses a diverged range (force-push): NOT_FAST_FORWARD', async () => {
      const side = await repo.commitOnto(commits.a, { 'side.txt': 'a side branch\n' });
      const { outcome } = await runDelta(provider, commits.b, side);
      expect(outcome).toMatchObject({ ok: false, code: 'NOT_FAST_FORWARD' });
    });

    it('refuses a .gitattributes change: GITATTRIBUTES_CHANGE', async () => {
      const next = await repo.commitOnto(commits.b, { '.gitattributes': '*.txt text eol=crlf\n' });
      const { outcome } = await runDelta(provider, commits.b, next);
      expect(outcome).toMatchObject({ ok: false, code: 'GITATTRIBUTES_CHANGE' });
    });

    it('refuses a Git LFS pointer: LFS_POINTER', async () => {
      const pointer =
        'version https://git-lfs.github.com/spec/v1\n' + `oid sha256:${'a'.repeat(64)}\nsize 12345\n`;
      const next = await repo.commitOnto(commits.b, { 'media/video.mp4': pointer });
      const { outcome } = await runDelta(provider, commits.b, next);
      expect(outcome).toMatchObject({ ok: false, code: 'LFS_POINTER' });
    });

    it('refuses when no archive of the synced revision is stored: ARCHIVE_MISSING', async () => {
      const next = await repo.commitOnto(commits.d, { [`after-d-${provider}.txt`]: 'x\n' });
      const { outcome } = await runDelta(provider, commits.d, next);
      expect(outcome).toMatchObject({ ok: false, code: 'ARCHIVE_MISSING', archiveBytes: 0 });
    });

    it('refuses an archive that is not its commit (ARCHIVE_MISMATCH) before applying anything', async () => {
      // The archive stored for a fresh commit X holds A's files.
      const x = await repo.commitOnto(commits.c, { [`x-${provider}.txt`]: 'x\n' });
      await archive(commits.a, x);
      const y = await repo.commitOnto(x, { 'y.txt': 'y\n' });
      const { outcome, workDir } = await runDelta(provider, x, y);
      expect(outcome).toMatchObject({ ok: false, code: 'ARCHIVE_MISMATCH' });
      // Nothing but the copy of the archive was written.
      expect(await readdir(workDir)).toEqual([`${x}.tar.gz`]);
    });

    it('propagates a rate limit (HostRateLimited) instead of falling back', async () => {
      const token = api.issueToken(provider);
      api.rateLimitNext(1, { provider, status: 429, retryAfterSeconds: 30 });
      await expect(runDelta(provider, commits.a, commits.b, { token })).rejects.toBeInstanceOf(
        HostRateLimited,
      );
    });
  });

  it('GitHub: a file changed in mode only is not expressed by its compare (no modes): UNEXPRESSED_MODE_CHANGE', async () => {
    const { outcome } = await runDelta('github', commits.b, commits.c);
    expect(outcome).toMatchObject({ ok: false, code: 'UNEXPRESSED_MODE_CHANGE' });
  });

  it('GitHub: a new executable gets the guessed mode 100644, and the tree proof refuses it', async () => {
    const { outcome } = await runDelta('github', commits.c, commits.d);
    expect(outcome).toMatchObject({ ok: false, code: 'DELTA_VERIFICATION_FAILED' });
  });

  it('GitLab: chmod +x, a new executable and a new symlink (modes given), and a range of three commits', async () => {
    const step = await runDelta('gitlab', commits.b, commits.c);
    expect(step.outcome).toMatchObject({ ok: true, filesChanged: 3 });
    await expectExactSnapshot(step.outcome, commits.c);
    const range = await runDelta('gitlab', commits.a, commits.d);
    expect(range.outcome).toMatchObject({ ok: true });
    await expectExactSnapshot(range.outcome, commits.d);
  });

  it('refuses a submodule change: GitLab by its mode (SUBMODULE_CHANGE), GitHub when the gitlink is no blob', async () => {
    const next = await commitWithSubmodule(commits.b, 'vendor/lib');
    const gitlab = await runDelta('gitlab', commits.b, next);
    expect(gitlab.outcome).toMatchObject({ ok: false, code: 'SUBMODULE_CHANGE' });
    // GitHub's compare gives no modes: the gitlink's commit id looks like a blob id until the download.
    const github = await runDelta('github', commits.b, next);
    expect(github.outcome).toMatchObject({ ok: false, code: 'HOST_ERROR' });
  });

  it('refuses too many files: GitHub at its 300-file limit, GitLab beyond or at its diff file limit', async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 300; i++) files[`many/file-${i}.txt`] = `${i}\n`;
    const many = await repo.commitOnto(commits.b, files);
    const github = await runDelta('github', commits.b, many);
    expect(github.outcome).toMatchObject({ ok: false, code: 'TOO_MANY_FILES' });

    // GitLab flags a diff beyond its file limit as an overflow (`compare_timeout`).
    const small = await HostApiServer.start({ gitlabDiff: { maxFiles: 3 } });
    try {
      small.addRepository(repo);
      const budget = new HostApiBudget({ redis, keyPrefix });
      const host = new GitLabHost({ baseUrl: small.gitlabUrl, budget, maxDiffFiles: 3 });
      const cut = await runDelta('gitlab', commits.a, commits.b, { host, token: small.issueToken('gitlab') });
      expect(cut.outcome).toMatchObject({ ok: false, code: 'COMPARE_TIMEOUT' });
    } finally {
      await small.stop();
    }
    // A list as long as the instance's diff_max_files may be cut even without the flag.
    const budget = new HostApiBudget({ redis, keyPrefix });
    const host = new GitLabHost({ baseUrl: api.gitlabUrl, budget, maxDiffFiles: 8 });
    const atLimit = await runDelta('gitlab', commits.a, commits.b, { host });
    expect(atLimit.outcome).toMatchObject({ ok: false, code: 'TOO_MANY_FILES' });
  });

  it('GitHub: a corrupted blob is refused against its blob id (BLOB_MISMATCH)', async () => {
    api.corruptNextContent({ provider: 'github' });
    const { outcome } = await runDelta('github', commits.a, commits.b);
    expect(outcome).toMatchObject({ ok: false, code: 'BLOB_MISMATCH' });
  });

  it('GitLab: a corrupted file is refused against its blob_id (BLOB_MISMATCH)', async () => {
    api.corruptNextContent({ provider: 'gitlab' });
    const { outcome } = await runDelta('gitlab', commits.a, commits.b);
    expect(outcome).toMatchObject({ ok: false, code: 'BLOB_MISMATCH' });
  });

  it('GitLab: a file corrupted with a matching blob_id passes every download check; the tree proof catches it', async () => {
    api.corruptNextContent({ provider: 'gitlab', consistentId: true });
    const { outcome } = await runDelta('gitlab', commits.a, commits.b);
    expect(outcome).toMatchObject({ ok: false, code: 'DELTA_VERIFICATION_FAILED' });
  });

  it('refuses an archive with an entry escaping the snapshot or written through a symlink: ARCHIVE_INVALID', async () => {
    const x = await repo.commitOnto(commits.c, { 'hostile.txt': 'x\n' });
    const y = await repo.commitOnto(x, { 'after-hostile.txt': 'y\n' });
    const outside = join(root, `outside-${randomUUID()}`);
    await mkdir(outside);
    for (const entries of [
      [{ path: '../escape.txt', type: 'File' as const, body: 'escaped\n' }],
      [
        { path: 'jump', type: 'SymbolicLink' as const, linkpath: outside },
        { path: 'jump/evil.txt', type: 'File' as const, body: 'through the link\n' },
      ],
      [{ path: 'sub/.git/config', type: 'File' as const, body: '[core]\n' }],
    ]) {
      await store.put(
        archiveKey('archives', TENANT, REPOSITORY, x),
        Readable.from([hostileTarball(entries)]),
        {
          contentType: TARBALL_CONTENT_TYPE,
        },
      );
      const { outcome, workDir } = await runDelta('gitlab', x, y);
      expect(outcome).toMatchObject({ ok: false, code: 'ARCHIVE_INVALID' });
      expect(outcome.ok ? '' : outcome.reason).toMatch(/`\.\.` component|below a symlink|`\.git` component/);
      expect(await readdir(outside)).toEqual([]);
      expect(await readdir(workDir)).toEqual([`${x}.tar.gz`]);
      expect(await readdir(root)).not.toContain('escape.txt');
    }
  });

  it('served GitHub answers that all match the OpenAPI description', () => {
    expect(api.openApiViolations).toEqual([]);
    expect(api.fixtureErrors).toEqual([]);
  });
});

/** Unpacks a .tar.gz with the system's tar. */
function untar(archive: Buffer, dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('tar', ['-xzf', '-', '-C', dir], { stdio: ['pipe', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar exited with ${code}`))));
    child.stdin.end(archive);
  });
}
