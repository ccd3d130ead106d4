import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostChangedFile, HostComparison, HostProvider } from '../../hosts/code-host.js';
import {
  applyCompareDelta,
  BlobCache,
  DeltaApplyFailed,
  DeltaVerificationFailed,
  proveTreeId,
  reusedPaths,
  type BlobRequest,
  type FetchBlob,
} from './delta-apply.js';
import { planCompareDelta, type DeltaChange } from './delta-plan.js';
import { gitObjectId, listingTreeId } from './git-tree-hash.js';
import { readBaseSnapshot, type BaseSnapshot } from './snapshot-listing.js';

const GIT_ENV = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
};

let root: string;
let work: string;

function git(args: string[], input?: Buffer): Buffer {
  return execFileSync('git', ['-C', work, ...args], { env: GIT_ENV, input, maxBuffer: 64 * 1024 * 1024 });
}

const revParse = (rev: string): string => git(['rev-parse', rev]).toString().trim();

function commit(tag: string): void {
  git(['add', '-A']);
  git(['commit', '-q', '--allow-empty', '-m', tag]);
  git(['tag', tag]);
}

/** `lines` numbered lines, so renames with small edits stay above git's similarity threshold. */
const lines = (name: string, count = 20): string =>
  Array.from({ length: count }, (_, i) => `${name} line ${i}\n`).join('');

function binary(seed: number, size = 5000): Buffer {
  const out = Buffer.alloc(size);
  for (let at = 0, block = 0; at < size; at += 32, block++) {
    createHash('sha256').update(`${seed}:${block}`).digest().copy(out, at);
  }
  return out;
}

/** The snapshot of commit `rev` as read from its archive (`git archive`), keeping what `changes` reuse. */
async function baseOf(rev: string, changes: readonly DeltaChange[] = []): Promise<BaseSnapshot> {
  return readBaseSnapshot([git(['archive', '--format=tar', rev])], {
    keep: reusedPaths(changes),
    format: 'sha1',
    maxEntryBytes: 1024 * 1024,
  });
}

interface RawDiffEntry {
  oldMode: string;
  newMode: string;
  oldSha: string;
  newSha: string;
  status: string;
  path: string;
  previousPath: string | null;
}

/** `git diff-tree -r -M --raw -z from to`, parsed. */
function rawDiff(from: string, to: string): RawDiffEntry[] {
  const fields = git(['diff-tree', '-r', '-M', '--raw', '-z', from, to]).toString('utf8').split('\0');
  const entries: RawDiffEntry[] = [];
  for (let i = 0; i < fields.length - 1;) {
    const [oldMode, newMode, oldSha, newSha, status] = fields[i++]!.slice(1).split(' ') as [
      string,
      string,
      string,
      string,
      string,
    ];
    const letter = status[0]!;
    const first = fields[i++]!;
    const second = letter === 'R' || letter === 'C' ? fields[i++]! : null;
    entries.push({
      oldMode,
      newMode,
      oldSha,
      newSha,
      status: letter,
      path: second ?? first,
      previousPath: second === null ? null : first,
    });
  }
  return entries;
}

const NO_MODE = /^0+$/;

/** The entry as GitLab's compare gives it (modes, no blob SHAs). */
function gitlabFile(entry: RawDiffEntry): HostChangedFile {
  const sameContent = entry.oldSha === entry.newSha;
  const mode = NO_MODE.test(entry.newMode) ? null : entry.newMode;
  const previousMode = NO_MODE.test(entry.oldMode) ? null : entry.oldMode;
  const base = { path: entry.path, previousPath: entry.previousPath, sha: null, mode, previousMode };
  const patch = { additions: 1, deletions: 1, patchAvailable: true };
  const noPatch = { additions: 0, deletions: 0, patchAvailable: false };
  switch (entry.status) {
    case 'A':
      return { ...base, status: 'added', ...patch };
    case 'D':
      return { ...base, status: 'removed', mode: null, ...patch };
    case 'R':
      return { ...base, status: 'renamed', ...(sameContent ? noPatch : patch) };
    case 'M':
      return sameContent
        ? { ...base, status: 'changed', ...noPatch }
        : { ...base, status: 'modified', ...patch };
    default:
      return { ...base, status: 'modified', ...patch };
  }
}

