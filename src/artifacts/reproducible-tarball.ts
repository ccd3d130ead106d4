/**
 * Reproducible `.tar.gz` of a snapshot directory (one commit's tree checked out without `.git`): the same
 * tree and commit time always give the same bytes, whatever the checkout's inode order, timestamps,
 * owners or umask were.
 *
 * What goes in, and why:
 * - Entries in git tree order: bytewise by path, a directory compared as `name/`. That is plain bytewise
 *   order of the tar paths (directory entries end in `/`), and the order `git archive` writes.
 * - Directory entries are included, as `git archive` does: extracting gives every directory mode 0755 and
 *   the commit time instead of whatever the extractor's defaults are, and empty directories (the
 *   placeholders git checks out for submodules) survive.
 * - Modes are git's: files 0644, or 0755 when the owner may execute; directories 0755; symlinks 0777 and
 *   stored as symlinks (never followed). Hard links are written as plain files, since git has no hard
 *   links. uid/gid 0, no user/group names, every mtime the commit time.
 * - `.git` is skipped at any depth (git never tracks a path component named `.git`); anything that is not
 *   a file, directory or symlink (socket, fifo, device) cannot be in a commit and fails the archive.
 * - Optionally a pax global header `comment=<commit id>`, exactly like `git archive`, so
 *   `git get-tar-commit-id` reads the commit back.
 * - gzip at the fixed level 6 with a header that carries no file name and mtime 0, and OS byte pinned to 3
 *   (Unix) because zlib writes a platform-dependent one. The tar bytes are reproducible everywhere; the
 *   compressed bytes are reproducible for a given zlib (a Node upgrade that changes zlib's deflate output
 *   would change them, as it would for `git archive`).
 *
 * Memory stays flat: the tree is walked lazily one directory at a time, large files are streamed in 1 MiB
 * chunks, and small files are read ahead a few at a time (at most 32 entries and 8 MiB) so that trees of
 * many small files are not bound by the latency of each open/read/close.
 */
import type { Stats } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { addAbortSignal, pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import { constants as zlibConstants, createGzip } from 'node:zlib';
import { Header, Pax } from 'tar';
import { DigestingStream, type ArtifactDigest } from './artifact-digest.js';

/** MIME type of the archives. */
export const TARBALL_CONTENT_TYPE = 'application/gzip';
/** Compression level of every archive: changing it changes every archive's bytes. */
export const TARBALL_GZIP_LEVEL = 6;

const BLOCK = 512;
const READ_CHUNK_BYTES = 1024 * 1024;
// Buffered between the file reads and the compressor, so disk and zlib work at the same time.
const TAR_HIGH_WATER_MARK = 4 * 1024 * 1024;
const READ_AHEAD_ENTRIES = 32;
const READ_AHEAD_BYTES = 8 * 1024 * 1024;
const GZIP_CHUNK_BYTES = 64 * 1024;
const GZIP_OS_BYTE_OFFSET = 9;
const GZIP_OS_UNIX = 3;
const ZERO_BLOCKS = Buffer.alloc(2 * BLOCK);
const COMMIT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

export interface ReproducibleTarballOptions {
  /** The commit time: every entry's mtime (whole seconds; anything finer is dropped). */
  mtime: Date;
  /** Commit SHA written in a pax global header like `git archive` does; none when omitted. */
  commitId?: string;
  /** Aborting destroys the stream with an AbortError. */
  signal?: AbortSignal;
}

export interface ReproducibleTarball {
  /** The `.tar.gz` bytes. Errors (unreadable snapshot, a file changing while read, abort) surface here. */
  stream: Readable;
  /** Size and SHA-256 of the produced bytes; resolves once the stream has been read to its end. */
  digest: Promise<ArtifactDigest>;
}

/** The snapshot changed while it was being archived, or holds something a git tree cannot. */
export class SnapshotNotArchivable extends Error {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`cannot archive ${JSON.stringify(path)}: ${reason}`);
    this.name = 'SnapshotNotArchivable';
  }
}

/** Streams a reproducible `.tar.gz` of `dir` (see the module comment for the exact format). */
export function createReproducibleTarball(
  dir: string,
  opts: ReproducibleTarballOptions,
): ReproducibleTarball {
  if (Number.isNaN(opts.mtime.getTime())) throw new TypeError('mtime must be a valid date');
  if (opts.commitId !== undefined && !COMMIT_ID.test(opts.commitId)) {
    throw new TypeError('commitId must be a lowercase 40 or 64 hex SHA');
  }
  const mtime = new Date(Math.floor(opts.mtime.getTime() / 1000) * 1000);
  const tar = Readable.from(tarBlocks(dir, mtime, opts.commitId), {
    objectMode: false,
    highWaterMark: TAR_HIGH_WATER_MARK,
  });
  const gzip = createGzip({
    level: TARBALL_GZIP_LEVEL,
    memLevel: 8,
    strategy: zlibConstants.Z_DEFAULT_STRATEGY,
    chunkSize: GZIP_CHUNK_BYTES,
  });
  const digesting = new DigestingStream();
  // pipeline destroys every stage when one fails or the reader destroys the last one, which also ends
  // the generator (closing any open file).
  const stream = pipeline(tar, gzip, new GzipOsBytePin(), digesting, () => undefined);
  if (opts.signal) addAbortSignal(opts.signal, stream);
  return { stream, digest: digesting.digest };
}

