import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listingTreeId } from './compare-delta-strategy.js';
import { computeGitTreeId, EMPTY_TREE_ID } from './git-tree-hash.js';

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
