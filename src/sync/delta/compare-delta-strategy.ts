/**
 * Compare-delta: brings a snapshot to a branch's new head without a git clone, from the archive of the
 * previous revision and the code host's comparison, and proves the result is the new commit.
 *
 * Steps (any doubt ends the run with `ok: false`, and the engine rebuilds the snapshot with git):
 * 1. At once: the host's comparison `fromSha...toSha` and the stored archive of `fromSha`. No archive,
 *    or a comparison the plan refuses (delta-plan.ts), ends the run before anything is unpacked.
 * 2. The snapshot dir is emptied and the archive unpacked into it (modes and symlinks kept, every entry
 *    checked: no absolute path, `..`, `.git`, duplicate, entry below a symlink, or other entry type), each
 *    file hashed on its way to disk, while the host says the tree ids of both commits.
 * 3. What was unpacked must hash to `fromSha`'s tree: a bad archive is never built upon.
 * 4. The changed files are downloaded (by blob id or by path) into the blob cache and applied.
 * 5. The result must hash to `toSha`'s tree (invariant 4): by default the unpacked listing with every
 *    changed path re-read from disk, plus a walk proving the disk holds exactly those paths, sizes and
 *    modes; or (`verification: 'full'`) every file re-read and hashed.
 *
 * HostRateLimited and aborts are thrown, not turned into `ok: false`: the engine defers such work instead
 * of falling back to git. On `ok: false` the snapshot dir holds anything; the caller wipes it.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants as fsConstants,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Transform, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Parser, type ReadEntry } from 'tar';
import { HostContentMismatch } from '../../hosts/blob-integrity.js';
import { createConcurrencyLimit } from './concurrency-limit.js';
import type { CodeHost, HostProvider } from '../../hosts/code-host.js';
import { HostError, HostRateLimited } from '../../hosts/host-errors.js';
import {
  applyCompareDelta,
  DeltaApplyFailed,
  DeltaVerificationFailed,
  verifySnapshotTree,
  type BlobRequest,
  type DeltaApplyFailureCode,
  type DeltaApplyResult,
} from './delta-apply.js';
import {
  planCompareDelta,
  unsafePathProblem,
  type DeltaChange,
  type DeltaRefusalCode,
} from './delta-plan.js';
import {
  EMPTY_TREE_ID,
  gitObjectId,
  gitTreeObjectId,
  hashSnapshotFile,
  SnapshotNotHashable,
  type GitObjectFormat,
  type GitTreeObjectEntry,
  type SnapshotFileEntry,
} from './git-tree-hash.js';

/** Opens the stored archive of a revision of a repository, or resolves null when there is none. */
export type PreviousArchiveSource = (repositoryId: string, sha: string) => Promise<Readable | null>;

/** The code host of the repository, with a token read again for every call (tokens renew meanwhile). */
export interface CompareDeltaHostAccess {
  host: CodeHost;
  token: () => Promise<string>;
  owner: string;
  name: string;
}

export interface CompareDeltaStrategyOptions {
  repositoryId: string;
  openArchive: PreviousArchiveSource;
  hostAccess: CompareDeltaHostAccess;
  /** This worker's blob cache (content-addressed; shared by concurrent runs). */
  cacheDir: string;
  /** Downloads and file operations at a time (default 8; the host budget caps requests per token). */
  concurrency?: number;
  /**
   * How the result is proven against the new commit's tree id (default `listing`):
   * - `listing`: the tree id of the files as unpacked (hashed on their way to disk) with every changed
   *   path re-read from disk, plus a walk checking that the disk holds exactly those paths with those
   *   sizes and modes (the trust git's index gives stat data);
   * - `full`: every file re-read from disk and hashed (computeGitTreeId), several times slower.
   */
  verification?: 'listing' | 'full';
  log?: (msg: string, fields?: object) => void;
}

export interface CompareDeltaRunInput {
  /** Emptied, then filled with the snapshot of `toSha` (or anything, on `ok: false`). */
  snapshotDir: string;
  /** The branch's synced revision, whose archive is stored. */
  fromSha: string;
  /** The branch's new head. */
  toSha: string;
  provider: HostProvider;
  signal?: AbortSignal;
}