type EntryKind = 'file' | 'directory' | 'symlink';

interface SnapshotEntry {
  /** Path inside the archive, `/`-separated, without a trailing slash. */
  path: string;
  absolute: string;
  kind: EntryKind;
  stats: Stats;
}

interface ReadAhead {
  entry: SnapshotEntry;
  /** File bytes held once read. */
  bytes: number;
  /** The whole entry (header, content, padding) being read; null for a large file, streamed in turn. */
  whole: Promise<Buffer> | null;
}

/** The whole tar stream: optional global header, entries in tree order, end-of-archive blocks. */
async function* tarBlocks(root: string, mtime: Date, commitId: string | undefined): AsyncGenerator<Buffer> {
  if (commitId !== undefined) yield globalCommentHeader(commitId, mtime);
  // Small entries are read a few ahead, concurrently: one at a time, a tree of many small files is bound by
  // the latency of open/read/close, not by the disk. Count and bytes held are capped; large files are
  // streamed when their turn comes.
  const ahead: ReadAhead[] = [];
  let aheadBytes = 0;
  async function* emitOldest(): AsyncGenerator<Buffer> {
    const oldest = ahead.shift();
    if (!oldest) return;
    aheadBytes -= oldest.bytes;
    if (oldest.whole) yield await oldest.whole;
    else yield* fileContent(oldest.entry, await entryHeader(oldest.entry, mtime));
  }
  for await (const entry of snapshotEntries(root, '')) {
    const large = entry.kind === 'file' && entry.stats.size > READ_CHUNK_BYTES;
    const bytes = entry.kind === 'file' && !large ? entry.stats.size : 0;
    while (
      ahead.length >= READ_AHEAD_ENTRIES ||
      (ahead.length > 0 && aheadBytes + bytes > READ_AHEAD_BYTES)
    ) {
      yield* emitOldest();
    }
    const whole = large ? null : wholeEntry(entry, mtime);
    // Failures surface when the entry's turn comes; until then (or if the archive stops first) they must
    // not count as unhandled.
    whole?.catch(() => undefined);
    ahead.push({ entry, bytes, whole });
    aheadBytes += bytes;
  }
  while (ahead.length > 0) yield* emitOldest();
  yield ZERO_BLOCKS;
}

/** Header, content and padding of an entry whose content fits in one read, as one buffer. */
async function wholeEntry(entry: SnapshotEntry, mtime: Date): Promise<Buffer> {
  const header = await entryHeader(entry, mtime);
  if (entry.kind !== 'file' || entry.stats.size === 0) return header;
  const chunks: Buffer[] = [];
  for await (const chunk of fileContent(entry, header)) chunks.push(chunk);
  return chunks.length === 1 && chunks[0] ? chunks[0] : Buffer.concat(chunks);
}

/** Entries under `relative` (a directory of the snapshot) in git tree order, depth first. */
async function* snapshotEntries(root: string, relative: string): AsyncGenerator<SnapshotEntry> {
  const absoluteDir = relative === '' ? root : join(root, relative);
  const names = await readdir(absoluteDir, { encoding: 'buffer' });
  const entries = await Promise.all(
    names
      .filter((raw) => !raw.equals(DOT_GIT))
      .map(async (raw) => {
        const name = raw.toString('utf8');
        const path = relative === '' ? name : `${relative}/${name}`;
        // Paths travel as JS strings (and as UTF-8 in the archive): a name that is not valid UTF-8
        // would silently become another name.
        if (!Buffer.from(name, 'utf8').equals(raw))
          throw new SnapshotNotArchivable(path, 'name is not UTF-8');
        const absolute = join(absoluteDir, name);
        const stats = await lstat(absolute);
        const kind = entryKind(stats, path);
        const sortKey = kind === 'directory' ? Buffer.concat([raw, SLASH]) : raw;
        return { entry: { path, absolute, kind, stats }, sortKey };
      }),
  );
  entries.sort((a, b) => Buffer.compare(a.sortKey, b.sortKey));
  for (const { entry } of entries) {
    yield entry;
    if (entry.kind === 'directory') yield* snapshotEntries(root, entry.path);
  }
}

const DOT_GIT = Buffer.from('.git');
const SLASH = Buffer.from('/');

function entryKind(stats: Stats, path: string): EntryKind {
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isDirectory()) return 'directory';
  if (stats.isFile()) return 'file';
  throw new SnapshotNotArchivable(path, 'not a regular file, directory or symlink');
}

