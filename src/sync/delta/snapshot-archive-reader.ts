/**
 * Reads the tar stream of a snapshot archive (reproducible-tarball.ts): ustar headers, pax extended headers
 * (path, linkpath, size), the pax global header, regular files, directories and symlinks; anything else
 * rejects the archive. Each entry comes with its whole content as one Buffer (a view of the input when it
 * lies inside one chunk), which is what makes this many times faster than a general tar parser on
 * snapshots of many small files.
 *
 * Only the structure is checked here (checksums, numbers, types, sizes, truncation). What the paths may be
 * (no `..`, `.git`, duplicates, entries below a symlink) is the caller's check.
 */
/** The archive holds something a snapshot must not (or is not a readable tar stream). */
export class ArchiveRejected extends Error {
  constructor(reason: string, options?: ErrorOptions) {
    super(reason, options);
    this.name = 'ArchiveRejected';
  }
}

export type SnapshotArchiveEntryKind = 'file' | 'directory' | 'symlink';

export interface SnapshotArchiveEntry {
  /** `/`-separated, trailing slashes removed. */
  path: string;
  kind: SnapshotArchiveEntryKind;
  /** The tar mode bits (0644, 0755, ...). */
  mode: number;
  /** Symlinks: the target. */
  linkpath?: string;
  /** Files: the content (empty for other kinds). */
  data: Buffer;
}

export interface SnapshotArchiveReaderOptions {
  /** Files larger than this reject the archive (the content is held in memory). */
  maxEntryBytes: number;
}

const BLOCK = 512;
const EMPTY = Buffer.alloc(0);

/**
 * The entries of the tar stream `chunks`, in archive order, a batch per chunk of input: whole chunks are
 * parsed synchronously, which costs far less than a turn of an async loop per entry.
 */
export async function* readSnapshotArchive(
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
  opts: SnapshotArchiveReaderOptions,
): AsyncGenerator<SnapshotArchiveEntry[]> {
  const parser = new SnapshotArchiveParser(opts);
  for await (const chunk of chunks) {
    const entries = parser.push(chunk);
    if (entries.length) yield entries;
  }
  parser.end();
}

/** What a header said, while its content is awaited. */
interface PendingEntry {
  type: number;
  path: string;
  mode: number;
  size: number;
  linkpath: string;
}

/** A push parser of the tar format subset above. */
export class SnapshotArchiveParser {
  private readonly queue = new ByteQueue();
  private pending: PendingEntry | null = null;
  private extended: Map<string, string> | null = null;
  private finished = false;

  constructor(private readonly opts: SnapshotArchiveReaderOptions) {}

  /** The entries completed by this chunk. */
  push(chunk: Buffer): SnapshotArchiveEntry[] {
    const out: SnapshotArchiveEntry[] = [];
    if (this.finished) return out;
    this.queue.push(chunk);
    for (;;) {
      if (this.pending === null) {
        const header = this.queue.take(BLOCK);
        if (header === null) return out;
        if (isZeroBlock(header)) {
          // The end-of-archive blocks: whatever follows is padding.
          this.finished = true;
          return out;
        }
        this.pending = this.readHeader(header);
      }
      const entry = this.pending;
      const padded = entry.size + ((BLOCK - (entry.size % BLOCK)) % BLOCK);
      const body = padded === 0 ? EMPTY : this.queue.take(padded);
      if (body === null) return out;
      this.pending = null;
      const data = body.subarray(0, entry.size);
      if (entry.type === 0x78 /* x */) {
        this.extended = parsePax(data);
        continue;
      }
      // Global headers (the commit id comment) say nothing about entries.
      if (entry.type === 0x67 /* g */) continue;
      const kind: SnapshotArchiveEntryKind =
        entry.type === 0x35 ? 'directory' : entry.type === 0x32 ? 'symlink' : 'file';
      const parsed: SnapshotArchiveEntry = { path: entry.path, kind, mode: entry.mode, data };
      if (kind === 'symlink') parsed.linkpath = entry.linkpath;
      out.push(parsed);
    }
  }

  /** Throws unless the end-of-archive blocks were read. */
  end(): void {
    if (!this.finished) {
      throw new ArchiveRejected(
        this.pending || this.queue.available > 0
          ? 'the archive is cut short inside an entry'
          : 'the archive ends without its end-of-archive blocks',
      );
    }
  }

