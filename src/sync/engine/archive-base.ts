/**
 * The entries of a branch's last archive, kept in memory so the next revision's archive can be made from
 * them and the tree changes git reports, without reading the snapshot from disk: the changed paths are
 * spliced into the previous revision's entries, which stay in tree order.
 *
 * Exact by construction when the entries are exactly the previous commit's tree (they are what its
 * archive was written from) and the changes are git's between the two commits. Changes that do not fit
 * the entries (a path to change that is missing, one to add that is there) mean the entries are not that
 * tree: the result is refused and the archive is made from the snapshot instead.
 *
 * Once an archive has been made this way, its tar is kept too (a TarImage): the next one copies the
 * unchanged entries' bytes from it instead of writing them again.
 */
import { isUtf8 } from 'node:buffer';
import { tarEntryBytes, treeOrderKey, type SnapshotTarEntry } from '../../artifacts/reproducible-tarball.js';
import { type TarImage, TarImageBuffers } from '../../artifacts/tar-image.js';
import type { TreeChange } from '../git/tree-changes.js';

/** The changes do not apply to the entries: they are not the tree the changes start from. */
export class ArchiveBaseMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveBaseMismatch';
  }
}

/** Bytes the entries take in a tar (headers and padded contents): what holding them costs, near enough. */
export function tarBytesOf(entries: readonly SnapshotTarEntry[]): number {
  let bytes = 0;
  for (const entry of entries) bytes += tarEntryBytes(entry.data?.length ?? 0);
  return bytes;
}

function keyOf(entry: SnapshotTarEntry): string {
  return treeOrderKey(entry.path, entry.kind === 'directory');
}

/** What a git mode is in a snapshot: submodules are checked out as empty directories. */
function kindOfMode(mode: string): SnapshotTarEntry['kind'] | null {
  switch (mode) {
    case '100644':
    case '100755':
      return 'file';
    case '120000':
      return 'symlink';
    case '040000':
    case '160000':
      return 'directory';
    default:
      return null;
  }
}

function entryOf(change: TreeChange): SnapshotTarEntry {
  const kind = kindOfMode(change.newMode);
  if (kind === null) throw new ArchiveBaseMismatch(`unknown mode ${change.newMode} of ${change.path}`);
  if (kind === 'directory') return { path: change.path, kind };
  if (!change.data) throw new ArchiveBaseMismatch(`no content for ${JSON.stringify(change.path)}`);
  if (kind === 'symlink') {
    if (!isUtf8(change.data) || change.data.length === 0) {
      throw new ArchiveBaseMismatch(`the symlink ${JSON.stringify(change.path)} has no UTF-8 target`);
    }
    return { path: change.path, kind, linkpath: change.data.toString('utf8') };
  }
  return { path: change.path, kind, executable: change.newMode === '100755', data: change.data };
}

/** First index whose key is not below `key` (entries are in tree order). */
function lowerBound(entries: readonly SnapshotTarEntry[], key: string): number {
  let low = 0;
  let high = entries.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (keyOf(entries[mid]!) < key) low = mid + 1;
    else high = mid;
  }
  return low;
}

/**
 * The entries of the new tree: `base` (tree order) with `changes` applied, and for each new entry the
 * index of the same entry in `base`, or -1 for an entry the changes put in. Throws ArchiveBaseMismatch when
 * a change does not fit `base`.
 */
