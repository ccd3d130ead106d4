/**
 * The worker's compare-delta step: wires the engine's DeltaUpdating to the previous revision's archive in
 * the artifact store, the repository's connection token and the code host's API. Only repositories added
 * through a connection use it (the compare API needs a token with its own budget).
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ArchivesRepository } from '../artifacts/archives.repository.js';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { ConnectionTokens } from '../connections/connection-tokens.js';
import type { CodeHosts } from '../hosts/code-hosts.js';
import { HostRateLimited } from '../hosts/host-errors.js';
import { CompareDeltaStrategy } from './delta/compare-delta-strategy.js';
import { BlobCache } from './delta/delta-apply.js';
import type { DeltaUpdating } from './engine/branch-synchronizer.js';
import { deferredByHost } from './host-rate-limit.js';
import type { SyncRepository } from './engine/sync-types.js';

export interface CompareDeltaUpdaterOptions {
  archives: ArchivesRepository;
  store: ArtifactStore;
  tokens: ConnectionTokens;
  hosts: CodeHosts;
  /** Where each run keeps its copy of the previous archive (removed once the result is archived). */
  workDir: string;
  concurrency: number;
  log: (msg: string, fields?: object) => void;
}

/** Changed files kept in memory by a worker, across its runs (GitHub serves them by blob id). */
const BLOB_CACHE_BYTES = 64 * 1024 * 1024;

export class CompareDeltaUpdater implements DeltaUpdating {
  private readonly blobCache = new BlobCache(BLOB_CACHE_BYTES);

  constructor(private readonly opts: CompareDeltaUpdaterOptions) {}

  /** Removes what runs of an earlier process left in the work dir (call before any run starts). */
  async removeLeftovers(): Promise<void> {
    await rm(this.opts.workDir, { recursive: true, force: true });
  }

  async blocker(repository: SyncRepository, fromSha: string): Promise<string | null> {
    if (repository.provider === 'GIT') return 'a plain git host has no compare API';
    if (!repository.connectionId) return 'the repository has no connection to use the host API with';
    const archive = await this.opts.archives.findLive(repository.id, fromSha);
    return archive ? null : `no archive of ${fromSha.slice(0, 12)} to apply a delta to`;
  }

  async update(r: { repository: SyncRepository; fromSha: string; toSha: string }) {
    const { repository } = r;
    const connectionId = repository.connectionId!;
    const provider = repository.provider === 'GITHUB' ? 'github' : 'gitlab';
    const workDir = join(this.opts.workDir, randomUUID());
    const release = () => rm(workDir, { recursive: true, force: true });
    const strategy = new CompareDeltaStrategy({
      repositoryId: repository.id,
      openArchive: async (repositoryId, sha) => {
        const archive = await this.opts.archives.findLive(repositoryId, sha);
        return archive ? this.opts.store.open(archive.objectKey) : null;
      },
      hostAccess: {
        host: this.opts.hosts.get(provider),
        token: async () => (await this.opts.tokens.token(repository.tenantId, connectionId)).token,
        owner: repository.owner,
        name: repository.name,
      },
      concurrency: this.opts.concurrency,
      // Contents are verified by their ids, but no tenant's runs see another's.
      blobCache: this.blobCache.scoped(repository.tenantId),
      log: this.opts.log,
    });
    let outcome;
    try {
      outcome = await strategy.run({ workDir, fromSha: r.fromSha, toSha: r.toSha, provider });
    } catch (e) {
      await release();
      if (e instanceof HostRateLimited) throw deferredByHost(e);
      throw e;
    }
    if (!outcome.ok) {
      await release();
      return { ok: false as const, code: outcome.code, reason: outcome.reason };
    }
    const t = outcome.timings;
    return {
      ok: true as const,
      filesChanged: outcome.filesChanged,
      bytesDownloaded: outcome.bytesDownloaded,
      commitTime: outcome.commitTime,
      entries: outcome.entries,
      release,
      detail:
        `compare-delta applied ${outcome.filesChanged} changes (${outcome.bytesDownloaded} bytes downloaded, ` +
        `${outcome.cacheHits} cached; previous archive ${outcome.archiveBytes} bytes), tree ${outcome.treeId.slice(0, 12)} verified ` +
        `(compare ${Math.round(t.compareMs)} ms, read ${Math.round(t.restoreMs)} ms, apply ${Math.round(t.applyMs)} ms, verify ${Math.round(t.verifyBaseMs + t.verifyMs)} ms)`,
    };
  }
}
