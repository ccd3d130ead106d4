/**
 * Applies a validated compare-delta (delta-plan.ts) to a snapshot directory holding the base revision,
 * then proves the result with its git tree id.
 *
 * Order, so a failure half-way leaves nothing worse than a snapshot that fails its proof:
 * 1. Check every path (the host's answer is untrusted input: no absolute paths, `..` or `.git`).
 * 2. Stage every new content in the blob cache, before anything is changed: downloads (checked against
 *    their blob id when there is one), and the bytes of rename and copy sources and of mode changes read
 *    from the snapshot itself. A rename whose source already has the new blob id downloads nothing.
 *    Modes the host did not give (`inherit`) are read from the snapshot here too.
 * 3. Remove removed paths and rename sources, then the directories that became empty.
 * 4. Write every new file or symlink through a temporary name and a rename, with its mode. Parent
 *    directories are created one component at a time and must be real directories (never a symlink a
 *    hostile answer could redirect the write through).
 *
 * The blob cache is per worker and content-addressed: one file per blob id, written atomically (temporary
 * name, then rename), so concurrent syncs and crashes never leave a partial entry under a blob id.
 */
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import {
  chmod,
  copyFile,
  lstat,
  mkdir,
  open,
  readFile,
  readlink,
  rename,
  rm,
  rmdir,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createConcurrencyLimit } from './concurrency-limit.js';
import type { DeltaChange, DeltaContent } from './delta-plan.js';
import { unsafePathProblem } from './delta-plan.js';
import {
  computeGitTreeId,
  gitObjectId,
  hashSnapshotFile,
  type GitBlobMode,
  type GitObjectFormat,
} from './git-tree-hash.js';

/** What to download: a blob by id, or a file by path as of a commit. */
export type BlobRequest = { sha: string } | { path: string; ref: string };
/** Downloads content from the code host (CodeHost.getBlob or CodeHost.getFileAtRef). */
export type FetchBlob = (request: BlobRequest) => Promise<Buffer>;

export interface DeltaApplyOptions {
  /** The snapshot of the base revision; changed in place. */
  snapshotDir: string;
  /** This worker's blob cache directory (created when missing). */
  cacheDir: string;
  fetchBlob: FetchBlob;
  /** Downloads and file operations at a time. */
  concurrency: number;
  objectFormat?: GitObjectFormat;
  /** Write Git LFS pointer files as they are instead of refusing the delta (default false). */
  allowLfsPointers?: boolean;
  signal?: AbortSignal;
}

export interface DeltaApplyResult {
  /** Paths removed, written or changed in mode (a rename counts once). */
  filesChanged: number;
  /** Bytes downloaded from the host (cache hits and local reuse not counted). */
  bytesDownloaded: number;
  blobsDownloaded: number;
  cacheHits: number;
  /** Contents taken from the snapshot itself (renames, copies, mode changes). */
  localReuses: number;
}

export type DeltaApplyFailureCode =
  'UNSAFE_PATH' | 'BLOB_MISMATCH' | 'LFS_POINTER' | 'SNAPSHOT_MISMATCH' | 'CONFLICTING_CHANGES';

/** The delta could not be applied; the snapshot may be half-changed and must be rebuilt with git. */
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
const LFS_PREFIX_BYTES = Math.max(...LFS_POINTER_PREFIXES.map((prefix) => prefix.length));

/** Whether content starts like a Git LFS pointer file. */
export function isLfsPointer(head: Buffer): boolean {
  return LFS_POINTER_PREFIXES.some((prefix) => head.subarray(0, prefix.length).equals(prefix));
}

/** A per-worker content-addressed store of blobs, one file per blob id. */
export class BlobCache {
  constructor(
    readonly dir: string,
    readonly format: GitObjectFormat = 'sha1',
  ) {}

  /** Where the blob `id` is (or would be) stored. */
  pathOf(id: string): string {
    if (!/^[0-9a-f]+$/.test(id)) throw new TypeError(`not a blob id: ${JSON.stringify(id)}`);
    return join(this.dir, id.slice(0, 2), id);
  }