/** The entry as GitHub's compare gives it (blob SHAs, no modes). */
function githubFile(entry: RawDiffEntry): HostChangedFile {
  const status =
    entry.status === 'A'
      ? 'added'
      : entry.status === 'D'
        ? 'removed'
        : entry.status === 'R'
          ? 'renamed'
          : entry.status === 'M' && entry.oldSha !== entry.newSha
            ? 'modified'
            : 'changed';
  return {
    path: entry.path,
    previousPath: entry.previousPath,
    status,
    sha: status === 'removed' ? null : entry.newSha,
    mode: null,
    previousMode: null,
    additions: 1,
    deletions: 1,
    patchAvailable: true,
  };
}

function hostComparison(from: string, to: string, provider: HostProvider): HostComparison {
  const baseSha = revParse(from);
  return {
    status: 'ahead',
    aheadBy: 1,
    behindBy: 0,
    baseSha,
    headSha: revParse(to),
    mergeBaseSha: baseSha,
    commits: [],
    files: rawDiff(from, to).map(provider === 'github' ? githubFile : gitlabFile),
    truncated: { commits: false, files: false, timedOut: false, patches: false },
  };
}

function plannedChanges(from: string, to: string, provider: HostProvider): DeltaChange[] {
  const plan = planCompareDelta(hostComparison(from, to, provider), provider, { canFetchByPath: true });
  if (!plan.ok) throw new Error(`unexpected refusal ${plan.code}: ${plan.reason}`);
  return plan.changes;
}

/** Blob bytes from the test repository, as the host would send them; records what was asked for. */
function gitFetch(requests: BlobRequest[] = []): FetchBlob {
  return async (request) => {
    requests.push(request);
    return git(['cat-file', 'blob', 'sha' in request ? request.sha : `${request.ref}:${request.path}`]);
  };
}

