import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chmod, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { SnapshotTarEntry } from '../../artifacts/reproducible-tarball.js';
import { hasBlobContent, parseRawTreeDiff, type TreeChange } from '../git/tree-changes.js';
import { buildTarImage, TarImageBuffers } from '../../artifacts/tar-image.js';
import { ArchiveBaseCache, ArchiveBaseMismatch, spliceTreeChanges, tarBytesOf } from './archive-base.js';
import { ScratchGitRepo } from '../../../test/support/scratch-git-repo.js';

/** What a path holds in a commit: a file (executable or not), a symlink, or a submodule (gitlink). */
type Node = { file: string | Buffer; exec?: boolean } | { link: string } | { gitlink: string };
type Tree = Record<string, Node>;

const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';
const GITLINK_1 = '1111111111111111111111111111111111111111';
const GITLINK_2 = '2222222222222222222222222222222222222222';
const GITLINK_3 = '3333333333333333333333333333333333333333';

const binary = (seed: number, size = 3000): Buffer =>
  Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + seed * 17 + ((i * i) >> 3)) % 256));

let scratch: ScratchGitRepo;
let repo: string;

const git = (args: string[], input?: Buffer | string): Buffer => scratch.git(args, input);

/** Replaces the work tree with `tree` and commits it; returns the commit id. */
async function commitTree(tree: Tree, message: string): Promise<string> {
  for (const name of await readdir(repo)) {
    if (name !== '.git') await rm(join(repo, name), { recursive: true, force: true });
  }
  for (const [path, node] of Object.entries(tree)) {
    if ('gitlink' in node) continue;
    const full = join(repo, path);
    await mkdir(dirname(full), { recursive: true });
    if ('link' in node) {
      await symlink(node.link, full);
    } else {
      await writeFile(full, node.file);
      await chmod(full, node.exec ? 0o755 : 0o644);
    }
  }
  git(['add', '-A']);
  for (const [path, node] of Object.entries(tree)) {
    if ('gitlink' in node) git(['update-index', '--add', '--cacheinfo', `160000,${node.gitlink},${path}`]);
  }
  return scratch.commitIndex(message);
}

const blobs = new Map<string, Buffer>();

/** A blob's content (`git cat-file blob`), read once per id. */
function blob(id: string): Buffer {
  let content = blobs.get(id);
  if (!content) {
    content = git(['cat-file', 'blob', id]);
    blobs.set(id, content);
  }
  return content;
}

/** Records `<a> SP <b> ... TAB <path>` split on NULs, the path read as UTF-8. */
function nulRecords(raw: Buffer): { meta: string; path: string }[] {
  const records: { meta: string; path: string }[] = [];
  let at = 0;
  while (at < raw.length) {
    const end = raw.indexOf(0, at);
    if (end < 0) throw new Error('unterminated record');
    const tab = raw.indexOf(0x09, at);
    records.push({ meta: raw.toString('latin1', at, tab), path: raw.toString('utf8', tab + 1, end) });
    at = end + 1;
  }
  return records;
}

const treeOrderKey = (entry: SnapshotTarEntry): string =>
  Buffer.from(entry.kind === 'directory' ? `${entry.path}/` : entry.path, 'utf8').toString('latin1');

