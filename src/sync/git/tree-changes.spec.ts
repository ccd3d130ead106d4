import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chmod, mkdir, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  hasBlobContent,
  parseCatFileBatch,
  parseRawTreeDiff,
  TreeChangesUnreadable,
  type TreeChange,
} from './tree-changes.js';
import { ScratchGitRepo } from '../../../test/support/scratch-git-repo.js';

const ZERO_ID = '0'.repeat(40);
const SPACED = 'spaced dir/naïve café ☕.txt';
const SPACED_ADDED = 'spaced dir/日本語 file.txt';

let scratch: ScratchGitRepo;
let repo: string;

const git = (args: string[], input?: Buffer | string): Buffer => scratch.git(args, input);

const revParse = (rev: string): string => git(['rev-parse', rev]).toString('utf8').trim();

const commit = (message: string): string => scratch.commitAll(message);

async function put(path: string, content: string | Buffer): Promise<void> {
  const full = join(repo, path);
  await mkdir(join(full, '..'), { recursive: true });
  await writeFile(full, content);
}

function rawDiff(from: string, to: string): Buffer {
  return git(['diff-tree', '-r', '-t', '-z', '--raw', '--no-renames', '--no-abbrev', from, to]);
}

/** A binary blob with every byte value, newlines and NULs included. */
const BINARY = Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 7 + 3) % 256));

let commitA: string;
let commitB: string;

beforeAll(async () => {
  scratch = await ScratchGitRepo.create('tree-changes-');
  repo = scratch.dir;

  await put('modified.txt', 'one\n');
  await put('old/gone.txt', 'going away\n');
  await put('tool.sh', '#!/bin/sh\necho tool\n');
  await put('becomes-link', 'a plain file\n');
  await put(SPACED, 'café\n');
  commitA = commit('A');

  await put('modified.txt', 'two\n');
  await put('new/deep/dir/added.bin', BINARY);
  await rm(join(repo, 'old'), { recursive: true });
  await chmod(join(repo, 'tool.sh'), 0o755);
  await unlink(join(repo, 'becomes-link'));
  await symlink('modified.txt', join(repo, 'becomes-link'));
  await put(SPACED, 'crème brûlée\n');
  await put(SPACED_ADDED, 'こんにちは\n');
  commitB = commit('B');
});

afterAll(async () => {
  await scratch?.remove();
});

describe('hasBlobContent', () => {
  it('holds for files and symlinks only', () => {
    expect(['100644', '100755', '120000'].map(hasBlobContent)).toEqual([true, true, true]);
    expect(['040000', '160000', '000000'].map(hasBlobContent)).toEqual([false, false, false]);
  });
});