/** Milliseconds per phase (a phase that did not run is 0). */
export interface CompareDeltaTimings {
  /** The host's comparison and the plan. */
  compareMs: number;
  /** Unpacking the previous archive. */
  restoreMs: number;
  /** Checking the restored snapshot against the previous commit's tree. */
  verifyBaseMs: number;
  /** Downloading and applying the changed files. */
  applyMs: number;
  /** Proving the result against the new commit's tree. */
  verifyMs: number;
  totalMs: number;
}

/** Why compare-delta gave up; the engine falls back to git with this reason. */
export type CompareDeltaFailureCode =
  | DeltaRefusalCode
  | DeltaApplyFailureCode
  | 'ARCHIVE_MISSING'
  | 'ARCHIVE_INVALID'
  | 'ARCHIVE_MISMATCH'
  | 'HOST_ERROR'
  | 'DELTA_VERIFICATION_FAILED'
  | 'SNAPSHOT_NOT_HASHABLE'
  | 'DELTA_FAILED';

export type CompareDeltaOutcome =
  | {
      ok: true;
      /** Paths removed, written or changed in mode. */
      filesChanged: number;
      /** Bytes of file contents downloaded from the host (cache hits and local reuse not counted). */
      bytesDownloaded: number;
      /** Bytes of the previous archive read from the artifact store. */
      archiveBytes: number;
      blobsDownloaded: number;
      cacheHits: number;
      /** The proven tree id of the snapshot (that of `toSha`). */
      treeId: string;
      /** Committer time of `toSha` (the archive's entry times). */
      commitTime: Date;
      timings: CompareDeltaTimings;
    }
  | {
      ok: false;
      code: CompareDeltaFailureCode;
      reason: string;
      /** Bytes of the previous archive read before giving up (0 when it was not read). */
      archiveBytes: number;
      timings: CompareDeltaTimings;
    };

type Failure = Extract<CompareDeltaOutcome, { ok: false }>;

/** The archive holds something a snapshot must not (or is not a readable tar.gz). */
export class ArchiveRejected extends Error {
  constructor(reason: string, options?: ErrorOptions) {
    super(reason, options);
    this.name = 'ArchiveRejected';
  }
}

/** Ends a run early with `ok: false`. */
class DeltaFallback extends Error {
  constructor(
    readonly code: CompareDeltaFailureCode,
    reason: string,
  ) {
    super(reason);
    this.name = 'DeltaFallback';
  }
}

const short = (sha: string): string => sha.slice(0, 12);
const TAR_ENTRY_TYPES: ReadonlySet<string> = new Set(['File', 'OldFile', 'Directory', 'SymbolicLink']);
// O_EXCL: never replaces anything (a fresh dir has nothing); O_NOFOLLOW: never writes through a symlink.
const FILE_OPEN_FLAGS =
  fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
/** Changed files whose download starts while the archive is restored. */
const PREFETCH_FILES = 64;
/** Synchronous work between two turns of the event loop. */
const SLICE_MS = 5;

/** Updates a snapshot from the previous revision's archive and the host's comparison (see the module comment). */
export class CompareDeltaStrategy {
  private readonly repositoryId: string;
  private readonly openArchive: PreviousArchiveSource;
  private readonly access: CompareDeltaHostAccess;
  private readonly cacheDir: string;
  private readonly concurrency: number;
  private readonly verification: 'listing' | 'full';
  private readonly log: (msg: string, fields?: object) => void;

  constructor(options: CompareDeltaStrategyOptions) {
    this.repositoryId = options.repositoryId;
    this.openArchive = options.openArchive;
    this.access = options.hostAccess;
    this.cacheDir = options.cacheDir;
    this.concurrency = options.concurrency ?? 8;
    this.verification = options.verification ?? 'listing';
    this.log = options.log ?? (() => undefined);
  }

