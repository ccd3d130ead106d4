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
 * - gzip at a fixed level (6 unless the caller sets another), the tar compressed in blocks of 1 MiB on
 *   several threads and joined into one deflate stream (see block-gzip.ts), with a header that carries no
 *   file name and mtime 0 and says Unix. The tar bytes are reproducible everywhere; the compressed bytes
 *   are reproducible for a given zlib and level (a Node upgrade that changes zlib's deflate output would
 *   change them, as it would for `git archive`).
 *
 * How it is fast: a snapshot is mostly small files, and an async open/fstat/read/close per file (four trips
 * through the libuv threadpool) costs far more than the work itself. So directories are listed and small
 * files (up to 256 KiB) read with synchronous calls straight into the output batch, in time slices of a
 * few milliseconds: after each slice the batch goes to the compressor (which runs on the threadpool
 * meanwhile) and the event loop gets a turn, so timers and sockets (BullMQ lock renewals) are never held
 * up for long. Large files are read asynchronously in 1 MiB chunks. Memory stays flat: one directory
 * listing per level of the walk, output batches of 1 MiB, large files streamed.
 */
import { isUtf8 } from 'node:buffer';
import {
  closeSync,
  constants as fsConstants,
  type Dirent,
  fstatSync,
  type OpenDirOptions,
  opendirSync,
  openSync,
  read,
  readlinkSync,
  readSync,
} from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { addAbortSignal, pipeline, Readable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { batchBuffers, DEFLATE_BLOCK_BYTES, gzipInBlocks, type PooledBuffer } from './block-gzip.js';
import {
  BLOCK,
  fileContent,
  type EntryKind,
  globalCommentHeader,
  HeaderWriter,
  SnapshotNotArchivable,
  type SnapshotTarEntry,
  type TarOutput,
} from './tar-header.js';
import { DigestingStream, type ArtifactDigest } from './artifact-digest.js';

export { SnapshotNotArchivable, type EntryKind, type SnapshotTarEntry } from './tar-header.js';

/** MIME type of the archives. */
export const TARBALL_CONTENT_TYPE = 'application/gzip';
/** Default compression level of archives: the same tree gives the same bytes at the same level. */
export const TARBALL_GZIP_LEVEL = 6;

/** Files up to this size are read with one synchronous read, straight into the output. */
const SMALL_FILE_BYTES = 256 * 1024;
/** Larger files are read asynchronously, in chunks of this size. */
const READ_CHUNK_BYTES = 1024 * 1024;
/** Output is gathered in buffers of this size (handed downstream at least once per time slice). */
const BATCH_BYTES = DEFLATE_BLOCK_BYTES;
/** Synchronous work between two turns of the event loop. */
const SLICE_MS = 5;
/** Directories larger than this are sorted in runs of this many entries, merged a slice at a time. */
const SORT_RUN_ENTRIES = 4096;
/** Directory entries read per readdir call. */
const DIRECTORY_BUFFER_ENTRIES = 256;
// Buffered between the compressor and the reader, so blocks keep compressing while the reader writes.
const COMPRESSED_HIGH_WATER_MARK = 4 * 1024 * 1024;
const ZERO_BLOCKS = Buffer.alloc(2 * BLOCK);
const COMMIT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
// O_NOFOLLOW: a file replaced by a symlink meanwhile is refused, not followed. O_NONBLOCK: one replaced by a
// fifo is opened without waiting for a writer (a synchronous open would otherwise hang the event loop).
const OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;

export interface ReproducibleTarballOptions {
  /** The commit time: every entry's mtime (whole seconds; anything finer is dropped). */
  mtime: Date;
  /** Commit SHA written in a pax global header like `git archive` does; none when omitted. */
  commitId?: string;
  /** Aborting destroys the stream with an AbortError. */
  signal?: AbortSignal;
  /** zlib level, 1 (fastest) to 9 (smallest); TARBALL_GZIP_LEVEL when omitted. */
  level?: number;
}

export interface ReproducibleTarball {
  /** The `.tar.gz` bytes. Errors (unreadable snapshot, a file changing while read, abort) surface here. */
  stream: Readable;
  /** Size and SHA-256 of the produced bytes; resolves once the stream has been read to its end. */
  digest: Promise<ArtifactDigest>;
}

/**
 * Collects the entries of a directory's archive as it is written (file contents are views of the archive's
 * own buffers, nothing copied), so the next revision's archive can be made from them. Gives up once they
 * hold more than `maxBytes` of tar.
 */
export class SnapshotCapture {
  private list: SnapshotTarEntry[] | null = [];
  private tarBytes = 0;

  constructor(readonly maxBytes: number) {}

  /** Whether entries are still being collected (false once over budget). */
  get active(): boolean {
    return this.list !== null;
  }

  /** Adds an entry whose header and padded content take `tarBytes`. */
  add(entry: SnapshotTarEntry, tarBytes: number): void {
    if (this.list === null) return;
    this.tarBytes += tarBytes;
    if (this.tarBytes > this.maxBytes) this.list = null;
    else this.list.push(entry);
  }

  /** Whether `tarBytes` more would still fit. */
  fits(tarBytes: number): boolean {
    return this.list !== null && this.tarBytes + tarBytes <= this.maxBytes;
  }

  /** Stops collecting: the entries will not be used. */
  abandon(): void {
    this.list = null;
  }

  /** The entries in tree order and their tar size; null when over budget. Complete once the archive was read to its end. */
  result(): { entries: SnapshotTarEntry[]; bytes: number } | null {
    return this.list === null ? null : { entries: this.list, bytes: this.tarBytes };
  }
}

/**
 * Streams a reproducible `.tar.gz` of `dir` (see the module comment for the exact format); `capture`
 * collects its entries on the way.
 */
export function createReproducibleTarball(
  dir: string,
  opts: ReproducibleTarballOptions,
  capture?: SnapshotCapture,
): ReproducibleTarball {
  return compressTar(tarBlocks(dir, entryTime(opts), opts.commitId, capture), opts);
}

/**
 * A key whose string order is the archive's entry order: bytewise by UTF-8 path, a directory as `path/`
 * (latin1 maps each byte to one UTF-16 unit, so string comparison compares bytes).
 */
export function treeOrderKey(path: string, directory: boolean): string {
  return Buffer.from(directory ? `${path}/` : path, 'utf8').toString('latin1');
}

/** Bytes an entry with `size` bytes of content takes in the tar: its header and the content padded to whole blocks. */
export function tarEntryBytes(size: number): number {
  return BLOCK + Math.ceil(size / BLOCK) * BLOCK;
}

/** Refuses a zlib level outside 1 to 9. */
export function assertGzipLevel(level: number): void {
  if (!(Number.isInteger(level) && level >= 1 && level <= 9)) {
    throw new TypeError('level must be an integer from 1 to 9');
  }
}

/** Checks the options; the entries' time (whole seconds). */
export function entryTime(opts: ReproducibleTarballOptions): Date {
  if (Number.isNaN(opts.mtime.getTime())) throw new TypeError('mtime must be a valid date');
  if (opts.level !== undefined) assertGzipLevel(opts.level);
  if (opts.commitId !== undefined && !COMMIT_ID.test(opts.commitId)) {
    throw new TypeError('commitId must be a lowercase 40 or 64 hex SHA');
  }
  return new Date(Math.floor(opts.mtime.getTime() / 1000) * 1000);
}

/**
 * The same reproducible `.tar.gz` createReproducibleTarball writes for a directory holding these entries,
 * from entries already in tree order (bytewise by path, a directory compared as `path/`), in batches:
 * every directory of the snapshot must be among them, before its contents.
 */
export function createTarballOfEntries(
  entries: AsyncIterable<readonly SnapshotTarEntry[]>,
  opts: ReproducibleTarballOptions,
): ReproducibleTarball {
  return compressTar(tarBlocksOfEntries(entries, entryTime(opts), opts.commitId), opts);
}

/** The tar stream of entries given in tree order. */
async function* tarBlocksOfEntries(
  batches: AsyncIterable<readonly SnapshotTarEntry[]>,
  mtime: Date,
  commitId: string | undefined,
): AsyncGenerator<Buffer> {
  const out = new OutputBatch(true);
  const headers = new HeaderWriter(mtime);
  if (commitId !== undefined) out.append(globalCommentHeader(commitId, mtime));
  for await (const batch of batches) {
    for (const entry of batch) {
      headers.appendEntry(out, entry);
      if (entry.kind === 'file') out.appendPadded(fileContent(entry));
    }
    for (const chunk of out.takeFull()) yield chunk;
  }
  out.append(ZERO_BLOCKS);
  for (const chunk of out.takeAll(true)) yield chunk;
}

/** gzip with the archive's fixed settings (see block-gzip.ts), size and SHA-256 taken on the way. */
function compressTar(
  blocks: AsyncIterable<Buffer>,
  { signal, level = TARBALL_GZIP_LEVEL }: ReproducibleTarballOptions,
): ReproducibleTarball {
  return tarballOfGzip(gzipInBlocks(blocks, level), signal);
}

/** The archive as a stream of these gzip bytes, size and SHA-256 taken on the way. */
export function tarballOfGzip(gzip: AsyncIterable<Buffer>, signal?: AbortSignal): ReproducibleTarball {
  const digesting = new DigestingStream();
  // pipeline destroys every stage when one fails or the reader destroys the last one, which also ends
  // the generators (closing any open file).
  const stream = pipeline(
    Readable.from(gzip, {
      objectMode: false,
      highWaterMark: COMPRESSED_HIGH_WATER_MARK,
    }),
    digesting,
    () => undefined,
  );
  if (signal) addAbortSignal(signal, stream);
  return { stream, digest: digesting.digest };
}

interface ListedEntry {
  /** Path inside the archive, `/`-separated, without a trailing slash. */
  path: string;
  absolute: string;
  kind: EntryKind;
  /** The raw name read as latin1 (one char per byte: string order is byte order), `/` added for a directory. */
  sortKey: string;
}

/** One directory of the walk: its entries in tree order and the next one to write. */
interface Listing {
  entries: ListedEntry[];
  next: number;
}

/** The whole tar stream: optional global header, entries in tree order, end-of-archive blocks. */
async function* tarBlocks(
  root: string,
  mtime: Date,
  commitId: string | undefined,
  capture: SnapshotCapture | undefined,
): AsyncGenerator<Buffer> {
  // A capture keeps views of the file contents read into the output: those buffers are never reused.
  const out = new OutputBatch(capture === undefined);
  const headers = new HeaderWriter(mtime);
  let sliceStart = performance.now();
  const due = (): boolean => out.hasFull || performance.now() - sliceStart >= SLICE_MS;
  // The walk below is synchronous between calls of this: full buffers go downstream and, once the slice
  // has used its time, the rest too, and the event loop gets a turn.
  async function* breathe(): AsyncGenerator<Buffer> {
    for (const chunk of out.takeFull()) yield chunk;
    if (performance.now() - sliceStart < SLICE_MS) return;
    for (const chunk of out.takeAll()) yield chunk;
    await nextTurn();
    sliceStart = performance.now();
  }

  /** The entries of one directory of the snapshot, sorted in git tree order. */
  async function* listDirectory(relative: string): AsyncGenerator<Buffer, ListedEntry[]> {
    const absoluteDir = relative === '' ? root : join(root, relative);
    const prefix = absoluteDir.endsWith('/') ? absoluteDir : `${absoluteDir}/`;
    let dir: BufferDirectory;
    try {
      dir = openDirectory(absoluteDir);
    } catch (error) {
      // The snapshot itself missing is reported as is; a subdirectory missing means it changed.
      throw relative === '' ? error : changedWhileArchiving(error, relative);
    }
    const entries: ListedEntry[] = [];
    try {
      for (let dirent = dir.readSync(); dirent !== null; dirent = dir.readSync()) {
        const entry = listedEntry(prefix, relative, dirent);
        if (entry) entries.push(entry);
        if (due()) yield* breathe();
      }
    } finally {
      dir.closeSync();
    }
    return yield* sortEntries(entries);
  }

  /**
   * Entries in tree order. A huge directory is sorted in runs merged pairwise, a slice at a time: one sort
   * of 100,000 names would hold the event loop for tens of milliseconds.
   */
  async function* sortEntries(entries: ListedEntry[]): AsyncGenerator<Buffer, ListedEntry[]> {
    if (entries.length <= SORT_RUN_ENTRIES) return entries.sort(byTreeOrder);
    let runs: ListedEntry[][] = [];
    for (let i = 0; i < entries.length; i += SORT_RUN_ENTRIES) {
      runs.push(entries.slice(i, i + SORT_RUN_ENTRIES).sort(byTreeOrder));
      if (due()) yield* breathe();
    }
    while (runs.length > 1) {
      const merged: ListedEntry[][] = [];
      for (let r = 0; r < runs.length; r += 2) {
        const a = runs[r] ?? [];
        const b = runs[r + 1];
        if (b === undefined) {
          merged.push(a);
          continue;
        }
        const both: ListedEntry[] = [];
        let i = 0;
        let j = 0;
        while (i < a.length && j < b.length) {
          const x = a[i] as ListedEntry;
          const y = b[j] as ListedEntry;
          if (byTreeOrder(x, y) <= 0) {
            both.push(x);
            i++;
          } else {
            both.push(y);
            j++;
          }
          if (both.length % SORT_RUN_ENTRIES === 0 && due()) yield* breathe();
        }
        for (; i < a.length; i++) both.push(a[i] as ListedEntry);
        for (; j < b.length; j++) both.push(b[j] as ListedEntry);
        merged.push(both);
      }
      runs = merged;
    }
    return runs[0] ?? [];
  }

  if (commitId !== undefined) out.append(globalCommentHeader(commitId, mtime));
  const stack: Listing[] = [{ entries: yield* listDirectory(''), next: 0 }];
  for (let top = stack.at(-1); top !== undefined; top = stack.at(-1)) {
    const entry = top.entries[top.next++];
    if (entry === undefined) {
      stack.pop();
      continue;
    }
    if (entry.kind === 'directory') {
      headers.append(out, `${entry.path}/`, 'Directory', 0o755, 0);
      capture?.add({ path: entry.path, kind: 'directory' }, tarEntryBytes(0));
      stack.push({ entries: yield* listDirectory(entry.path), next: 0 });
    } else if (entry.kind === 'symlink') {
      const linkpath = readLinkTarget(entry);
      headers.append(out, entry.path, 'SymbolicLink', 0o777, 0, linkpath);
      capture?.add({ path: entry.path, kind: 'symlink', linkpath }, tarEntryBytes(0));
    } else {
      const fd = openFile(entry);
      try {
        const stats = fstatSync(fd);
        if (!stats.isFile()) throw new SnapshotNotArchivable(entry.path, 'changed while being archived');
        // git records only whether the owner may execute (core.fileMode looks at S_IXUSR).
        const mode = stats.mode & 0o100 ? 0o755 : 0o644;
        headers.append(out, entry.path, 'File', mode, stats.size);
        const tarBytes = tarEntryBytes(stats.size);
        const file = { path: entry.path, kind: 'file' as const, executable: mode === 0o755 };
        if (stats.size <= SMALL_FILE_BYTES) {
          const data = readSmallFile(out, entry, fd, stats.size);
          capture?.add({ ...file, data }, tarBytes);
        } else {
          for (const chunk of out.takeAll()) yield chunk;
          const parts: Buffer[] | null = capture?.fits(tarBytes) ? [] : null;
          if (!parts) capture?.abandon();
          for await (const chunk of largeFileContent(entry, fd, stats.size)) {
            parts?.push(chunk);
            yield chunk;
          }
          // The chunks carry the padding; a copy of the content alone, as the chunks go to the compressor.
          if (parts) capture?.add({ ...file, data: Buffer.concat(parts).subarray(0, stats.size) }, tarBytes);
        }
      } finally {
        closeSync(fd);
      }
    }
    if (due()) yield* breathe();
  }
  out.append(ZERO_BLOCKS);
  for (const chunk of out.takeAll(true)) yield chunk;
}

function byTreeOrder(a: ListedEntry, b: ListedEntry): number {
  return a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0;
}

/** The snapshot entry for one directory entry; null for `.git`. */
function listedEntry(prefix: string, relative: string, dirent: Dirent<Buffer>): ListedEntry | null {
  const raw = dirent.name;
  const name = raw.toString('utf8');
  // Only the bytes `.git` decode to `.git`: anything else invalid becomes U+FFFD.
  if (name === '.git') return null;
  const path = relative === '' ? name : `${relative}/${name}`;
  // Paths travel as JS strings (and as UTF-8 in the archive): a name that is not valid UTF-8 would
  // silently become another name.
  if (!isUtf8(raw)) throw new SnapshotNotArchivable(path, 'name is not UTF-8');
  const kind = direntKind(dirent, path);
  const latin1 = raw.toString('latin1');
  return { path, absolute: prefix + name, kind, sortKey: kind === 'directory' ? `${latin1}/` : latin1 };
}

function direntKind(dirent: Dirent<Buffer>, path: string): EntryKind {
  if (dirent.isSymbolicLink()) return 'symlink';
  if (dirent.isDirectory()) return 'directory';
  if (dirent.isFile()) return 'file';
  throw new SnapshotNotArchivable(path, 'not a regular file, directory or symlink');
}

/** `fs.Dir` with names as raw bytes. */
interface BufferDirectory {
  readSync(): Dirent<Buffer> | null;
  closeSync(): void;
}

function openDirectory(absolute: string): BufferDirectory {
  // fs.Dir gives names as Buffers with encoding 'buffer', which @types/node does not declare for opendir.
  const options = { encoding: 'buffer', bufferSize: DIRECTORY_BUFFER_ENTRIES } as unknown as OpenDirOptions;
  return opendirSync(absolute, options) as unknown as BufferDirectory;
}

function openFile(entry: ListedEntry): number {
  try {
    return openSync(entry.absolute, OPEN_FLAGS);
  } catch (error) {
    throw changedWhileArchiving(error, entry.path);
  }
}

function readLinkTarget(entry: ListedEntry): string {
  let raw: Buffer;
  try {
    raw = readlinkSync(entry.absolute, { encoding: 'buffer' });
  } catch (error) {
    throw changedWhileArchiving(error, entry.path);
  }
  if (!isUtf8(raw)) throw new SnapshotNotArchivable(entry.path, 'symlink target is not UTF-8');
  return raw.toString('utf8');
}

/** An error from an entry that was listed a moment ago: gone or replaced means the snapshot changed. */
function changedWhileArchiving(error: unknown, path: string): unknown {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  // ENOENT: removed; ENOTDIR: a parent replaced by a file; ELOOP: a file replaced by a symlink (O_NOFOLLOW);
  // EINVAL: a symlink replaced by something else (readlink).
  if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'EINVAL') {
    return new SnapshotNotArchivable(path, `changed while being archived (${code})`, { cause: error });
  }
  return error;
}

