/**
 * Git object ids computed without git: blobs, tree objects as a host lists them (gitTreeObjectId), and the
 * trees of a snapshot listing (ListingTree): the proof that a snapshot built from a compare-delta is the
 * commit.
 *
 * What git records, and so what this computes:
 * - A file is a blob (`blob <size>\0<content>`) with mode 100755 when the owner may execute it, 100644
 *   otherwise. A symlink is a blob of its target's bytes with mode 120000.
 * - A directory is a tree (`tree <size>\0` then per entry `<mode> <name>\0<raw id>`), mode `40000`. A
 *   directory with no file anywhere below it does not exist for git.
 * - Entries in git's order: bytewise by UTF-8 name, a directory's name compared as if it ended in `/`.
 */
import { createHash, hash } from 'node:crypto';

/** Git's object formats: SHA-1 (40 hex ids) and SHA-256 (64 hex ids). */
export type GitObjectFormat = 'sha1' | 'sha256';
/** Modes of the non-tree entries a snapshot can hold (submodules, 160000, cannot be on disk). */
export type GitBlobMode = '100644' | '100755' | '120000';

/** One file of a hashed snapshot. */
export interface SnapshotFileEntry {
  mode: GitBlobMode;
  blobId: string;
}

/** Id of the tree with no entries. */
export const EMPTY_TREE_ID: Readonly<Record<GitObjectFormat, string>> = {
  sha1: '4b825dc642cb6eb9a060e54bf8d69288fbee4904',
  sha256: '6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321',
};

// eslint-disable-next-line no-control-regex
const ASCII_NAME = /^[\x00-\x7f]*$/;

/** Whether a path component is `.git` in any case: git refuses to record such a path. */
export function isDotGitName(name: string | Buffer): boolean {
  const text = typeof name === 'string' ? name : name.toString('latin1');
  return text.length === 4 && text.toLowerCase() === '.git';
}

/** Objects up to this size are hashed in one call, from a copy behind their header. */
const ONE_SHOT_BYTES = 64 * 1024;
const oneShot = Buffer.allocUnsafe(ONE_SHOT_BYTES + 32);

/** Id of a git object of `type` with this content. */
export function gitObjectId(
  type: 'blob' | 'tree',
  content: Buffer,
  format: GitObjectFormat = 'sha1',
): string {
  if (content.length <= ONE_SHOT_BYTES) {
    // One call instead of a Hash object per object: most snapshot files are small, and a snapshot has
    // tens of thousands of them.
    const headerLength = oneShot.write(`${type} ${content.length}\0`, 0, 'latin1');
    content.copy(oneShot, headerLength);
    return hash(format, oneShot.subarray(0, headerLength + content.length), 'hex');
  }
  return createHash(format).update(`${type} ${content.length}\0`).update(content).digest('hex');
}

/** One entry of a git tree object as a host lists it: mode (`40000` or `040000` for a tree), name, object id. */
export interface GitTreeObjectEntry {
  mode: string;
  name: string;
  id: string;
}

/**
 * Id of the tree object holding exactly `entries` (one directory level), built like git builds it:
 * entries in bytewise order of their UTF-8 names, a tree's name compared as if it ended in `/`, modes
 * without leading zeros. For hosts that list a tree's entries but do not give its id (GitLab).
 */
export function gitTreeObjectId(entries: readonly GitTreeObjectEntry[], format?: GitObjectFormat): string {
  const objectFormat = format ?? (entries[0]?.id.length === 64 ? 'sha256' : 'sha1');
  const idHexLength = objectFormat === 'sha256' ? 64 : 40;
  const rows = entries.map((entry) => {
    const mode = entry.mode.replace(/^0+/, '');
    if (!/^[0-7]+$/.test(mode)) throw new TypeError(`not a git mode: ${JSON.stringify(entry.mode)}`);
    if (entry.name === '' || entry.name.includes('/') || entry.name.includes('\0')) {
      throw new TypeError(`not a tree entry name: ${JSON.stringify(entry.name)}`);
    }
    if (entry.id.length !== idHexLength || !/^[0-9a-f]+$/i.test(entry.id)) {
      throw new TypeError(`not a ${objectFormat} object id: ${JSON.stringify(entry.id)}`);
    }
    return { mode, name: entry.name, id: entry.id };
  });
  return treeObjectId(rows, objectFormat);
}