  async has(id: string): Promise<boolean> {
    try {
      return (await lstat(this.pathOf(id))).isFile();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  /** Stores content under its blob id (computed here) and returns the id. */
  async put(content: Buffer): Promise<string> {
    const id = gitObjectId('blob', content, this.format);
    if (await this.has(id)) return id;
    await this.atomically(id, (temporary) => writeFile(temporary, content, { flag: 'wx' }));
    return id;
  }

  /** Stores a copy of a file known to have the blob id `id`. */
  async putFile(id: string, source: string): Promise<void> {
    if (await this.has(id)) return;
    await this.atomically(id, (temporary) => copyFile(source, temporary, fsConstants.COPYFILE_EXCL));
  }

  private async atomically(id: string, write: (temporary: string) => Promise<void>): Promise<void> {
    const target = this.pathOf(id);
    await mkdir(dirname(target), { recursive: true });
    const temporary = `${target}.${randomUUID()}.tmp`;
    try {
      await write(temporary);
      await rename(temporary, target);
    } catch (e) {
      await rm(temporary, { force: true });
      throw e;
    }
  }
}

/** A write with its content staged in the cache and its mode settled. */
interface StagedWrite {
  path: string;
  blobId: string;
  mode: GitBlobMode;
}

/** Applies `changes` to the snapshot (see the module comment for the order and the guarantees). */
export async function applyCompareDelta(
  changes: readonly DeltaChange[],
  opts: DeltaApplyOptions,
): Promise<DeltaApplyResult> {
  const format = opts.objectFormat ?? 'sha1';
  const cache = new BlobCache(opts.cacheDir, format);
  const limit = createConcurrencyLimit(opts.concurrency);
  const result: DeltaApplyResult = {
    filesChanged: 0,
    bytesDownloaded: 0,
    blobsDownloaded: 0,
    cacheHits: 0,
    localReuses: 0,
  };
  const absolute = (path: string): string => join(opts.snapshotDir, path);

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

  // 2. Contents and modes, before the snapshot changes.
  await mkdir(opts.cacheDir, { recursive: true });
  const staged = await settleAll(
    writes.map(async (change): Promise<StagedWrite> => {
      opts.signal?.throwIfAborted();
      const from = change.source ?? change.path;
      const before = await limit(() =>
        existingEntry(opts.snapshotDir, from, change.source === null ? 'target' : 'source', format),
      );
      const blobId = await stageContent(change.path, change.content, from, before);
      const mode = change.mode === 'inherit' ? (before?.mode ?? '100644') : change.mode;
      if (
        !opts.allowLfsPointers &&
        mode !== '120000' &&
        (await limit(() => startsLikeLfsPointer(cache.pathOf(blobId))))
      ) {
        throw new DeltaApplyFailed(
          'LFS_POINTER',
          change.path,
          `${change.path} is a Git LFS pointer: LFS content is synced with git`,
        );
      }
      return { path: change.path, blobId, mode };
    }),
  );

  async function stageContent(
    path: string,
    content: DeltaContent,
    from: string,
    before: LocalEntry | null,
  ): Promise<string> {
    if (content.from === 'previous') {
      if (!before) {
        throw new DeltaApplyFailed(
          'SNAPSHOT_MISMATCH',
          from,
          `${from} is not in the snapshot, so its bytes cannot be reused`,
        );
      }
      await limit(() => stageLocal(before, absolute(from)));
      result.localReuses++;
      return before.blobId;
    }
    if (content.from === 'blob') {
      const sha = content.sha.toLowerCase();
      if (await cache.has(sha)) {
        result.cacheHits++;
        return sha;
      }
      if (before?.blobId === sha) {
        await limit(() => stageLocal(before, absolute(from)));
        result.localReuses++;
        return sha;
      }
      const bytes = await limit(() => opts.fetchBlob({ sha }));
      const actual = gitObjectId('blob', bytes, format);
      if (actual !== sha) {
        throw new DeltaApplyFailed(
          'BLOB_MISMATCH',
          path,
          `the host sent ${bytes.length} bytes for blob ${sha} of ${path} that hash to ${actual}`,
        );
      }
      await countDownload(bytes);
      return sha;
    }
    const bytes = await limit(() => opts.fetchBlob({ path: content.path, ref: content.ref }));
    return countDownload(bytes);
  }

  async function countDownload(bytes: Buffer): Promise<string> {
    result.blobsDownloaded++;
    result.bytesDownloaded += bytes.length;
    return limit(() => cache.put(bytes));
  }

  async function stageLocal(entry: LocalEntry, path: string): Promise<void> {
    if (await cache.has(entry.blobId)) return;
    if (entry.mode === '120000') await cache.put(await readlink(path, { encoding: 'buffer' }));
    else await cache.putFile(entry.blobId, path);
  }

  // 3. Removals, then the directories they emptied (deepest first).
  const emptied = new Set<string>();
  await settleAll(
    removals.map((path) =>
      limit(async () => {
        await assertRealParents(opts.snapshotDir, path);
        const stats = await lstatOrNull(absolute(path));
        if (!stats || stats.isDirectory()) {
          throw new DeltaApplyFailed(
            'SNAPSHOT_MISMATCH',
            path,
            `${path} is not a file or symlink in the snapshot`,
          );
        }
        await unlink(absolute(path));
        for (let parent = dirname(path); parent !== '.'; parent = dirname(parent)) emptied.add(parent);
      }),
    ),
  );
  const byDepth = [...emptied].sort((a, b) => b.split('/').length - a.split('/').length);
  for (const dir of byDepth) {
    try {
      await rmdir(absolute(dir));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOENT') throw e;
    }
  }

  // 4. Writes.
  const directories = new Map<string, Promise<void>>();
  const ensureDirectory = (dir: string): Promise<void> => {
    if (dir === '.') return Promise.resolve();
    let pending = directories.get(dir);
    if (!pending) {
      pending = ensureDirectory(dirname(dir)).then(() => makeRealDirectory(absolute(dir), dir));
      directories.set(dir, pending);
    }
    return pending;
  };
  await settleAll(
    staged.map(async (write) => {
      opts.signal?.throwIfAborted();
      await ensureDirectory(dirname(write.path));
      await limit(() => writeEntry(absolute(write.path), write, cache));
    }),
  );
  result.filesChanged = changes.length;
  return result;
}

/**
 * Like Promise.all, but waits for every task before rejecting with the first failure: nothing may still be
 * writing into the snapshot or the cache when the caller starts cleaning up after a failed delta.
 */
async function settleAll<T>(tasks: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(tasks);
  const failed = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((outcome) => (outcome as PromiseFulfilledResult<T>).value);
}

/** Recomputes the snapshot's tree id; throws DeltaVerificationFailed unless it is `expectedTreeId`. */
export async function verifySnapshotTree(
  snapshotDir: string,
  expectedTreeId: string,
  opts: { objectFormat?: GitObjectFormat; concurrency?: number; signal?: AbortSignal } = {},
): Promise<void> {
  const { treeId } = await computeGitTreeId(snapshotDir, opts);
  if (treeId !== expectedTreeId.toLowerCase()) throw new DeltaVerificationFailed(expectedTreeId, treeId);
}

interface LocalEntry {
  mode: GitBlobMode;
  blobId: string;
}

/**
 * Mode and blob id of a file or symlink in the snapshot, read without following a symlinked parent (it
 * could lead outside the snapshot). A `target` (the path written) may be missing or sit where the base
 * has a directory or a non-directory parent: removals clear those first, and writing checks again. A
 * `source` (rename or copy) must be a file or symlink below real directories.
 */
async function existingEntry(
  root: string,
  path: string,
  role: 'source' | 'target',
  format: GitObjectFormat,
): Promise<LocalEntry | null> {
  const mismatch = (why: string) => new DeltaApplyFailed('SNAPSHOT_MISMATCH', path, `${path} ${why}`);
  let current = root;
  for (const part of path.split('/').slice(0, -1)) {
    current = join(current, part);
    const stats = await lstatOrNull(current);
    if (stats?.isDirectory()) continue;
    if (role === 'target') return null;
    if (stats?.isSymbolicLink()) {
      throw new DeltaApplyFailed('UNSAFE_PATH', path, `a parent of ${path} is a symlink in the snapshot`);
    }
    throw mismatch('is not in the snapshot');
  }
  const absolutePath = join(root, path);
  const stats = await lstatOrNull(absolutePath);
  if (!stats || stats.isDirectory()) {
    if (role === 'target') return null;
    throw mismatch(stats ? 'is a directory in the snapshot' : 'is not in the snapshot');
  }
  const { mode, blobId } = await hashSnapshotFile(absolutePath, format);
  return { mode, blobId };
}

async function lstatOrNull(path: string): Promise<Awaited<ReturnType<typeof lstat>> | null> {
  try {
    return await lstat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw e;
  }
}

/** Refuses when a parent of `path` in the snapshot is missing or not a real directory (a symlink could lead outside). */
async function assertRealParents(root: string, path: string): Promise<void> {
  let current = root;
  for (const part of path.split('/').slice(0, -1)) {
    current = join(current, part);
    const stats = await lstatOrNull(current);
    if (!stats) throw new DeltaApplyFailed('SNAPSHOT_MISMATCH', path, `${path} is not in the snapshot`);
    if (!stats.isDirectory()) {
      throw new DeltaApplyFailed(
        'UNSAFE_PATH',
        path,
        `a parent of ${path} is not a directory in the snapshot`,
      );
    }
  }
}

async function makeRealDirectory(absolutePath: string, path: string): Promise<void> {
  try {
    await mkdir(absolutePath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  if (!(await lstat(absolutePath)).isDirectory()) {
    throw new DeltaApplyFailed(
      'SNAPSHOT_MISMATCH',
      path,
      `${path} must be a directory for the new files below it, and the snapshot has a file or symlink there`,
    );
  }
}

async function startsLikeLfsPointer(path: string): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(LFS_PREFIX_BYTES);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    return isLfsPointer(head.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}

/** Writes one file or symlink from the cache under a temporary name, then renames it over the path. */
async function writeEntry(absolutePath: string, write: StagedWrite, cache: BlobCache): Promise<void> {
  const existing = await lstatOrNull(absolutePath);
  if (existing?.isDirectory()) {
    throw new DeltaApplyFailed(
      'SNAPSHOT_MISMATCH',
      write.path,
      `${write.path} is a directory in the snapshot`,
    );
  }
  const temporary = join(dirname(absolutePath), `.delta-${randomUUID()}.tmp`);
  try {
    if (write.mode === '120000') {
      await symlink(await readFile(cache.pathOf(write.blobId)), temporary);
    } else {
      await copyFile(cache.pathOf(write.blobId), temporary, fsConstants.COPYFILE_EXCL);
      await chmod(temporary, write.mode === '100755' ? 0o755 : 0o644);
    }
    await rename(temporary, absolutePath);
  } catch (e) {
    await rm(temporary, { force: true });
    throw e;
  }
}
