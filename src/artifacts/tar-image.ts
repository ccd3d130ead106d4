/**
 * The tar of an archive held uncompressed in one buffer, with where each entry starts: the next revision's
 * tar is then mostly this one's bytes. An entry the sync did not change keeps its header and content, only
 * its time and checksum are stamped again, and runs of such entries are copied in one go; changed entries
 * are encoded from their data. The gzip is compressed straight from views of the buffer.
 *
 * The bytes are exactly those createTarballOfEntries writes for the same entries, time and commit id.
 *
 * Buffers are recycled (see TarImageBuffers): a fresh buffer of the size of a large tar costs a page fault
 * per 4 KiB when first written, many times the copy itself. So an image is reference counted, and its
 * buffer goes back to its pool when the last holder releases it.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { gzipOfBuffer } from './block-gzip.js';
import {
  assertGzipLevel,
  entryTime,
  type ReproducibleTarball,
  type ReproducibleTarballOptions,
  tarballOfGzip,
  tarEntryBytes,
  TARBALL_GZIP_LEVEL,
} from './reproducible-tarball.js';
import {
  BLOCK,
  encodedHeaderOf,
  fileContent,
  globalCommentHeader,
  HeaderWriter,
  type SnapshotTarEntry,
} from './tar-header.js';

/** Synchronous work between two turns of the event loop. */
const SLICE_MS = 5;
/** Entries written between two looks at the clock. */
const ENTRIES_PER_CLOCK_CHECK = 512;
/** Bytes copied from the previous image at once, at most (but always one whole entry). */
const RUN_MAX_BYTES = 16 * 1024 * 1024;
const END_OF_ARCHIVE_BYTES = 2 * BLOCK;
const PAGE_BYTES = 4096;
/** A spare buffer may be this much larger than asked for (or twice as large) and still be taken. */
const SPARE_SLACK_BYTES = 1024 * 1024;

/**
 * The image cannot be made from what it was given: an entry without its content that is not copied from
 * the previous image, or cannot be (a time that does not fit a ustar header is not stamped).
 */
export class TarImageUnusable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarImageUnusable';
  }
}

/**
 * Spare buffers for images, reused best fit. Holds at most `maxFreeBytes` of them; a buffer larger than
 * that is never kept.
 */
export class TarImageBuffers {
  private readonly free: Buffer[] = [];
  private freeBytes = 0;

  constructor(readonly maxFreeBytes: number) {}

  /** A buffer of at least `size` bytes: a spare one when one fits (best fit, not much larger). */
  take(size: number): Buffer {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const length = this.free[i]!.length;
      if (length < size || length > Math.max(2 * size, size + SPARE_SLACK_BYTES)) continue;
      if (best < 0 || length < this.free[best]!.length) best = i;
    }
    if (best >= 0) {
      const [buffer] = this.free.splice(best, 1);
      this.freeBytes -= buffer!.length;
      return buffer!;
    }
    // Room to grow: the next revision's tar of the same tree is usually a little larger.
    return Buffer.allocUnsafeSlow(Math.ceil((size + size / 16) / PAGE_BYTES) * PAGE_BYTES);
  }

  /** Takes `buffer` back; the oldest spare ones go first when they would hold too much. */
  give(buffer: Buffer): void {
    if (buffer.length > this.maxFreeBytes) return;
    this.free.push(buffer);
    this.freeBytes += buffer.length;
    while (this.freeBytes > this.maxFreeBytes) this.freeBytes -= this.free.shift()!.length;
  }

  /** Bytes held in spare buffers. */
  get size(): number {
    return this.freeBytes;
  }
}

/**
 * One archive's tar. Holders retain it and release it when done; once released by every holder its
 * buffer is reused, and reading it throws.
 */
export class TarImage {
  private holders = 1;

  constructor(
    private readonly pool: TarImageBuffers,
    private readonly buffer: Buffer,
    private readonly length: number,
    /** The entries, in order; file contents held by the image are left out of them. */
    readonly entries: readonly SnapshotTarEntry[],
    /** Where entry i's bytes start; the last element is where the end-of-archive blocks start. */
    readonly starts: Float64Array,
    /** The byte sum of entry i's ustar header without its time (see encodeUstar); -1 when it has none. */
    readonly sums: Int32Array,
  ) {}

  /** The tar. */
  get bytes(): Buffer {
    this.assertHeld();
    return this.buffer.subarray(0, this.length);
  }

  /** Memory the image takes. */
  get heldBytes(): number {
    return this.buffer.length;
  }

  /** One more holder, who must release it. */
  retain(): this {
    this.assertHeld();
    this.holders++;
    return this;
  }

  release(): void {
    this.assertHeld();
    if (--this.holders === 0) this.pool.give(this.buffer);
  }

  private assertHeld(): void {
    if (this.holders <= 0) throw new Error('tar image used after its last release');
  }
}

/** The previous revision's image and, for each new entry, the index of the same entry in it or -1. */
export interface TarImageBase {
  image: TarImage;
  sources: Int32Array;
}

/**
 * The tar of `entries` (tree order, every directory before its contents) with `opts`' time and commit id.
 * Entries whose `sources` index points into `base` are copied from it (they need no content); the others
 * are encoded from their data. Yields to the event loop every few milliseconds.
 */