  /** Brings `snapshotDir` to `toSha` from the archive of `fromSha`, or says why it could not. */
  async run(input: CompareDeltaRunInput): Promise<CompareDeltaOutcome> {
    const { snapshotDir, fromSha, toSha, provider, signal } = input;
    if (provider !== this.access.host.provider) {
      throw new TypeError(`the run is for ${provider}, the host access for ${this.access.host.provider}`);
    }
    const started = performance.now();
    const format: GitObjectFormat = fromSha.length === 64 ? 'sha256' : 'sha1';
    const timings: CompareDeltaTimings = {
      compareMs: 0,
      restoreMs: 0,
      verifyBaseMs: 0,
      applyMs: 0,
      verifyMs: 0,
      totalMs: 0,
    };
    const counter = new ByteCounter();
    let archive: Readable | null = null;
    try {
      // 1. Comparison and archive at once.
      const phase = performance.now();
      const [comparison, opened] = await Promise.allSettled([
        this.host((host, token, owner, name) => host.compare(token, owner, name, fromSha, toSha)),
        this.openArchive(this.repositoryId, fromSha),
      ]);
      if (opened.status === 'fulfilled') archive = opened.value;
      if (comparison.status === 'rejected') throw comparison.reason;
      if (opened.status === 'rejected') {
        throw new DeltaFallback(
          'ARCHIVE_MISSING',
          `the archive of ${short(fromSha)} could not be opened: ${messageOf(opened.reason)}`,
        );
      }
      if (archive === null) {
        throw new DeltaFallback(
          'ARCHIVE_MISSING',
          `no archive of ${short(fromSha)} is stored to apply the delta to`,
        );
      }
      const plan = planCompareDelta(comparison.value, provider, {
        canFetchByPath: this.access.host.getFileAtRef !== undefined,
        expectedBaseSha: fromSha,
        expectedHeadSha: toSha,
      });
      timings.compareMs = performance.now() - phase;
      if (!plan.ok) throw new DeltaFallback(plan.code, plan.reason);
      const head = comparison.value.commits.find((c) => c.sha === toSha);
      if (!head?.committer) {
        throw new DeltaFallback(
          'DELTA_FAILED',
          `the comparison does not say when ${short(toSha)} was committed`,
        );
      }
      const commitTime = head.committer.date;

      // 2. Restore, while the host says both tree ids.
      // Asked for while the archive unpacks; a run that ends before they are awaited must not leave
      // their rejection unhandled.
      const trees = Promise.all([this.commitTree(fromSha), this.commitTree(toSha)]);
      trees.catch(() => undefined);
      const prefetched = this.prefetch(plan.changes);
      let mark = performance.now();
      await rm(snapshotDir, { recursive: true, force: true });
      await mkdir(snapshotDir, { recursive: true });
      const source = archive;
      archive = null;
      const listing = await restoreArchive(source, counter, snapshotDir, format, signal);
      timings.restoreMs = performance.now() - mark;
      const [fromTree, toTree] = await trees;

      // 3. The base must be the previous commit: the bytes just written, hashed on their way to disk.
      mark = performance.now();
      const baseTree = listingTreeId(listing, format);
      timings.verifyBaseMs = performance.now() - mark;
      if (baseTree !== fromTree) {
        throw new DeltaFallback(
          'ARCHIVE_MISMATCH',
          `the archive of ${short(fromSha)} unpacks to tree ${short(baseTree)}, not the commit's tree ${short(fromTree)}`,
        );
      }

      // 4. Download and apply.
      mark = performance.now();
      const applied = await this.apply(plan.changes, snapshotDir, prefetched, format, signal);
      timings.applyMs = performance.now() - mark;

      // 5. The proof.
      mark = performance.now();
      if (this.verification === 'full') {
        await verifySnapshotTree(snapshotDir, toTree, {
          concurrency: this.concurrency,
          objectFormat: format,
          signal,
        });
      } else {
        await this.verifyFromListing(listing, plan.changes, snapshotDir, toTree, format);
      }
      timings.verifyMs = performance.now() - mark;
      timings.totalMs = performance.now() - started;
      return {
        ok: true,
        filesChanged: applied.filesChanged,
        bytesDownloaded: applied.bytesDownloaded,
        archiveBytes: counter.bytes,
        blobsDownloaded: applied.blobsDownloaded,
        cacheHits: applied.cacheHits,
        treeId: toTree,
        commitTime,
        timings,
      };
    } catch (error) {
      archive?.destroy();
      timings.totalMs = performance.now() - started;
      const failure = this.failureOf(error, fromSha, toSha);
      failure.archiveBytes = counter.bytes;
      failure.timings = timings;
      this.log('compare-delta fell back', {
        repositoryId: this.repositoryId,
        fromSha,
        toSha,
        code: failure.code,
        reason: failure.reason,
      });
      return failure;
    }
  }

