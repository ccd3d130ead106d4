import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  computeGitTreeId,
  EMPTY_TREE_ID,
  gitObjectId,
  listingTreeId,
  ListingTree,
  type SnapshotFileEntry,
} from './git-tree-hash.js';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'listing-tree-'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('listingTreeId', () => {
  it('gives the tree id computeGitTreeId gives for the same files (nested directories, git order, modes)', async () => {
    const files: Record<string, string> = {
      'README.md': '# r\n',
      'a.txt': 'a\n',
      'a-b': 'ab\n',
      'a/inner.txt': 'inner\n',
      'a/b/c/d/deep.txt': 'deep\n',
      'z/last.txt': 'z\n',
    };
    for (const [path, content] of Object.entries(files)) {
      await mkdir(join(root, path, '..'), { recursive: true });
      await writeFile(join(root, path), content);
    }
    await chmod(join(root, 'a-b'), 0o755);
    await symlink('../README.md', join(root, 'z', 'link'));
    const hashed = await computeGitTreeId(root, { listFiles: true });
    expect(listingTreeId(hashed.files!)).toBe(hashed.treeId);
    expect(listingTreeId(new Map())).toBe(EMPTY_TREE_ID.sha1);
  });
});

describe('ListingTree.idAfter', () => {
  const blob = (text: string): SnapshotFileEntry => ({
    mode: '100644',
    blobId: gitObjectId('blob', Buffer.from(text)),
  });

  /** A pseudo-random sequence, the same every run. */
  function random(seed: number): () => number {
    let state = seed;
    return () => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return state / 2147483648;
    };
  }

  it('gives the id of the changed listing hashed from scratch, for many random changes', () => {
    const next = random(7);
    const pick = <T>(items: T[]): T => items[Math.floor(next() * items.length)]!;
    const names = ['a', 'b', 'a.b', 'a-b', 'c0', 'ü', 'z'];
    const randomPath = (): string =>
      Array.from({ length: 1 + Math.floor(next() * 4) }, () => pick(names)).join('/');
    for (let round = 0; round < 200; round++) {
      const listing = new Map<string, SnapshotFileEntry>();
      for (let i = 0; i < 40; i++) {
        const path = randomPath();
        // No path may be both a file and a directory.
        const clashes = [...listing.keys()].some((p) => p.startsWith(`${path}/`) || path.startsWith(`${p}/`));
        if (!clashes) listing.set(path, blob(`${round}:${i}`));
      }
      const tree = new ListingTree(listing);
      const after = new Map(listing);
      const removed = [...listing.keys()].filter(() => next() < 0.3);
      for (const path of removed) after.delete(path);
      const written: [string, SnapshotFileEntry][] = [];
      for (let i = 0; i < 5; i++) {
        const path = randomPath();
        const clashes = [...after.keys()].some((p) => p.startsWith(`${path}/`) || path.startsWith(`${p}/`));
        if (clashes) continue;
        const entry = next() < 0.5 ? blob(`new ${round}:${i}`) : { ...blob(path), mode: '100755' as const };
        after.set(path, entry);
        written.push([path, entry]);
      }
      expect(tree.idAfter(removed, written)).toBe(listingTreeId(after));
      // The tree itself is unchanged.
      expect(tree.idAfter([], [])).toBe(tree.rootId);
    }
  });

  it('removing everything gives the empty tree', () => {
    const listing = new Map([
      ['a/b/c.txt', blob('c')],
      ['d.txt', blob('d')],
    ]);
    expect(new ListingTree(listing).idAfter(['a/b/c.txt', 'd.txt'], [])).toBe(EMPTY_TREE_ID.sha1);
  });
});