/** The archive's entries of `rev`, in tree order, from `git ls-tree`. */
function entriesOf(rev: string): SnapshotTarEntry[] {
  const entries: SnapshotTarEntry[] = [];
  for (const { meta, path } of nulRecords(git(['ls-tree', '-r', '-t', '-z', '--full-tree', rev]))) {
    const [mode, , id] = meta.split(' ');
    if (mode === '040000' || mode === '160000') entries.push({ path, kind: 'directory' });
    else if (mode === '120000') entries.push({ path, kind: 'symlink', linkpath: blob(id!).toString('utf8') });
    else if (mode === '100644' || mode === '100755') {
      entries.push({ path, kind: 'file', executable: mode === '100755', data: blob(id!) });
    } else throw new Error(`unexpected mode ${mode} of ${path}`);
  }
  return entries.sort((a, b) => {
    const ka = treeOrderKey(a);
    const kb = treeOrderKey(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}

/** Git's changes from `from` to `to`, with the new content of files and symlinks. */
function changesBetween(from: string, to: string): TreeChange[] {
  const raw = git(['diff-tree', '-r', '-t', '-z', '--raw', '--no-renames', '--no-abbrev', from, to]);
  return parseRawTreeDiff(raw).map((change) =>
    change.status !== 'D' && hasBlobContent(change.newMode)
      ? { ...change, data: blob(change.newId) }
      : change,
  );
}

const TREE_A: Tree = {
  a: { file: 'a is a file\n' },
  'a.txt': { file: 'a.txt\n' },
  'a-b': { file: 'a-b\n' },
  a0: { file: 'a0\n' },
  'b/one': { file: 'one\n' },
  'b/two': { file: 'two\n' },
  'b/inner/three': { file: 'three\n' },
  'edit.txt': { file: 'before\n' },
  'exec.sh': { file: '#!/bin/sh\necho exec\n' },
  'unexec.sh': { file: '#!/bin/sh\necho unexec\n', exec: true },
  f2l: { file: 'file becoming a link\n' },
  l2f: { link: 'edit.txt' },
  dangling: { link: 'nowhere/at/all' },
  'y/c': { file: 'y/c\n' },
  'y/d/e': { file: 'y/d/e\n' },
  'ünïcode/ß.txt': { file: 'straße\n' },
  'keep/k1': { file: 'k1\n' },
  'keep/sub/k2': { file: 'k2\n' },
  'keep/sub/k3': { file: binary(9) },
  'bin.dat': { file: binary(1) },
  empty: { file: '' },
  sub: { gitlink: GITLINK_1 },
  sub2: { gitlink: GITLINK_2 },
  z: { file: 'last\n' },
};

const TREE_B: Tree = {
  'a/b': { file: 'a/b\n' },
  'a/c.txt': { file: 'a/c.txt\n' },
  'a/deep/er/est': { file: 'deepest\n', exec: true },
  'a.txt': { file: 'a.txt edited\n' },
  'a-b': { file: 'a-b\n' },
  a0: { file: 'a0\n' },
  'edit.txt': { file: 'after\n' },
  'exec.sh': { file: '#!/bin/sh\necho exec\n', exec: true },
  'unexec.sh': { file: '#!/bin/sh\necho unexec\n' },
  f2l: { link: 'a.txt' },
  l2f: { file: 'link became a file\n' },
  dangling: { link: 'nowhere/at/all' },
  y: { file: 'y is a file now\n' },
  'ünïcode/ß.txt': { file: 'strasse\n' },
  'ünïcode/é': { file: 'é\n' },
  ü: { link: 'ünïcode/é' },
  'a b/c': { file: 'space\n' },
  'a+': { file: 'plus\n' },
  'keep/k1': { file: 'k1\n' },
  'keep/sub/k2': { file: 'k2\n' },
  'keep/sub/k3': { file: binary(9) },
  'new/deep/dir/file': { file: 'new\n' },
  'new/deep/dir/x': { file: binary(2, 700), exec: true },
  'bin.dat': { file: binary(3, 5000) },
  empty: { file: '' },
  sub: { gitlink: GITLINK_3 },
  sub2: { file: 'submodule became a file\n' },
  z: { file: 'last\n' },
};

const TREE_C: Tree = {
  a: { link: 'a.txt' },
  'a-b/inside': { file: 'a-b is a directory\n' },
  'a.txt': { file: '' },
  'a0/x': { file: 'a0/x\n' },
  'a0/y': { link: '../a.txt' },
  'edit.txt': { file: 'after\n', exec: true },
  'exec.sh': { link: 'unexec.sh' },
  'unexec.sh': { file: '#!/bin/sh\necho unexec\n' },
  f2l: { link: 'edit.txt' },
  l2f: { file: 'link became a file\n', exec: true },
  'y/c': { file: 'y/c is back\n' },
  'ünïcode/é': { file: 'é\n' },
  'ünïcode/ü/ö': { file: 'ö\n' },
  'keep/k1': { file: 'k1\n' },
  'keep/sub/k2': { file: 'k2\n' },
  'keep/sub/k3': { file: binary(9) },
  'new/deep/dir/x': { file: binary(4, 700), exec: true },
  'bin.dat': { file: binary(3, 5000) },
  empty: { gitlink: GITLINK_1 },
  sub2: { gitlink: GITLINK_2 },
  'z/z': { file: 'z is a directory\n' },
  b: { gitlink: GITLINK_3 },
  'ü/ä': { file: 'ä\n' },
  'a b': { file: 'space, a file now\n' },
};

const commits: Record<string, string> = {};

beforeAll(async () => {
  scratch = await ScratchGitRepo.create('archive-base-');
  repo = scratch.dir;
  commits.A = await commitTree(TREE_A, 'A');
  commits.B = await commitTree(TREE_B, 'B');
  commits.C = await commitTree(TREE_C, 'C');
  commits.EMPTY = EMPTY_TREE;
});

afterAll(async () => {
  await scratch?.remove();
});

describe('spliceTreeChanges with real git trees', () => {
  it('builds commits whose trees hold what the cases need', () => {
    const statuses = (from: string, to: string): string[] =>
      changesBetween(commits[from]!, commits[to]!).map(
        (c) => `${c.status} ${c.oldMode}>${c.newMode} ${c.path}`,
      );
    const ab = statuses('A', 'B');
    expect(ab).toEqual(
      expect.arrayContaining([
        'D 100644>000000 a',
        'A 000000>040000 a',
        'A 000000>100755 a/deep/er/est',
        'D 040000>000000 b',
        'D 040000>000000 b/inner',
        'M 100644>100755 exec.sh',
        'M 100755>100644 unexec.sh',
        'T 100644>120000 f2l',
        'T 120000>100644 l2f',
        'D 040000>000000 y',
        'A 000000>100644 y',
        'M 160000>160000 sub',
        'T 160000>100644 sub2',
        'A 000000>040000 new/deep/dir',
        'M 040000>040000 ünïcode',
        'A 000000>120000 ü',
      ]),
    );
    expect(ab.some((line) => line.endsWith(' keep') || line.includes(' keep/'))).toBe(false);
    expect(statuses('B', 'C')).toEqual(
      expect.arrayContaining([
        'T 100644>160000 empty',
        'D 040000>000000 a',
        'A 000000>160000 b',
        'D 120000>000000 ü',
        'A 000000>040000 ü',
        'D 040000>000000 a b',
        'A 000000>100644 a b',
      ]),
    );
    expect(statuses('A', 'C')).toEqual(expect.arrayContaining(['D 040000>000000 b', 'A 000000>160000 b']));
  });

  const pairs: [string, string][] = [
    ['A', 'B'],
    ['B', 'C'],
    ['A', 'C'],
    ['EMPTY', 'A'],
    ['EMPTY', 'C'],
    ['A', 'A'],
  ];
  for (const [from, to] of pairs) {
    const directions: (readonly [string, string])[] =
      from === to
        ? [[from, to]]
        : [
            [from, to],
            [to, from],
          ];
    for (const [base, target] of directions) {
      it(`turns the entries of ${base} into those of ${target}`, () => {
        const baseEntries = entriesOf(commits[base]!);
        const expected = entriesOf(commits[target]!);
        const changes = changesBetween(commits[base]!, commits[target]!);
        const spliced = spliceTreeChanges(baseEntries, changes);
        expect(spliced.entries.map(treeOrderKey)).toEqual(expected.map(treeOrderKey));
        expect(spliced.entries).toStrictEqual(expected);
        // Each entry copied from the base says where it was there, in order; the others are new.
        expect(Array.from(spliced.sources).filter((s) => s < 0).length).toBeLessThanOrEqual(changes.length);
        let previous = -1;
        spliced.entries.forEach((entry, i) => {
          const source = spliced.sources[i]!;
          if (source >= 0) {
            expect(entry).toBe(baseEntries[source]);
            expect(source).toBeGreaterThan(previous);
            previous = source;
          } else {
            expect(baseEntries).not.toContain(entry);
          }
        });
      });
    }
  }

  it('lists tree order as git does', () => {
    // git ls-tree already lists the tree order the archive uses: sorting changes nothing.
    for (const rev of ['A', 'B', 'C']) {
      const listed = nulRecords(git(['ls-tree', '-r', '-t', '-z', '--full-tree', commits[rev]!])).map(
        (r) => r.path,
      );
      expect(entriesOf(commits[rev]!).map((entry) => entry.path)).toEqual(listed);
    }
    expect(
      entriesOf(commits.A!)
        .map((entry) => entry.path)
        .slice(0, 5),
    ).toEqual(['a', 'a-b', 'a.txt', 'a0', 'b']);
  });

  it('does not change the base it is given', () => {
    const base = entriesOf(commits.A!);
    const copy = entriesOf(commits.A!);
    spliceTreeChanges(base, changesBetween(commits.A!, commits.B!));
    expect(base).toStrictEqual(copy);
  });

  it('refuses changes made for another tree', () => {
    expect(() => spliceTreeChanges(entriesOf(commits.B!), changesBetween(commits.A!, commits.B!))).toThrow(
      ArchiveBaseMismatch,
    );
    expect(() => spliceTreeChanges(entriesOf(commits.A!), changesBetween(commits.B!, commits.C!))).toThrow(
      ArchiveBaseMismatch,
    );
    expect(() => spliceTreeChanges([], changesBetween(commits.A!, commits.B!))).toThrow(ArchiveBaseMismatch);
  });
});

describe('spliceTreeChanges with changes made by hand', () => {
  const ID = 'e'.repeat(40);
  const ZERO = '0'.repeat(40);
  const base: SnapshotTarEntry[] = [
    { path: 'd', kind: 'directory' },
    { path: 'd/f', kind: 'file', executable: false, data: Buffer.from('f\n') },
    { path: 'l', kind: 'symlink', linkpath: 'd/f' },
    { path: 'm', kind: 'file', executable: true, data: Buffer.from('m\n') },
    { path: 's', kind: 'directory' },
  ];
  const change = (fields: Partial<TreeChange> & Pick<TreeChange, 'status' | 'path'>): TreeChange => ({
    oldMode: '100644',
    newMode: '100644',
    newId: ID,
    data: Buffer.from('new\n'),
    ...fields,
  });

  it('refuses to modify a path that is not in the base', () => {
    expect(() => spliceTreeChanges(base, [change({ status: 'M', path: 'nope' })])).toThrow(
      ArchiveBaseMismatch,
    );
    // A directory is not a file of the same name.
    expect(() => spliceTreeChanges(base, [change({ status: 'M', path: 'd' })])).toThrow(ArchiveBaseMismatch);
  });

  it('refuses to add a path that is already in the base', () => {
    expect(() => spliceTreeChanges(base, [change({ status: 'A', path: 'm', oldMode: '000000' })])).toThrow(
      ArchiveBaseMismatch,
    );
    expect(() =>
      spliceTreeChanges(base, [change({ status: 'A', path: 'd', oldMode: '000000', newMode: '040000' })]),
    ).toThrow(ArchiveBaseMismatch);
  });

  it('refuses to delete a path that is not in the base', () => {
    const deletion = { oldMode: '100644', newMode: '000000', newId: ZERO, data: undefined };
    expect(() => spliceTreeChanges(base, [change({ status: 'D', path: 'nope', ...deletion })])).toThrow(
      ArchiveBaseMismatch,
    );
    // The directory `d` is there, a file `d` is not.
    expect(() => spliceTreeChanges(base, [change({ status: 'D', path: 'd', ...deletion })])).toThrow(
      ArchiveBaseMismatch,
    );
    expect(() =>
      spliceTreeChanges(base, [change({ status: 'D', path: 'm', ...deletion, oldMode: '040000' })]),
    ).toThrow(ArchiveBaseMismatch);
  });

  it('refuses a symlink whose target is not UTF-8', () => {
    const notUtf8 = Buffer.from([0x74, 0xff, 0xfe]);
    expect(() =>
      spliceTreeChanges(base, [
        change({ status: 'A', path: 'new-link', oldMode: '000000', newMode: '120000', data: notUtf8 }),
      ]),
    ).toThrow(ArchiveBaseMismatch);
    expect(() =>
      spliceTreeChanges(base, [
        change({ status: 'M', path: 'l', oldMode: '120000', newMode: '120000', data: notUtf8 }),
      ]),
    ).toThrow(ArchiveBaseMismatch);
    expect(() =>
      spliceTreeChanges(base, [
        change({ status: 'T', path: 'm', oldMode: '100755', newMode: '120000', data: notUtf8 }),
      ]),
    ).toThrow(ArchiveBaseMismatch);
  });

  it('refuses a file or symlink without content, and unknown modes', () => {
    expect(() => spliceTreeChanges(base, [change({ status: 'M', path: 'm', data: undefined })])).toThrow(
      ArchiveBaseMismatch,
    );
    expect(() =>
      spliceTreeChanges(base, [change({ status: 'A', path: 'x', oldMode: '000000', newMode: '100664' })]),
    ).toThrow(ArchiveBaseMismatch);
    expect(() =>
      spliceTreeChanges(base, [change({ status: 'M', path: 'l', oldMode: '120000', newMode: '100644' })]),
    ).toThrow(ArchiveBaseMismatch);
  });

  it('changes nothing for a modified directory or submodule', () => {
    const treeChange = change({
      status: 'M',
      path: 'd',
      oldMode: '040000',
      newMode: '040000',
      data: undefined,
    });
    const gitlinkChange = change({
      status: 'M',
      path: 's',
      oldMode: '160000',
      newMode: '160000',
      data: undefined,
    });
    expect(spliceTreeChanges(base, [treeChange]).entries).toStrictEqual(base);
    expect(spliceTreeChanges(base, [gitlinkChange]).entries).toStrictEqual(base);
    expect(spliceTreeChanges(base, [treeChange, gitlinkChange]).entries).toStrictEqual(base);
  });

  it('applies a modification, an addition and a deletion', () => {
    const result = spliceTreeChanges(base, [
      change({ status: 'M', path: 'm', oldMode: '100755', newMode: '100644', data: Buffer.from('m2\n') }),
      change({ status: 'A', path: 'c', oldMode: '000000', newMode: '100755', data: Buffer.from('c\n') }),
      change({ status: 'A', path: 'l2', oldMode: '000000', newMode: '120000', data: Buffer.from('m') }),
      change({ status: 'D', path: 'l', oldMode: '120000', newMode: '000000', newId: ZERO, data: undefined }),
    ]).entries;
    expect(result).toStrictEqual([
      { path: 'c', kind: 'file', executable: true, data: Buffer.from('c\n') },
      base[0],
      base[1],
      { path: 'l2', kind: 'symlink', linkpath: 'm' },
      { path: 'm', kind: 'file', executable: false, data: Buffer.from('m2\n') },
      base[4],
    ]);
  });
});

describe('tarBytesOf', () => {
  it('counts a header block per entry and padded content', () => {
    const file = (size: number): SnapshotTarEntry => ({
      path: `f${size}`,
      kind: 'file',
      executable: false,
      data: Buffer.alloc(size),
    });
    expect(tarBytesOf([])).toBe(0);
    expect(tarBytesOf([{ path: 'd', kind: 'directory' }])).toBe(512);
    expect(tarBytesOf([{ path: 'l', kind: 'symlink', linkpath: 'x'.repeat(600) }])).toBe(512);
    expect(tarBytesOf([file(0)])).toBe(512);
    expect(tarBytesOf([file(1)])).toBe(1024);
    expect(tarBytesOf([file(512)])).toBe(1024);
    expect(tarBytesOf([file(513)])).toBe(1536);
    expect(tarBytesOf([file(0), file(1), file(513), { path: 'd', kind: 'directory' }])).toBe(
      512 + 1024 + 1536 + 512,
    );
  });
});

describe('ArchiveBaseCache', () => {
  const entriesNamed = (name: string): SnapshotTarEntry[] => [
    { path: name, kind: 'directory' },
    { path: `${name}/f`, kind: 'file', executable: false, data: Buffer.from(name) },
  ];

  it('gives the entries of a branch only for the sha they were kept for', () => {
    const cache = new ArchiveBaseCache(1_000_000);
    const entries = entriesNamed('one');
    cache.set('branch-1', 'sha-1', entries);
    expect(cache.get('branch-1', 'sha-1')?.entries).toBe(entries);
    expect(cache.get('branch-1', 'sha-2')).toBeNull();
    expect(cache.get('branch-2', 'sha-1')).toBeNull();
    expect(cache.size).toBe(tarBytesOf(entries));
    expect(cache.size).toBe(1024 + 512);
  });

  it('replaces the entries of a branch', () => {
    const cache = new ArchiveBaseCache(1_000_000);
    const first = entriesNamed('one');
    const second = [...entriesNamed('two'), { path: 'big', kind: 'file' as const, data: Buffer.alloc(2000) }];
    cache.set('branch-1', 'sha-1', first);
    cache.set('branch-1', 'sha-2', second);
    expect(cache.get('branch-1', 'sha-1')).toBeNull();
    expect(cache.get('branch-1', 'sha-2')?.entries).toBe(second);
    expect(cache.size).toBe(tarBytesOf(second));
    cache.set('branch-1', 'sha-2', first, 100);
    expect(cache.get('branch-1', 'sha-2')?.entries).toBe(first);
    expect(cache.size).toBe(100);
  });

  it('drops the least recently used branches beyond maxBytes', () => {
    const cache = new ArchiveBaseCache(3000);
    const entries = (name: string): SnapshotTarEntry[] => entriesNamed(name);
    const kept = {
      b1: entries('b1'),
      b2: entries('b2'),
      b3: entries('b3'),
      b4: entries('b4'),
      b5: entries('b5'),
    };
    cache.set('b1', 's1', kept.b1, 1000);
    cache.set('b2', 's2', kept.b2, 1000);
    cache.set('b3', 's3', kept.b3, 1000);
    expect(cache.size).toBe(3000);
    // b1 used: b2 is now the least recently used.
    expect(cache.get('b1', 's1')?.entries).toBe(kept.b1);
    // A miss (another sha) does not count as a use.
    expect(cache.get('b2', 'other')).toBeNull();
    cache.set('b4', 's4', kept.b4, 1000);
    expect(cache.size).toBe(3000);
    expect(cache.get('b2', 's2')).toBeNull();
    // Least recently used now: b3, then b1, then b4.
    cache.set('b5', 's5', kept.b5, 1500);
    expect(cache.get('b3', 's3')).toBeNull();
    expect(cache.get('b1', 's1')).toBeNull();
    expect(cache.get('b4', 's4')?.entries).toBe(kept.b4);
    expect(cache.get('b5', 's5')?.entries).toBe(kept.b5);
    expect(cache.size).toBe(2500);
  });

  it('keeps entries of exactly maxBytes but not larger ones', () => {
    const cache = new ArchiveBaseCache(3000);
    const small = entriesNamed('small');
    cache.set('small', 's', small, 1000);
    cache.set('huge', 'h', entriesNamed('huge'), 3001);
    expect(cache.get('huge', 'h')).toBeNull();
    expect(cache.get('small', 's')?.entries).toBe(small);
    expect(cache.size).toBe(1000);

    // Too large for the cache: the branch's previous entries go too (they are not the last archive's).
    cache.set('small', 's2', entriesNamed('small2'), 4000);
    expect(cache.get('small', 's')).toBeNull();
    expect(cache.get('small', 's2')).toBeNull();
    expect(cache.size).toBe(0);

    const exact = entriesNamed('exact');
    cache.set('exact', 'e', exact, 3000);
    expect(cache.get('exact', 'e')?.entries).toBe(exact);
    expect(cache.size).toBe(3000);
  });

  it('deletes a branch', () => {
    const cache = new ArchiveBaseCache(10_000);
    cache.set('b1', 's1', entriesNamed('b1'), 1000);
    cache.set('b2', 's2', entriesNamed('b2'), 2000);
    cache.delete('b1');
    expect(cache.get('b1', 's1')).toBeNull();
    expect(cache.size).toBe(2000);
    cache.delete('b1');
    cache.delete('unknown');
    expect(cache.size).toBe(2000);
    cache.delete('b2');
    expect(cache.size).toBe(0);
    expect(cache.maxBytes).toBe(10_000);
  });

  it('holds the images it keeps, lends them held, and releases them when they go', async () => {
    const pool = new TarImageBuffers(1_000_000);
    const imageOf = (name: string) => buildTarImage(entriesNamed(name), { mtime: new Date(0) }, pool);
    const one = await imageOf('one');
    const two = await imageOf('two');
    const cache = new ArchiveBaseCache(one.heldBytes + two.heldBytes);
    cache.setImage('b1', 's1', one);
    expect(cache.size).toBe(one.heldBytes);
    const lent = cache.get('b1', 's1');
    expect(lent?.image).toBe(one);
    expect(lent?.entries).toBe(one.entries);
    // Replaced: the cache lets go of it, the borrower still has it until it releases it.
    cache.setImage('b1', 's2', two);
    expect(cache.size).toBe(two.heldBytes);
    expect(one.bytes.length).toBeGreaterThan(0);
    lent!.image!.release();
    expect(() => one.bytes).toThrow(/after its last release/);
    // Evicted beyond maxBytes, or deleted: released.
    const three = await imageOf('three');
    const four = await imageOf('four');
    cache.setImage('b3', 's3', three);
    cache.setImage('b4', 's4', four);
    expect(() => two.bytes).toThrow(/after its last release/);
    cache.delete('b3');
    expect(() => three.bytes).toThrow(/after its last release/);
    expect(cache.size).toBe(four.heldBytes);
    // Too large to keep at all: released at once.
    const small = new ArchiveBaseCache(10);
    const five = await imageOf('five');
    small.setImage('b5', 's5', five);
    expect(small.get('b5', 's5')).toBeNull();
    expect(() => five.bytes).toThrow(/after its last release/);
    expect(cache.get('b4', 's4')?.image).toBe(four);
  });

  it('measures real archive entries by their tar size', () => {
    const cache = new ArchiveBaseCache(10_000_000);
    const entries = entriesOf(commits.A!);
    cache.set('main', commits.A!, entries);
    expect(cache.size).toBe(tarBytesOf(entries));
    expect(cache.get('main', commits.A!)?.entries).toBe(entries);
    expect(cache.get('main', commits.B!)).toBeNull();
  });
});