describe('parseRawTreeDiff', () => {
  it('reads what real git diff-tree reports between two commits', () => {
    const changes = parseRawTreeDiff(rawDiff(commitA, commitB));
    const idInB = (path: string): string => revParse(`${commitB}:${path}`);
    const expected: TreeChange[] = [
      {
        status: 'T',
        path: 'becomes-link',
        oldMode: '100644',
        newMode: '120000',
        newId: idInB('becomes-link'),
      },
      {
        status: 'M',
        path: 'modified.txt',
        oldMode: '100644',
        newMode: '100644',
        newId: idInB('modified.txt'),
      },
      { status: 'A', path: 'new', oldMode: '000000', newMode: '040000', newId: idInB('new') },
      { status: 'A', path: 'new/deep', oldMode: '000000', newMode: '040000', newId: idInB('new/deep') },
      {
        status: 'A',
        path: 'new/deep/dir',
        oldMode: '000000',
        newMode: '040000',
        newId: idInB('new/deep/dir'),
      },
      {
        status: 'A',
        path: 'new/deep/dir/added.bin',
        oldMode: '000000',
        newMode: '100644',
        newId: idInB('new/deep/dir/added.bin'),
      },
      { status: 'D', path: 'old', oldMode: '040000', newMode: '000000', newId: ZERO_ID },
      { status: 'D', path: 'old/gone.txt', oldMode: '100644', newMode: '000000', newId: ZERO_ID },
      { status: 'M', path: 'spaced dir', oldMode: '040000', newMode: '040000', newId: idInB('spaced dir') },
      { status: 'M', path: SPACED, oldMode: '100644', newMode: '100644', newId: idInB(SPACED) },
      { status: 'A', path: SPACED_ADDED, oldMode: '000000', newMode: '100644', newId: idInB(SPACED_ADDED) },
      { status: 'M', path: 'tool.sh', oldMode: '100644', newMode: '100755', newId: idInB('tool.sh') },
    ];
    expect(changes).toStrictEqual(expected);
  });

  it('reads the reverse diff', () => {
    const changes = parseRawTreeDiff(rawDiff(commitB, commitA));
    const byPath = new Map(changes.map((change) => [change.path, change]));
    expect(byPath.get('becomes-link')).toMatchObject({ status: 'T', oldMode: '120000', newMode: '100644' });
    expect(byPath.get('new/deep/dir/added.bin')).toMatchObject({ status: 'D', newId: ZERO_ID });
    expect(byPath.get('new')).toMatchObject({ status: 'D', oldMode: '040000', newMode: '000000' });
    expect(byPath.get('old')).toMatchObject({ status: 'A', newId: revParse(`${commitA}:old`) });
    expect(byPath.get('tool.sh')).toMatchObject({ status: 'M', oldMode: '100755', newMode: '100644' });
    expect(byPath.get(SPACED)).toMatchObject({ status: 'M', newId: revParse(`${commitA}:${SPACED}`) });
    expect(changes).toHaveLength(12);
  });

  it('reads no changes from empty output', () => {
    expect(parseRawTreeDiff(rawDiff(commitA, commitA))).toEqual([]);
    expect(parseRawTreeDiff(Buffer.alloc(0))).toEqual([]);
  });

  it('refuses a truncated record', () => {
    const raw = rawDiff(commitA, commitB);
    // Without the path's final NUL; without the path; in the middle of the metadata.
    expect(() => parseRawTreeDiff(raw.subarray(0, raw.length - 1))).toThrow(TreeChangesUnreadable);
    const firstMetaEnd = raw.indexOf(0);
    expect(() => parseRawTreeDiff(raw.subarray(0, firstMetaEnd + 1))).toThrow(TreeChangesUnreadable);
    expect(() => parseRawTreeDiff(raw.subarray(0, 20))).toThrow(TreeChangesUnreadable);
  });

  it('refuses a path that is not UTF-8', () => {
    const id = 'a'.repeat(40);
    const raw = Buffer.concat([
      Buffer.from(`:100644 100644 ${id} ${id} M\0`, 'latin1'),
      Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x74, 0x78, 0x74]),
      Buffer.from([0]),
    ]);
    expect(() => parseRawTreeDiff(raw)).toThrow(TreeChangesUnreadable);
    // The same record with a valid name is read.
    const valid = Buffer.from(`:100644 100644 ${id} ${id} M\0f.txt\0`, 'latin1');
    expect(parseRawTreeDiff(valid)).toEqual([
      { status: 'M', path: 'f.txt', oldMode: '100644', newMode: '100644', newId: id },
    ]);
  });

  it('refuses statuses other than A, D, M and T', () => {
    const id = 'b'.repeat(40);
    for (const status of ['C', 'R', 'C100', 'R100', 'U', 'X', '']) {
      const raw = Buffer.from(`:100644 100644 ${id} ${id} ${status}\0a\0b\0`, 'utf8');
      expect(() => parseRawTreeDiff(raw)).toThrow(TreeChangesUnreadable);
    }
  });

  it('refuses malformed metadata', () => {
    const id = 'c'.repeat(40);
    for (const meta of [
      `100644 100644 ${id} ${id} M`, // no colon
      `:10064 100644 ${id} ${id} M`, // short mode
      `:100644 100644 ${id} ${id.slice(1)} M`, // abbreviated id
      `:100644 100644 ${id} ${id.toUpperCase()} M`,
    ]) {
      expect(() => parseRawTreeDiff(Buffer.from(`${meta}\0a\0`, 'utf8'))).toThrow(TreeChangesUnreadable);
    }
  });
});

