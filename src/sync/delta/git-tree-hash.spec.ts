import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  computeGitTreeId,
  EMPTY_TREE_ID,
  gitTreeObjectId,
  hashSnapshotFile,
  SnapshotNotHashable,
} from './git-tree-hash.js';

const GIT_ENV = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
};

/** `size` bytes that depend only on `seed`. */
function pseudoRandomBytes(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  for (let at = 0, block = 0; at < size; at += 32, block++) {
    createHash('sha256').update(`${seed}:${block}`).digest().copy(out, at);
  }
  return out;
}

let root: string;
let gitDir: string;
let snapshot: string;

/** git with the snapshot as work tree and a git dir outside it. */
function git(args: string[]): Buffer {
  return execFileSync('git', [`--git-dir=${gitDir}`, `--work-tree=${snapshot}`, ...args], {
    env: GIT_ENV,
    maxBuffer: 64 * 1024 * 1024,
  });
}

/** The tree id git records for the snapshot (everything added, as a commit would hold it). */
function gitWriteTree(): string {
  git(['add', '-A']);
  return git(['write-tree']).toString().trim();
}

/** path -> mode and blob id of every file git recorded, paths decoded like computeGitTreeId does. */
function gitListing(): Map<string, { mode: string; blobId: string }> {
  const listing = new Map<string, { mode: string; blobId: string }>();
  const out = git(['ls-files', '-s', '-z']);
  let at = 0;
  while (at < out.length) {
    const end = out.indexOf(0, at);
    const record = out.subarray(at, end);
    const tab = record.indexOf(9);
    const [mode, blobId] = record.subarray(0, tab).toString().split(' ');
    listing.set(record.subarray(tab + 1).toString('utf8'), { mode: mode!, blobId: blobId! });
    at = end + 1;
  }
  return listing;
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tree-hash-'));
  gitDir = join(root, 'repo.git');
  snapshot = join(root, 'snapshot');
  await mkdir(snapshot);
  execFileSync('git', ['init', '-q', '--bare', gitDir], { env: GIT_ENV });
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('computeGitTreeId', () => {
  it('gives the tree id git writes, for every kind of entry git records', async () => {
    const at = (path: string) => join(snapshot, path);
    await mkdir(at('nested/deeper/deepest'), { recursive: true });
    await writeFile(at('nested/deeper/deepest/leaf.txt'), 'leaf\n');
    await writeFile(at('nested/top.txt'), 'top\n');
    await writeFile(at('run.sh'), '#!/bin/sh\necho hi\n');
    await chmod(at('run.sh'), 0o755);
    // Group and others may execute, the owner may not: git records 100644.
    await writeFile(at('group-exec.sh'), 'x\n');
    await chmod(at('group-exec.sh'), 0o654);
    await symlink('nested/top.txt', at('link-to-file'));
    await symlink('nested', at('link-to-dir'));
    await symlink('../../nowhere', at('dangling-link'));
    await writeFile(at('empty.txt'), '');
    await writeFile(at('binary.bin'), Buffer.from([0, 1, 2, 255, 0, 254, 10, 13]));
    // Larger than one read chunk (1 MiB), so the file is hashed in several reads.
    await writeFile(at('large.bin'), pseudoRandomBytes(3 * 1024 * 1024 + 17, 1));
    await writeFile(at('café – naïve.txt'), 'unicode\n');
    await writeFile(at('日本語.md'), 'nihongo\n');
    await writeFile(at('with space.txt'), 'space\n');
    await writeFile(Buffer.from(join(snapshot, 'latin1-\xff-name'), 'latin1'), 'not utf-8\n');
    // Names whose order depends on a directory sorting as `name/`: `a-b` < `a.b` < `a/` < `a0`.
    await writeFile(at('a.b'), 'a.b\n');
    await writeFile(at('a-b'), 'a-b\n');
    await writeFile(at('a0'), 'a0\n');
    await mkdir(at('a'));
    await writeFile(at('a/inner'), 'inner\n');
    await mkdir(at('foo'));
    await writeFile(at('foo/x'), 'x\n');
    await writeFile(at('foo.txt'), 'foo\n');
    await writeFile(at('foo-bar'), 'foo-bar\n');
    // Empty directories do not exist in git.
    await mkdir(at('empty-dir/also-empty'), { recursive: true });
    await mkdir(at('nested/empty'));

    const hashed = await computeGitTreeId(snapshot, { listFiles: true, concurrency: 3 });

    expect(hashed.treeId).toBe(gitWriteTree());
    expect(hashed.files).toEqual(gitListing());
    expect(hashed.fileCount).toBe(gitListing().size);
  });

  it('gives the empty tree for a directory without files', async () => {
    await mkdir(join(snapshot, 'only/empty/dirs'), { recursive: true });
    const hashed = await computeGitTreeId(snapshot);
    expect(hashed.treeId).toBe(EMPTY_TREE_ID.sha1);
    expect(hashed.treeId).toBe(gitWriteTree());
  });

  it('hashes in the SHA-256 object format', async () => {
    execFileSync('git', ['init', '-q', '--bare', '--object-format=sha256', join(root, 'sha256.git')], {
      env: GIT_ENV,
    });
    gitDir = join(root, 'sha256.git');
    await mkdir(join(snapshot, 'dir'));
    await writeFile(join(snapshot, 'dir/file.txt'), 'content\n');
    await writeFile(join(snapshot, 'tool'), '#!/bin/sh\n');
    await chmod(join(snapshot, 'tool'), 0o755);
    await symlink('dir/file.txt', join(snapshot, 'link'));

    const hashed = await computeGitTreeId(snapshot, { objectFormat: 'sha256' });

    expect(hashed.treeId).toHaveLength(64);
    expect(hashed.treeId).toBe(gitWriteTree());
    const empty = join(root, 'empty');
    await mkdir(empty);
    expect((await computeGitTreeId(empty, { objectFormat: 'sha256' })).treeId).toBe(EMPTY_TREE_ID.sha256);
  });

  it('refuses a .git entry at any depth and in any case', async () => {
    await mkdir(join(snapshot, 'sub/.GIT'), { recursive: true });
    await writeFile(join(snapshot, 'sub/.GIT/config'), '[core]\n');
    await expect(computeGitTreeId(snapshot)).rejects.toThrow(SnapshotNotHashable);
    await rm(join(snapshot, 'sub/.GIT'), { recursive: true });
    await writeFile(join(snapshot, '.git'), 'gitdir: elsewhere\n');
    await expect(computeGitTreeId(snapshot)).rejects.toThrow(/\.git/);
  });

  it('refuses what cannot be in a commit (a fifo)', async () => {
    execFileSync('mkfifo', [join(snapshot, 'pipe')]);
    await expect(computeGitTreeId(snapshot)).rejects.toThrow(SnapshotNotHashable);
  });
});

describe('hashSnapshotFile', () => {
  it('gives the blob id git hash-object gives, and the mode', async () => {
    const path = join(snapshot, 'tool.sh');
    await writeFile(path, pseudoRandomBytes(70_000, 2));
    await chmod(path, 0o755);
    const expected = execFileSync('git', ['hash-object', path], { env: GIT_ENV }).toString().trim();
    expect(await hashSnapshotFile(path)).toEqual({ mode: '100755', blobId: expected, size: 70_000 });
    await symlink('tool.sh', join(snapshot, 'link'));
    expect(await hashSnapshotFile(join(snapshot, 'link'))).toMatchObject({ mode: '120000', size: 7 });
  });
});

describe('gitTreeObjectId', () => {
  it('builds the tree object git mktree builds: git order (a tree sorts as name/), modes without leading zeros', () => {
    const blob = 'ce013625030ba8dba906f756967f9e9ca394464a';
    const other = 'c1b0730e0133447badcfd47fd144e254807b06e1';
    const tree = '66c31ab1b81cb3c5a77682b67611d2d6984ba73d';
    const commit = '0123456789abcdef0123456789abcdef01234567';
    // Listed in a host's order, not git's: `a` (a tree) must land after `a-b` and `a.txt`.
    const entries = [
      { mode: '040000', name: 'a', id: tree },
      { mode: '100644', name: 'a.txt', id: blob },
      { mode: '100755', name: 'a-b', id: other },
      { mode: '160000', name: 'sub', id: commit },
      { mode: '120000', name: 'z', id: other },
    ];
    const listing = [
      `100644 blob ${blob}\ta.txt`,
      `040000 tree ${tree}\ta`,
      `100755 blob ${other}\ta-b`,
      `160000 commit ${commit}\tsub`,
      `120000 blob ${other}\tz`,
    ].join('\n');
    const expected = execFileSync('git', [`--git-dir=${gitDir}`, 'mktree', '--missing'], {
      env: GIT_ENV,
      input: `${listing}\n`,
    })
      .toString()
      .trim();
    expect(gitTreeObjectId(entries)).toBe(expected);
    expect(gitTreeObjectId([])).toBe(EMPTY_TREE_ID.sha1);
    expect(() => gitTreeObjectId([{ mode: '100644', name: 'a/b', id: blob }])).toThrow(TypeError);
  });
});
