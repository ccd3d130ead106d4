/**
 * Tar headers as the archives write them: ustar blocks byte for byte what node-tar's Header writes, encoded
 * here from a template for the common case (ASCII path and link target shorter than their 100-byte fields,
 * sizes and times that fit in octal) without node-tar's per-entry overhead; everything else (pax records,
 * split paths) through node-tar. A header is encoded without its time, which is stamped in (with the
 * checksum) as each archive is written, so one encoding serves every revision.
 */
import { Header, Pax } from 'tar';

/** Tar's block size. */
export const BLOCK = 512;

export type EntryKind = 'file' | 'directory' | 'symlink';
type TarType = 'File' | 'Directory' | 'SymbolicLink';

/** One entry of a snapshot given as data rather than read from a directory. */
export interface SnapshotTarEntry {
  /** `/`-separated, without a trailing slash. */
  path: string;
  kind: EntryKind;
  /** Files: whether the owner may execute. */
  executable?: boolean;
  /** Symlinks: the target. */
  linkpath?: string;
  /** Files: the content. */
  data?: Buffer;
}

/** The snapshot changed while it was being archived, or holds something a git tree cannot. */
export class SnapshotNotArchivable extends Error {
  constructor(
    readonly path: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`cannot archive ${JSON.stringify(path)}: ${reason}`, options);
    this.name = 'SnapshotNotArchivable';
  }
}

/** Where headers are written: room reserved at `offset` in the returned buffer, then committed. */
export interface TarOutput {
  readonly offset: number;
  reserve(length: number): Buffer;
  commit(length: number): void;
  append(bytes: Buffer): void;
}

const TYPE_FLAGS: Record<TarType, number> = { File: 0x30, SymbolicLink: 0x32, Directory: 0x35 };
const MAX_OCTAL_8 = 0o7777777;
const MAX_OCTAL_12 = 0o77777777777;
// eslint-disable-next-line no-control-regex
const ASCII = /^[\x01-\x7f]*$/;

/** A ustar header block with its mtime field left zero, and the byte sum of the rest (checksum as spaces). */
export interface EncodedHeader {
  block: Buffer;
  sum: number;
}

/**
 * The headers of entries given as data (createTarballOfEntries), kept for as long as the entry object
 * lives: an archive made from the previous revision's entries encodes only the entries that changed, the
 * rest costs a copy. They do not depend on the time, which is patched in as each archive is written.
 * Entries are never modified once made, so an entry's header never goes stale. null: needs node-tar.
 */
const encodedHeaders = new WeakMap<SnapshotTarEntry, EncodedHeader | null>();

/** The entry's ustar header without its time (encoded once per entry object); null: it needs node-tar. */
export function encodedHeaderOf(entry: SnapshotTarEntry): EncodedHeader | null {
  let encoded = encodedHeaders.get(entry);
  if (encoded === undefined) {
    const { path, type, mode, size, linkpath } = headerFieldsOf(entry);
    encoded = null;
    if (fitsUstar(path, mode, size, linkpath)) {
      const block = Buffer.allocUnsafe(BLOCK);
      encoded = { block, sum: encodeUstar(block, 0, path, type, mode, size, linkpath) };
    }
    encodedHeaders.set(entry, encoded);
  }
  return encoded;
}

/** Writes the headers of one archive, every one with the archive's time. */
export class HeaderWriter {
  /** The mtime field; null when the time does not fit in it (node-tar writes every header then). */
  private readonly mtimeField: Buffer | null;
  private readonly mtimeSum: number;

  constructor(private readonly mtime: Date) {
    const seconds = mtime.getTime() / 1000;
    if (seconds < 0 || seconds > MAX_OCTAL_12) {
      this.mtimeField = null;
      this.mtimeSum = 0;
      return;
    }
    const field = Buffer.alloc(12);
    writeOctal(field, 0, 12, seconds);
    this.mtimeField = field;
    this.mtimeSum = byteSum(field, 0, 12);
  }

  /** Appends the header block of one entry to `out`, preceded by a pax header when some field needs one. */
  append(out: TarOutput, path: string, type: TarType, mode: number, size: number, linkpath?: string): void {
    if (this.mtimeField === null || !fitsUstar(path, mode, size, linkpath)) {
      out.append(tarHeader(path, type, mode, size, this.mtime, linkpath));
      return;
    }
    const target = out.reserve(BLOCK);
    const at = out.offset;
    this.stamp(target, at, encodeUstar(target, at, path, type, mode, size, linkpath));
    out.commit(BLOCK);
  }

  /** append() for an entry given as data: its header is encoded once per entry object, then copied. */
  appendEntry(out: TarOutput, entry: SnapshotTarEntry): void {
    const encoded = encodedHeaderOf(entry);
    if (encoded === null || !this.stamps) {
      out.append(this.headerOf(entry));
      return;
    }
    const target = out.reserve(BLOCK);
    const at = out.offset;
    target.set(encoded.block, at);
    this.stamp(target, at, encoded.sum);
    out.commit(BLOCK);
  }

  /** The header block(s) of an entry by node-tar: a pax header first when some field needs one. */
  headerOf(entry: SnapshotTarEntry): Buffer {
    const { path, type, mode, size, linkpath } = headerFieldsOf(entry);
    return tarHeader(path, type, mode, size, this.mtime, linkpath);
  }

