import { describe, expect, it } from '@jest/globals';
import {
  EMPTY_TREE_ID,
  gitObjectId,
  listingTreeId,
  ListingTree,
  type SnapshotFileEntry,
} from './git-tree-hash.js';

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
