/**
 * Applies a validated compare-delta (delta-plan.ts) to the listing of a base snapshot (read from its
 * archive, snapshot-listing.ts): nothing is written to disk. The result is the new listing (mode and blob
 * id of every file and symlink, which the tree proof hashes) and the content of every written path (which
 * the new archive takes in place of the base's bytes).
 *
 * Order:
 * 1. Check every path (the host's answer is untrusted input: no absolute paths, `..` or `.git`).
 * 2. Stage every new content: downloads (checked against their blob id when there is one), and the bytes
 *    of rename and copy sources and of mode changes from the base itself. A write whose base path already
 *    has the blob id asked for downloads nothing. Modes the host did not give (`inherit`) come from the
 *    base.
 * 3. Remove removed paths and rename sources, then write: a write may not go below a file or symlink, nor
 *    onto a directory, of the result.
 *
 * Contents are content-addressed in a BlobCache (blob id to bytes), which the caller may share between runs.
 */
import { createConcurrencyLimit } from './concurrency-limit.js';
import type { DeltaChange, DeltaContent } from './delta-plan.js';
import { unsafePathProblem } from './delta-plan.js';
import { gitObjectId, type GitBlobMode, type GitObjectFormat } from './git-tree-hash.js';
import type { BaseSnapshot, SnapshotListing } from './snapshot-listing.js';

/** What to download: a blob by id, or a file by path as of a commit. */
export type BlobRequest = { sha: string } | { path: string; ref: string };
/** Downloads content from the code host (CodeHost.getBlob or CodeHost.getFileAtRef). */
export type FetchBlob = (request: BlobRequest) => Promise<Buffer>;

export interface DeltaApplyOptions {
  fetchBlob: FetchBlob;
  /** Downloads at a time. */
  concurrency: number;
  objectFormat?: GitObjectFormat;
  /** Filled and consulted here (default: a new one for this call). */
  cache?: BlobStore;
  /** Write Git LFS pointer files as they are instead of refusing the delta (default false). */
  allowLfsPointers?: boolean;
  signal?: AbortSignal;
}

/** One written file or symlink of the result. */
export interface WrittenEntry {
  mode: GitBlobMode;
  /** File content, or a symlink's target. */
  data: Buffer;
}

export interface DeltaApplyResult {
  /** Every file and symlink of the result. */
  files: SnapshotListing;
  /** Every directory of the result. */
  directories: Set<string>;
  /** The written paths with their content. */
  written: Map<string, WrittenEntry>;
  /** Base paths that are not in the result as they were (removed, or written anew). */
  replaced: Set<string>;
  /** Paths removed, written or changed in mode (a rename counts once). */
  filesChanged: number;
  /** Bytes downloaded from the host (cache hits and local reuse not counted). */
  bytesDownloaded: number;
  blobsDownloaded: number;
  cacheHits: number;
  /** Contents taken from the base itself (renames, copies, mode changes). */
  localReuses: number;
}

export type DeltaApplyFailureCode =
  'UNSAFE_PATH' | 'BLOB_MISMATCH' | 'LFS_POINTER' | 'SNAPSHOT_MISMATCH' | 'CONFLICTING_CHANGES';

/** The delta cannot be applied to this base; the snapshot must be built with git. */
export class DeltaApplyFailed extends Error {
  constructor(
    readonly code: DeltaApplyFailureCode,
    readonly path: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'DeltaApplyFailed';
  }
}

/** The snapshot built from a delta is not the commit's tree. */
export class DeltaVerificationFailed extends Error {
  readonly code = 'DELTA_VERIFICATION_FAILED';
  constructor(
    readonly expectedTreeId: string,
    readonly actualTreeId: string,
  ) {
    super(
      `the snapshot's tree is ${actualTreeId}, not the commit's tree ${expectedTreeId}: rebuild it with git`,
    );
    this.name = 'DeltaVerificationFailed';
  }
}

/** Git LFS pointer files start with one of these lines (the second is the pre-1.0 spec). */
const LFS_POINTER_PREFIXES = [
  Buffer.from('version https://git-lfs.github.com/spec/'),
  Buffer.from('version https://hawser.github.com/spec/'),
];

/** Whether content starts like a Git LFS pointer file. */
export function isLfsPointer(head: Buffer): boolean {
  return LFS_POINTER_PREFIXES.some((prefix) => head.subarray(0, prefix.length).equals(prefix));
}

/** The proof of a delta's result: throws DeltaVerificationFailed unless its tree id is the commit's. */
export function proveTreeId(actualTreeId: string, expectedTreeId: string): void {
  if (actualTreeId !== expectedTreeId.toLowerCase()) {
    throw new DeltaVerificationFailed(expectedTreeId, actualTreeId);
  }
}

/** Verified contents by blob id. */
export interface BlobStore {
  get(id: string): Buffer | undefined;
  set(id: string, data: Buffer): void;
}

