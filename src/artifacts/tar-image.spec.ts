import { describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import {
  createTarballOfEntries,
  SnapshotNotArchivable,
  type SnapshotTarEntry,
  treeOrderKey,
} from './reproducible-tarball.js';
import {
  buildTarImage,
  createTarballOfImage,
  type TarImage,
  TarImageBuffers,
  TarImageUnusable,
} from './tar-image.js';

const COMMIT_ID = 'c'.repeat(40);
const T0 = Date.UTC(2024, 4, 6, 7, 8, 9);

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Deterministic bytes that compress poorly, so the archive spans several deflate blocks. */
function noise(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const keyOf = (e: SnapshotTarEntry): string => treeOrderKey(e.path, e.kind === 'directory');
const inTreeOrder = (entries: SnapshotTarEntry[]): SnapshotTarEntry[] =>
  entries.sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0));

/** A tree with every kind of header: ustar, pax (long and non-ASCII paths, long link), executables, empty. */
function firstTree(): SnapshotTarEntry[] {
  const entries: SnapshotTarEntry[] = [
    { path: 'src', kind: 'directory' },
    { path: 'src/empty.txt', kind: 'file', data: Buffer.alloc(0) },
    { path: 'src/run.sh', kind: 'file', executable: true, data: Buffer.from('#!/bin/sh\necho hi\n') },
    { path: 'src/link', kind: 'symlink', linkpath: 'run.sh' },
    { path: 'src/long-link', kind: 'symlink', linkpath: 't'.repeat(300) },
    { path: 'src/ünïcode.txt', kind: 'file', data: Buffer.from('accents\n') },
    { path: `src/${'p'.repeat(120)}`, kind: 'file', data: Buffer.from('a long path\n') },
    { path: 'vendor', kind: 'directory' },
  ];
  for (let i = 0; i < 600; i++) {
    entries.push({
      path: `vendor/f${String(i).padStart(4, '0')}`,
      kind: 'file',
      executable: i % 7 === 0,
      data: noise(300 + ((i * 37) % 5000), i),
    });
  }
  return inTreeOrder(entries);
}

/** The reference: the tar.gz createTarballOfEntries writes for these entries (with their contents). */
async function reference(entries: SnapshotTarEntry[], mtime: Date): Promise<Buffer> {
  async function* once(): AsyncGenerator<readonly SnapshotTarEntry[]> {
    yield entries;
  }
  return collect(createTarballOfEntries(once(), { mtime, commitId: COMMIT_ID }).stream);
}

/** For each entry of `next`, the index of the same entry object in `image`, or -1. */
function sourcesIn(image: TarImage, next: readonly SnapshotTarEntry[]): Int32Array {
  const index = new Map(image.entries.map((e, i) => [e, i]));
  return Int32Array.from(next.map((e) => index.get(e) ?? -1));
}

