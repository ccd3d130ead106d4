/**
 * gzip made the way pigz makes it: the tar is cut into blocks of exactly DEFLATE_BLOCK_BYTES, each
 * compressed as raw deflate with the 32 KiB before it as its dictionary and ended by a sync flush, so the
 * blocks join into one deflate stream that any gunzip reads; an empty final block, then the CRC-32 and
 * size. Blocks compress on libuv's threadpool, several at once. The bytes depend only on the tar and the
 * level, not on how the tar was handed over or how many blocks ran at once. The header carries no name
 * and mtime 0, and says Unix.
 */
import { availableParallelism } from 'node:os';
import { constants as zlibConstants, crc32, deflateRaw } from 'node:zlib';

/** Tar bytes per deflate block: changing it changes every archive's bytes. */
export const DEFLATE_BLOCK_BYTES = 1024 * 1024;
const DEFLATE_WINDOW_BYTES = 32 * 1024;
/** Blocks compressed at once (on libuv's threadpool, four threads by default). */
const DEFLATE_PARALLELISM = Math.min(Math.max(availableParallelism() * 2, 4), 8);
/** An empty final deflate block with fixed codes: ends the stream after the last sync flush. */
const DEFLATE_EMPTY_FINAL_BLOCK = Buffer.from([0x03, 0x00]);
const GZIP_OS_UNIX = 3;

/** A recyclable output buffer and the pieces of it still downstream. */
export interface PooledBuffer {
  buffer: Buffer;
  /** Pieces handed downstream and not yet released. */
  pieces: number;
  /** No more bytes will be written to it: it can be reused once every piece is released. */
  retired: boolean;
}

/**
 * Output buffers taken back once the compressor has consumed every piece of them. A fresh buffer costs a
 * page fault per 4 KiB when first written (the kernel hands out zeroed pages): for the 20 MB tar of a
 * tree of 20,000 small files that cost several times the copying itself. Shared by every archive of the
 * process; at most `keep` free buffers are held.
 */
class BufferRecycler {
  private readonly free: Buffer[] = [];
  private readonly owners = new WeakMap<Buffer, PooledBuffer>();

  constructor(
    private readonly size: number,
    private readonly keep: number,
  ) {}

  take(): PooledBuffer {
    return { buffer: this.free.pop() ?? Buffer.allocUnsafe(this.size), pieces: 0, retired: false };
  }

  /** `owner.buffer[start, end)`, counted until released. */
  piece(owner: PooledBuffer, start: number, end: number): Buffer {
    const piece = owner.buffer.subarray(start, end);
    owner.pieces++;
    this.owners.set(piece, owner);
    return piece;
  }

  retire(owner: PooledBuffer): void {
    owner.retired = true;
    this.reuseIfDone(owner);
  }

  /** The compressor is done with `piece` (a piece of some other buffer is ignored). */
  release(piece: Buffer): void {
    const owner = this.owners.get(piece);
    if (!owner) return;
    this.owners.delete(piece);
    owner.pieces--;
    this.reuseIfDone(owner);
  }

  private reuseIfDone(owner: PooledBuffer): void {
    if (owner.retired && owner.pieces === 0 && this.free.length < this.keep) this.free.push(owner.buffer);
  }
}

/** Buffers of DEFLATE_BLOCK_BYTES shared by the tar writers and the compressor. */
export const batchBuffers = new BufferRecycler(DEFLATE_BLOCK_BYTES, 16);

/** One block of the tar: its bytes and the 32 KiB before them; `done` once they are no longer read. */
interface DeflateBlock {
  input: Buffer;
  dictionary: Buffer | undefined;
  done?: () => void;
}

/** The gzip file of a tar handed over in chunks of any size (released to batchBuffers once copied). */
export function gzipInBlocks(tar: AsyncIterable<Buffer>, level: number): AsyncGenerator<Buffer> {
  return gzipOfBlocks(blocksOfChunks(tar), level);
}

/** The gzip file of a tar held in one buffer, compressed from views of it: nothing is copied. */
export function gzipOfBuffer(tar: Buffer, level: number): AsyncGenerator<Buffer> {
  return gzipOfBlocks(blocksOfBuffer(tar), level);
}

