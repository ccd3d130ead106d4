/**
 * Compare-delta: the snapshot of a branch's new head without a git clone, from the archive of the
 * previous revision and the code host's comparison, proven to be the new commit. Nothing is unpacked to
 * disk: the snapshot is a listing read from the archive, and the result is handed to the archiver as the
 * entries of its new archive.
 *
 * Steps (any doubt ends the run with `ok: false`, and the engine builds the snapshot with git):
 * 1. At once: the host's comparison `fromSha...toSha` and the stored archive of `fromSha`. No archive,
 *    or a comparison the plan refuses (delta-plan.ts), ends the run before anything is read.
 * 2. The archive is copied into the run's work dir and read (snapshot-listing.ts): every entry checked,
 *    every file hashed, the bytes the delta reuses kept; meanwhile the host says both commits' tree ids and
 *    the changed files start downloading.
 * 3. The listing must hash to `fromSha`'s tree: a bad archive is never built upon.
 * 4. The changed files are downloaded (by blob id or by path) and applied to the listing (delta-apply.ts).
 * 5. The result must hash to `toSha`'s tree (invariant 4).
 * 6. `entries()` then streams the new snapshot in tree order for the archiver: the copy of the previous
 *    archive read again, merged with the written paths; its files are checked against the proven listing
 *    as they go by.
 *
 * HostRateLimited and aborts are thrown, not turned into `ok: false`: the engine defers such work instead
 * of falling back to git. The caller removes the work dir once it has archived the result (or given up).
 */
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { treeOrderKey, type SnapshotTarEntry } from '../../artifacts/reproducible-tarball.js';
import { HostContentMismatch } from '../../hosts/blob-integrity.js';
import { createConcurrencyLimit } from './concurrency-limit.js';
import type { CodeHost, HostProvider } from '../../hosts/code-host.js';
import { HostError, HostRateLimited } from '../../hosts/host-errors.js';
import {
  applyCompareDelta,
  DeltaApplyFailed,
  DeltaVerificationFailed,
  proveTreeId,
  type BlobRequest,
  type BlobStore,
  type DeltaApplyFailureCode,
  type DeltaApplyResult,
  reusedPaths,
} from './delta-apply.js';
import { planCompareDelta, type DeltaChange, type DeltaRefusalCode } from './delta-plan.js';
import { ListingTree, type GitObjectFormat, type SnapshotFileEntry } from './git-tree-hash.js';
import { ArchiveRejected, readSnapshotArchive } from './snapshot-archive-reader.js';
import { readBaseSnapshot, type BaseSnapshot } from './snapshot-listing.js';

export { ArchiveRejected } from './snapshot-archive-reader.js';

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
  /** Downloads at a time (default 8; the host budget caps requests per token). */
  concurrency?: number;
  /** Files larger than this are not held in memory: the run falls back to git (default 128 MiB). */
  maxFileBytes?: number;
  /** This worker's blob cache for this tenant, shared by its runs (default: one per run). */
  blobCache?: BlobStore;
  log?: (msg: string, fields?: object) => void;
}

export interface CompareDeltaRunInput {
  /** Created if needed; holds a copy of the previous archive until the caller removes it. */
  workDir: string;
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
  /** Reading (copying, unpacking in memory, hashing) the previous archive. */
  restoreMs: number;
  /** Checking the previous archive against the previous commit's tree. */
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
      /** The proven snapshot in tree order, in batches, for `createTarballOfEntries`; readable while the work dir is. */
      entries: () => AsyncGenerator<SnapshotTarEntry[]>;
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
/** Changed files whose download starts while the archive is read. */
const PREFETCH_FILES = 64;
const DEFAULT_MAX_FILE_BYTES = 128 * 1024 * 1024;
/** Output chunks of the archive's decompression: large, so the reader mostly takes views of one chunk. */
const GUNZIP_CHUNK_BYTES = 256 * 1024;

/** Updates a snapshot from the previous revision's archive and the host's comparison (see the module comment). */
export class CompareDeltaStrategy {
  private readonly repositoryId: string;
  private readonly openArchive: PreviousArchiveSource;
  private readonly access: CompareDeltaHostAccess;
  private readonly concurrency: number;
  private readonly maxFileBytes: number;
  private readonly blobCache: BlobStore | undefined;
  private readonly log: (msg: string, fields?: object) => void;

