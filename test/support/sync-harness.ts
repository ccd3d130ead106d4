import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INestApplicationContext } from '@nestjs/common';
import pg from 'pg';
import { snapshotRef } from '../../src/sync/git/git-mirror.js';
import { SyncReconciler } from '../../src/sync/sync-reconciler.js';
import { snapshotKey } from '../../src/sync/workspace/workspace-cache.js';
import { startWorker } from '../../src/worker.js';
import { type FixtureRepository, GitFixtureServer, runFixtureGit } from '../fixtures/git-server.js';
import { ApiHarness, type TestTenant } from './api-harness.js';

export interface RunRow {
  id: string;
  status: string;
  strategy: string | null;
  strategyReason: string | null;
  fromSha: string | null;
  toSha: string | null;
  trigger: string;
  errorCode: string | null;
  error: string | null;
}

export interface BranchRow {
  id: string;
  name: string;
  status: string;
  syncedSha: string | null;
  deletedAt: Date | null;
  lastError: string | null;
  lastErrorCode: string | null;
  dirty: boolean;
}

/** API + in-process worker + git fixture server, with direct SQL access to check what was recorded. */
export class SyncHarness {
  worker?: INestApplicationContext;

  private constructor(
    readonly api: ApiHarness,
    readonly git: GitFixtureServer,
    readonly workspaceDir: string,
    readonly db: pg.Client,
  ) {}

  static async start(overrides: Record<string, string> = {}): Promise<SyncHarness> {
    const workspaceDir = await mkdtemp(join(tmpdir(), 'reposync-ws-'));
    const api = await ApiHarness.start({
      ALLOW_INSECURE_REPOSITORY_URLS: 'true',
      WORKSPACE_DIR: workspaceDir,
      SYNC_BACKOFF_MS: '200',
      SYNC_MAX_ATTEMPTS: '3',
      SYNC_LOCK_DURATION_MS: '5000',
      SYNC_STALLED_INTERVAL_MS: '2000',
      RECONCILE_INTERVAL_MS: '60000',
      POLL_TICK_MS: '3600000',
      ...overrides,
    });
    const git = await GitFixtureServer.start();
    const db = new pg.Client({ connectionString: api.config.database.url });
    await db.connect();
    const harness = new SyncHarness(api, git, workspaceDir, db);
    await harness.startWorker();
    return harness;
  }

  async startWorker(): Promise<void> {
    this.worker = await startWorker(this.api.config);
  }

  async stopWorker(): Promise<void> {
    await this.worker?.close();
    this.worker = undefined;
  }

  async reconcile() {
    return this.worker!.get(SyncReconciler).reconcile();
  }

  async branches(repositoryId: string): Promise<BranchRow[]> {
    const { rows } = await this.db.query<BranchRow>(
      'SELECT "id","name","status","syncedSha","deletedAt","lastError","lastErrorCode","dirty" FROM "Branch" WHERE "repositoryId" = $1 ORDER BY "name"',
      [repositoryId],
    );
    return rows;
  }

  /** The worker's snapshot dir of a branch. */
  snapshotDir(repositoryId: string, branch: string): string {
    return join(this.workspaceDir, 'repos', repositoryId, 'snapshots', snapshotKey(branch));
  }

  /**
   * The snapshot dir of a branch once it holds `sha`. A sync that makes its archive without reading the
   * snapshot updates it after the branch is SYNCED.
   */
  async snapshotAt(repositoryId: string, branch: string, sha: string): Promise<string> {
    const dir = this.snapshotDir(repositoryId, branch);
    const gitDir = join(this.workspaceDir, 'repos', repositoryId, 'git');
    await this.waitFor(`the snapshot of ${branch} at ${sha}`, async () => {
      const { stdout } = await runFixtureGit(['rev-parse', '--verify', '--quiet', snapshotRef(dir)], {
        gitDir,
      });
      return stdout.trim() === sha ? true : undefined;
    });
    return dir;
  }

  /** The branch's runs, oldest first. */
  async runs(branchId: string): Promise<RunRow[]> {
    const { rows } = await this.db.query<RunRow>(
      'SELECT "id","status","strategy","strategyReason","fromSha","toSha","trigger","errorCode","error" FROM "SyncRun" WHERE "branchId" = $1 ORDER BY "startedAt"',
      [branchId],
    );
    return rows;
  }

  /**
   * A new fixture repository with one commit on main, added by URL for `tenant` (main tracked) and waited
   * for until SYNCED at that commit.
   */
  async trackRepository(
    tenant: TestTenant,
    name: string,
  ): Promise<{ remote: FixtureRepository; id: string; branchId: string; first: string }> {
    const remote = await this.git.createRepository(name);
    const first = await remote.commit({ 'README.md': `# ${name}\n` });
    const res = await this.api.request<{ id: string }>('POST', '/repositories', {
      token: tenant.apiKey,
      body: { url: remote.url, branches: ['main'] },
    });
    if (res.status !== 201)
      throw new Error(`adding ${name} failed: ${res.status} ${JSON.stringify(res.body)}`);
    const branch = await this.waitForBranch(res.body.id, 'main', first);
    return { remote, id: res.body.id, branchId: branch.id, first };
  }

  /** Polls until `check` returns a value (not undefined), or fails after `timeoutMs`. */
  async waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        const value = await check();
        if (value !== undefined) return value;
      } catch (e) {
        last = e;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const cause = last instanceof Error ? `: ${last.message}` : '';
    throw new Error(`timed out waiting for ${what}${cause}`);
  }

  /** Waits until the named branch of a repository is SYNCED at `sha` with no job owed. */
  async waitForBranch(
    repositoryId: string,
    name: string,
    sha: string | null,
    timeoutMs = 30_000,
  ): Promise<BranchRow> {
    let seen: BranchRow | undefined;
    try {
      return await this.waitFor(
        `branch ${name} SYNCED at ${sha}`,
        async () => {
          seen = (await this.branches(repositoryId)).find((x) => x.name === name);
          return seen && seen.status === 'SYNCED' && seen.syncedSha === sha && !seen.dirty ? seen : undefined;
        },
        timeoutMs,
      );
    } catch (error) {
      // What the branch and its runs said last, so a timeout can be told apart from a failure.
      if (!seen) throw error;
      const runs = (await this.runs(seen.id).catch(() => []))
        .slice(-5)
        .map((r) =>
          `${r.status} ${r.strategy ?? '-'} ${r.toSha?.slice(0, 12) ?? '-'} ${r.errorCode ?? ''}`.trim(),
        );
      const { status, syncedSha, dirty, lastErrorCode } = seen;
      const state = JSON.stringify({ status, syncedSha, dirty, lastErrorCode });
      throw new Error(
        `${(error as Error).message}; branch ${state}; last runs: ${runs.join(' | ') || 'none'}`,
        { cause: error },
      );
    }
  }

  async stop(): Promise<void> {
    await this.stopWorker();
    await this.db.end();
    await this.api.stop();
    await this.git.stop();
    await rm(this.workspaceDir, { recursive: true, force: true });
  }
}
