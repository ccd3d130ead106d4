/**
 * The listing of a snapshot read from its archive: the mode and blob id of every file and symlink (hashed
 * as the bytes go by), its directories, and the content of the few paths a delta will reuse. Every entry
 * is checked, and anything a snapshot must not hold rejects the whole archive: an absolute path, `..`,
 * `.git`, a duplicate, an entry below a symlink, a symlink without a target.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { unsafePathProblem } from './delta-plan.js';
import { gitObjectId, type GitObjectFormat, type SnapshotFileEntry } from './git-tree-hash.js';
import { ArchiveRejected, readSnapshotArchive } from './snapshot-archive-reader.js';

/** One file or symlink of a snapshot. */
export interface SnapshotEntry extends SnapshotFileEntry {
  size: number;
}

/** Every file and symlink of a snapshot by `/`-separated path. */
export type SnapshotListing = Map<string, SnapshotEntry>;

/** A snapshot as a delta is applied to it. */
export interface BaseSnapshot {
  files: SnapshotListing;
  /** Every directory entry of the archive. */
  directories: Set<string>;
  /** Directories the archive holds with nothing below them (where git checks out a submodule). */
  emptyDirectories: Set<string>;
  /** Content (a symlink's: its target) of the paths asked for, when the snapshot has them. */
  contents: Map<string, Buffer>;
}

export interface ReadBaseSnapshotOptions {
  /** Paths whose content to keep. */
  keep: ReadonlySet<string>;
  format: GitObjectFormat;
  /** Files larger than this reject the archive. */
  maxEntryBytes: number;
  signal?: AbortSignal;
}

/** Entries between two turns of the event loop. */
const ENTRIES_PER_TURN = 2000;

/** Reads and checks the tar stream `chunks` of a snapshot archive (see the module comment). */
export async function readBaseSnapshot(
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
  opts: ReadBaseSnapshotOptions,
): Promise<BaseSnapshot> {
  const files: SnapshotListing = new Map();
  const directories = new Set<string>();
  const contents = new Map<string, Buffer>();
  let count = 0;
  for await (const batch of readSnapshotArchive(chunks, { maxEntryBytes: opts.maxEntryBytes })) {
    for (const entry of batch) {
      const { path } = entry;
      // Below a directory entry already accepted (as every archive lists them, before their contents),
      // only the last component is new: its parents were checked with that directory.
      const slash = path.lastIndexOf('/');
      const checkedParent = slash > 0 && directories.has(path.slice(0, slash));
      const unsafe = unsafePathProblem(checkedParent ? path.slice(slash + 1) : path);
      if (unsafe) throw new ArchiveRejected(`entry ${JSON.stringify(path)}: ${unsafe}`);
      if (files.has(path) || directories.has(path)) {
        throw new ArchiveRejected(`${JSON.stringify(path)} is in the archive twice`);
      }
      for (let at = checkedParent ? -1 : path.indexOf('/'); at >= 0; at = path.indexOf('/', at + 1)) {
        const parent = files.get(path.slice(0, at));
        if (parent) {
          const what = parent.mode === '120000' ? 'a symlink' : 'a file';
          throw new ArchiveRejected(`${JSON.stringify(path)} lies below ${what}`);
        }
      }
      if (entry.kind === 'directory') {
        directories.add(path);
      } else if (entry.kind === 'symlink') {
        if (!entry.linkpath) throw new ArchiveRejected(`the symlink ${JSON.stringify(path)} has no target`);
        const target = Buffer.from(entry.linkpath, 'utf8');
        files.set(path, {
          mode: '120000',
          blobId: gitObjectId('blob', target, opts.format),
          size: target.length,
        });
        if (opts.keep.has(path)) contents.set(path, target);
      } else {
        const mode = entry.mode & 0o100 ? '100755' : '100644';
        files.set(path, {
          mode,
          blobId: gitObjectId('blob', entry.data, opts.format),
          size: entry.data.length,
        });
        // A copy: the entry's bytes may be a view of a large chunk of the stream.
        if (opts.keep.has(path)) contents.set(path, Buffer.from(entry.data));
      }
    }
    count += batch.length;
    if (count >= ENTRIES_PER_TURN) {
      count = 0;
      opts.signal?.throwIfAborted();
      await nextTurn();
    }
  }
  const emptyDirectories = new Set(directories);
  for (const path of [...files.keys(), ...directories]) {
    for (let at = path.indexOf('/'); at >= 0; at = path.indexOf('/', at + 1)) {
      emptyDirectories.delete(path.slice(0, at));
    }
  }
  return { files, directories, emptyDirectories, contents };
}