/**
 * Contents by blob id, the least recently used dropped beyond a total size. Only verified contents go in:
 * a blob checked against the id it was asked by, or bytes keyed by the id computed from them.
 */
export class BlobCache implements BlobStore {
  private readonly blobs = new Map<string, Buffer>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(id: string): Buffer | undefined {
    const data = this.blobs.get(id);
    if (data !== undefined) {
      // Most recently used last.
      this.blobs.delete(id);
      this.blobs.set(id, data);
    }
    return data;
  }

  set(id: string, data: Buffer): void {
    if (data.length > this.maxBytes || this.blobs.has(id)) return;
    this.blobs.set(id, data);
    this.bytes += data.length;
    for (const [oldest, old] of this.blobs) {
      if (this.bytes <= this.maxBytes) break;
      this.blobs.delete(oldest);
      this.bytes -= old.length;
    }
  }

  get size(): number {
    return this.blobs.size;
  }

  /** A view whose ids are kept apart from every other scope's (one per tenant). */
  scoped(scope: string): BlobStore {
    return {
      get: (id) => this.get(`${scope}:${id}`),
      set: (id, data) => this.set(`${scope}:${id}`, data),
    };
  }
}

/** The base paths whose content `changes` may reuse: rename and copy sources, and written paths themselves. */
export function reusedPaths(changes: readonly DeltaChange[]): Set<string> {
  const paths = new Set<string>();
  for (const change of changes) if (change.op === 'write') paths.add(change.source ?? change.path);
  return paths;
}

/** A write with its content staged and its mode settled. */
interface StagedWrite {
  path: string;
  blobId: string;
  mode: GitBlobMode;
  data: Buffer;
}

/** Applies `changes` to `base` (see the module comment for the order and the guarantees). */
export async function applyCompareDelta(
  changes: readonly DeltaChange[],
  base: BaseSnapshot,
  opts: DeltaApplyOptions,
): Promise<DeltaApplyResult> {
  const format = opts.objectFormat ?? 'sha1';
  const cache = opts.cache ?? new BlobCache(Number.MAX_SAFE_INTEGER);
  const limit = createConcurrencyLimit(opts.concurrency);
  const counts = { bytesDownloaded: 0, blobsDownloaded: 0, cacheHits: 0, localReuses: 0 };

  // 1. Paths.
  const removals: string[] = [];
  const writes = changes.filter((change) => change.op === 'write');
  for (const change of changes) {
    for (const path of change.op === 'write' ? [change.path, change.source] : [change.path]) {
      if (path === null) continue;
      const problem = unsafePathProblem(path);
      if (problem)
        throw new DeltaApplyFailed('UNSAFE_PATH', path, `refused path ${JSON.stringify(path)}: ${problem}`);
    }
    if (change.op === 'remove') removals.push(change.path);
    else if (change.source !== null && change.removeSource) removals.push(change.source);
  }
  if (
    new Set(removals).size !== removals.length ||
    new Set(writes.map((w) => w.path)).size !== writes.length
  ) {
    throw new DeltaApplyFailed('CONFLICTING_CHANGES', '', 'a path is removed or written twice');
  }

  // 2. Contents and modes.
  const staged = await settleAll(
    writes.map(async (change): Promise<StagedWrite> => {
      opts.signal?.throwIfAborted();
      const from = change.source ?? change.path;
      if (change.source !== null) assertSource(base, from);
      const before = base.files.get(from) ?? null;
      const { blobId, data } = await stageContent(change.path, change.content, from, before?.blobId ?? null);
      const mode = change.mode === 'inherit' ? (before?.mode ?? '100644') : change.mode;
      if (!opts.allowLfsPointers && mode !== '120000' && isLfsPointer(data)) {
        throw new DeltaApplyFailed(
          'LFS_POINTER',
          change.path,
          `${change.path} is a Git LFS pointer: LFS content is synced with git`,
        );
      }
      return { path: change.path, blobId, mode, data };
    }),
  );

  async function stageContent(
    path: string,
    content: DeltaContent,
    from: string,
    beforeBlobId: string | null,
  ): Promise<{ blobId: string; data: Buffer }> {
    const local = (): Buffer => {
      const data = base.contents.get(from);
      if (data === undefined) {
        throw new DeltaApplyFailed(
          'SNAPSHOT_MISMATCH',
          from,
          `${from} is not in the snapshot, so its bytes cannot be reused`,
        );
      }
      counts.localReuses++;
      return data;
    };
    if (content.from === 'previous') {
      // Contents are kept for base paths only, so one was found: the path has a blob id.
      const data = local();
      return { blobId: beforeBlobId!, data };
    }
    if (content.from === 'blob') {
      const sha = content.sha.toLowerCase();
      const cached = cache.get(sha);
      if (cached) {
        counts.cacheHits++;
        return { blobId: sha, data: cached };
      }
      if (beforeBlobId === sha) return { blobId: sha, data: keep(sha, local()) };
      const bytes = await limit(() => opts.fetchBlob({ sha }));
      const actual = gitObjectId('blob', bytes, format);
      if (actual !== sha) {
        throw new DeltaApplyFailed(
          'BLOB_MISMATCH',
          path,
          `the host sent ${bytes.length} bytes for blob ${sha} of ${path} that hash to ${actual}`,
        );
      }
      countDownload(bytes);
      return { blobId: sha, data: keep(sha, bytes) };
    }
    const bytes = await limit(() => opts.fetchBlob({ path: content.path, ref: content.ref }));
    countDownload(bytes);
    const blobId = gitObjectId('blob', bytes, format);
    return { blobId, data: keep(blobId, bytes) };
  }

  function countDownload(bytes: Buffer): void {
    counts.blobsDownloaded++;
    counts.bytesDownloaded += bytes.length;
  }

  function keep(blobId: string, data: Buffer): Buffer {
    cache.set(blobId, data);
    return data;
  }

  // 3. Removals, then writes.
  const files: SnapshotListing = new Map(base.files);
  const replaced = new Set<string>();
  for (const path of removals) {
    assertBelowDirectories(base.files, path);
    if (!files.delete(path)) {
      throw new DeltaApplyFailed(
        'SNAPSHOT_MISMATCH',
        path,
        `${path} is not a file or symlink in the snapshot`,
      );
    }
    replaced.add(path);
  }
  const directories = directoriesOf(files, base.emptyDirectories);
  const written = new Map<string, WrittenEntry>();
  for (const write of staged) {
    if (directories.has(write.path)) {
      throw new DeltaApplyFailed(
        'SNAPSHOT_MISMATCH',
        write.path,
        `${write.path} is a directory in the snapshot`,
      );
    }
    for (const parent of ancestors(write.path)) {
      const blocking = files.get(parent);
      if (blocking?.mode === '120000') {
        throw new DeltaApplyFailed('UNSAFE_PATH', write.path, `a parent of ${write.path} is a symlink`);
      }
      if (blocking) {
        throw new DeltaApplyFailed(
          'SNAPSHOT_MISMATCH',
          write.path,
          `${parent} must be a directory for ${write.path}, and the snapshot has a file there`,
        );
      }
    }
    if (base.files.has(write.path)) replaced.add(write.path);
    files.set(write.path, { mode: write.mode, blobId: write.blobId, size: write.data.length });
    written.set(write.path, { mode: write.mode, data: write.data });
    for (const parent of ancestors(write.path)) directories.add(parent);
  }
  return { files, directories, written, replaced, filesChanged: changes.length, ...counts };
}