const treeOf = (rev: string): string => revParse(`${rev}^{tree}`);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'delta-apply-'));
  work = join(root, 'work');
  await mkdir(work);
  git(['init', '-q']);
  const at = (path: string) => join(work, path);

  // A: the base revision.
  await writeFile(at('keep.txt'), 'keep\n');
  await writeFile(at('edit.txt'), 'line1\nline2\n');
  await writeFile(at('del.txt'), 'delete me\n');
  await mkdir(at('gone/deep/er'), { recursive: true });
  await writeFile(at('gone/deep/er/only.txt'), 'only file of its directories\n');
  await mkdir(at('stays'));
  await writeFile(at('stays/a.txt'), 'a\n');
  await writeFile(at('stays/b.txt'), 'b\n');
  await writeFile(at('rename-pure.txt'), lines('pure'));
  await writeFile(at('rename-edit.txt'), lines('edited'));
  await writeFile(at('chmod-up.sh'), '#!/bin/sh\necho up\n');
  await writeFile(at('chmod-down.sh'), '#!/bin/sh\necho down\n');
  await chmod(at('chmod-down.sh'), 0o755);
  await writeFile(at('exec-edit.sh'), '#!/bin/sh\necho 1\n');
  await chmod(at('exec-edit.sh'), 0o755);
  await symlink('keep.txt', at('link-retarget'));
  await writeFile(at('file-to-link'), 'becomes a link\n');
  await symlink('keep.txt', at('link-to-file'));
  await writeFile(at('bin.dat'), binary(1));
  commit('A');

  // B: every kind of change, from A.
  await writeFile(at('edit.txt'), 'line1\nline2 changed\nline3\n');
  await unlink(at('del.txt'));
  await rm(at('gone'), { recursive: true });
  await unlink(at('stays/a.txt'));
  await rename(at('rename-pure.txt'), at('moved-pure.txt'));
  await mkdir(at('moved'));
  await rename(at('rename-edit.txt'), at('moved/renamed-edited.txt'));
  await writeFile(at('moved/renamed-edited.txt'), lines('edited').replace('line 3', 'line three'));
  await chmod(at('chmod-up.sh'), 0o755);
  await chmod(at('chmod-down.sh'), 0o644);
  await writeFile(at('exec-edit.sh'), '#!/bin/sh\necho 2\n');
  await unlink(at('link-retarget'));
  await symlink('edit.txt', at('link-retarget'));
  await unlink(at('file-to-link'));
  await symlink('keep.txt', at('file-to-link'));
  await unlink(at('link-to-file'));
  await writeFile(at('link-to-file'), 'now a file\n');
  await writeFile(at('bin.dat'), binary(2));
  await mkdir(at('new/very/deep/dir'), { recursive: true });
  await writeFile(at('new/very/deep/dir/file.txt'), 'deep\n');
  await writeFile(at('new-exec.sh'), '#!/bin/sh\necho new\n');
  await chmod(at('new-exec.sh'), 0o755);
  await symlink('new/very', at('new-link'));
  await writeFile(at('ünï cødé.txt'), 'unicode\n');
  await writeFile(at('new-bin.bin'), binary(3, 70_000));
  await writeFile(at('empty-new.txt'), '');
  commit('B');

  // C: from A, only changes GitHub's compare can express (no mode or type changes, no new executables).
  git(['checkout', '-q', 'A']);
  await writeFile(at('edit.txt'), 'line1 github\n');
  await unlink(at('del.txt'));
  await rm(at('gone'), { recursive: true });
  await rename(at('rename-pure.txt'), at('renamed-pure.txt'));
  await rename(at('rename-edit.txt'), at('renamed-edit.txt'));
  await writeFile(at('renamed-edit.txt'), lines('edited').replace('line 5', 'line five'));
  await writeFile(at('exec-edit.sh'), '#!/bin/sh\necho 3\n');
  await unlink(at('link-retarget'));
  await symlink('edit.txt', at('link-retarget'));
  await writeFile(at('bin.dat'), binary(4));
  await mkdir(at('deep/new/dir'), { recursive: true });
  await writeFile(at('deep/new/dir/file.txt'), 'deep github\n');
  await writeFile(at('added.txt'), 'added\n');
  commit('C');

  // D: from A, a new executable (GitHub does not say its mode).
  git(['checkout', '-q', 'A']);
  await writeFile(at('tool.sh'), '#!/bin/sh\n');
  await chmod(at('tool.sh'), 0o755);
  commit('D');

  // E: from A, a directory becomes a file and a file becomes a directory.
  git(['checkout', '-q', 'A']);
  await rm(at('stays'), { recursive: true });
  await writeFile(at('stays'), 'now a file\n');
  await unlink(at('keep.txt'));
  await mkdir(at('keep.txt'));
  await writeFile(at('keep.txt/inner.txt'), 'now a directory\n');
  commit('E');
}, 60_000);

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('applyCompareDelta', () => {
  it("turns A into exactly B from GitLab's answer (modes, content by path)", async () => {
    const changes = plannedChanges('A', 'B', 'gitlab');
    // The diff holds every kind of change this test is about.
    expect(rawDiff('A', 'B').map((entry) => entry.status)).toEqual(
      expect.arrayContaining(['A', 'D', 'M', 'R', 'T']),
    );
    const base = await baseOf('A', changes);
    const requests: BlobRequest[] = [];

    const result = await applyCompareDelta(changes, base, { fetchBlob: gitFetch(requests), concurrency: 3 });

    proveTreeId(listingTreeId(result.files), treeOf('B'));
    expect(result.filesChanged).toBe(changes.length);
    // The pure rename and the two mode changes reuse the base's bytes.
    expect(result.localReuses).toBe(3);
    expect(requests.every((request) => 'path' in request && request.ref === revParse('B'))).toBe(true);
    expect(result.blobsDownloaded).toBe(requests.length);
    const downloaded = requests.map(
      (r) => git(['cat-file', 'blob', `B:${(r as { path: string }).path}`]).length,
    );
    expect(result.bytesDownloaded).toBe(downloaded.reduce((a, b) => a + b, 0));
    // Directories left empty are gone, like a git checkout leaves them; new ones are there.
    expect([...result.directories].filter((dir) => dir.startsWith('gone'))).toEqual([]);
    expect(result.directories).toContain('new/very/deep/dir');
    expect(result.files.has('stays/b.txt')).toBe(true);
    // Every written path carries its content; the base itself is untouched.
    for (const [path, written] of result.written) {
      expect(gitObjectId('blob', written.data)).toBe(result.files.get(path)!.blobId);
    }
    proveTreeId(listingTreeId(base.files), treeOf('A'));
  });

  it("turns A into exactly C from GitHub's answer (blob SHAs), and serves a second run from the cache", async () => {
    const changes = plannedChanges('A', 'C', 'github');
    const cache = new BlobCache(1024 * 1024);
    const firstRun = await applyCompareDelta(changes, await baseOf('A', changes), {
      fetchBlob: gitFetch(),
      concurrency: 4,
      cache,
    });
    proveTreeId(listingTreeId(firstRun.files), treeOf('C'));
    expect(firstRun.localReuses).toBe(1); // the pure rename: its source already has the blob id
    expect(firstRun.bytesDownloaded).toBeGreaterThan(0);

    const requests: BlobRequest[] = [];
    const secondRun = await applyCompareDelta(changes, await baseOf('A', changes), {
      fetchBlob: gitFetch(requests),
      concurrency: 4,
      cache,
    });
    proveTreeId(listingTreeId(secondRun.files), treeOf('C'));
    expect(requests).toEqual([]);
    expect(secondRun.bytesDownloaded).toBe(0);
    expect(secondRun.cacheHits).toBe(firstRun.blobsDownloaded + firstRun.localReuses);
  });

  it.each<HostProvider>(['gitlab', 'github'])(
    'replaces a directory by a file and a file by a directory (%s)',
    async (provider) => {
      const changes = plannedChanges('A', 'E', provider);
      const result = await applyCompareDelta(changes, await baseOf('A', changes), {
        fetchBlob: gitFetch(),
        concurrency: 2,
      });
      proveTreeId(listingTreeId(result.files), treeOf('E'));
      expect(result.directories).toContain('keep.txt');
      expect(result.directories).not.toContain('stays');
    },
  );

  it("is refused by the plan for GitHub's mode changes without modes", () => {
    const plan = planCompareDelta(hostComparison('A', 'B', 'github'), 'github', { canFetchByPath: true });
    expect(plan).toMatchObject({ ok: false, code: 'UNEXPRESSED_MODE_CHANGE' });
  });

  it('fails the tree proof when an inherited mode was a wrong guess (a new executable on GitHub)', async () => {
    const changes = plannedChanges('A', 'D', 'github');
    const result = await applyCompareDelta(changes, await baseOf('A', changes), {
      fetchBlob: gitFetch(),
      concurrency: 2,
    });
    expect(() => proveTreeId(listingTreeId(result.files), treeOf('D'))).toThrow(DeltaVerificationFailed);
  });

  it('refuses blob bytes that do not hash to the blob id asked for', async () => {
    const changes = plannedChanges('A', 'C', 'github');
    const corrupt: FetchBlob = async (request) => {
      const bytes = await gitFetch()(request);
      bytes[0] = bytes[0]! ^ 0xff;
      return bytes;
    };
    await expect(
      applyCompareDelta(changes, await baseOf('A', changes), { fetchBlob: corrupt, concurrency: 2 }),
    ).rejects.toMatchObject({ code: 'BLOB_MISMATCH' });
  });

  it('gives a different tree id when content read by path is corrupted', async () => {
    const changes = plannedChanges('A', 'B', 'gitlab');
    const corruptOne: FetchBlob = async (request) => {
      const bytes = await gitFetch()(request);
      return 'path' in request && request.path === 'edit.txt'
        ? Buffer.concat([bytes, Buffer.from('x')])
        : bytes;
    };
    const result = await applyCompareDelta(changes, await baseOf('A', changes), {
      fetchBlob: corruptOne,
      concurrency: 2,
    });
    let failure: unknown = null;
    try {
      proveTreeId(listingTreeId(result.files), treeOf('B'));
    } catch (e) {
      failure = e;
    }
    expect(failure).toBeInstanceOf(DeltaVerificationFailed);
    expect((failure as DeltaVerificationFailed).actualTreeId).not.toBe(treeOf('B'));
  });

  describe('untrusted paths', () => {
    const write = (path: string, source: string | null = null): DeltaChange => ({
      op: 'write',
      path,
      source,
      removeSource: source !== null,
      content: source === null ? { from: 'path', path, ref: 'B' } : { from: 'previous' },
      mode: '100644',
    });
    const evil: FetchBlob = async () => Buffer.from('evil\n');

    it.each<[string, DeltaChange]>([
      ['a `..` path', write('../escape.txt')],
      ['a `..` inside a path', write('docs/../../escape.txt')],
      ['an absolute path', write('/tmp/escape.txt')],
      ['a .git path', write('.git/hooks/post-checkout')],
      ['a .git component in any case', write('sub/.Git/config')],
      ['a removal outside', { op: 'remove', path: '../keep.txt' }],
      ['a rename source outside', write('stolen.txt', '../../etc/passwd')],
    ])('refuses %s', async (_name, change) => {
      const base = await baseOf('A', [change]);
      const error = await applyCompareDelta([change], base, { fetchBlob: evil, concurrency: 1 }).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DeltaApplyFailed);
      expect((error as DeltaApplyFailed).code).toBe('UNSAFE_PATH');
      proveTreeId(listingTreeId(base.files), treeOf('A'));
    });

    it('never writes, removes or reads below a symlink', async () => {
      const base = await baseOf('A');
      const target = Buffer.from('/outside');
      base.files.set('out', { mode: '120000', blobId: gitObjectId('blob', target), size: target.length });
      const options = { fetchBlob: evil, concurrency: 1 };
      for (const change of [
        write('out/evil.txt'),
        { op: 'remove', path: 'out/victim.txt' } as DeltaChange,
        write('stolen.txt', 'out/secret.txt'),
      ]) {
        const error = await applyCompareDelta([change], base, options).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(DeltaApplyFailed);
        expect((error as DeltaApplyFailed).code).toBe('UNSAFE_PATH');
      }
    });
  });

  it('refuses Git LFS pointer contents', async () => {
    const pointer = Buffer.from(
      'version https://git-lfs.github.com/spec/v1\noid sha256:' + 'a'.repeat(64) + '\nsize 12345\n',
    );
    const change: DeltaChange = {
      op: 'write',
      path: 'model.bin',
      source: null,
      removeSource: false,
      content: { from: 'path', path: 'model.bin', ref: 'B' },
      mode: '100644',
    };
    await expect(
      applyCompareDelta([change], await baseOf('A'), { fetchBlob: async () => pointer, concurrency: 1 }),
    ).rejects.toMatchObject({ code: 'LFS_POINTER' });
  });

  it('keeps the blob cache within its size, dropping the least recently used', () => {
    const cache = new BlobCache(10);
    cache.set('a', Buffer.alloc(4));
    cache.set('b', Buffer.alloc(4));
    cache.get('a');
    cache.set('c', Buffer.alloc(4));
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBeDefined();
    expect(cache.get('c')).toBeDefined();
    cache.set('huge', Buffer.alloc(11));
    expect(cache.get('huge')).toBeUndefined();
    expect(cache.size).toBe(2);
  });
});