/**
 * Appends exactly `size` bytes of an open file and the padding to a whole block, and returns a view of
 * those bytes; fails if the file's size is not `size`. One read asks for a byte more than expected:
 * getting it means the file grew.
 */
function readSmallFile(out: OutputBatch, entry: ListedEntry, fd: number, size: number): Buffer {
  const padding = (BLOCK - (size % BLOCK)) % BLOCK;
  const target = out.reserve(size + padding + 1);
  const at = out.offset;
  let filled = 0;
  while (filled < size) {
    const bytesRead = readSync(fd, target, at + filled, size - filled + 1, filled);
    if (bytesRead === 0) throw new SnapshotNotArchivable(entry.path, 'file shrank while being archived');
    filled += bytesRead;
  }
  if (filled > size || (size === 0 && readSync(fd, target, at, 1, 0) !== 0)) {
    throw new SnapshotNotArchivable(entry.path, 'file grew while being archived');
  }
  target.fill(0, at + size, at + size + padding);
  out.commit(size + padding);
  // The bytes just read: this part of the batch is never written again.
  return target.subarray(at, at + size);
}

/**
 * Exactly `size` bytes of the open file and the padding to a whole block, in chunks of at most
 * READ_CHUNK_BYTES, read asynchronously; fails if the file changed size.
 */