export function spliceTreeChanges(
  base: readonly SnapshotTarEntry[],
  changes: readonly TreeChange[],
): { entries: SnapshotTarEntry[]; sources: Int32Array } {
  // Old side: the key that must be in base and go. New side: the entry to put in, and whether it replaces
  // an entry with the same key (a modification) or takes a free one.
  const removals = new Set<string>();
  const puts = new Map<string, { entry: SnapshotTarEntry; replaces: boolean }>();
  for (const change of changes) {
    const oldKind = kindOfMode(change.oldMode);
    const newKind = kindOfMode(change.newMode);
    if (change.status === 'M') {
      // A directory whose contents changed, or a submodule moved to another commit: same empty directory.
      if (newKind === 'directory') continue;
      if (oldKind !== newKind) throw new ArchiveBaseMismatch(`${change.path} changed type without T`);
      puts.set(treeOrderKey(change.path, false), { entry: entryOf(change), replaces: true });
      continue;
    }
    if (change.status === 'D' || change.status === 'T') {
      if (oldKind === null) throw new ArchiveBaseMismatch(`unknown mode ${change.oldMode} of ${change.path}`);
      removals.add(treeOrderKey(change.path, oldKind === 'directory'));
    }
    if (change.status === 'A' || change.status === 'T') {
      const entry = entryOf(change);
      puts.set(keyOf(entry), { entry, replaces: false });
    }
  }

  // Where each removal and put lands in base, in base order; consecutive slices of base are copied between.
  const edits: { at: number; key: string }[] = [];
  for (const key of new Set([...removals, ...puts.keys()])) edits.push({ at: lowerBound(base, key), key });
  edits.sort((a, b) => a.at - b.at || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const result: SnapshotTarEntry[] = [];
  const sources: number[] = [];
  let copied = 0;
  const copyTo = (end: number): void => {
    for (; copied < end; copied++) {
      result.push(base[copied]!);
      sources.push(copied);
    }
  };
  for (const { at, key } of edits) {
    copyTo(at);
    const present = copied < base.length && keyOf(base[copied]!) === key;
    const removed = removals.has(key);
    const put = puts.get(key);
    if (removed || put?.replaces) {
      if (!present) throw new ArchiveBaseMismatch(`${JSON.stringify(key)} is not in the previous revision`);
      copied++;
    } else if (present) {
      throw new ArchiveBaseMismatch(`${JSON.stringify(key)} is already in the previous revision`);
    }
    if (put) {
      result.push(put.entry);
      sources.push(-1);
    }
  }
  copyTo(base.length);
  return { entries: result, sources: Int32Array.from(sources) };
}

/** What is kept of one branch's last archive: its entries, and its tar when it was made from entries. */
export interface ArchiveBase {
  entries: readonly SnapshotTarEntry[];
  /** Held for whoever got it from the cache, who must release it. */
  image: TarImage | null;
}

/**
 * The last archive per branch, least recently used dropped first beyond `maxBytes` (the tar's size, or the
 * image's memory when the tar is kept). One sync runs per branch at a time, so a branch's entry is never
 * written twice at once. Spare image buffers (`buffers`) take up to half of `maxBytes` more.
 */
export class ArchiveBaseCache {
  private readonly bases = new Map<
    string,
    { sha: string; entries: readonly SnapshotTarEntry[]; image: TarImage | null; bytes: number }
  >();
  private bytes = 0;
  /** Buffers for the images of this cache. */
  readonly buffers: TarImageBuffers;

  constructor(readonly maxBytes: number) {
    this.buffers = new TarImageBuffers(Math.floor(maxBytes / 2));
  }

  /** The last archive of the branch when it is `sha`'s; its image is held for the caller. */
  get(branchId: string, sha: string): ArchiveBase | null {
    const base = this.bases.get(branchId);
    if (base?.sha !== sha) return null;
    // Most recently used last.
    this.bases.delete(branchId);
    this.bases.set(branchId, base);
    return { entries: base.entries, image: base.image?.retain() ?? null };
  }

  /** Keeps the entries of `sha`'s archive for the branch (replacing the branch's previous ones). */
  set(
    branchId: string,
    sha: string,
    entries: readonly SnapshotTarEntry[],
    bytes = tarBytesOf(entries),
  ): void {
    this.keep(branchId, { sha, entries, image: null, bytes });
  }

  /** Keeps the image of `sha`'s archive for the branch, which the cache now holds (the caller's hold). */
  setImage(branchId: string, sha: string, image: TarImage): void {
    this.keep(branchId, { sha, entries: image.entries, image, bytes: image.heldBytes });
  }

  delete(branchId: string): void {
    const base = this.bases.get(branchId);
    if (!base) return;
    this.bases.delete(branchId);
    this.drop(base);
  }

  /** Bytes held (tar size of the entries kept). */
  get size(): number {
    return this.bytes;
  }

  private keep(
    branchId: string,
    base: { sha: string; entries: readonly SnapshotTarEntry[]; image: TarImage | null; bytes: number },
  ): void {
    this.delete(branchId);
    if (base.bytes > this.maxBytes) {
      base.image?.release();
      return;
    }
    this.bases.set(branchId, base);
    this.bytes += base.bytes;
    for (const [id, oldest] of this.bases) {
      if (this.bytes <= this.maxBytes) break;
      this.bases.delete(id);
      this.drop(oldest);
    }
  }

  private drop(base: { image: TarImage | null; bytes: number }): void {
    this.bytes -= base.bytes;
    base.image?.release();
  }
}
