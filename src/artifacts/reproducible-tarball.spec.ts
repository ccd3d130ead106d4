import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  appendFile,
  chmod,
  link,
  mkdir,
  mkdtemp,
  rm,
  symlink,
  truncate,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gunzipSync } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import {
  createReproducibleTarball,
  createTarballOfEntries,
  SnapshotCapture,
  SnapshotNotArchivable,
  type SnapshotTarEntry,
} from './reproducible-tarball.js';

const COMMIT_TIME = new Date('2024-05-06T07:08:09Z');
const COMMIT_ID = 'a'.repeat(40);

interface ListedEntry {
  path: string;
  type: string;
  mode: number | undefined;
  uid: number | undefined;
  gid: number | undefined;
  uname: string | undefined;
  gname: string | undefined;
  mtime: number | undefined;
  linkpath: string | undefined;
  sha256: string;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Every entry of a .tar.gz as node-tar parses it (pax records applied). */
async function listEntries(archive: Buffer): Promise<ListedEntry[]> {
  const entries: ListedEntry[] = [];
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      const hash = createHash('sha256');
      entry.on('data', (chunk: Buffer) => hash.update(chunk));
      entry.on('end', () =>
        entries.push({
          path: entry.path,
          type: entry.type,
          mode: entry.mode,
          uid: entry.uid,
          gid: entry.gid,
          uname: entry.uname,
          gname: entry.gname,
          mtime: entry.mtime?.getTime(),
          linkpath: entry.linkpath,
          sha256: hash.digest('hex'),
        }),
      );
    },
  });
  await pipeline(Readable.from([archive]), parser as unknown as Writable);
  return entries;
}

/** `size` bytes that depend only on `seed`: SHA-256 in counter mode. */
function pseudoRandomBytes(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  for (let at = 0, block = 0; at < size; at += 32, block++) {
    createHash('sha256').update(`${seed}:${block}`).digest().copy(out, at);
  }
  return out;
}