function* blocksOfBuffer(tar: Buffer): Generator<DeflateBlock> {
  for (let at = 0; at < tar.length; at += DEFLATE_BLOCK_BYTES) {
    yield {
      input: tar.subarray(at, Math.min(at + DEFLATE_BLOCK_BYTES, tar.length)),
      dictionary: at === 0 ? undefined : tar.subarray(at - DEFLATE_WINDOW_BYTES, at),
    };
  }
}

/** Chunks copied into pooled blocks of exactly DEFLATE_BLOCK_BYTES (the last one shorter). */
async function* blocksOfChunks(tar: AsyncIterable<Buffer>): AsyncGenerator<DeflateBlock> {
  let previousTail: Buffer | undefined;
  let block = batchBuffers.take();
  let filled = 0;
  const full = (): DeflateBlock => {
    const input = batchBuffers.piece(block, 0, filled);
    batchBuffers.retire(block);
    const dictionary = previousTail;
    // Copied: the block's buffer is reused once compressed.
    previousTail = Buffer.from(input.subarray(Math.max(0, filled - DEFLATE_WINDOW_BYTES)));
    block = batchBuffers.take();
    filled = 0;
    return { input, dictionary, done: () => batchBuffers.release(input) };
  };
  try {
    for await (const chunk of tar) {
      for (let at = 0; at < chunk.length;) {
        const n = Math.min(chunk.length - at, DEFLATE_BLOCK_BYTES - filled);
        block.buffer.set(chunk.subarray(at, at + n), filled);
        filled += n;
        at += n;
        if (filled === DEFLATE_BLOCK_BYTES) yield full();
      }
      // Copied into blocks: the tar's own buffer can be reused.
      batchBuffers.release(chunk);
    }
    if (filled > 0) yield full();
  } finally {
    batchBuffers.retire(block);
  }
}

/**
 * The gzip file: header, the blocks compressed in order with at most DEFLATE_PARALLELISM running, the
 * final empty block and the trailer. Once it has ended, however it ended, no block is read any more.
 */
async function* gzipOfBlocks(
  blocks: Iterable<DeflateBlock> | AsyncIterable<DeflateBlock>,
  level: number,
): AsyncGenerator<Buffer> {
  yield gzipHeader(level);
  const running: Promise<Buffer>[] = [];
  let crc = 0;
  let size = 0;
  try {
    for await (const block of blocks) {
      crc = crc32(block.input, crc);
      size += block.input.length;
      const compressed = deflateRawBlock(block.input, level, block.dictionary);
      const done = block.done;
      if (done) compressed.then(done, done);
      running.push(compressed);
      while (running.length >= DEFLATE_PARALLELISM) yield await running.shift()!;
    }
    while (running.length > 0) yield await running.shift()!;
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc >>> 0, 0);
    trailer.writeUInt32LE(size % 2 ** 32, 4);
    yield Buffer.concat([DEFLATE_EMPTY_FINAL_BLOCK, trailer]);
  } finally {
    // Given up (an error, or the reader went away): the blocks still compressing are waited for, so the
    // caller may reuse their memory once this has ended.
    await Promise.allSettled(running);
  }
}

/** One block as raw deflate, ended by a sync flush (byte-aligned, not final). */
function deflateRawBlock(input: Buffer, level: number, dictionary: Buffer | undefined): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    deflateRaw(
      input,
      {
        level,
        memLevel: 8,
        strategy: zlibConstants.Z_DEFAULT_STRATEGY,
        dictionary,
        finishFlush: zlibConstants.Z_SYNC_FLUSH,
      },
      (error, output) => (error ? reject(error) : resolve(output)),
    );
  });
}

/** gzip's 10-byte header: deflate, no flags, mtime 0, zlib's extra flags for the level, OS Unix. */
function gzipHeader(level: number): Buffer {
  const extraFlags = level === 9 ? 2 : level === 1 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, extraFlags, GZIP_OS_UNIX]);
}