  private readHeader(header: Buffer): PendingEntry {
    checkChecksum(header);
    const type = header[156]!;
    const pax = this.extended;
    this.extended = null;
    let size = octal(header, 124, 12, 'size');
    if (pax?.has('size')) size = paxNumber(pax.get('size')!, 'size');
    if (type === 0x78 || type === 0x67) {
      if (size > 1024 * 1024) throw new ArchiveRejected('a pax header is larger than 1 MiB');
      return { type, path: '', mode: 0, size, linkpath: '' };
    }
    if (type !== 0x30 && type !== 0x00 && type !== 0x35 && type !== 0x32) {
      throw new ArchiveRejected(
        `the archive holds an entry of type ${JSON.stringify(String.fromCharCode(type))}`,
      );
    }
    const path = (pax?.get('path') ?? ustarPath(header)).replace(/\/+$/, '');
    const mode = octal(header, 100, 8, 'mode') & 0o7777;
    if (type !== 0x30 && type !== 0x00 && size !== 0) {
      throw new ArchiveRejected(`${JSON.stringify(path)} is a directory or symlink with content`);
    }
    if (size > this.opts.maxEntryBytes) {
      throw new ArchiveRejected(`${JSON.stringify(path)} is larger than ${this.opts.maxEntryBytes} bytes`);
    }
    const linkpath = type === 0x32 ? (pax?.get('linkpath') ?? field(header, 157, 100)) : '';
    return { type, path, mode, size, linkpath };
  }
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function checkChecksum(header: Buffer): void {
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += header[i]!;
  for (let i = 156; i < BLOCK; i++) sum += header[i]!;
  if (octal(header, 148, 8, 'checksum') !== sum) throw new ArchiveRejected('a tar header fails its checksum');
}

/** A NUL-terminated text field. */
function field(header: Buffer, at: number, length: number): string {
  const end = header.indexOf(0, at);
  return header.toString('utf8', at, end < 0 || end > at + length ? at + length : end);
}

function ustarPath(header: Buffer): string {
  const name = field(header, 0, 100);
  // "ustar" at 257: the prefix field exists.
  const isUstar =
    header[257] === 0x75 &&
    header[258] === 0x73 &&
    header[259] === 0x74 &&
    header[260] === 0x61 &&
    header[261] === 0x72;
  const prefix = isUstar && header[345] !== 0 ? field(header, 345, 155) : '';
  return prefix ? `${prefix}/${name}` : name;
}

/** An octal number field: optional leading spaces, digits, then NULs or spaces. */
function octal(header: Buffer, at: number, length: number, what: string): number {
  let value = 0;
  let i = at;
  const end = at + length;
  while (i < end && header[i] === 0x20) i++;
  for (; i < end; i++) {
    const byte = header[i]!;
    if (byte >= 0x30 && byte <= 0x37) value = value * 8 + (byte - 0x30);
    else break;
  }
  for (; i < end; i++) {
    const byte = header[i];
    if (byte !== 0 && byte !== 0x20) throw new ArchiveRejected(`a tar header has an unreadable ${what}`);
  }
  return value;
}

function paxNumber(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new ArchiveRejected(`a pax header has an unreadable ${what}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new ArchiveRejected(`a pax header has an unreadable ${what}`);
  return n;
}

/** Records `<length> <key>=<value>\n`. */
function parsePax(body: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < body.length) {
    const space = body.indexOf(0x20, at);
    if (space < 0) throw new ArchiveRejected('a pax header is malformed');
    const length = Number(body.toString('latin1', at, space));
    if (!Number.isSafeInteger(length) || length <= space - at || at + length > body.length) {
      throw new ArchiveRejected('a pax header is malformed');
    }
    const record = body.toString('utf8', space + 1, at + length - 1);
    const equals = record.indexOf('=');
    if (equals < 0 || body[at + length - 1] !== 0x0a) throw new ArchiveRejected('a pax header is malformed');
    records.set(record.slice(0, equals), record.slice(equals + 1));
    at += length;
  }
  return records;
}

/** Bytes pushed in chunks and taken in exact counts, without copying when they lie inside one chunk. */
class ByteQueue {
  private readonly parts: Buffer[] = [];
  /** Read position in parts[0]. */
  private offset = 0;
  available = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.parts.push(chunk);
    this.available += chunk.length;
  }

  /** The next `length` bytes, or null (taking nothing) when fewer are available. */
  take(length: number): Buffer | null {
    if (this.available < length) return null;
    this.available -= length;
    const first = this.parts[0]!;
    if (first.length - this.offset >= length) {
      const bytes = first.subarray(this.offset, this.offset + length);
      this.offset += length;
      if (this.offset === first.length) {
        this.parts.shift();
        this.offset = 0;
      }
      return bytes;
    }
    const bytes = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const part = this.parts[0]!;
      const n = Math.min(part.length - this.offset, length - filled);
      part.copy(bytes, filled, this.offset, this.offset + n);
      filled += n;
      this.offset += n;
      if (this.offset === part.length) {
        this.parts.shift();
        this.offset = 0;
      }
    }
    return bytes;
  }
}
