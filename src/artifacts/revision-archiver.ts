import { type ArtifactStore, archiveKey } from './artifact-store.js';
import type { ArchiveRecord } from './archives.repository.js';
import {
  TARBALL_CONTENT_TYPE,
  TARBALL_GZIP_LEVEL,
  createReproducibleTarball,
  createTarballOfEntries,
  type SnapshotCapture,
  type SnapshotTarEntry,
} from './reproducible-tarball.js';
import { createTarballOfImage, type TarImage } from './tar-image.js';

/** The archive rows the archiver needs (implemented by ArchivesRepository). */
export interface ArchiveRecords {
  findLive(repositoryId: string, sha: string): Promise<ArchiveRecord | null>;
  record(a: Omit<ArchiveRecord, 'id' | 'createdAt' | 'pinned'>): Promise<ArchiveRecord>;
  markBeyondRetention(branchId: string, keep: number): Promise<ArchiveRecord[]>;
  pendingDeletions(limit: number): Promise<ArchiveRecord[]>;
  deleteRow(id: string): Promise<void>;
}

export interface RevisionToArchive {
  tenantId: string;
  repositoryId: string;
  branchId: string;
  sha: string;
  snapshotDir: string;
  /** The snapshot's entries in tree order, when they are not read from `snapshotDir`. */
  entries?: () => AsyncIterable<readonly SnapshotTarEntry[]>;
  /** The snapshot's tar, when it is made already (then neither entries nor `snapshotDir` are read). */
  image?: TarImage;
  /** Collects the entries read from `snapshotDir` (complete when the archive is stored, not when reused). */
  capture?: SnapshotCapture;
  commitTime: Date;
  signal?: AbortSignal;
}

export interface ArchiveOutcome {
  archive: ArchiveRecord;
  /** The archive already existed (row and object): nothing was uploaded. */
  reused: boolean;
}

/**
 * Archives a synced revision: a reproducible tar.gz of the snapshot streamed to the artifact store, keyed
 * by commit SHA, recorded only once stored; then applies retention. Re-running is harmless.
 */
export class RevisionArchiver {
  constructor(
    private readonly store: ArtifactStore,
    private readonly records: ArchiveRecords,
    private readonly prefix: string,
    private readonly retention: number,
    private readonly log: (msg: string, fields?: object) => void = () => undefined,
    private readonly gzipLevel = TARBALL_GZIP_LEVEL,
  ) {}

  /** Stores the revision's archive unless that SHA's archive (row and object) already exists. */
  async archive(r: RevisionToArchive): Promise<ArchiveOutcome> {
    const existing = await this.records.findLive(r.repositoryId, r.sha);
    if (existing && (await this.store.head(existing.objectKey)) === existing.sizeBytes) {
      return { archive: existing, reused: true };
    }
    const key = archiveKey(this.prefix, r.tenantId, r.repositoryId, r.sha);
    const options = { mtime: r.commitTime, commitId: r.sha, signal: r.signal, level: this.gzipLevel };
    const tarball = r.image
      ? createTarballOfImage(r.image, options)
      : r.entries
        ? createTarballOfEntries(r.entries(), options)
        : createReproducibleTarball(r.snapshotDir, options, r.capture);
    const stored = await this.store.put(key, tarball.stream, {
      contentType: TARBALL_CONTENT_TYPE,
      signal: r.signal,
    });
    const archive = await this.records.record({
      tenantId: r.tenantId,
      repositoryId: r.repositoryId,
      branchId: r.branchId,
      sha: r.sha,
      objectKey: key,
      sizeBytes: stored.size,
      sha256: stored.sha256,
    });
    return { archive, reused: false };
  }

  /**
   * Keeps the newest `retention` archives of the branch (plus pinned ones). Rows are marked first, then the
   * object is deleted, then the row: a failure at any point leaves a marked row that the next pass retries,
   * never a visible row without its object.
   */
  async applyRetention(branchId: string): Promise<number> {
    const doomed = await this.records.markBeyondRetention(branchId, this.retention);
    return this.remove(doomed);
  }

  /** Finishes deletions interrupted earlier (any branch). */
  async retryPendingDeletions(limit = 100): Promise<number> {
    return this.remove(await this.records.pendingDeletions(limit));
  }

  private async remove(archives: ArchiveRecord[]): Promise<number> {
    let removed = 0;
    for (const a of archives) {
      try {
        await this.store.delete(a.objectKey);
        await this.records.deleteRow(a.id);
        removed++;
      } catch (e) {
        this.log('archive deletion failed; retried later', {
          archiveId: a.id,
          err: e instanceof Error ? e.message : String(e),
        });
      }
    }
    return removed;
  }
}