async function* largeFileContent(entry: ListedEntry, fd: number, size: number): AsyncGenerator<Buffer> {
  const padding = (BLOCK - (size % BLOCK)) % BLOCK;
  for (let position = 0; position < size;) {
    const length = Math.min(READ_CHUNK_BYTES, size - position);
    const last = position + length === size;
    // A fresh buffer per chunk: it is handed downstream and must not be overwritten by the next read.
    const chunk = Buffer.allocUnsafe(length + (last ? padding : 0));
    // The last read asks for one byte more, into the padding: getting it means the file grew.
    const probe = last && padding > 0 ? 1 : 0;
    let filled = 0;
    while (filled < length) {
      const bytesRead = await readAt(fd, chunk, filled, length - filled + probe, position + filled);
      if (bytesRead === 0) throw new SnapshotNotArchivable(entry.path, 'file shrank while being archived');
      filled += bytesRead;
    }
    if (filled > length) throw new SnapshotNotArchivable(entry.path, 'file grew while being archived');
    if (last) chunk.fill(0, length);
    position += length;
    yield chunk;
  }
  if (padding === 0) {
    // No padding to probe into: a separate one-byte read.
    const bytesRead = await readAt(fd, Buffer.alloc(1), 0, 1, size);
    if (bytesRead !== 0) throw new SnapshotNotArchivable(entry.path, 'file grew while being archived');
  }
}