  /** Downloads through the host and applies; a rate limit met by any download is what is thrown. */
  /**
   * Starts downloading the new content of added and modified paths (renames and copies mostly reuse
   * bytes from the snapshot, so they wait for the applier), at most PREFETCH_FILES of them, so the
   * downloads overlap the archive restore. The applier takes them from here; anything else it downloads
   * itself.
   */
  private prefetch(changes: readonly DeltaChange[]): Map<string, Promise<Buffer>> {
    const limit = createConcurrencyLimit(this.concurrency);
    const started = new Map<string, Promise<Buffer>>();
    for (const change of changes) {
      if (started.size >= PREFETCH_FILES) break;
      if (change.op !== 'write' || change.source !== null || change.content.from === 'previous') continue;
      const request: BlobRequest =
        change.content.from === 'blob'
          ? { sha: change.content.sha.toLowerCase() }
          : { path: change.content.path, ref: change.content.ref };
      const key = requestKey(request);
      if (started.has(key)) continue;
      const download = limit(() => this.download(request));
      // Awaited by the applier when it needs the content; a prefetch nobody needs must not go unhandled.
      download.catch(() => undefined);
      started.set(key, download);
    }
    return started;
  }

  private async download(request: BlobRequest): Promise<Buffer> {
    if ('sha' in request) {
      return this.host((host, token, owner, name) => host.getBlob(token, owner, name, request.sha));
    }
    const file = await this.host((host, token, owner, name) => {
      if (!host.getFileAtRef) throw new TypeError('the host cannot read files by path');
      return host.getFileAtRef(token, owner, name, request.path, request.ref);
    });
    return file.content;
  }

  /** Downloads through the host (prefetched content first) and applies; a rate limit met by any download is what is thrown. */
  private async apply(
    changes: readonly DeltaChange[],
    snapshotDir: string,
    prefetched: Map<string, Promise<Buffer>>,
    format: GitObjectFormat,
    signal: AbortSignal | undefined,
  ): Promise<DeltaApplyResult> {
    let rateLimited: HostRateLimited | null = null;
    const fetchBlob = async (request: BlobRequest): Promise<Buffer> => {
      const key = requestKey(request);
      const early = prefetched.get(key);
      prefetched.delete(key);
      try {
        return await (early ?? this.download(request));
      } catch (error) {
        if (error instanceof HostRateLimited) rateLimited ??= error;
        throw error;
      }
    };
    try {
      return await applyCompareDelta(changes, {
        snapshotDir,
        cacheDir: this.cacheDir,
        fetchBlob,
        concurrency: this.concurrency,
        objectFormat: format,
        signal,
      });
    } catch (error) {
      // The applier reports the first failure of its tasks; a rate limit anywhere decides the outcome.
      throw rateLimited ?? error;
    }
  }