describe('TarImage', () => {
  it('holds the exact tar createTarballOfEntries writes, and compresses to the same bytes', async () => {
    const entries = firstTree();
    const pool = new TarImageBuffers(64 * 1024 * 1024);
    const mtime = new Date(T0);
    const image = await buildTarImage(entries, { mtime, commitId: COMMIT_ID }, pool);
    const expected = await reference(entries, mtime);
    expect(image.bytes.equals(gunzipSync(expected))).toBe(true);
    // More than one deflate block, so the blocks' dictionaries are exercised.
    expect(image.bytes.length).toBeGreaterThan(1024 * 1024);
    for (const level of [1, 6, 9]) {
      async function* once(): AsyncGenerator<readonly SnapshotTarEntry[]> {
        yield entries;
      }
      const fromEntries = createTarballOfEntries(once(), { mtime, commitId: COMMIT_ID, level });
      const fromImage = createTarballOfImage(image, { level });
      const [a, b] = await Promise.all([collect(fromImage.stream), collect(fromEntries.stream)]);
      expect(a.equals(b)).toBe(true);
      expect(await fromImage.digest).toEqual({
        size: b.length,
        sha256: createHash('sha256').update(b).digest('hex'),
      });
    }
    image.release();
  });

  it('copies unchanged entries from the previous image, revision after revision, exactly', async () => {
    const pool = new TarImageBuffers(64 * 1024 * 1024);
    // What each path holds, kept apart: the images' entries leave out the contents they hold.
    let tree = firstTree();
    const contents = new Map(tree.map((e) => [e.path, e.data]));
    let image = await buildTarImage(tree, { mtime: new Date(T0), commitId: COMMIT_ID }, pool);
    tree = [...image.entries];
    const edits: ((entries: SnapshotTarEntry[], round: number) => SnapshotTarEntry[])[] = [
      // One file changed in place.
      (entries, round) =>
        entries.map((e) => (e.path === 'vendor/f0300' ? { ...e, data: Buffer.from(`round ${round}\n`) } : e)),
      // Added and removed files, the first and the last entry among them.
      (entries, round) => [
        { path: 'a-first', kind: 'file', data: Buffer.from(`first ${round}`) },
        ...entries.filter((e) => e.path !== 'vendor/f0001' && e.path !== 'vendor/f0599'),
        { path: 'zz-last', kind: 'file', data: noise(4000, round) },
      ],
      // A file becomes a symlink, an executable bit flips, a pax entry changes.
      (entries) =>
        entries.map((e) => {
          if (e.path === 'vendor/f0100') return { path: e.path, kind: 'symlink', linkpath: 'f0101' };
          if (e.path === 'vendor/f0200') return { ...e, executable: true, data: contents.get(e.path) };
          if (e.path === 'src/long-link') return { ...e, linkpath: 'u'.repeat(260) };
          return e;
        }),
      // Nothing changed but the time.
      (entries) => entries,
    ];
    // Times on both sides of a change in the number of significant octal digits, and back.
    const times = [T0 + 1000, 8 ** 10 * 1000 - 1000, 8 ** 10 * 1000, T0 + 5000];
    for (const [round, edit] of edits.entries()) {
      const next = inTreeOrder(edit(tree, round));
      for (const e of next) if (e.data) contents.set(e.path, e.data);
      const mtime = new Date(times[round]!);
      const built = await buildTarImage(next, { mtime, commitId: COMMIT_ID }, pool, {
        image,
        sources: sourcesIn(image, next),
      });
      const full = next.map((e) => (e.kind === 'file' ? { ...e, data: contents.get(e.path) } : e));
      const expected = await reference(full, mtime);
      expect(built.bytes.equals(gunzipSync(expected))).toBe(true);
      expect((await collect(createTarballOfImage(built, {}).stream)).equals(expected)).toBe(true);
      image.release();
      image = built;
      tree = [...built.entries];
    }
    image.release();
  });

  it('copies large runs in parts and stays exact', async () => {
    const MiB = 1024 * 1024;
    const pool = new TarImageBuffers(256 * MiB);
    const tree: SnapshotTarEntry[] = [
      { path: 'a', kind: 'file', data: Buffer.from('a\n') },
      { path: 'big1', kind: 'file', data: Buffer.alloc(9 * MiB, 1) },
      { path: 'big2', kind: 'file', data: Buffer.alloc(9 * MiB, 2) },
      { path: 'huge', kind: 'file', data: Buffer.alloc(17 * MiB, 3) },
      { path: 'z', kind: 'file', data: Buffer.from('z\n') },
    ];
    const contents = new Map(tree.map((e) => [e.path, e.data]));
    const first = await buildTarImage(tree, { mtime: new Date(T0) }, pool);
    const next = first.entries.map((e) => (e.path === 'z' ? { ...e, data: Buffer.from('z2\n') } : e));
    contents.set('z', Buffer.from('z2\n'));
    const mtime = new Date(T0 + 1000);
    const built = await buildTarImage(next, { mtime }, pool, {
      image: first,
      sources: sourcesIn(first, next),
    });
    const full = next.map((e) => ({ ...e, data: contents.get(e.path) }));
    async function* once(): AsyncGenerator<readonly SnapshotTarEntry[]> {
      yield full;
    }
    const expected = gunzipSync(await collect(createTarballOfEntries(once(), { mtime, level: 1 }).stream));
    expect(built.bytes.equals(expected)).toBe(true);
    first.release();
    built.release();
  });

  it('keeps only the contents a header written by node-tar needs', async () => {
    const pool = new TarImageBuffers(64 * 1024 * 1024);
    const image = await buildTarImage(firstTree(), { mtime: new Date(T0) }, pool);
    const files = image.entries.filter((e) => e.kind === 'file');
    expect(files.filter((e) => e.data).map((e) => e.path)).toEqual([
      `src/${'p'.repeat(120)}`,
      'src/ünïcode.txt',
    ]);
    // Entries without their content cannot be written from the entries alone.
    async function* once(): AsyncGenerator<readonly SnapshotTarEntry[]> {
      yield image.entries;
    }
    await expect(collect(createTarballOfEntries(once(), { mtime: new Date(T0) }).stream)).rejects.toThrow(
      SnapshotNotArchivable,
    );
    // Nor into an image that does not copy them.
    await expect(buildTarImage(image.entries, { mtime: new Date(T0) }, pool)).rejects.toThrow(
      TarImageUnusable,
    );
    // Nor stamped with a time the ustar field cannot hold.
    await expect(
      buildTarImage(image.entries, { mtime: new Date(-1000) }, pool, {
        image,
        sources: sourcesIn(image, image.entries),
      }),
    ).rejects.toThrow(TarImageUnusable);
    image.release();
  });

  it('returns its buffer for reuse once the last holder has released it, and refuses use after that', async () => {
    const pool = new TarImageBuffers(64 * 1024 * 1024);
    const entries = firstTree();
    const image = await buildTarImage(entries, { mtime: new Date(T0) }, pool);
    const expected = Buffer.from(image.bytes);
    // The archive stream holds the image until it has been read.
    const tarball = createTarballOfImage(image, {});
    image.release();
    expect(pool.size).toBe(0);
    expect(gunzipSync(await collect(tarball.stream)).equals(expected)).toBe(true);
    expect(pool.size).toBe(image.heldBytes);
    expect(() => image.bytes).toThrow(/after its last release/);
    expect(() => image.retain()).toThrow(/after its last release/);
    // The same buffer serves the next image of about the same size.
    const again = await buildTarImage(entries, { mtime: new Date(T0 + 1000) }, pool);
    expect(pool.size).toBe(0);
    expect(again.heldBytes).toBe(image.heldBytes);
    again.release();
  });

  it('keeps spare buffers within its budget, best fit first', () => {
    const MiB = 1024 * 1024;
    const pool = new TarImageBuffers(10 * MiB);
    const small = pool.take(1000);
    const large = pool.take(3 * MiB);
    expect(small.length).toBeGreaterThanOrEqual(1000);
    expect(large.length).toBeGreaterThanOrEqual(3 * MiB);
    pool.give(large);
    pool.give(small);
    expect(pool.size).toBe(small.length + large.length);
    expect(pool.take(900)).toBe(small);
    // Far larger than needed: a new buffer instead.
    expect(pool.take(100)).not.toBe(large);
    expect(pool.take(2 * MiB)).toBe(large);
    expect(pool.size).toBe(0);
    // Beyond the budget the oldest spare goes; a buffer larger than the budget is never kept.
    const buffers = [1, 2, 3].map(() => pool.take(4 * MiB));
    for (const b of buffers) pool.give(b);
    expect(pool.size).toBe(2 * buffers[0]!.length);
    expect(pool.take(4 * MiB)).toBe(buffers[1]);
    pool.give(Buffer.alloc(11 * MiB));
    expect(pool.size).toBe(buffers[0]!.length);
  });
});