function readAt(
  fd: number,
  buffer: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buffer, offset, length, position, (error, bytesRead) => {
      if (error) reject(error);
      else resolve(bytesRead);
    });
  });
}

/**
 * Output gathered in large buffers written in place (headers and file contents go straight in). The part
 * handed downstream is never written again; writing continues behind it in the same buffer. With
 * `recycle`, the buffers come from (and go back to) the shared recycler: only when nothing but the
 * compressor keeps a view of the output (a capture keeps views of file contents).
 */
class OutputBatch implements TarOutput {
  private buffer: Buffer = Buffer.allocUnsafe(0);
  private owner: PooledBuffer | null = null;
  /** First byte not yet handed downstream. */
  private start = 0;
  /** First free byte. */
  private end = 0;
  private readonly full: Buffer[] = [];

  constructor(private readonly recycle = false) {}

  /** Where the next bytes go in the buffer `reserve` returns. */
  get offset(): number {
    return this.end;
  }

  get hasFull(): boolean {
    return this.full.length > 0;
  }

  /** A buffer with room for `length` bytes from `offset` on; nothing counts until `commit`. */
  reserve(length: number): Buffer {
    if (this.end + length > this.buffer.length) {
      if (this.end > this.start) this.full.push(this.piece());
      if (this.owner) batchBuffers.retire(this.owner);
      this.owner = this.recycle && length <= BATCH_BYTES ? batchBuffers.take() : null;
      this.buffer = this.owner?.buffer ?? Buffer.allocUnsafe(Math.max(BATCH_BYTES, length));
      this.start = 0;
      this.end = 0;
    }
    return this.buffer;
  }