  constructor(options: CompareDeltaStrategyOptions) {
    this.repositoryId = options.repositoryId;
    this.openArchive = options.openArchive;
    this.access = options.hostAccess;
    this.concurrency = options.concurrency ?? 8;
    this.maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    this.blobCache = options.blobCache;
    this.log = options.log ?? (() => undefined);
  }

  /** The snapshot of `toSha` from the archive of `fromSha` and the host's comparison, or why not. */
  async run(input: CompareDeltaRunInput): Promise<CompareDeltaOutcome> {
    const { workDir, fromSha, toSha, provider, signal } = input;
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

      // 2. Read the archive, while the host says both tree ids and the downloads start.
      // Asked for while the archive is read; a run that ends before they are awaited must not leave
      // their rejection unhandled.
      const trees = Promise.all([this.commitTree(fromSha), this.commitTree(toSha)]);
      trees.catch(() => undefined);
      const prefetched = this.prefetch(plan.changes);
      let mark = performance.now();
      await mkdir(workDir, { recursive: true });
      const copy = join(workDir, `${fromSha}.tar.gz`);
      const source = archive;
      archive = null;
      const base = await this.readBase(source, counter, copy, plan.changes, format, signal);
      timings.restoreMs = performance.now() - mark;
      const [fromTree, toTree] = await trees;

      // 3. The base must be the previous commit.
      mark = performance.now();
      const baseTree = new ListingTree(base.files, format);
      timings.verifyBaseMs = performance.now() - mark;
      if (baseTree.rootId !== fromTree) {
        throw new DeltaFallback(
          'ARCHIVE_MISMATCH',
          `the archive of ${short(fromSha)} holds tree ${short(baseTree.rootId)}, not the commit's tree ${short(fromTree)}`,
        );
      }

      // 4. Download and apply.
      mark = performance.now();
      const applied = await this.apply(plan.changes, base, prefetched, format, signal);
      timings.applyMs = performance.now() - mark;

      // 5. The proof.
      // Only the directories on the changed paths are hashed again.
      mark = performance.now();
      const written: [string, SnapshotFileEntry][] = [];
      for (const path of applied.written.keys()) written.push([path, applied.files.get(path)!]);
      proveTreeId(baseTree.idAfter(applied.replaced, written), toTree);
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
        entries: () => this.resultEntries(copy, base, applied, signal),
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

  /** Copies the archive to `copy`, then reads it (snapshot-listing.ts), keeping what the changes reuse. */
  private async readBase(
    archive: Readable,
    counter: ByteCounter,
    copy: string,
    changes: readonly DeltaChange[],
    format: GitObjectFormat,
    signal: AbortSignal | undefined,
  ): Promise<BaseSnapshot> {
    const keep = reusedPaths(changes);
    // The archive is read as it arrives, and copied to the work dir on its way.
    const gunzip = createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES });
    const copying = pipeline(archive, counter, new CopyingStream(copy), gunzip, { signal });
    try {
      const [, base] = await Promise.all([
        copying,
        readBaseSnapshot(gunzip, { keep, format, maxEntryBytes: this.maxFileBytes, signal }).catch(
          (error: unknown) => {
            // Stops the download and the copy too.
            gunzip.destroy();
            throw error;
          },
        ),
      ]);
      return base;
    } catch (error) {
      if (isAbort(error) || error instanceof ArchiveRejected) throw error;
      throw new ArchiveRejected(messageOf(error), { cause: error });
    }
  }