  /** Whether headers encoded without their time can be stamped (the time fits the ustar field). */
  get stamps(): boolean {
    return this.mtimeField !== null;
  }

  /** Writes the mtime and the checksum into a header encoded by encodeUstar (whose byte sum is `sum`). */
  stamp(target: Buffer, at: number, sum: number): void {
    target.set(this.mtimeField!, at + 136);
    // Six octal digits, a space and a NUL, as node-tar writes it (a block's sum is below 8^6).
    let checksum = sum + this.mtimeSum;
    for (let i = 5; i >= 0; i--) {
      target[at + 148 + i] = 0x30 + (checksum & 7);
      checksum >>>= 3;
    }
    target[at + 154] = 0x20;
    target[at + 155] = 0;
  }
}

/** uid, gid, magic and device numbers, the same in every header (mtime and checksum left zero). */
const USTAR_TEMPLATE = ((): { block: Buffer; sum: number } => {
  const block = Buffer.alloc(BLOCK);
  writeOctal(block, 108, 8, 0); // uid
  writeOctal(block, 116, 8, 0); // gid
  block.write('ustar\u000000', 257, 8, 'latin1');
  writeOctal(block, 329, 8, 0); // devmajor
  writeOctal(block, 337, 8, 0); // devminor
  // The checksum counts its own field as eight spaces.
  return { block, sum: byteSum(block, 0, BLOCK) + 8 * 0x20 };
})();

/** Whether the header fits a plain ustar block that encodeUstar writes (otherwise node-tar, with pax). */
function fitsUstar(path: string, mode: number, size: number, linkpath: string | undefined): boolean {
  return (
    path.length < 100 &&
    ASCII.test(path) &&
    (linkpath === undefined || (linkpath.length < 100 && ASCII.test(linkpath))) &&
    mode <= MAX_OCTAL_8 &&
    size <= MAX_OCTAL_12
  );
}

/**
 * Writes a ustar header at `at` with the mtime and checksum fields zero; returns the byte sum of the block
 * with the checksum field counted as spaces (what the checksum is, once the mtime's bytes are added).
 */
function encodeUstar(
  target: Buffer,
  at: number,
  path: string,
  type: TarType,
  mode: number,
  size: number,
  linkpath: string | undefined,
): number {
  USTAR_TEMPLATE.block.copy(target, at);
  target.write(path, at, 'latin1');
  writeOctal(target, at + 100, 8, mode);
  writeOctal(target, at + 124, 12, size);
  target[at + 156] = TYPE_FLAGS[type];
  if (linkpath !== undefined) target.write(linkpath, at + 157, 'latin1');
  // The template is zero where the fields above go.
  return (
    USTAR_TEMPLATE.sum +
    byteSum(target, at, at + 108) +
    byteSum(target, at + 124, at + 136) +
    byteSum(target, at + 156, at + 257)
  );
}

/** The header fields of an entry given as data. */
interface HeaderFields {
  path: string;
  type: TarType;
  mode: number;
  size: number;
  linkpath?: string;
}

function headerFieldsOf(entry: SnapshotTarEntry): HeaderFields {
  if (entry.kind === 'directory') return { path: `${entry.path}/`, type: 'Directory', mode: 0o755, size: 0 };
  if (entry.kind === 'symlink') {
    if (entry.linkpath === undefined) throw new SnapshotNotArchivable(entry.path, 'symlink without a target');
    return { path: entry.path, type: 'SymbolicLink', mode: 0o777, size: 0, linkpath: entry.linkpath };
  }
  return {
    path: entry.path,
    type: 'File',
    mode: entry.executable ? 0o755 : 0o644,
    size: fileContent(entry).length,
  };
}

/** A file entry's content; one without any (as a TarImage keeps them) cannot be written from the entry. */
export function fileContent(entry: SnapshotTarEntry): Buffer {
  if (!entry.data) throw new SnapshotNotArchivable(entry.path, 'a file entry without its content');
  return entry.data;
}

/** A number as node-tar writes it: zero-padded octal, then a space and a NUL (just a NUL when it is full). */
function writeOctal(target: Buffer, at: number, fieldSize: number, value: number): void {
  const digits = Math.floor(value).toString(8);
  const text = digits.length === fieldSize - 1 ? `${digits}\0` : `${digits.padStart(fieldSize - 2, '0')} \0`;
  target.write(text, at, fieldSize, 'latin1');
}

function byteSum(bytes: Buffer, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += bytes[i] ?? 0;
  return sum;
}

/** The header block of one entry by node-tar, preceded by a pax header when the fields do not fit ustar. */
function tarHeader(
  path: string,
  type: TarType,
  mode: number,
  size: number,
  mtime: Date,
  linkpath?: string,
): Buffer {
  const header = new Header({ path, linkpath, mode, uid: 0, gid: 0, size, mtime, type });
  // encode() reports whether some field (long or non-ASCII path, huge size) needs a pax record.
  const needsPax = header.encode();
  if (!header.block) throw new Error(`tar header for ${path} was not encoded`);
  return needsPax
    ? Buffer.concat([new Pax({ path, linkpath, size, mtime }).encode(), header.block])
    : header.block;
}

/** Pax global header `comment=<commit id>`, the record `git archive` writes and `git get-tar-commit-id` reads. */
export function globalCommentHeader(commitId: string, mtime: Date): Buffer {
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
