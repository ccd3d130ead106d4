/**
 * Compare-delta: brings a snapshot to a branch's new head without a git clone, from the archive of the
 * previous revision and the code host's comparison, and proves the result is the new commit.
 *
 * Steps (any doubt ends the run with `ok: false`, and the engine rebuilds the snapshot with git):
 * 1. At once: the host's comparison `fromSha...toSha` and the stored archive of `fromSha`. No archive,
 *    or a comparison the plan refuses (delta-plan.ts), ends the run before anything is unpacked.
 * 2. The snapshot dir is emptied and the archive unpacked into it (modes and symlinks kept, every entry
 *    checked: no absolute path, `..`, `.git`, duplicate, entry below a symlink, or other entry type), while
 *    the host says the tree ids of both commits.
 * 3. The restored snapshot must hash to `fromSha`'s tree: a bad archive is never built upon.
 * 4. The changed files are downloaded (by blob id or by path) into the blob cache and applied.
 * 5. The result must hash to `toSha`'s tree (invariant 4).
 *
 * HostRateLimited and aborts are thrown, not turned into `ok: false`: the engine defers such work instead
 * of falling back to git. On `ok: false` the snapshot dir holds anything; the caller wipes it.
 */
import { mkdir, rm } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { Readable, Transform, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Unpack, type ReadEntry } from 'tar';
import { HostContentMismatch } from '../../hosts/blob-integrity.js';
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
import { planCompareDelta, unsafePathProblem, type DeltaRefusalCode } from './delta-plan.js';
import { computeGitTreeId, SnapshotNotHashable } from './git-tree-hash.js';

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
  /** Hashing the restored snapshot against the previous commit's tree. */
  verifyBaseMs: number;
  /** Downloading and applying the changed files. */
  applyMs: number;
  /** Hashing the result against the new commit's tree. */
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

/** Updates a snapshot from the previous revision's archive and the host's comparison (see the module comment). */
export class CompareDeltaStrategy {
  private readonly repositoryId: string;
  private readonly openArchive: PreviousArchiveSource;
  private readonly access: CompareDeltaHostAccess;
  private readonly cacheDir: string;
  private readonly concurrency: number;
  private readonly log: (msg: string, fields?: object) => void;

  constructor(options: CompareDeltaStrategyOptions) {
    this.repositoryId = options.repositoryId;
    this.openArchive = options.openArchive;
    this.access = options.hostAccess;
    this.cacheDir = options.cacheDir;
    this.concurrency = options.concurrency ?? 8;
    this.log = options.log ?? (() => undefined);
  }

  /** Brings `snapshotDir` to `toSha` from the archive of `fromSha`, or says why it could not. */
  async run(input: CompareDeltaRunInput): Promise<CompareDeltaOutcome> {
    const { snapshotDir, fromSha, toSha, provider, signal } = input;
    if (provider !== this.access.host.provider) {
      throw new TypeError(`the run is for ${provider}, the host access for ${this.access.host.provider}`);
    }
    const started = performance.now();
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
      let mark = performance.now();
      await rm(snapshotDir, { recursive: true, force: true });
      await mkdir(snapshotDir, { recursive: true });
      const source = archive;
      archive = null;
      await restoreArchive(source, counter, snapshotDir, signal);
      timings.restoreMs = performance.now() - mark;
      const [fromTree, toTree] = await trees;

      // 3. The base must be the previous commit.
      mark = performance.now();
      const base = await computeGitTreeId(snapshotDir, { concurrency: this.concurrency, signal });
      timings.verifyBaseMs = performance.now() - mark;
      if (base.treeId !== fromTree) {
        throw new DeltaFallback(
          'ARCHIVE_MISMATCH',
          `the archive of ${short(fromSha)} unpacks to tree ${short(base.treeId)}, not the commit's tree ${short(fromTree)}`,
        );
      }

      // 4. Download and apply.
      mark = performance.now();
      const applied = await this.apply(plan.changes, snapshotDir, signal);
      timings.applyMs = performance.now() - mark;

      // 5. The proof.
      mark = performance.now();
      await verifySnapshotTree(snapshotDir, toTree, { concurrency: this.concurrency, signal });
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
  private async apply(
    changes: Parameters<typeof applyCompareDelta>[0],
    snapshotDir: string,
    signal: AbortSignal | undefined,
  ): Promise<DeltaApplyResult> {
    let rateLimited: HostRateLimited | null = null;
    const fetchBlob = async (request: BlobRequest): Promise<Buffer> => {
      try {
        if ('sha' in request) {
          return await this.host((host, token, owner, name) => host.getBlob(token, owner, name, request.sha));
        }
        const file = await this.host((host, token, owner, name) => {
          if (!host.getFileAtRef) throw new TypeError('the host cannot read files by path');
          return host.getFileAtRef(token, owner, name, request.path, request.ref);
        });
        return file.content;
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
        signal,
      });
    } catch (error) {
      // The applier reports the first failure of its tasks; a rate limit anywhere decides the outcome.
      throw rateLimited ?? error;
    }
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

/**
 * Unpacks a snapshot archive (reproducible-tarball.ts layout: relative paths, directories, files with
 * 0644/0755, symlinks) into the empty `dir`. tar's own path rewriting is off (`preservePaths`): it would
 * rewrite symlink targets that git stores as they are (absolute, or with `..`); every entry is checked
 * here instead, and anything unexpected rejects the whole archive.
 */
async function restoreArchive(
  archive: Readable,
  counter: ByteCounter,
  dir: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  let problem: string | null = null;
  const seen = new Set<string>();
  const symlinks = new Set<string>();
  const refuse = (why: string): false => {
    problem ??= why;
    return false;
  };
  const unpack = new Unpack({
    cwd: dir,
    strict: true,
    preservePaths: true,
    chmod: true,
    processUmask: 0o022,
    filter: (rawPath: string, entry: unknown) => {
      const { type, linkpath } = entry as ReadEntry;
      const path = rawPath.replace(/\/+$/, '');
      if (!TAR_ENTRY_TYPES.has(type)) return refuse(`${JSON.stringify(path)} is a ${type} entry`);
      const unsafe = unsafePathProblem(path);
      if (unsafe) return refuse(`entry ${JSON.stringify(rawPath)}: ${unsafe}`);
      if (seen.has(path)) return refuse(`${JSON.stringify(path)} is in the archive twice`);
      seen.add(path);
      for (let at = path.indexOf('/'); at >= 0; at = path.indexOf('/', at + 1)) {
        if (symlinks.has(path.slice(0, at))) return refuse(`${JSON.stringify(path)} lies below a symlink`);
      }
      if (type === 'SymbolicLink') {
        if (!linkpath) return refuse(`the symlink ${JSON.stringify(path)} has no target`);
        symlinks.add(path);
      }
      return true;
    },
  });
  try {
    await pipeline(archive, counter, unpack as unknown as Writable, { signal });
  } catch (error) {
    if (isAbort(error)) throw error;
    throw new ArchiveRejected(problem ?? messageOf(error), { cause: error });
  }
  if (problem !== null) throw new ArchiveRejected(problem);
}
