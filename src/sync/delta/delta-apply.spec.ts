import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostChangedFile, HostComparison, HostProvider } from '../../hosts/code-host.js';
import {
  applyCompareDelta,
  DeltaApplyFailed,
  DeltaVerificationFailed,
  verifySnapshotTree,
  type BlobRequest,
  type FetchBlob,
} from './delta-apply.js';
import { planCompareDelta, type DeltaChange } from './delta-plan.js';

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

/** The commit `rev` checked out into a new directory, as the restored archive of it would be. */
async function checkout(rev: string): Promise<string> {
  const dir = await mkdtemp(join(root, `snapshot-${rev}-`));
  execFileSync('tar', ['-x', '-C', dir], { input: git(['archive', '--format=tar', rev]) });
  return dir;
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
    const snapshot = await checkout('A');
    const requests: BlobRequest[] = [];

    const result = await applyCompareDelta(changes, {
      snapshotDir: snapshot,
      cacheDir: join(root, 'cache-gitlab'),
      fetchBlob: gitFetch(requests),
      concurrency: 3,
    });

    await verifySnapshotTree(snapshot, treeOf('B'));
    expect(result.filesChanged).toBe(changes.length);
    // The pure rename and the two mode changes reuse the snapshot's bytes.
    expect(result.localReuses).toBe(3);
    expect(requests.every((request) => 'path' in request && request.ref === revParse('B'))).toBe(true);
    expect(result.blobsDownloaded).toBe(requests.length);
    const downloaded = requests.map(
      (r) => git(['cat-file', 'blob', `B:${(r as { path: string }).path}`]).length,
    );
    expect(result.bytesDownloaded).toBe(downloaded.reduce((a, b) => a + b, 0));
    // Directories left empty are gone, like a git checkout leaves them.
    expect(existsSync(join(snapshot, 'gone'))).toBe(false);
    expect(existsSync(join(snapshot, 'stays/b.txt'))).toBe(true);
  });

  it("turns A into exactly C from GitHub's answer (blob SHAs), and serves a second run from the cache", async () => {
    const changes = plannedChanges('A', 'C', 'github');
    const cacheDir = join(root, 'cache-github');
    const first = await checkout('A');
    const firstRun = await applyCompareDelta(changes, {
      snapshotDir: first,
      cacheDir,
      fetchBlob: gitFetch(),
      concurrency: 4,
    });
    await verifySnapshotTree(first, treeOf('C'));
    expect(firstRun.localReuses).toBe(1); // the pure rename: its source already has the blob id
    expect(firstRun.bytesDownloaded).toBeGreaterThan(0);

    const second = await checkout('A');
    const requests: BlobRequest[] = [];
    const secondRun = await applyCompareDelta(changes, {
      snapshotDir: second,
      cacheDir,
      fetchBlob: gitFetch(requests),
      concurrency: 4,
    });
    await verifySnapshotTree(second, treeOf('C'));
    expect(requests).toEqual([]);
    expect(secondRun.bytesDownloaded).toBe(0);
    expect(secondRun.cacheHits).toBe(firstRun.blobsDownloaded + firstRun.localReuses);
  });

  it.each<HostProvider>(['gitlab', 'github'])(
    'replaces a directory by a file and a file by a directory (%s)',
    async (provider) => {
      const snapshot = await checkout('A');
      await applyCompareDelta(plannedChanges('A', 'E', provider), {
        snapshotDir: snapshot,
        cacheDir: join(root, `cache-e-${provider}`),
        fetchBlob: gitFetch(),
        concurrency: 2,
      });
      await verifySnapshotTree(snapshot, treeOf('E'));
    },
  );

  it("is refused by the plan for GitHub's mode changes without modes", () => {
    const plan = planCompareDelta(hostComparison('A', 'B', 'github'), 'github', { canFetchByPath: true });
    expect(plan).toMatchObject({ ok: false, code: 'UNEXPRESSED_MODE_CHANGE' });
  });

  it('fails the tree proof when an inherited mode was a wrong guess (a new executable on GitHub)', async () => {
    const snapshot = await checkout('A');
    await applyCompareDelta(plannedChanges('A', 'D', 'github'), {
      snapshotDir: snapshot,
      cacheDir: join(root, 'cache-d'),
      fetchBlob: gitFetch(),
      concurrency: 2,
    });
    await expect(verifySnapshotTree(snapshot, treeOf('D'))).rejects.toThrow(DeltaVerificationFailed);
  });

  it('refuses blob bytes that do not hash to the blob id asked for', async () => {
    const snapshot = await checkout('A');
    const corrupt: FetchBlob = async (request) => {
      const bytes = await gitFetch()(request);
      bytes[0] = bytes[0]! ^ 0xff;
      return bytes;
    };
    await expect(
      applyCompareDelta(plannedChanges('A', 'C', 'github'), {
        snapshotDir: snapshot,
        cacheDir: join(root, 'cache-corrupt'),
        fetchBlob: corrupt,
        concurrency: 2,
      }),
    ).rejects.toMatchObject({ code: 'BLOB_MISMATCH' });
  });

  it('gives a different tree id when content read by path is corrupted', async () => {
    const snapshot = await checkout('A');
    const corruptOne: FetchBlob = async (request) => {
      const bytes = await gitFetch()(request);
      return 'path' in request && request.path === 'edit.txt'
        ? Buffer.concat([bytes, Buffer.from('x')])
        : bytes;
    };
    await applyCompareDelta(plannedChanges('A', 'B', 'gitlab'), {
      snapshotDir: snapshot,
      cacheDir: join(root, 'cache-corrupt-path'),
      fetchBlob: corruptOne,
      concurrency: 2,
    });
    const failure = await verifySnapshotTree(snapshot, treeOf('B')).catch((e: unknown) => e);
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
    ])('refuses %s before touching anything', async (_name, change) => {
      const snapshot = await checkout('A');
      const error = await applyCompareDelta([change], {
        snapshotDir: snapshot,
        cacheDir: join(root, 'cache-evil'),
        fetchBlob: evil,
        concurrency: 1,
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DeltaApplyFailed);
      expect((error as DeltaApplyFailed).code).toBe('UNSAFE_PATH');
      expect(existsSync(join(snapshot, '..', 'escape.txt'))).toBe(false);
      await verifySnapshotTree(snapshot, treeOf('A'));
    });

    it('never writes, removes or reads through a symlinked directory', async () => {
      const outside = await mkdtemp(join(root, 'outside-'));
      await writeFile(join(outside, 'victim.txt'), 'victim\n');
      await writeFile(join(outside, 'secret.txt'), 'secret\n');
      const snapshot = await checkout('A');
      await symlink(outside, join(snapshot, 'out'));
      const options = {
        snapshotDir: snapshot,
        cacheDir: join(root, 'cache-evil'),
        fetchBlob: evil,
        concurrency: 1,
      };

      await expect(applyCompareDelta([write('out/evil.txt')], options)).rejects.toThrow(DeltaApplyFailed);
      await expect(applyCompareDelta([{ op: 'remove', path: 'out/victim.txt' }], options)).rejects.toThrow(
        DeltaApplyFailed,
      );
      await expect(applyCompareDelta([write('stolen.txt', 'out/secret.txt')], options)).rejects.toThrow(
        DeltaApplyFailed,
      );
      expect(existsSync(join(outside, 'evil.txt'))).toBe(false);
      expect(await readFile(join(outside, 'victim.txt'), 'utf8')).toBe('victim\n');
      expect(existsSync(join(snapshot, 'stolen.txt'))).toBe(false);
    });
  });

  it('refuses Git LFS pointer contents', async () => {
    const snapshot = await checkout('A');
    const pointer = Buffer.from(
      'version https://git-lfs.github.com/spec/v1\noid sha256:' + 'a'.repeat(64) + '\nsize 12345\n',
    );
    await expect(
      applyCompareDelta(
        [
          {
            op: 'write',
            path: 'model.bin',
            source: null,
            removeSource: false,
            content: { from: 'path', path: 'model.bin', ref: 'B' },
            mode: '100644',
          },
        ],
        {
          snapshotDir: snapshot,
          cacheDir: join(root, 'cache-lfs'),
          fetchBlob: async () => pointer,
          concurrency: 1,
        },
      ),
    ).rejects.toMatchObject({ code: 'LFS_POINTER' });
    expect(existsSync(join(snapshot, 'model.bin'))).toBe(false);
  });
});