/** The header block of one entry, preceded by a pax header when the path or target does not fit ustar. */
async function entryHeader(entry: SnapshotEntry, mtime: Date): Promise<Buffer> {
  const path = entry.kind === 'directory' ? `${entry.path}/` : entry.path;
  const linkpath = entry.kind === 'symlink' ? await readLinkTarget(entry) : undefined;
  const size = entry.kind === 'file' ? entry.stats.size : 0;
  const header = new Header({
    path,
    linkpath,
    mode: gitMode(entry),
    uid: 0,
    gid: 0,
    size,
    mtime,
    type: entry.kind === 'file' ? 'File' : entry.kind === 'directory' ? 'Directory' : 'SymbolicLink',
  });
  // encode() reports whether some field (long or non-ASCII path, huge size) needs a pax record.
  const needsPax = header.encode();
  if (!header.block) throw new Error(`tar header for ${path} was not encoded`);
  return needsPax
    ? Buffer.concat([new Pax({ path, linkpath, size, mtime }).encode(), header.block])
    : header.block;
}

async function readLinkTarget(entry: SnapshotEntry): Promise<string> {
  const raw = await readlink(entry.absolute, { encoding: 'buffer' });
  const target = raw.toString('utf8');
  if (!Buffer.from(target, 'utf8').equals(raw)) {
    throw new SnapshotNotArchivable(entry.path, 'symlink target is not UTF-8');
  }
  return target;
}

function gitMode(entry: SnapshotEntry): number {
  switch (entry.kind) {
    case 'directory':
      return 0o755;
    case 'symlink':
      return 0o777;
    case 'file':
      // git records only whether the owner may execute (core.fileMode looks at S_IXUSR).
      return entry.stats.mode & 0o100 ? 0o755 : 0o644;
  }
}

/**
 * `header` followed by exactly `stats.size` bytes of the file and the padding to a whole block, in chunks
 * of at most READ_CHUNK_BYTES (a small file is a single chunk); fails if the file changed size.
 */
async function* fileContent(entry: SnapshotEntry, header: Buffer): AsyncGenerator<Buffer> {
  const size = entry.stats.size;
  const padding = (BLOCK - (size % BLOCK)) % BLOCK;
  const handle = await open(entry.absolute, 'r');
  try {
    let position = 0;
    let prefix: Buffer | null = header;
    while (position < size) {
      const length = Math.min(READ_CHUNK_BYTES, size - position);
      const last = position + length === size;
      const offset = prefix?.length ?? 0;
      // A fresh buffer per chunk: it is handed downstream and must not be overwritten by the next read.
      const chunk = Buffer.allocUnsafe(offset + length + (last ? padding : 0));
      if (prefix) prefix.copy(chunk);
      prefix = null;
      // The last read asks for one byte more, into the padding: getting it means the file grew.
      const probe = last && padding > 0 ? 1 : 0;
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(
          chunk,
          offset + filled,
          length - filled + probe,
          position + filled,
        );
        if (bytesRead === 0) throw new SnapshotNotArchivable(entry.path, 'file shrank while being archived');
        filled += bytesRead;
      }
      if (filled > length) throw new SnapshotNotArchivable(entry.path, 'file grew while being archived');
      if (last) chunk.fill(0, offset + length);
      position += length;
      yield chunk;
    }
    if (padding === 0) {
      // No padding to probe into: a separate one-byte read.
      const { bytesRead } = await handle.read(Buffer.alloc(1), 0, 1, size);
      if (bytesRead !== 0) throw new SnapshotNotArchivable(entry.path, 'file grew while being archived');
    }
  } finally {
    await handle.close();
  }
}

/** Pax global header `comment=<commit id>`, the record `git archive` writes and `git get-tar-commit-id` reads. */
function globalCommentHeader(commitId: string, mtime: Date): Buffer {
  const body = Buffer.from(paxRecord('comment', commitId));
  const header = new Header({
    path: 'pax_global_header',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime,
    type: 'GlobalExtendedHeader',
  });
  header.encode();
  if (!header.block) throw new Error('pax global header was not encoded');
  return Buffer.concat([header.block, body, Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK)]);
}

/** One pax record, `<length> <key>=<value>\n`, where the length counts its own digits. */
function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  const restLength = Buffer.byteLength(rest);
  let digits = String(restLength).length;
  if (String(restLength + digits).length > digits) digits++;
  return `${restLength + digits}${rest}`;
}

/** Overwrites the gzip header's OS byte, the one byte of zlib's header that depends on the platform. */
class GzipOsBytePin extends Transform {
  private offset = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const at = GZIP_OS_BYTE_OFFSET - this.offset;
    if (at >= 0 && at < chunk.length) chunk[at] = GZIP_OS_UNIX;
    this.offset += chunk.length;
    callback(null, chunk);
  }
}