describe('createReproducibleTarball', () => {
  let scratch: string;
  let counter = 0;

  beforeEach(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'reposync-tarball-spec-'));
  });
  afterEach(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  /** A snapshot-like tree; `variant` changes everything git does not record (times, group bits, order). */
  async function makeTree(variant: 0 | 1): Promise<string> {
    const dir = join(scratch, `tree-${counter++}`);
    const files: Array<[string, string | Buffer, number]> = [
      ['b.txt', 'bee\n', 0o644],
      ['a-b', 'dash\n', 0o644],
      ['a/c.txt', 'in a\n', 0o644],
      ['a/deeper/run.sh', '#!/bin/sh\necho hi\n', 0o755],
      ['empty', '', 0o644],
      ['bin.dat', Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 256)), 0o644],
      ['ünï cødé 日本.txt', 'unicode\n', 0o644],
      [`${'long-directory-name-'.repeat(6)}/${'f'.repeat(120)}.txt`, 'long\n', 0o644],
    ];
    if (variant === 1) files.reverse();
    for (const [path, content, mode] of files) {
      await mkdir(join(dir, path, '..'), { recursive: true });
      await writeFile(join(dir, path), content);
      // Group/other bits git ignores, and times that differ per checkout.
      await chmod(join(dir, path), variant === 1 ? mode | 0o070 : mode);
      await utimes(join(dir, path), 1000 + variant, 2000 + variant);
    }
    await symlink('a/c.txt', join(dir, 'link-to-c'));
    await symlink('a', join(dir, 'link-to-dir'));
    await mkdir(join(dir, 'submodule-placeholder'));
    await mkdir(join(dir, '.git', 'objects'), { recursive: true });
    await writeFile(join(dir, '.git', 'HEAD'), 'ref: refs/heads/main\n');
    if (variant === 1) await chmod(join(dir, 'a'), 0o775);
    return dir;
  }

  it('writes entries in git tree order with git modes, uid/gid 0, no names and the commit time', async () => {
    const dir = await makeTree(0);
    const { stream } = createReproducibleTarball(dir, { mtime: new Date(COMMIT_TIME.getTime() + 999) });
    const entries = await listEntries(await collect(stream));

    expect(entries.map((e) => e.path)).toEqual([
      'a-b',
      'a/',
      'a/c.txt',
      'a/deeper/',
      'a/deeper/run.sh',
      'b.txt',
      'bin.dat',
      'empty',
      'link-to-c',
      'link-to-dir',
      `${'long-directory-name-'.repeat(6)}/`,
      `${'long-directory-name-'.repeat(6)}/${'f'.repeat(120)}.txt`,
      'submodule-placeholder/',
      'ünï cødé 日本.txt',
    ]);
    for (const entry of entries) {
      expect(entry).toMatchObject({ uid: 0, gid: 0, uname: '', gname: '', mtime: COMMIT_TIME.getTime() });
    }
    const byPath = new Map(entries.map((e) => [e.path, e]));
    expect(byPath.get('a/')).toMatchObject({ type: 'Directory', mode: 0o755 });
    expect(byPath.get('a/deeper/run.sh')).toMatchObject({ type: 'File', mode: 0o755 });
    expect(byPath.get('b.txt')).toMatchObject({ type: 'File', mode: 0o644 });
    expect(byPath.get('link-to-c')).toMatchObject({ type: 'SymbolicLink', linkpath: 'a/c.txt', mode: 0o777 });
    expect(byPath.get('link-to-dir')).toMatchObject({ type: 'SymbolicLink', linkpath: 'a' });
    expect(byPath.get('bin.dat')?.sha256).toBe(
      createHash('sha256')
        .update(Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 256)))
        .digest('hex'),
    );
    expect(entries.some((e) => e.path.includes('.git'))).toBe(false);
  });

  it('gives byte-identical output for the same tree whatever the checkout looked like', async () => {
    const first = createReproducibleTarball(await makeTree(0), { mtime: COMMIT_TIME, commitId: COMMIT_ID });
    const second = createReproducibleTarball(await makeTree(1), { mtime: COMMIT_TIME, commitId: COMMIT_ID });
    const [a, b] = await Promise.all([collect(first.stream), collect(second.stream)]);
    expect(a.equals(b)).toBe(true);
    const digest = await first.digest;
    expect(digest).toEqual(await second.digest);
    expect(digest).toEqual({ size: a.length, sha256: createHash('sha256').update(a).digest('hex') });

    const other = createReproducibleTarball(await makeTree(0), {
      mtime: new Date(COMMIT_TIME.getTime() + 1000),
    });
    expect((await collect(other.stream)).equals(a)).toBe(false);
  });

  it('keeps the exact bytes of a fixed tree (any change to the format or the walk shows up here)', async () => {
    const tarball = createReproducibleTarball(await makeTree(0), { mtime: COMMIT_TIME, commitId: COMMIT_ID });
    const archive = await collect(tarball.stream);
    // The tar bytes depend only on this module; the gzip bytes also on Node's zlib (see the module comment).
    expect(createHash('sha256').update(gunzipSync(archive)).digest('hex')).toBe(
      'e6b9c06ecd2718ae21da4dc575bdf7798eaec21d6f8842eb7e81422cc5064a4f',
    );
    expect(await tarball.digest).toEqual({
      size: 1039,
      sha256: 'dfcfd13ea04d5464e87dcfbc147d4e10e1afb59db3428a86b2d34509c25b12d6',
    });
  });

  it('keeps the exact bytes of files around every read-size boundary', async () => {
    const dir = join(scratch, 'sizes');
    const KIB = 1024;
    const sizes = [0, 1, 511, 512, 513, 64 * KIB, 256 * KIB - 1, 256 * KIB, 256 * KIB + 1, 1024 * KIB];
    sizes.push(1024 * KIB + 1, 3 * 1024 * KIB + 100, 8 * 1024 * KIB + 512);
    for (const [i, size] of sizes.entries()) {
      const path = join(dir, `d${i % 3}`, `size-${size}.bin`);
      await mkdir(join(path, '..'), { recursive: true });
      await writeFile(path, pseudoRandomBytes(size, i));
      if (i % 4 === 1) await chmod(path, 0o755);
    }
    await symlink('d0/size-0.bin', join(dir, 'link'));
    const tarball = createReproducibleTarball(dir, { mtime: COMMIT_TIME, commitId: COMMIT_ID });
    const archive = await collect(tarball.stream);
    expect(createHash('sha256').update(gunzipSync(archive)).digest('hex')).toBe(
      'ccc3824f9fbd42948664ab5b7f4ef6b41b0181d545c97f3925457559f4916bb6',
    );
    expect(await tarball.digest).toEqual({
      size: 14491647,
      sha256: 'baad9b7aa7059b2f30869cf759a7094cd57e024e29bef13bf5997c0e6192950f',
    });
    // Fourteen deflate blocks joined into one stream: the system's gzip checks its CRC and size, and tar
    // lists every entry.
    const file = join(scratch, 'sizes.tar.gz');
    await writeFile(file, archive);
    // Each throws unless the tool exits 0.
    execFileSync('gzip', ['-t', file]);
    const listed = execFileSync('tar', ['-tzf', file], { encoding: 'utf8' });
    expect(listed.split('\n').filter((line) => line.startsWith('d'))).toHaveLength(3 + sizes.length);
  });

  it('captures the entries it writes: archived again from them, the bytes are the same', async () => {
    const dir = await makeTree(0);
    // Files on both sides of the small-file limit (read at once, or streamed in chunks).
    await writeFile(join(dir, 'large.bin'), pseudoRandomBytes(300 * 1024 + 3, 7));
    await writeFile(join(dir, 'a', 'limit.bin'), pseudoRandomBytes(256 * 1024, 8));
    const capture = new SnapshotCapture(64 * 1024 * 1024);
    const options = { mtime: COMMIT_TIME, commitId: COMMIT_ID };
    const fromDir = await collect(createReproducibleTarball(dir, options, capture).stream);
    const captured = capture.result();
    expect(captured).not.toBeNull();
    expect(captured!.entries.map((e) => `${e.kind} ${e.path}`)).toContain('file large.bin');
    expect(captured!.entries.find((e) => e.path === 'a/deeper/run.sh')?.executable).toBe(true);
    expect(captured!.entries.find((e) => e.path === 'link-to-dir')?.linkpath).toBe('a');
    expect(captured!.bytes).toBeGreaterThan(556 * 1024);
    async function* once(): AsyncGenerator<readonly SnapshotTarEntry[]> {
      yield captured!.entries;
    }
    expect(await collect(createTarballOfEntries(once(), options).stream)).toEqual(fromDir);
  });

  it('archives the same entry objects again at another commit time exactly as a fresh walk does', async () => {
    // Headers of entries given as data are kept per entry object and the time patched in: reused at a
    // new time (ustar and pax entries alike), they must give what the directory gives at that time.
    const dir = await makeTree(0);
    await symlink('t'.repeat(300), join(dir, 'long-link'));
    const capture = new SnapshotCapture(64 * 1024 * 1024);
    await collect(createReproducibleTarball(dir, { mtime: COMMIT_TIME }, capture).stream);
    const entries = capture.result()!.entries;
    async function* once(): AsyncGenerator<readonly SnapshotTarEntry[]> {
      yield entries;
    }
    for (const mtime of [new Date('2031-02-03T04:05:06Z'), COMMIT_TIME, new Date(0)]) {
      const options = { mtime, commitId: COMMIT_ID };
      const fromDir = await collect(createReproducibleTarball(dir, options).stream);
      expect(await collect(createTarballOfEntries(once(), options).stream)).toEqual(fromDir);
    }
  });

  it('keeps every archive exact while several share recycled output buffers', async () => {
    // Output buffers go back to a shared pool once zlib has consumed them: three archives of several MiB
    // each, written at once and read at different speeds, must each hold exactly their own entries.
    const sets = [1, 2, 3].map((seed) =>
      Array.from({ length: 3000 }, (_, i): SnapshotTarEntry => {
        const path = `d${seed}/f${String(i).padStart(5, '0')}`;
        return { path, kind: 'file', data: pseudoRandomBytes(700 + ((i * seed) % 900), seed * 10_000 + i) };
      }),
    );
    const archives = await Promise.all(
      sets.map(async (files, index) => {
        async function* batches(): AsyncGenerator<readonly SnapshotTarEntry[]> {
          yield [{ path: `d${index + 1}`, kind: 'directory' }];
          for (let at = 0; at < files.length; at += 500) yield files.slice(at, at + 500);
        }
        const stream = createTarballOfEntries(batches(), { mtime: COMMIT_TIME }).stream;
        const chunks: Buffer[] = [];
        for await (const chunk of stream) {
          chunks.push(chunk as Buffer);
          // Slow readers keep the compressor (and the pool) waiting on them.
          if (index > 0 && chunks.length % 4 === 0) await new Promise((r) => setTimeout(r, index));
        }
        return Buffer.concat(chunks);
      }),
    );
    for (const [index, archive] of archives.entries()) {
      const listed = await listEntries(archive);
      expect(listed.map((e) => [e.path, e.sha256])).toEqual([
        [`d${index + 1}/`, createHash('sha256').digest('hex')],
        ...sets[index]!.map((f) => [f.path, createHash('sha256').update(f.data!).digest('hex')]),
      ]);
    }
  });

  it('gives up capturing beyond its budget, and the archive is unaffected', async () => {
    const dir = await makeTree(0);
    await writeFile(join(dir, 'large.bin'), pseudoRandomBytes(300 * 1024, 9));
    const options = { mtime: COMMIT_TIME, commitId: COMMIT_ID };
    const expected = await collect(createReproducibleTarball(dir, options).stream);
    // Over budget among the small files, and at the streamed file.
    for (const budget of [4096, 64 * 1024]) {
      const capture = new SnapshotCapture(budget);
      expect(await collect(createReproducibleTarball(dir, options, capture).stream)).toEqual(expected);
      expect(capture.result()).toBeNull();
      expect(capture.active).toBe(false);
    }
  });

  it('keeps the exact bytes of paths and link targets around the ustar field limits', async () => {
    const dir = join(scratch, 'limits');
    await mkdir(dir);
    // Whole paths of 98 to 102 bytes (the name field holds 100; from 100 on the path is split or needs pax),
    // as files, directories and symlink targets, ASCII and not.
    for (const length of [98, 99, 100, 101, 102]) {
      const file = `f${length}`.padEnd(length, 'x');
      await writeFile(join(dir, file), `${length}\n`);
      await symlink(file, join(dir, `link-${length}`));
      await symlink(`é${'y'.repeat(length - 2)}`, join(dir, `utf8-link-${length}`));
      await mkdir(join(dir, `d${length}`.padEnd(length - 1, 'z')));
      const nested = join(`n${length}`, 'w'.repeat(length - 6));
      await mkdir(join(dir, nested, '..'), { recursive: true });
      await writeFile(join(dir, nested), '');
      await chmod(join(dir, nested), 0o700);
    }
    await symlink('t'.repeat(300), join(dir, 'long-link'));
    await mkdir(join(dir, 'deep', 'x'.repeat(150), 'y'.repeat(99)), { recursive: true });
    await writeFile(join(dir, 'deep', 'x'.repeat(150), 'y'.repeat(99), 'z'.repeat(99)), 'deep\n');
    const tarball = createReproducibleTarball(dir, { mtime: COMMIT_TIME, commitId: COMMIT_ID });
    const archive = await collect(tarball.stream);
    expect(createHash('sha256').update(gunzipSync(archive)).digest('hex')).toBe(
      'b5df9410d8054b277064efe99c38f0a2999dfec628691a204238818b3b21792d',
    );
    const entries = await listEntries(archive);
    expect(entries).toHaveLength(5 * 6 + 1 + 4);
    expect(entries.find((e) => e.path === 'long-link')?.linkpath).toBe('t'.repeat(300));
    expect(entries.find((e) => e.path === 'utf8-link-101')?.linkpath).toBe(`é${'y'.repeat(99)}`);
    expect(entries.find((e) => e.path.endsWith('z'.repeat(99)))?.path).toBe(
      `deep/${'x'.repeat(150)}/${'y'.repeat(99)}/${'z'.repeat(99)}`,
    );
  });

  it('orders a directory of many entries (sorted in runs and merged) bytewise, directories as name/', async () => {
    const dir = join(scratch, 'wide');
    await mkdir(dir);
    const names: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      // Names that collide on prefixes, and a few whose UTF-16 order differs from their UTF-8 order.
      const name = `${(i * 7919) % 10_007}${i % 3 === 0 ? '-' : ''}${i % 500 === 0 ? '\u{1F600}' : ''}${i % 700 === 0 ? '\uFB01' : ''}`;
      names.push(name);
      if (i % 1000 === 0) await mkdir(join(dir, name));
      else await writeFile(join(dir, name), '');
    }
    const entries = await listEntries(
      await collect(createReproducibleTarball(dir, { mtime: COMMIT_TIME }).stream),
    );
    const expected = names
      .map((name, i) => (i % 1000 === 0 ? `${name}/` : name))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect(entries.map((e) => e.path)).toEqual(expected);
  });

  it('writes a fixed gzip header: no name, mtime 0, level-6 flags, OS Unix', async () => {
    const { stream } = createReproducibleTarball(await makeTree(0), { mtime: COMMIT_TIME });
    const archive = await collect(stream);
    expect([...archive.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    const tar = gunzipSync(archive);
    expect(tar.length % 512).toBe(0);
    expect(tar.subarray(tar.length - 1024).equals(Buffer.alloc(1024))).toBe(true);
  });

  it('records the commit in a pax global header that git get-tar-commit-id reads', async () => {
    const { stream } = createReproducibleTarball(await makeTree(0), {
      mtime: COMMIT_TIME,
      commitId: COMMIT_ID,
    });
    const tar = gunzipSync(await collect(stream));
    expect(execFileSync('git', ['get-tar-commit-id'], { input: tar }).toString().trim()).toBe(COMMIT_ID);
  });

  it('archives hard links as plain files, as git has none', async () => {
    const dir = join(scratch, 'hardlinks');
    await mkdir(dir);
    await writeFile(join(dir, 'one'), 'same inode\n');
    await link(join(dir, 'one'), join(dir, 'two'));
    const entries = await listEntries(
      await collect(createReproducibleTarball(dir, { mtime: COMMIT_TIME }).stream),
    );
    expect(entries.map((e) => [e.path, e.type, e.sha256])).toEqual([
      ['one', 'File', createHash('sha256').update('same inode\n').digest('hex')],
      ['two', 'File', createHash('sha256').update('same inode\n').digest('hex')],
    ]);
  });

  it('gives an archive with no entries for an empty directory', async () => {
    const dir = join(scratch, 'empty');
    await mkdir(dir);
    const archive = await collect(createReproducibleTarball(dir, { mtime: COMMIT_TIME }).stream);
    expect(gunzipSync(archive).equals(Buffer.alloc(1024))).toBe(true);
  });

  it('fails on entries a git tree cannot hold', async () => {
    const dir = join(scratch, 'fifo');
    await mkdir(dir);
    execFileSync('mkfifo', [join(dir, 'pipe')]);
    const tarball = createReproducibleTarball(dir, { mtime: COMMIT_TIME });
    await expect(collect(tarball.stream)).rejects.toBeInstanceOf(SnapshotNotArchivable);
    await expect(tarball.digest).rejects.toBeInstanceOf(SnapshotNotArchivable);
  });

  it.each([
    ['shrank', 16 * 1024 * 1024, async (path: string) => truncate(path, 10 * 1024 * 1024)],
    ['grew', 16 * 1024 * 1024, async (path: string) => appendFile(path, 'x')],
    ['grew', 16 * 1024 * 1024 + 100, async (path: string) => appendFile(path, 'x')],
  ])('fails when a file %s while being archived (%i bytes)', async (how, size, change) => {
    const dir = join(scratch, `changing-${counter++}`);
    await mkdir(dir);
    await writeFile(join(dir, 'big.bin'), randomBytes(size));
    const tarball = createReproducibleTarball(dir, { mtime: COMMIT_TIME });
    const chunks = tarball.stream[Symbol.asyncIterator]();
    await chunks.next();
    // The producer is at most a few MiB ahead of the reader (stream buffers), far from the end of the file.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await change(join(dir, 'big.bin'));
    const drain = async (): Promise<void> => {
      for (let next = await chunks.next(); !next.done; next = await chunks.next());
    };
    await expect(drain()).rejects.toThrow(new RegExp(`big.bin.*${how} while being archived`));
  });

  it.each([
    ['removed', async (path: string) => rm(path)],
    ['replaced by a symlink', async (path: string) => rm(path).then(() => symlink('/etc/passwd', path))],
    ['replaced by a fifo', async (path: string) => rm(path).then(() => execFileSync('mkfifo', [path]))],
    ['replaced by a directory', async (path: string) => rm(path).then(() => mkdir(path))],
  ])('fails when a listed file is %s before its turn', async (_how, change) => {
    const dir = join(scratch, `listed-${counter++}`);
    await mkdir(dir);
    // The large file is streamed asynchronously: while it is, the entries after it are listed but not read.
    await writeFile(join(dir, 'a-big.bin'), randomBytes(16 * 1024 * 1024));
    await writeFile(join(dir, 'b.txt'), 'small\n');
    const tarball = createReproducibleTarball(dir, { mtime: COMMIT_TIME });
    const chunks = tarball.stream[Symbol.asyncIterator]();
    await chunks.next();
    await change(join(dir, 'b.txt'));
    const drain = async (): Promise<void> => {
      for (let next = await chunks.next(); !next.done; next = await chunks.next());
    };
    const error = await drain().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SnapshotNotArchivable);
    expect((error as SnapshotNotArchivable).path).toBe('b.txt');
  });

  it('fails when the directory does not exist', async () => {
    const tarball = createReproducibleTarball(join(scratch, 'missing'), { mtime: COMMIT_TIME });
    await expect(collect(tarball.stream)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('stops with an AbortError when the signal aborts', async () => {
    const dir = join(scratch, 'big');
    await mkdir(dir);
    await writeFile(join(dir, 'big.bin'), Buffer.alloc(8 * 1024 * 1024, 1));
    const controller = new AbortController();
    const tarball = createReproducibleTarball(dir, { mtime: COMMIT_TIME, signal: controller.signal });
    let seen = 0;
    const reading = (async () => {
      for await (const chunk of tarball.stream as AsyncIterable<Buffer>) {
        seen += chunk.length;
        controller.abort();
      }
    })();
    await expect(reading).rejects.toMatchObject({ name: 'AbortError' });
    await expect(tarball.digest).rejects.toBeDefined();
    expect(seen).toBeGreaterThan(0);
  });

  it('rejects an invalid date, commit id or level up front', () => {
    expect(() => createReproducibleTarball(scratch, { mtime: new Date(Number.NaN) })).toThrow(TypeError);
    expect(() => createReproducibleTarball(scratch, { mtime: COMMIT_TIME, commitId: 'HEAD' })).toThrow(
      TypeError,
    );
    for (const level of [0, 10, 1.5]) {
      expect(() => createReproducibleTarball(scratch, { mtime: COMMIT_TIME, level })).toThrow(TypeError);
    }
  });

  it('compresses at the level asked for: other bytes, the same tar, the same bytes again', async () => {
    const dir = await makeTree(0);
    await writeFile(join(dir, 'text.txt'), 'some text that compresses\n'.repeat(5000));
    const at = async (level?: number) =>
      collect(createReproducibleTarball(dir, { mtime: COMMIT_TIME, commitId: COMMIT_ID, level }).stream);
    const [fast, again, standard, best] = [await at(1), await at(1), await at(), await at(9)];
    expect(again).toEqual(fast);
    expect(standard).toEqual(await at(6));
    expect(fast).not.toEqual(standard);
    expect(gunzipSync(fast)).toEqual(gunzipSync(standard));
    expect(gunzipSync(best)).toEqual(gunzipSync(standard));
    // gzip's header says which: 4 for the fastest, 2 for the best, 0 otherwise.
    expect([fast[8], standard[8], best[8]]).toEqual([4, 0, 2]);
  });
});