/**
 * The id of the tree object holding these entries (modes without leading zeros, ids in hex), in git's
 * order: bytewise by UTF-8 name, a tree's name as if it ended in `/`.
 */
function treeObjectId(entries: readonly TreeRow[], format: GitObjectFormat): string {
  const idBytes = format === 'sha256' ? 32 : 20;
  const rows: (TreeRow & { key: string; nameBytes: number })[] = [];
  let size = 0;
  for (const entry of entries) {
    const ascii = ASCII_NAME.test(entry.name);
    const nameBytes = ascii ? entry.name.length : Buffer.byteLength(entry.name, 'utf8');
    // latin1 of the UTF-8 bytes compares as the bytes do.
    const bytewise = ascii ? entry.name : Buffer.from(entry.name, 'utf8').toString('latin1');
    rows.push({ ...entry, key: entry.mode === '40000' ? `${bytewise}/` : bytewise, nameBytes });
    size += entry.mode.length + 1 + nameBytes + 1 + idBytes;
  }
  rows.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const object = Buffer.allocUnsafe(size);
  let at = 0;
  for (const row of rows) {
    at += object.write(row.mode, at, 'latin1');
    object[at++] = 0x20;
    at += object.write(row.name, at, 'utf8');
    object[at++] = 0;
    at += object.write(row.id, at, 'hex');
  }
  return gitObjectId('tree', object, format);
}

/** One entry of a tree object: mode without leading zeros, name, object id in hex. */
interface TreeRow {
  mode: string;
  name: string;
  id: string;
}

/** The tree id of a listing of files and symlinks, built like git builds it (directories from the paths). */
export function listingTreeId(
  listing: ReadonlyMap<string, SnapshotFileEntry>,
  format: GitObjectFormat = 'sha1',
): string {
  return new ListingTree(listing, format).rootId;
}

/** One entry of a directory of a ListingTree: a file or symlink (its mode) or a subdirectory (`40000`). */
interface ListingTreeEntry {
  mode: string;
  /** Blob id (hex), or '' for a subdirectory (its id is the directory's). */
  id: string;
}

type DirectoryEntries = Map<string, ListingTreeEntry>;

/** Where a ListingTree's directories are read and changed. */
interface DirectoryStore {
  /** The entries of `dir`, to change. */
  get(dir: string): DirectoryEntries | undefined;
  set(dir: string, entries: DirectoryEntries): void;
  delete(dir: string): void;
}

/** The directories of a tree as changed by a few paths: a changed directory gets its own copy. */
class ChangedDirectories implements DirectoryStore {
  /** Changed directories; null: removed. */
  readonly changed = new Map<string, DirectoryEntries | null>();

  constructor(private readonly base: ReadonlyMap<string, DirectoryEntries>) {}

  get(dir: string): DirectoryEntries | undefined {
    if (this.changed.has(dir)) return this.changed.get(dir) ?? undefined;
    const original = this.base.get(dir);
    if (original === undefined) return undefined;
    const own = new Map(original);
    this.changed.set(dir, own);
    return own;
  }

  /** The entries of `dir` for reading (no copy). */
  peek(dir: string): DirectoryEntries | undefined {
    return this.changed.has(dir) ? (this.changed.get(dir) ?? undefined) : this.base.get(dir);
  }

  set(dir: string, entries: DirectoryEntries): void {
    this.changed.set(dir, entries);
  }

  delete(dir: string): void {
    this.changed.set(dir, null);
  }
}

const parentOf = (path: string): string => {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
};
const nameOf = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

/**
 * The git trees of a listing of files and symlinks, every directory's id kept, so the id of the listing
 * after a few changes costs only the directories on their paths (`idAfter`). The ids come from this
 * process's own hashing: they are not checked the way a host's listing is (gitTreeObjectId).
 */