  /**
   * The tree id of the result from the restored listing with every changed path re-read from disk, then
   * a check that the disk holds exactly those paths with those sizes and modes.
   */
  private async verifyFromListing(
    listing: SnapshotListing,
    changes: readonly DeltaChange[],
    snapshotDir: string,
    expectedTreeId: string,
    format: GitObjectFormat,
  ): Promise<void> {
    for (const change of changes) {
      if (change.op === 'remove') listing.delete(change.path);
      else if (change.source !== null && change.removeSource) listing.delete(change.source);
    }
    for (const change of changes) {
      if (change.op !== 'write') continue;
      const { mode, blobId, size } = await hashSnapshotFile(join(snapshotDir, change.path), format);
      listing.set(change.path, { mode, blobId, size });
    }
    const treeId = listingTreeId(listing, format);
    if (treeId !== expectedTreeId) throw new DeltaVerificationFailed(expectedTreeId, treeId);
    await assertDiskMatchesListing(snapshotDir, listing);
  }

  private async commitTree(sha: string): Promise<string> {
    const tree = await this.host((host, token, owner, name) => host.getCommitTree(token, owner, name, sha));
    return tree.toLowerCase();
  }

  private async host<T>(
    call: (host: CodeHost, token: string, owner: string, name: string) => Promise<T>,
  ): Promise<T> {
    const { host, owner, name } = this.access;
    return call(host, await this.access.token(), owner, name);
  }

  /** The outcome for an error of a run; rethrows what must not become a fallback. */
  private failureOf(error: unknown, fromSha: string, toSha: string): Failure {
    const fail = (code: CompareDeltaFailureCode, reason: string): Failure => ({
      ok: false,
      code,
      reason,
      archiveBytes: 0,
      timings: { compareMs: 0, restoreMs: 0, verifyBaseMs: 0, applyMs: 0, verifyMs: 0, totalMs: 0 },
    });
    if (error instanceof HostRateLimited) throw error;
    if (isAbort(error)) throw error;
    if (error instanceof DeltaFallback) return fail(error.code, error.message);
    if (error instanceof HostContentMismatch) {
      return fail('BLOB_MISMATCH', error.message);
    }
    if (error instanceof HostError) {
      return fail(
        'HOST_ERROR',
        `compare-delta of ${short(fromSha)}...${short(toSha)} met a host error: ${error.message}`,
      );
    }
    if (error instanceof DeltaApplyFailed) return fail(error.code, error.message);
    if (error instanceof DeltaVerificationFailed) return fail('DELTA_VERIFICATION_FAILED', error.message);
    if (error instanceof ArchiveRejected) {
      return fail('ARCHIVE_INVALID', `the archive of ${short(fromSha)} cannot be restored: ${error.message}`);
    }
    if (error instanceof SnapshotNotHashable) return fail('SNAPSHOT_NOT_HASHABLE', error.message);
    // Anything else (disk full, permissions...) also only costs a git checkout; keep the stack in the log.
    this.log('compare-delta failed unexpectedly', {
      repositoryId: this.repositoryId,
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    });
    return fail('DELTA_FAILED', `compare-delta failed: ${messageOf(error)}`);
  }
}

