import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import type { ArtifactDigest } from '../../src/artifacts/artifact-digest.js';
import { ArtifactNotFound, archiveKey, type ArtifactStore } from '../../src/artifacts/artifact-store.js';
import { FilesystemArtifactStore } from '../../src/artifacts/filesystem-artifact-store.js';
import { createReproducibleTarball, TARBALL_CONTENT_TYPE } from '../../src/artifacts/reproducible-tarball.js';
import { S3ArtifactStore } from '../../src/artifacts/s3-artifact-store.js';
import { GitFixtureServer, runFixtureGit, type FixtureRepository } from '../fixtures/git-server.js';
import { describeTree } from '../support/tree-listing.js';
import { S3FixtureServer } from '../fixtures/s3-server.js';

const TENANT = '6f1c2a1e-8d5b-4c1e-9a43-1b2c3d4e5f60';
const REPOSITORY = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const MIB = 1024 * 1024;
const LONG_PATH = `${'segment-'.repeat(15)}/file-with-a-rather-long-name-${'x'.repeat(90)}.txt`;

interface TarListing {
  path: string;
  type: string;
  executable: boolean;
  mtime: number | undefined;
  linkpath: string | undefined;
}

/** Runs a command, feeding `input`; resolves with stdout and stderr, rejects on a non-zero exit. */
function run(command: string, args: string[], input?: Buffer): Promise<{ stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
    child.on('error', reject);
    child.on('close', (code) => {
      const result = { stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString('utf8') };
      if (code === 0) resolve(result);
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${result.stderr}`));
    });
  });
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Entries of a tar (gzipped or not) in archive order, extended headers applied and not listed. */
async function listTar(archive: Buffer): Promise<TarListing[]> {
  const entries: TarListing[] = [];
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      entries.push({
        path: entry.path,
        type: entry.type,
        executable: entry.type === 'File' && ((entry.mode ?? 0) & 0o100) !== 0,
        mtime: entry.mtime?.getTime(),
        linkpath: entry.linkpath,
      });
      entry.resume();
    },
  });
  await pipeline(Readable.from([archive]), parser as unknown as Writable);
  return entries;
}

/** A body that yields `bytes` of random data, then fails with `error`. */
function failingBody(bytes: number, error: Error): Readable {
  return Readable.from(
    (async function* () {
      for (let sent = 0; sent < bytes; sent += MIB) yield randomBytes(MIB);
      throw error;
    })(),
  );
}

/** A body that yields `bytes` of random data, then stalls until destroyed; `read` counts what went out. */
function stallingBody(bytes: number): { body: Readable; read: () => number } {
  let sent = 0;
  const body = new Readable({
    read() {
      if (sent >= bytes) return;
      sent += MIB;
      this.push(randomBytes(MIB));
    },
  });
  return { body, read: () => sent };
}

async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('archives of synced revisions', () => {
  let git: GitFixtureServer;
  let s3: S3FixtureServer;
  let s3Store: S3ArtifactStore;
  let fsStore: FilesystemArtifactStore;
  let scratch: string;
  let repo: FixtureRepository;
  let counter = 0;
  const commits: string[] = [];
  const binary = Buffer.from(Array.from({ length: 256 * 64 }, (_, i) => i % 256));

  beforeAll(async () => {
    git = await GitFixtureServer.start();
    s3 = await S3FixtureServer.start({ bucket: 'reposync-archives' });
    scratch = await mkdtemp(join(tmpdir(), 'reposync-archive-test-'));
    // Smallest part size so a few MiB make a real multipart upload.
    s3Store = new S3ArtifactStore({ ...s3.storeConfig(), partSizeBytes: 5 * MIB, queueSize: 2 });
    fsStore = new FilesystemArtifactStore(join(scratch, 'fs-store'));

    repo = await git.createRepository('archives/fixture');
    commits.push(
      await repo.commit(
        {
          'README.md': '# Fixture\n',
          'bin/run.sh': { content: '#!/bin/sh\necho run\n', executable: true },
          'link-to-readme': { symlink: 'README.md' },
          'link-to-dir': { symlink: 'deep/nested' },
          'dangling-link': { symlink: 'does/not/exist' },
          'empty.txt': '',
          'deep/nested/dir/file.txt': 'nested\n',
          'with space ünïcødé 日本.txt': 'unicode name\n',
          'assets/blob.bin': binary,
          'a-b': 'sorts before a/ in a tree\n',
          'a/x': 'in a\n',
          [LONG_PATH]: 'long path\n',
        },
        { date: new Date('2024-01-02T03:04:05Z'), message: 'first' },
      ),
    );
    commits.push(
      await repo.commit(
        {
          'README.md': '# Fixture, again\n',
          'bin/run.sh': { content: '#!/bin/sh\necho run\n', executable: false },
          'tools/new tool.sh': { content: '#!/bin/sh\necho new\n', executable: true },
          'a-b': null,
          'deep/nested/dir2/another.txt': 'another\n',
        },
        { date: new Date('2024-02-03T04:05:06Z'), message: 'second' },
      ),
    );
    // Incompressible, so the archive spans several multipart parts.
    commits.push(
      await repo.commit(
        { 'assets/large.bin': randomBytes(12 * MIB) },
        { date: new Date('2024-03-04T05:06:07Z'), message: 'third' },
      ),
    );
  }, 120_000);

  afterAll(async () => {
    s3Store.close();
    await s3.stop();
    await git.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  function scratchDir(name: string): string {
    return join(scratch, `${name}-${++counter}`);
  }

  /** Checks a commit out the way the sync engine's snapshots look: the tree only, no .git. */
  async function snapshot(sha: string): Promise<string> {
    const dir = scratchDir('snapshot');
    await mkdir(dir, { recursive: true });
    await runFixtureGit(['-c', 'core.bare=false', '--work-tree', dir, 'checkout', '-f', sha, '--', '.'], {
      gitDir: repo.bareDir,
      env: { GIT_INDEX_FILE: join(scratch, `index-${counter}`) },
    });
    expect(await repo.diffAgainstDirectory(sha, dir)).toEqual([]);
    return dir;
  }

  async function commitTime(sha: string): Promise<Date> {
    const { stdout } = await runFixtureGit(['show', '-s', '--format=%ct', sha], { gitDir: repo.bareDir });
    return new Date(Number(stdout.trim()) * 1000);
  }

  /** Archives a commit's snapshot into a store; resolves with the producer's and the store's digests. */
  async function archive(
    store: ArtifactStore,
    sha: string,
    snapshotDir?: string,
  ): Promise<{ key: string; produced: ArtifactDigest; stored: ArtifactDigest }> {
    const dir = snapshotDir ?? (await snapshot(sha));
    const key = archiveKey('archives', TENANT, REPOSITORY, sha);
    const tarball = createReproducibleTarball(dir, { mtime: await commitTime(sha), commitId: sha });
    const stored = await store.put(key, tarball.stream, { contentType: TARBALL_CONTENT_TYPE });
    return { key, produced: await tarball.digest, stored };
  }

  /** Extracts with GNU tar (an implementation independent of the producer); fails on any warning. */
  async function extract(archiveBytes: Buffer, gzipped: boolean): Promise<string> {
    const dir = scratchDir('extract');
    await mkdir(dir, { recursive: true });
    const { stderr } = await run('tar', [gzipped ? '-xzf' : '-xf', '-', '-C', dir], archiveBytes);
    expect(stderr).toBe('');
    return dir;
  }

  async function gitArchive(sha: string): Promise<Buffer> {
    const { stdout } = await run('git', ['--git-dir', repo.bareDir, 'archive', '--format=tar', sha]);
    return stdout;
  }

  const stores: Array<[string, () => ArtifactStore]> = [
    ['S3 store (s3rver)', () => s3Store],
    ['filesystem store', () => fsStore],
  ];

  describe.each(stores)('%s', (_name, storeOf) => {
    it.each([0, 1, 2])(
      'stores commit #%i so that extracting it equals extracting git archive',
      async (index) => {
        const store = storeOf();
        const sha = commits[index];
        if (sha === undefined) throw new Error('fixture commits missing');
        const { key, produced, stored } = await archive(store, sha);
        expect(stored).toEqual(produced);
        expect(await store.head(key)).toBe(stored.size);
        expect(await store.exists(key)).toBe(true);

        const downloaded = await collect(await store.open(key));
        expect({ size: downloaded.length, sha256: sha256(downloaded) }).toEqual(stored);

        const expectedTar = await gitArchive(sha);
        const [ours, theirs] = await Promise.all([
          extract(downloaded, true).then(describeTree),
          extract(expectedTar, false).then(describeTree),
        ]);
        expect(ours).toEqual(theirs);
        expect(ours.length).toBeGreaterThan(10);

        // Entry by entry: same order (git tree order), kinds, executable bits, symlink targets and mtimes.
        const gitEntries = (await listTar(expectedTar)).filter((e) => e.type !== 'GlobalExtendedHeader');
        expect(await listTar(downloaded)).toEqual(gitEntries);

        const { stdout } = await run('sh', ['-c', 'gzip -dc | git get-tar-commit-id'], downloaded);
        expect(stdout.toString().trim()).toBe(sha);
      },
    );

    it('archives the same commit to the same bytes from a differently made checkout', async () => {
      const store = storeOf();
      const sha = commits[0];
      if (sha === undefined) throw new Error('fixture commits missing');
      const first = await archive(store, sha);

      // Same tree, but other timestamps, group bits and creation order than the first checkout.
      const dir = await snapshot(sha);
      for (const path of ['README.md', 'bin/run.sh', 'deep/nested/dir/file.txt']) {
        await utimes(join(dir, path), 12345, 67890);
        await chmod(join(dir, path), (await lstat(join(dir, path))).mode | 0o070);
      }
      await chmod(join(dir, 'deep'), 0o775);
      const second = await archive(store, sha, dir);

      expect(second.produced).toEqual(first.produced);
      expect(second.stored).toEqual(first.stored);
      expect(await store.head(first.key)).toBe(first.stored.size);
    });

    it('leaves nothing behind when the body fails midway, and a retry succeeds', async () => {
      const store = storeOf();
      const key = archiveKey('failing', TENANT, REPOSITORY, 'f'.repeat(40));
      const failure = new Error('snapshot disappeared');
      await expect(
        store.put(key, failingBody(12 * MIB, failure), { contentType: TARBALL_CONTENT_TYPE }),
      ).rejects.toBe(failure);
      expect(await store.head(key)).toBeNull();
      await expectNothingPending(store, key);

      const retry = randomBytes(11 * MIB);
      const stored = await store.put(key, Readable.from([retry]), { contentType: TARBALL_CONTENT_TYPE });
      expect(stored).toEqual({ size: retry.length, sha256: sha256(retry) });
      expect(sha256(await collect(await store.open(key)))).toBe(sha256(retry));
      await expectNothingPending(store, key);
    });

    it('leaves nothing behind when aborted midway, and a retry succeeds', async () => {
      const store = storeOf();
      const key = archiveKey('aborted', TENANT, REPOSITORY, 'a'.repeat(64));
      const { body, read } = stallingBody(12 * MIB);
      const controller = new AbortController();
      const putting = store.put(key, body, { contentType: TARBALL_CONTENT_TYPE, signal: controller.signal });
      putting.catch(() => undefined);

      await waitFor('the body to be read', () => read() >= 12 * MIB);
      if (store instanceof S3ArtifactStore) {
        // The upload really is in flight: a multipart upload with parts exists before the abort.
        await waitFor('a pending multipart upload', async () =>
          (await store.pendingUploads()).some((u) => u.key === key),
        );
        expect((await s3.pendingUploads()).map((u) => u.key)).toEqual([key]);
      }
      controller.abort();
      await expect(putting).rejects.toMatchObject({ name: 'AbortError' });
      expect(body.destroyed).toBe(true);
      expect(await store.head(key)).toBeNull();
      await expectNothingPending(store, key);

      const sha = commits[2];
      if (sha === undefined) throw new Error('fixture commits missing');
      const tarball = createReproducibleTarball(await snapshot(sha), { mtime: await commitTime(sha) });
      const stored = await store.put(key, tarball.stream, { contentType: TARBALL_CONTENT_TYPE });
      expect(stored).toEqual(await tarball.digest);
      expect(await store.head(key)).toBe(stored.size);
      await expectNothingPending(store, key);
    });

    it('refuses a put whose signal is already aborted without touching the store', async () => {
      const store = storeOf();
      const key = archiveKey('pre-aborted', TENANT, REPOSITORY, 'b'.repeat(40));
      await expect(
        store.put(key, Readable.from([Buffer.from('x')]), {
          contentType: TARBALL_CONTENT_TYPE,
          signal: AbortSignal.abort(),
        }),
      ).rejects.toMatchObject({ name: 'AbortError' });
      expect(await store.head(key)).toBeNull();
    });

    it('reports missing artifacts and deletes idempotently', async () => {
      const store = storeOf();
      const key = archiveKey('missing', TENANT, REPOSITORY, 'c'.repeat(40));
      expect(await store.head(key)).toBeNull();
      expect(await store.exists(key)).toBe(false);
      await expect(store.open(key)).rejects.toBeInstanceOf(ArtifactNotFound);
      await store.delete(key);

      await store.put(key, Readable.from([Buffer.from('small')]), { contentType: 'text/plain' });
      expect(await store.head(key)).toBe(5);
      await store.delete(key);
      expect(await store.exists(key)).toBe(false);
      await store.delete(key);
    });

    it('stores an empty body', async () => {
      const store = storeOf();
      const key = archiveKey('empty', TENANT, REPOSITORY, 'd'.repeat(40));
      const stored = await store.put(key, Readable.from([]), { contentType: TARBALL_CONTENT_TYPE });
      expect(stored).toEqual({ size: 0, sha256: sha256(Buffer.alloc(0)) });
      expect(await store.head(key)).toBe(0);
      expect((await collect(await store.open(key))).length).toBe(0);
    });
  });

  /** No object, no multipart upload (S3, seen through the API and on s3rver's disk), no temporary file. */
  async function expectNothingPending(store: ArtifactStore, key: string): Promise<void> {
    if (store instanceof S3ArtifactStore) {
      expect(await store.pendingUploads()).toEqual([]);
      expect(await s3.pendingUploads()).toEqual([]);
    } else {
      const dir = dirname(join(scratch, 'fs-store', key));
      const names = await readdir(dir).catch(() => []);
      expect(names.filter((name) => name.endsWith('.tmp'))).toEqual([]);
    }
  }

  it('S3: presigned URLs download the archive and expire', async () => {
    const sha = commits[1];
    if (sha === undefined) throw new Error('fixture commits missing');
    const { key, stored } = await archive(s3Store, sha);
    const url = await s3Store.presignedDownloadUrl(key, 60);
    if (url === null) throw new Error('S3 store must presign');
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-disposition')).toBe(`attachment; filename="${sha}.tar.gz"`);
    expect(sha256(Buffer.from(await response.arrayBuffer()))).toBe(stored.sha256);

    const shortLived = await s3Store.presignedDownloadUrl(key, 1);
    if (shortLived === null) throw new Error('S3 store must presign');
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const expired = await fetch(shortLived);
    expect(expired.status).toBe(403);
    await expired.arrayBuffer();
  });

  it('filesystem: cannot presign', async () => {
    const key = archiveKey('archives', TENANT, REPOSITORY, 'e'.repeat(40));
    expect(await fsStore.presignedDownloadUrl(key, 60)).toBeNull();
  });

  it('S3: aborts multipart uploads a crashed process left behind', async () => {
    const key = archiveKey('crashed', TENANT, REPOSITORY, '1'.repeat(40));
    const { body, read } = stallingBody(11 * MIB);
    const controller = new AbortController();
    const putting = s3Store.put(key, body, { contentType: TARBALL_CONTENT_TYPE, signal: controller.signal });
    putting.catch(() => undefined);
    await waitFor('the body to be read', () => read() >= 11 * MIB);
    await waitFor('a pending multipart upload', async () =>
      (await s3Store.pendingUploads('crashed/')).some((u) => u.key === key),
    );

    expect(await s3Store.abortPendingUploads(new Date(Date.now() - 60_000))).toBe(0);
    expect(await s3Store.abortPendingUploads(new Date(Date.now() + 2000), 'crashed/')).toBe(1);
    expect(await s3Store.pendingUploads()).toEqual([]);
    expect(await s3.pendingUploads()).toEqual([]);

    controller.abort();
    await expect(putting).rejects.toMatchObject({ name: 'AbortError' });
    expect(await s3Store.head(key)).toBeNull();
  });
});