export async function buildTarImage(
  entries: readonly SnapshotTarEntry[],
  opts: Pick<ReproducibleTarballOptions, 'mtime' | 'commitId'>,
  pool: TarImageBuffers,
  base?: TarImageBase,
): Promise<TarImage> {
  const mtime = entryTime(opts);
  const headers = new HeaderWriter(mtime);
  const previous = base?.image.retain();
  try {
    const sources = base?.sources;
    const previousSums = previous?.sums;
    const previousStarts = previous?.starts;
    // The index of entry i in the previous image when it is copied from there, else -1.
    const source = (i: number): number => {
      const s = sources?.[i] ?? -1;
      return s >= 0 && headers.stamps && previousSums![s]! >= 0 ? s : -1;
    };
    // Sizes first, so the buffer is taken once: copied entries take what they took; the others their
    // header (node-tar's, with any pax record, kept for the second pass) and their padded content.
    const global = opts.commitId === undefined ? null : globalCommentHeader(opts.commitId, mtime);
    const slow = new Map<number, Buffer>();
    let size = (global?.length ?? 0) + END_OF_ARCHIVE_BYTES;
    for (let i = 0; i < entries.length; i++) {
      const s = source(i);
      if (s >= 0) {
        size += previousStarts![s + 1]! - previousStarts![s]!;
        continue;
      }
      const entry = entries[i]!;
      if (entry.kind === 'file' && !entry.data) {
        throw new TarImageUnusable(
          `${JSON.stringify(entry.path)} is neither copied nor given with its content`,
        );
      }
      const content = entry.data?.length ?? 0;
      if (encodedHeaderOf(entry) && headers.stamps) {
        size += tarEntryBytes(content);
      } else {
        const header = headers.headerOf(entry);
        slow.set(i, header);
        size += header.length + tarEntryBytes(content) - BLOCK;
      }
    }

    const buffer = pool.take(size);
    const starts = new Float64Array(entries.length + 1);
    const sums = new Int32Array(entries.length);
    const kept: SnapshotTarEntry[] = new Array<SnapshotTarEntry>(entries.length);
    let at = 0;
    if (global) at += global.copy(buffer, at);
    let sliceStart = performance.now();
    let sinceClockCheck = 0;
    for (let i = 0; i < entries.length;) {
      if (sinceClockCheck >= ENTRIES_PER_CLOCK_CHECK) {
        sinceClockCheck = 0;
        if (performance.now() - sliceStart >= SLICE_MS) {
          await nextTurn();
          sliceStart = performance.now();
        }
      }
      const s = source(i);
      if (s >= 0) {
        // A run of entries that follow each other in the previous image: one copy, then each stamped.
        let last = i;
        while (
          last + 1 < entries.length &&
          source(last + 1) === s + (last + 1 - i) &&
          previousStarts![s + (last + 1 - i) + 1]! - previousStarts![s]! <= RUN_MAX_BYTES
        )
          last++;
        const from = previousStarts![s]!;
        const to = previousStarts![s + last - i + 1]!;
        previous!.bytes.copy(buffer, at, from, to);
        for (let k = i; k <= last; k++) {
          const start = at + previousStarts![s + k - i]! - from;
          const sum = previousSums![s + k - i]!;
          starts[k] = start;
          sums[k] = sum;
          headers.stamp(buffer, start, sum);
          kept[k] = entries[k]!;
        }
        // A run takes its copy's time whatever its number of entries: the clock is looked at next.
        sinceClockCheck = ENTRIES_PER_CLOCK_CHECK;
        at += to - from;
        i = last + 1;
        continue;
      }
      const entry = entries[i]!;
      starts[i] = at;
      const header = slow.get(i);
      if (header) {
        at += header.copy(buffer, at);
        sums[i] = -1;
        // Written by node-tar each time: the entry keeps its content.
        kept[i] = entry;
      } else {
        const encoded = encodedHeaderOf(entry)!;
        encoded.block.copy(buffer, at);
        headers.stamp(buffer, at, encoded.sum);
        sums[i] = encoded.sum;
        at += BLOCK;
        kept[i] = entry.kind === 'file' ? withoutContent(entry) : entry;
      }
      if (entry.kind === 'file') {
        const content = fileContent(entry);
        const padded = tarEntryBytes(content.length) - BLOCK;
        content.copy(buffer, at);
        buffer.fill(0, at + content.length, at + padded);
        at += padded;
      }
      sinceClockCheck++;
      i++;
    }
    starts[entries.length] = at;
    buffer.fill(0, at, at + END_OF_ARCHIVE_BYTES);
    at += END_OF_ARCHIVE_BYTES;
    if (at !== size) throw new Error(`tar image size ${at} differs from the ${size} bytes planned`);
    return new TarImage(pool, buffer, size, kept, starts, sums);
  } finally {
    previous?.release();
  }
}

/** A file entry as an image keeps it: its content is in the image. */
function withoutContent(entry: SnapshotTarEntry): SnapshotTarEntry {
  return entry.executable === undefined
    ? { path: entry.path, kind: entry.kind }
    : { path: entry.path, kind: entry.kind, executable: entry.executable };
}

/**
 * The `.tar.gz` of an image (see block-gzip.ts), the same bytes createTarballOfEntries writes. Holds the
 * image until the stream has ended; a stream never read holds it until collected.
 */
export function createTarballOfImage(
  image: TarImage,
  { signal, level = TARBALL_GZIP_LEVEL }: Pick<ReproducibleTarballOptions, 'signal' | 'level'>,
): ReproducibleTarball {
  assertGzipLevel(level);
  const held = image.retain();
  async function* gzip(): AsyncGenerator<Buffer> {
    try {
      yield* gzipOfBuffer(held.bytes, level);
    } finally {
      held.release();
    }
  }
  return tarballOfGzip(gzip(), signal);
}