function requestKey(request: BlobRequest): string {
  return 'sha' in request ? `blob:${request.sha}` : `path:${request.ref}:${request.path}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isAbort(error: unknown): boolean {
  const name = typeof error === 'object' && error !== null ? (error as { name?: unknown }).name : undefined;
  return name === 'AbortError';
}

/** Counts the bytes passing through (the compressed archive read from the store). */
class ByteCounter extends Transform {
  bytes = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

/** One file or symlink of a snapshot as this run wrote or read it. */
interface SnapshotEntry extends SnapshotFileEntry {
  size: number;
}

/** Every file and symlink of a snapshot by `/`-separated path. */
type SnapshotListing = Map<string, SnapshotEntry>;

/**
 * Unpacks a snapshot archive (reproducible-tarball.ts layout: relative paths, directories, files with
 * 0644/0755, symlinks) into the empty `dir` and lists what it wrote, each file hashed as its bytes went to
 * disk. Every entry is checked first, and anything unexpected rejects the whole archive: an absolute path,
 * `..`, `.git`, a duplicate, an entry below a symlink, another entry type. Symlink targets are written as
 * git stores them (absolute or with `..` included: they are data, never followed here).
 *
 * Files are written with synchronous calls (open, write per chunk, close), like the archiver reads them:
 * a snapshot is mostly small files, and three trips through the threadpool per file cost far more than
 * the writes. The parser hands over at most one stream chunk (64 KiB) of entries at a time, so the event
 * loop is never held for long.
 */
async function restoreArchive(
  archive: Readable,
  counter: ByteCounter,
  dir: string,
  format: GitObjectFormat,
  signal: AbortSignal | undefined,
): Promise<SnapshotListing> {
  const listing: SnapshotListing = new Map();
  const seen = new Set<string>();
  const symlinks = new Set<string>();
  const directories = new Set<string>(['']);
  let problem: string | null = null;
  const parser = new Parser({ strict: true });
  const refuse = (why: string): void => {
    if (problem === null) {
      problem = why;
      parser.abort(new ArchiveRejected(why));
    }
  };
  const ensureDirectory = (path: string): void => {
    if (directories.has(path)) return;
    ensureDirectory(path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');
    try {
      mkdirSync(join(dir, path), 0o755);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    if (!lstatSync(join(dir, path)).isDirectory()) throw new ArchiveRejected(`${path} is not a directory`);
    directories.add(path);
  };
  parser.on('entry', (entry: ReadEntry) => {
    if (problem !== null) return entry.resume();
    const { type } = entry;
    const path = entry.path.replace(/\/+$/, '');
    const check = (): string | null => {
      if (!TAR_ENTRY_TYPES.has(type)) return `${JSON.stringify(path)} is a ${type} entry`;
      const unsafe = unsafePathProblem(path);
      if (unsafe) return `entry ${JSON.stringify(entry.path)}: ${unsafe}`;
      if (seen.has(path)) return `${JSON.stringify(path)} is in the archive twice`;
      for (let at = path.indexOf('/'); at >= 0; at = path.indexOf('/', at + 1)) {
        if (symlinks.has(path.slice(0, at))) return `${JSON.stringify(path)} lies below a symlink`;
      }
      if (type === 'SymbolicLink' && !entry.linkpath)
        return `the symlink ${JSON.stringify(path)} has no target`;
      return null;
    };
    const why = check();
    if (why !== null) {
      refuse(why);
      return entry.resume();
    }
    seen.add(path);
    const parent = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
    try {
      if (type === 'Directory') {
        ensureDirectory(path);
        return entry.resume();
      }
      ensureDirectory(parent);
      const absolute = join(dir, path);
      if (type === 'SymbolicLink') {
        const target = Buffer.from(entry.linkpath!, 'utf8');
        symlinkSync(entry.linkpath!, absolute);
        symlinks.add(path);
        listing.set(path, {
          mode: '120000',
          blobId: gitObjectId('blob', target, format),
          size: target.length,
        });
        return entry.resume();
      }
      const executable = ((entry.mode ?? 0o644) & 0o100) !== 0;
      // A umask that took the owner's bits away would show in the disk check of the proof.
      const fd = openSync(absolute, FILE_OPEN_FLAGS, executable ? 0o755 : 0o644);
      const hash = createHash(format).update(`blob ${entry.size}\0`);
      let written = 0;
      let open = true;
      const close = (): void => {
        if (open) closeSync(fd);
        open = false;
      };
      entry.on('data', (chunk: Buffer) => {
        if (!open) return;
        try {
          for (let at = 0; at < chunk.length;) at += writeSync(fd, chunk, at, chunk.length - at);
          hash.update(chunk);
          written += chunk.length;
        } catch (error) {
          close();
          refuse(`${path} could not be written: ${messageOf(error)}`);
        }
      });
      entry.on('end', () => {
        if (!open) return;
        close();
        if (written !== entry.size) return refuse(`${path} is cut short in the archive`);
        listing.set(path, {
          mode: executable ? '100755' : '100644',
          blobId: hash.digest('hex'),
          size: written,
        });
      });
    } catch (error) {
      refuse(error instanceof ArchiveRejected ? error.message : `${path}: ${messageOf(error)}`);
      entry.resume();
    }
  });
  try {
    await pipeline(archive, counter, parser as unknown as Writable, { signal });
  } catch (error) {
    if (isAbort(error)) throw error;
    throw new ArchiveRejected(problem ?? messageOf(error), { cause: error });
  }
  if (problem !== null) throw new ArchiveRejected(problem);
  return listing;
}

/** The tree id of a listing of files and symlinks, built like git builds it (directories from the paths). */
export function listingTreeId(
  listing: ReadonlyMap<string, SnapshotFileEntry>,
  format: GitObjectFormat = 'sha1',
): string {
  const children = new Map<string, Map<string, GitTreeObjectEntry>>([['', new Map()]]);
  const childrenOf = (dir: string): Map<string, GitTreeObjectEntry> => {
    let found = children.get(dir);
    if (!found) {
      found = new Map();
      children.set(dir, found);
      const slash = dir.lastIndexOf('/');
      const parent = slash < 0 ? '' : dir.slice(0, slash);
      // A placeholder: the subtree's id is filled in once its own entries are hashed.
      childrenOf(parent).set(dir.slice(slash + 1), { mode: '40000', name: dir.slice(slash + 1), id: '' });
    }
    return found;
  };
  for (const [path, entry] of listing) {
    const slash = path.lastIndexOf('/');
    const name = path.slice(slash + 1);
    childrenOf(slash < 0 ? '' : path.slice(0, slash)).set(name, { mode: entry.mode, name, id: entry.blobId });
  }
  // Deepest directories first, so every subtree id is known before its parent is hashed.
  const depth = (dir: string): number => (dir === '' ? 0 : dir.split('/').length);
  const dirs = [...children.keys()].sort((a, b) => depth(b) - depth(a));
  let rootId = EMPTY_TREE_ID[format];
  for (const dir of dirs) {
    const id = gitTreeObjectId([...children.get(dir)!.values()], format);
    if (dir === '') rootId = id;
    else {
      const slash = dir.lastIndexOf('/');
      children.get(slash < 0 ? '' : dir.slice(0, slash))!.get(dir.slice(slash + 1))!.id = id;
    }
  }
  return rootId;
}

/**
 * Checks that the snapshot on disk holds exactly the listing's paths, each a symlink or a file of the
 * listed size with the listed executable bit (what git's index checks before it trusts a file), so a
 * listing-based proof speaks for the disk. Synchronous lstat and readdir calls, in slices of a few ms.
 */
async function assertDiskMatchesListing(dir: string, listing: SnapshotListing): Promise<void> {
  let found = 0;
  let sliceStart = performance.now();
  const pending: string[] = [''];
  while (pending.length > 0) {
    const relative = pending.pop()!;
    const absoluteDir = relative === '' ? dir : join(dir, relative);
    for (const dirent of readdirSync(absoluteDir, { withFileTypes: true })) {
      const path = relative === '' ? dirent.name : `${relative}/${dirent.name}`;
      if (dirent.isDirectory()) {
        pending.push(path);
        continue;
      }
      const expected = listing.get(path);
      if (!expected)
        throw new DeltaFallback(
          'DELTA_VERIFICATION_FAILED',
          `${path} is in the snapshot but not in the commit`,
        );
      const stats = lstatSync(join(dir, path));
      const mode = stats.isSymbolicLink()
        ? '120000'
        : stats.isFile()
          ? stats.mode & 0o100
            ? '100755'
            : '100644'
          : null;
      if (mode !== expected.mode || stats.size !== expected.size) {
        throw new DeltaFallback(
          'DELTA_VERIFICATION_FAILED',
          `${path} on disk (${mode ?? 'not a file'}, ${stats.size} bytes) is not what was written (${expected.mode}, ${expected.size} bytes)`,
        );
      }
      found++;
      if (performance.now() - sliceStart > SLICE_MS) {
        await nextTurn();
        sliceStart = performance.now();
      }
    }
  }
  if (found !== listing.size) {
    throw new DeltaFallback(
      'DELTA_VERIFICATION_FAILED',
      `${listing.size - found} files of the commit are missing from the snapshot`,
    );
  }
}
