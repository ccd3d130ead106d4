import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  EMPTY_TREE_ID,
  gitObjectId,
  gitTreeObjectId,
  listingTreeId,
  type GitObjectFormat,
} from './git-tree-hash.js';
import { readBaseSnapshot } from './snapshot-listing.js';

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

/** path -> mode and blob id of every file git recorded. */
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

/** The listing of tree `treeId` read from its archive by `git archive`, as compare-delta reads an archive. */
async function listingOf(treeId: string, format: GitObjectFormat = 'sha1') {
  const tar = git(['archive', '--format=tar', treeId]);
  const base = await readBaseSnapshot([tar], { keep: new Set(), format, maxEntryBytes: 16 * 1024 * 1024 });
  return base.files;
}

describe('listingTreeId over the listing of an archive', () => {
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
    // Larger than what is hashed in one call (64 KiB).
    await writeFile(at('large.bin'), pseudoRandomBytes(3 * 1024 * 1024 + 17, 1));
    await writeFile(at('café – naïve.txt'), 'unicode\n');
    await writeFile(at('日本語.md'), 'nihongo\n');
    await writeFile(at('with space.txt'), 'space\n');
    // A path over 100 bytes: a pax header in the archive.
    await mkdir(at('long'.repeat(20)), { recursive: true });
    await writeFile(at(`${'long'.repeat(20)}/${'name'.repeat(10)}.txt`), 'long\n');
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

    const tree = gitWriteTree();
    const files = await listingOf(tree);

    expect(listingTreeId(files)).toBe(tree);
    const listed = new Map([...files].map(([path, { mode, blobId }]) => [path, { mode, blobId }]));
    expect(listed).toEqual(gitListing());
  });

  it('gives the empty tree for no files', () => {
    expect(listingTreeId(new Map())).toBe(EMPTY_TREE_ID.sha1);
    expect(listingTreeId(new Map(), 'sha256')).toBe(EMPTY_TREE_ID.sha256);
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

    const tree = gitWriteTree();

    expect(tree).toHaveLength(64);
    expect(listingTreeId(await listingOf(tree, 'sha256'), 'sha256')).toBe(tree);
  });
});

describe('gitObjectId', () => {
  it('gives the blob id git hash-object gives, for contents hashed in one call and in several', async () => {
    for (const size of [0, 100, 64 * 1024, 64 * 1024 + 1, 300_000]) {
      const path = join(snapshot, `blob-${size}`);
      const content = pseudoRandomBytes(size, size);
      await writeFile(path, content);
      const expected = execFileSync('git', ['hash-object', path], { env: GIT_ENV }).toString().trim();
      expect(gitObjectId('blob', content)).toBe(expected);
    }
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