/** A rename or copy source must be a file or symlink of the base below real directories. */
function assertSource(base: BaseSnapshot, path: string): void {
  assertBelowDirectories(base.files, path);
  if (!base.files.has(path)) {
    const isDirectory = base.emptyDirectories.has(path) || hasEntryBelow(base.files, path);
    throw new DeltaApplyFailed(
      'SNAPSHOT_MISMATCH',
      path,
      `${path} ${isDirectory ? 'is a directory in the snapshot' : 'is not in the snapshot'}`,
    );
  }
}

/** Refuses a path below a file or symlink of the listing (a symlink could lead anywhere). */
function assertBelowDirectories(files: SnapshotListing, path: string): void {
  for (const parent of ancestors(path)) {
    if (files.has(parent)) {
      throw new DeltaApplyFailed(
        'UNSAFE_PATH',
        path,
        `a parent of ${path} is not a directory in the snapshot`,
      );
    }
  }
}

function hasEntryBelow(files: SnapshotListing, dir: string): boolean {
  const prefix = `${dir}/`;
  for (const path of files.keys()) if (path.startsWith(prefix)) return true;
  return false;
}

/** The parent directories of a path, nearest last (`a`, `a/b` for `a/b/c`). */
function ancestors(path: string): string[] {
  const found: string[] = [];
  for (let at = path.indexOf('/'); at >= 0; at = path.indexOf('/', at + 1)) found.push(path.slice(0, at));
  return found;
}

/** Every directory holding a listed path, plus the empty ones kept (with their parents). */
function directoriesOf(files: SnapshotListing, emptyDirectories: ReadonlySet<string>): Set<string> {
  const directories = new Set<string>();
  const add = (path: string): void => {
    for (let at = path.lastIndexOf('/'); at > 0; at = path.lastIndexOf('/', at - 1)) {
      const dir = path.slice(0, at);
      if (directories.has(dir)) return;
      directories.add(dir);
    }
  };
  for (const path of files.keys()) add(path);
  for (const dir of emptyDirectories) {
    if (files.has(dir)) continue;
    directories.add(dir);
    add(dir);
  }
  return directories;
}

/**
 * Like Promise.all, but waits for every task before rejecting with the first failure, so no download is
 * still running when the caller moves on.
 */
async function settleAll<T>(tasks: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(tasks);
  const failed = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((outcome) => (outcome as PromiseFulfilledResult<T>).value);
}
