import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Header } from 'tar';
import {
  createReproducibleTarball,
  createTarballOfEntries,
  type SnapshotTarEntry,
} from '../../artifacts/reproducible-tarball.js';
import { listingTreeId } from './git-tree-hash.js';
import { ArchiveRejected, readSnapshotArchive } from './snapshot-archive-reader.js';
import { readBaseSnapshot } from './snapshot-listing.js';

const MTIME = new Date('2024-03-01T12:00:00Z');
const COMMIT = 'c'.repeat(40);
let root: string;
let snapshot: string;

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** The tree id git records for the files of `dir` (empty directories are nothing to git). */
function gitTreeOf(dir: string): string {
  const env = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };
  const gitDir = join(root, 'tree.git');
  execFileSync('git', ['init', '-q', '--bare', gitDir], { env });
  const git = (args: string[]): string =>
    execFileSync('git', [`--git-dir=${gitDir}`, `--work-tree=${dir}`, ...args], { env })
      .toString()
      .trim();
  git(['add', '-A']);
  return git(['write-tree']);
}

/** The tar stream cut into chunks of `size` bytes, as a decompressor hands it over. */
function chunked(tar: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < tar.length; at += size) out.push(tar.subarray(at, at + size));
  return out;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'archive-reader-'));
  snapshot = join(root, 'snapshot');
  const long = `${'deep-directory-name/'.repeat(8)}${'f'.repeat(90)}.txt`; // over 255 bytes: a pax path
  await mkdir(join(snapshot, long, '..'), { recursive: true });
  await writeFile(join(snapshot, long), 'long path\n');
  await writeFile(join(snapshot, 'ünï cødé.txt'), 'unicode\n');
  await writeFile(join(snapshot, 'tool.sh'), '#!/bin/sh\n');
  await chmod(join(snapshot, 'tool.sh'), 0o755);
  await writeFile(join(snapshot, 'empty.txt'), '');
  await writeFile(join(snapshot, 'big.bin'), Buffer.alloc(300_000, 7));
  await symlink('tool.sh', join(snapshot, 'link'));
  await mkdir(join(snapshot, 'vendor/submodule'), { recursive: true });
  await mkdir(join(snapshot, 'a/b'), { recursive: true });
  await writeFile(join(snapshot, 'a/b/c.txt'), 'c\n');
  await writeFile(join(snapshot, 'a.txt'), 'a\n');
}, 30_000);

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('readSnapshotArchive and createTarballOfEntries', () => {
  it.each([512, 1000, 64 * 1024])(
    'read back the entries of an archive (chunks of %i bytes) and write the same bytes again',
    async (chunkSize) => {
      const original = await collect(
        createReproducibleTarball(snapshot, { mtime: MTIME, commitId: COMMIT }).stream,
      );
      const tar = gunzipSync(original);
      async function* entries(): AsyncGenerator<SnapshotTarEntry[]> {
        for await (const batch of readSnapshotArchive(chunked(tar, chunkSize), { maxEntryBytes: 1 << 20 })) {
          yield batch.map((e) =>
            e.kind === 'file'
              ? { path: e.path, kind: 'file', executable: (e.mode & 0o100) !== 0, data: Buffer.from(e.data) }
              : { path: e.path, kind: e.kind, linkpath: e.linkpath },
          );
        }
      }
      const rewritten = await collect(
        createTarballOfEntries(entries(), { mtime: MTIME, commitId: COMMIT }).stream,
      );
      expect(rewritten.equals(original)).toBe(true);
    },
  );

  it('lists the snapshot with the tree id git gives its directory, and keeps its empty directories', async () => {
    const tar = gunzipSync(
      await collect(createReproducibleTarball(snapshot, { mtime: MTIME, commitId: COMMIT }).stream),
    );
    const base = await readBaseSnapshot(chunked(tar, 4096), {
      keep: new Set(['link', 'tool.sh']),
      format: 'sha1',
      maxEntryBytes: 1 << 20,
    });
    expect(listingTreeId(base.files)).toBe(gitTreeOf(snapshot));
    expect([...base.emptyDirectories]).toEqual(['vendor/submodule']);
    expect(base.contents.get('link')?.toString()).toBe('tool.sh');
    expect(base.files.get('tool.sh')?.mode).toBe('100755');
    expect(base.contents.has('a.txt')).toBe(false);
  });

  it('rejects a truncated archive, a bad checksum and a file larger than allowed', async () => {
    const tar = gunzipSync(
      await collect(createReproducibleTarball(snapshot, { mtime: MTIME, commitId: COMMIT }).stream),
    );
    const drain = async (bytes: Buffer, maxEntryBytes = 1 << 20): Promise<unknown> => {
      try {
        for await (const batch of readSnapshotArchive([bytes], { maxEntryBytes })) void batch;
        return null;
      } catch (e) {
        return e;
      }
    };
    expect(await drain(tar.subarray(0, tar.length - 2048))).toBeInstanceOf(ArchiveRejected);
    const corrupt = Buffer.from(tar);
    // The first entry's header, after the global header and its record.
    corrupt[1024 + 1] = corrupt[1024 + 1]! ^ 1;
    expect(await drain(corrupt)).toBeInstanceOf(ArchiveRejected);
    expect(String(await drain(tar, 1000))).toMatch(/big\.bin.*larger than 1000 bytes/);
    // Anything a commit cannot hold (a fifo here) rejects the archive.
    const fifo = new Header({ path: 'pipe', type: 'FIFO', mode: 0o644, size: 0, mtime: MTIME });
    fifo.encode();
    expect(String(await drain(Buffer.concat([fifo.block!, Buffer.alloc(1024)])))).toMatch(/type "6"/);
  });
});