  commit(length: number): void {
    this.end += length;
  }

  append(bytes: Buffer): void {
    bytes.copy(this.reserve(bytes.length), this.end);
    this.end += bytes.length;
  }

  /** Appends `bytes` and the zeros that pad them to a whole block. */
  appendPadded(bytes: Buffer): void {
    const padded = Math.ceil(bytes.length / BLOCK) * BLOCK;
    const target = this.reserve(padded);
    target.set(bytes, this.end);
    target.fill(0, this.end + bytes.length, this.end + padded);
    this.end += padded;
  }

  /** The buffers filled up so far. */
  takeFull(): Buffer[] {
    return this.full.splice(0);
  }

  /** Everything not yet handed downstream; the end of the output retires its buffer. */
  takeAll(last = false): Buffer[] {
    const chunks = this.takeFull();
    if (this.end > this.start) chunks.push(this.piece());
    this.start = this.end;
    if (last && this.owner) {
      batchBuffers.retire(this.owner);
      this.owner = null;
      this.buffer = Buffer.allocUnsafe(0);
      this.start = this.end = 0;
    }
    return chunks;
  }

  /** The bytes between `start` and `end`, as handed downstream. */
  private piece(): Buffer {
    return this.owner
      ? batchBuffers.piece(this.owner, this.start, this.end)
      : this.buffer.subarray(this.start, this.end);
  }
}