export class ListingTree {
  /** Entries of every directory (`''` the root) by name. */
  private readonly directories = new Map<string, DirectoryEntries>([['', new Map()]]);
  private readonly ids = new Map<string, string>();
  readonly rootId: string;

  constructor(
    listing: ReadonlyMap<string, SnapshotFileEntry>,
    private readonly format: GitObjectFormat = 'sha1',
  ) {
    const store: DirectoryStore = {
      get: (dir) => this.directories.get(dir),
      set: (dir, entries) => this.directories.set(dir, entries),
      delete: (dir) => this.directories.delete(dir),
    };
    for (const [path, entry] of listing) this.add(store, path, entry);
    this.rootId = this.hash((dir) => this.directories.get(dir), [...this.directories.keys()], this.ids);
  }

  /** The tree id once `removed` are gone and `written` are set (removals first); this tree is unchanged. */
  idAfter(removed: Iterable<string>, written: Iterable<[string, SnapshotFileEntry]>): string {
    const store = new ChangedDirectories(this.directories);
    for (const path of removed) this.remove(store, path);
    for (const [path, entry] of written) this.add(store, path, entry);
    // A changed directory and every directory above it get new ids.
    const dirty = new Set<string>();
    for (const dir of store.changed.keys()) {
      for (let at: string | null = dir; at !== null && !dirty.has(at); at = at === '' ? null : parentOf(at)) {
        dirty.add(at);
      }
    }
    const ids = new Map(this.ids);
    for (const dir of dirty) ids.delete(dir);
    return this.hash((dir) => store.peek(dir), [...dirty], ids);
  }

  /** Adds a file or symlink, creating its directories. */
  private add(store: DirectoryStore, path: string, entry: SnapshotFileEntry): void {
    this.directory(store, parentOf(path)).set(nameOf(path), { mode: entry.mode, id: entry.blobId });
  }

  private directory(store: DirectoryStore, dir: string): DirectoryEntries {
    let found = store.get(dir);
    if (found === undefined) {
      found = new Map();
      store.set(dir, found);
      this.directory(store, parentOf(dir)).set(nameOf(dir), { mode: '40000', id: '' });
    }
    return found;
  }

  /** Removes a path, and the directories it leaves empty. */
  private remove(store: DirectoryStore, path: string): void {
    const dir = parentOf(path);
    const entries = store.get(dir);
    if (!entries?.delete(nameOf(path))) return;
    if (entries.size === 0 && dir !== '') {
      store.delete(dir);
      this.remove(store, dir);
    }
  }

  /** Hashes the `dirty` directories deepest first (recording their ids in `ids`); the root's id. */
  private hash(
    entriesOf: (dir: string) => DirectoryEntries | undefined,
    dirty: string[],
    ids: Map<string, string>,
  ): string {
    const depth = (dir: string): number => {
      let n = dir === '' ? 0 : 1;
      for (let at = dir.indexOf('/'); at >= 0; at = dir.indexOf('/', at + 1)) n++;
      return n;
    };
    const order = dirty.map((dir) => ({ dir, depth: depth(dir) })).sort((a, b) => b.depth - a.depth);
    for (const { dir } of order) {
      const entries = entriesOf(dir);
      if (entries !== undefined) ids.set(dir, this.treeId(dir, entries, ids));
    }
    return ids.get('') ?? EMPTY_TREE_ID[this.format];
  }

  /** The id of one directory's tree object, its subdirectories' ids taken from `ids`. */
  private treeId(dir: string, entries: DirectoryEntries, ids: ReadonlyMap<string, string>): string {
    const rows: TreeRow[] = [];
    for (const [name, entry] of entries) {
      const id = entry.mode === '40000' ? ids.get(dir === '' ? name : `${dir}/${name}`) : entry.id;
      if (id === undefined) throw new Error(`no tree id for ${dir}/${name}`);
      rows.push({ mode: entry.mode, name, id });
    }
    return treeObjectId(rows, this.format);
  }
}