  /** The tar stream of the copy of the previous archive. */
  private readCopy(copy: string, signal: AbortSignal | undefined): AsyncIterable<Buffer> {
    const gunzip = createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES });
    const stream = createReadStream(copy, { highWaterMark: GUNZIP_CHUNK_BYTES });
    void pipeline(stream, gunzip, { signal }).catch((error: unknown) => gunzip.destroy(error as Error));
    return gunzip;
  }

  /**
   * The proven snapshot in tree order: the previous archive read again, its unchanged entries as they
   * were, merged with the written paths and the new directories. Every file that passes is checked
   * against the proven listing (mode and size), and their count at the end.
   */
  private async *resultEntries(
    copy: string,
    base: BaseSnapshot,
    applied: DeltaApplyResult,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<SnapshotTarEntry[]> {
    const changedUnderneath = (what: string): never => {
      throw new ArchiveRejected(`the copy of the previous archive changed underneath (${what})`);
    };
    const inserts: { key: string; entry: SnapshotTarEntry }[] = [];
    for (const [path, written] of applied.written) {
      inserts.push({
        key: treeOrderKey(path, false),
        entry:
          written.mode === '120000'
            ? { path, kind: 'symlink', linkpath: written.data.toString('utf8') }
            : { path, kind: 'file', executable: written.mode === '100755', data: written.data },
      });
    }
    for (const path of applied.directories) {
      if (!base.directories.has(path)) {
        inserts.push({ key: treeOrderKey(path, true), entry: { path, kind: 'directory' } });
      }
    }
    inserts.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let next = 0;
    let files = 0;
    const archive = readSnapshotArchive(this.readCopy(copy, signal), { maxEntryBytes: this.maxFileBytes });
    for await (const batch of archive) {
      const out: SnapshotTarEntry[] = [];
      for (const entry of batch) {
        const key = treeOrderKey(entry.path, entry.kind === 'directory');
        for (; next < inserts.length && inserts[next]!.key <= key; next++) {
          const insert = inserts[next]!.entry;
          if (insert.kind !== 'directory') files++;
          out.push(insert);
        }
        const { path } = entry;
        if (entry.kind === 'directory') {
          if (applied.directories.has(path)) out.push({ path, kind: 'directory' });
          continue;
        }
        if (applied.replaced.has(path)) continue;
        const listed = applied.files.get(path);
        const mode = entry.kind === 'symlink' ? '120000' : entry.mode & 0o100 ? '100755' : '100644';
        const size = entry.kind === 'symlink' ? Buffer.byteLength(entry.linkpath ?? '') : entry.data.length;
        if (listed?.mode !== mode || listed.size !== size) changedUnderneath(JSON.stringify(path));
        files++;
        out.push(
          entry.kind === 'symlink'
            ? { path, kind: 'symlink', linkpath: entry.linkpath }
            : { path, kind: 'file', executable: mode === '100755', data: entry.data },
        );
      }
      yield out;
    }
    const rest = inserts.slice(next).map((insert) => insert.entry);
    files += rest.filter((entry) => entry.kind !== 'directory').length;
    yield rest;
    if (files !== applied.files.size) changedUnderneath(`${files} files, not ${applied.files.size}`);
  }

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
    base: BaseSnapshot,
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
      return await applyCompareDelta(changes, base, {
        fetchBlob,
        concurrency: this.concurrency,
        objectFormat: format,
        cache: this.blobCache,
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

/** Passes the bytes on and writes them to a file, finished before the stream ends. */
class CopyingStream extends Transform {
  private readonly file: WriteStream;

  constructor(path: string) {
    super();
    this.file = createWriteStream(path);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.file.write(chunk, (error) => callback(error ?? null, chunk));
  }

  override _flush(callback: TransformCallback): void {
    this.file.end((error?: Error | null) => callback(error ?? null));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.file.destroy();
    callback(error);
  }
}

/** Counts the bytes passing through (the compressed archive read from the store). */
class ByteCounter extends Transform {
  bytes = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}