describe('parseCatFileBatch', () => {
  let binaryId: string;
  let emptyId: string;

  beforeAll(() => {
    binaryId = git(['hash-object', '-w', '--stdin'], BINARY).toString('utf8').trim();
    emptyId = git(['hash-object', '-w', '--stdin'], Buffer.alloc(0)).toString('utf8').trim();
  });

  const batch = (ids: readonly string[]): Buffer =>
    git(['cat-file', '--batch'], ids.map((id) => `${id}\n`).join(''));

  it('reads the exact bytes of each blob asked for', () => {
    const output = batch([binaryId, emptyId]);
    const contents = parseCatFileBatch(output, [binaryId, emptyId]);
    expect([...contents.keys()]).toEqual([binaryId, emptyId]);
    expect(Buffer.compare(contents.get(binaryId)!, BINARY)).toBe(0);
    expect(contents.get(binaryId)!.length).toBe(BINARY.length);
    expect(contents.get(emptyId)!.length).toBe(0);
  });

  it('reads the blobs in the other order too, and no blobs from no output', () => {
    const contents = parseCatFileBatch(batch([emptyId, binaryId]), [emptyId, binaryId]);
    expect(contents.get(emptyId)).toEqual(Buffer.alloc(0));
    expect(contents.get(binaryId)).toEqual(BINARY);
    expect(parseCatFileBatch(Buffer.alloc(0), []).size).toBe(0);
  });

  it('refuses a missing object', () => {
    const missing = 'd'.repeat(40);
    const output = batch([binaryId, missing]);
    expect(output.subarray(output.length - 49).toString('latin1')).toBe(`${missing} missing\n`);
    expect(() => parseCatFileBatch(output, [binaryId, missing])).toThrow(TreeChangesUnreadable);
  });

  it('refuses an object that is not a blob', () => {
    const tree = revParse(`${commitB}^{tree}`);
    expect(() => parseCatFileBatch(batch([tree]), [tree])).toThrow(TreeChangesUnreadable);
  });

  it('refuses answers in another order than asked', () => {
    const output = batch([binaryId, emptyId]);
    expect(() => parseCatFileBatch(output, [emptyId, binaryId])).toThrow(TreeChangesUnreadable);
  });

  it('refuses output beyond what was asked for', () => {
    const output = batch([binaryId, emptyId]);
    expect(() => parseCatFileBatch(output, [binaryId])).toThrow(TreeChangesUnreadable);
    expect(() => parseCatFileBatch(Buffer.concat([output, Buffer.from('x')]), [binaryId, emptyId])).toThrow(
      TreeChangesUnreadable,
    );
    expect(() => parseCatFileBatch(Buffer.concat([output, Buffer.from('\n')]), [binaryId, emptyId])).toThrow(
      TreeChangesUnreadable,
    );
  });

  it('refuses output cut short', () => {
    const output = batch([binaryId, emptyId]);
    const firstHeaderEnd = output.indexOf(0x0a);
    for (const length of [
      output.length - 1, // the empty blob's final newline
      firstHeaderEnd + 1 + BINARY.length + 1 + 10, // in the second header
      firstHeaderEnd + 1 + BINARY.length, // the binary blob's final newline
      firstHeaderEnd + 1 + 100, // in the binary content
      firstHeaderEnd, // the first header's newline
      0,
    ]) {
      expect(() => parseCatFileBatch(output.subarray(0, length), [binaryId, emptyId])).toThrow(
        TreeChangesUnreadable,
      );
    }
  });

  it('refuses content whose size the header misstates', () => {
    const output = batch([binaryId]);
    const header = `${binaryId} blob ${BINARY.length}\n`;
    expect(output.subarray(0, header.length).toString('latin1')).toBe(header);
    const shorter = Buffer.concat([
      Buffer.from(`${binaryId} blob ${BINARY.length - 1}\n`),
      output.subarray(header.length),
    ]);
    expect(() => parseCatFileBatch(shorter, [binaryId])).toThrow(TreeChangesUnreadable);
  });
});
