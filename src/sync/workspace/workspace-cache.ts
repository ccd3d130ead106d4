/**
 * The worker's disposable clone cache: one directory per repository under `<rootDir>/repos/<id>`.
 *
 * Layout of a repository's workspace:
 *   <rootDir>/repos/<repositoryId>/
 *     .reposync-used            touched on every acquire/release: its mtime is the LRU clock across restarts
 *     git/                      bare partial clone (see GitMirror); `git/.reposync-ready` marks it complete
 *     snapshots/<branch-key>/   one checked-out tree per tracked branch, without a .git directory
 *   <rootDir>/trash/            workspaces being deleted (renamed first, so a key is free at once)
 *
 * Ownership: exactly one worker process owns a rootDir (WORKSPACE_DIR). That is what makes it safe to
 * delete any `*.lock` file we find: no other process can be in the middle of a git command here, so a
 * lock can only be the leftover of a git killed by a timeout or a crash. Two processes sharing a rootDir
 * would corrupt each other's clones; give each worker its own directory.
 */
import { spawn as nodeSpawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SpawnFunction } from '../git/git-runner.js';

/** Written into a git dir only after a clone completed; a workspace without it is wiped on acquire. */
export const READY_MARKER = '.reposync-ready';
const USED_MARKER = '.reposync-used';
const REPOSITORY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export type WorkspaceLog = (msg: string, fields?: object) => void;

export interface WorkspaceCacheOptions {
  rootDir: string;
  /** Total size the cache tries to stay under by evicting least-recently-used workspaces. */
  maxBytes: number;
  log?: WorkspaceLog;
  /** Starts `du` (the worker's spawn helper: forking the worker itself costs its event loop). */
  spawn?: SpawnFunction;
}

/** Exclusive use of one repository's workspace until release() is called. */
export interface WorkspaceLease {
  readonly repositoryId: string;
  /** `<rootDir>/repos/<repositoryId>` */
  readonly dir: string;
  /** Where the bare clone lives: `<dir>/git`. */
  readonly gitDir: string;
  /** Whether a completed clone is present (its ready marker exists). */
  readonly ready: boolean;
  /** Directory of the checked-out snapshot of one branch: `<dir>/snapshots/<safe name>`. */
  snapshotDir(branch: string): string;
  /** Wipes the workspace (e.g. after a corrupt clone) while keeping the lease; `ready` becomes false. */
  reset(): Promise<void>;
  /** Marks last use and frees the repository; measuring and eviction, if due, follow in the background. */
  release(): Promise<void>;
}

/** Marks a git dir as a completed clone; call only once the clone fully succeeded. */
export async function markReady(gitDir: string): Promise<void> {
  await writeFile(join(gitDir, READY_MARKER), `${new Date().toISOString()}\n`);
}

/** Whether a git dir carries the completion marker. */
export async function isReady(gitDir: string): Promise<boolean> {
  return pathExists(join(gitDir, READY_MARKER));
}

interface CacheEntry {
  bytes: number;
  lastUsedMs: number;
  /** Used since `bytes` was measured: measured again by the next background pass. */
  stale: boolean;
  /** When `bytes` was last measured (0: never). */
  measuredAtMs: number;
}

/**
 * A workspace is measured again at most this often. Measuring walks every file of its snapshots (tens of
 * thousands of lstat calls for a large repository), so it happens in the background, and a repository
 * synced every few seconds is not walked after every sync: between two measurements it changes by a few
 * commits, which does not matter against the cache budget.
 */
const MEASURE_INTERVAL_MS = 60_000;

/** LRU cache of per-repository git workspaces with per-repository exclusive leases. */
export class WorkspaceCache {
  private readonly reposDir: string;
  private readonly trashDir: string;
  private readonly maxBytes: number;
  private readonly log: WorkspaceLog;
  private readonly spawn: SpawnFunction;
  private readonly mutex = new KeyedMutex();
  private readonly entries = new Map<string, CacheEntry>();
  private loaded: Promise<void> | undefined;
  private evicting: Promise<void> | undefined;
  private evictAgain = false;
  private deferredPass: NodeJS.Timeout | undefined;

  constructor(options: WorkspaceCacheOptions) {
    this.reposDir = join(options.rootDir, 'repos');
    this.trashDir = join(options.rootDir, 'trash');
    this.maxBytes = options.maxBytes;
    this.log = options.log ?? (() => undefined);
    this.spawn = options.spawn ?? nodeSpawn;
  }

  /** Waits for exclusive use of a repository's workspace, repairing leftovers of interrupted runs. */
  async acquire(repositoryId: string, opts: { signal?: AbortSignal } = {}): Promise<WorkspaceLease> {
    assertRepositoryId(repositoryId);
    await this.ensureDirectories();
    // Sizes of workspaces left by an earlier process are measured in the background; eviction waits for it.
    this.loaded ??= this.loadExisting().catch((error: unknown) => {
      this.log('workspace cache scan failed', { error: String(error) });
    });
    const unlock = await this.mutex.lock(repositoryId, opts.signal);
    try {
      const dir = this.repositoryDir(repositoryId);
      const gitDir = join(dir, 'git');
      let ready = false;
      if (await pathExists(dir)) {
        ready = await isReady(gitDir);
        if (ready) {
          await this.removeStaleLocks(repositoryId, gitDir);
        } else {
          if (await pathExists(gitDir)) this.log('workspace incomplete, wiping it', { repositoryId });
          await this.moveToTrash(repositoryId);
        }
      }
      await mkdir(dir, { recursive: true });
      await touch(join(dir, USED_MARKER));
      const known = this.entries.get(repositoryId);
      this.entries.set(repositoryId, {
        bytes: known?.bytes ?? 0,
        lastUsedMs: Date.now(),
        stale: known?.stale ?? false,
        measuredAtMs: known?.measuredAtMs ?? 0,
      });
      return new Lease(repositoryId, dir, gitDir, ready, {
        reset: () => this.resetLeased(repositoryId),
        release: async () => {
          try {
            await this.recordRelease(repositoryId);
          } finally {
            unlock();
          }
          // In the background: a finished sync need not wait for its workspace to be measured nor for
          // other workspaces to be deleted.
          void this.scheduleEviction();
        },
      });
    } catch (error) {
      unlock();
      throw error;
    }
  }

  /** Deletes a repository's workspace (waiting for a current lease to end). */
  async remove(repositoryId: string): Promise<void> {
    assertRepositoryId(repositoryId);
    await this.ensureDirectories();
    const unlock = await this.mutex.lock(repositoryId);
    try {
      await this.moveToTrash(repositoryId);
      this.entries.delete(repositoryId);
    } finally {
      unlock();
    }
  }

  /** Total bytes of the workspaces this cache knows about. */
  totalBytes(): number {
    let total = 0;
    for (const entry of this.entries.values()) total += entry.bytes;
    return total;
  }

  /**
   * Resolves when background work (the initial scan, measurements, evictions) has finished; for tests
   * and shutdown. Measurements deferred by the measuring interval are not waited for.
   */
  async idle(): Promise<void> {
    await this.loaded;
    while (this.evicting) await this.evicting;
  }

  /** Wipes a leased workspace but keeps the lease. */
  private async resetLeased(repositoryId: string): Promise<void> {
    await this.moveToTrash(repositoryId);
    const dir = this.repositoryDir(repositoryId);
    await mkdir(dir, { recursive: true });
    await touch(join(dir, USED_MARKER));
  }

  /** Marks a workspace whose lease ends as just used and due for measuring (done in the background). */
  private async recordRelease(repositoryId: string): Promise<void> {
    const dir = this.repositoryDir(repositoryId);
    const known = this.entries.get(repositoryId);
    try {
      await touch(join(dir, USED_MARKER));
      this.entries.set(repositoryId, {
        bytes: known?.bytes ?? 0,
        lastUsedMs: Date.now(),
        stale: true,
        measuredAtMs: known?.measuredAtMs ?? 0,
      });
    } catch (error) {
      // The caller may have removed the directory; the cache must not fail a finished sync over it.
      this.entries.delete(repositoryId);
      this.log('workspace size unknown after release', { repositoryId, error: String(error) });
    }
  }

  /**
   * Measures the workspaces used since their last measurement, unless measured within the interval (those
   * get a later pass). No lock is held while measuring, so a sync of the same repository need not wait:
   * a result is kept only if the entry was not replaced meanwhile (used again, removed, evicted).
   */
  private async measureStale(): Promise<void> {
    const now = Date.now();
    let nextDue: number | undefined;
    for (const [repositoryId, entry] of [...this.entries.entries()]) {
      if (!entry.stale) continue;
      const due = entry.measuredAtMs + MEASURE_INTERVAL_MS;
      if (entry.measuredAtMs > 0 && due > now) {
        nextDue = Math.min(nextDue ?? due, due);
        continue;
      }
      let bytes: number;
      try {
        bytes = await directorySize(this.repositoryDir(repositoryId), this.spawn);
      } catch (error) {
        this.log('workspace size unknown', { repositoryId, error: String(error) });
        continue;
      }
      if (this.entries.get(repositoryId) !== entry) continue;
      this.entries.set(repositoryId, { ...entry, bytes, stale: false, measuredAtMs: Date.now() });
    }
    if (nextDue !== undefined && this.deferredPass === undefined) {
      this.deferredPass = setTimeout(() => {
        this.deferredPass = undefined;
        void this.scheduleEviction();
      }, nextDue - now);
      this.deferredPass.unref();
    }
  }

  /** Starts an eviction pass (or asks the running one to go again); never rejects. */
  private scheduleEviction(): Promise<void> {
    if (this.evicting) {
      this.evictAgain = true;
      return this.evicting;
    }
    this.evicting = (async () => {
      try {
        do {
          this.evictAgain = false;
          await this.measureStale();
          await this.evictLeastRecentlyUsed();
        } while (this.evictAgain);
      } catch (error) {
        this.log('workspace eviction failed', { error: String(error) });
      } finally {
        this.evicting = undefined;
      }
    })();
    return this.evicting;
  }

  private async evictLeastRecentlyUsed(): Promise<void> {
    await this.loaded;
    if (this.totalBytes() <= this.maxBytes) return;
    const byAge = [...this.entries.entries()].sort((a, b) => a[1].lastUsedMs - b[1].lastUsedMs);
    // The most recently used workspace is kept even when it alone exceeds the budget: evicting it
    // would turn every sync of that repository into a full clone.
    const newest = byAge.pop();
    for (const [repositoryId, entry] of byAge) {
      if (this.totalBytes() <= this.maxBytes) return;
      const unlock = this.mutex.tryLock(repositoryId);
      if (!unlock) continue; // leased or awaited right now: not a candidate
      try {
        // Re-check under the lock: it may have been used since we sorted.
        if (this.entries.get(repositoryId) !== entry) continue;
        await this.moveToTrash(repositoryId);
        this.entries.delete(repositoryId);
        this.log('workspace evicted', { repositoryId, bytes: entry.bytes, lastUsedMs: entry.lastUsedMs });
      } finally {
        unlock();
      }
    }
    if (this.totalBytes() > this.maxBytes && newest) {
      this.log('workspace cache over budget with nothing left to evict', {
        totalBytes: this.totalBytes(),
        maxBytes: this.maxBytes,
      });
    }
  }

  private repositoryDir(repositoryId: string): string {
    return join(this.reposDir, repositoryId);
  }

  private async ensureDirectories(): Promise<void> {
    await mkdir(this.reposDir, { recursive: true });
    await mkdir(this.trashDir, { recursive: true });
  }

  /** Measures workspaces left on disk by an earlier process and empties the trash. */
  private async loadExisting(): Promise<void> {
    for (const name of await readdir(this.trashDir)) {
      await rm(join(this.trashDir, name), { recursive: true, force: true, maxRetries: 3 });
    }
    for (const name of await readdir(this.reposDir)) {
      if (!REPOSITORY_ID_PATTERN.test(name) || this.entries.has(name)) continue;
      const dir = this.repositoryDir(name);
      try {
        const marker = await stat(join(dir, USED_MARKER)).catch(() => stat(dir));
        const bytes = await directorySize(dir, this.spawn);
        // A lease taken meanwhile has the fresher figures.
        if (!this.entries.has(name)) {
          this.entries.set(name, {
            bytes,
            lastUsedMs: marker.mtimeMs,
            stale: false,
            measuredAtMs: Date.now(),
          });
        }
      } catch (error) {
        this.log('workspace scan skipped an entry', { repositoryId: name, error: String(error) });
      }
    }
  }

  /** Renames a workspace into the trash (instant) and then deletes it. */
  private async moveToTrash(repositoryId: string): Promise<void> {
    const dir = this.repositoryDir(repositoryId);
    const trashed = join(this.trashDir, `${repositoryId}.${randomBytes(6).toString('hex')}`);
    await mkdir(this.trashDir, { recursive: true });
    try {
      await rename(dir, trashed);
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    await rm(trashed, { recursive: true, force: true, maxRetries: 3 });
  }

  /** Deletes lock files left by a git that was killed; safe because this process owns the directory. */
  private async removeStaleLocks(repositoryId: string, gitDir: string): Promise<void> {
    const removed: string[] = [];
    const walk = async (dir: string, relativeDir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        if (isNotFound(error)) return;
        throw error;
      }
      for (const entry of entries) {
        const relativePath = relativeDir ? `${relativeDir}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          // Loose-object fan-out directories hold no locks and can be huge.
          if (relativeDir === 'objects' && /^[0-9a-f]{2}$/.test(entry.name)) continue;
          await walk(join(dir, entry.name), relativePath);
        } else if (isStaleGitLeftover(relativePath)) {
          await unlink(join(dir, entry.name)).catch((error: unknown) => {
            if (!isNotFound(error)) throw error;
          });
          removed.push(relativePath);
        }
      }
    };
    await walk(gitDir, '');
    if (removed.length > 0) this.log('removed stale git lock files', { repositoryId, files: removed });
  }
}

/** `index.lock`, `HEAD.lock`, `refs/**.lock`, `packed-refs.lock`, `shallow.lock`, `config.lock`,
 * commit-graph locks, and a killed fetch's `.keep`/temporary packs. */
function isStaleGitLeftover(relativePath: string): boolean {
  if (relativePath.endsWith('.lock')) return true;
  if (relativePath.startsWith('objects/pack/')) {
    const name = relativePath.slice('objects/pack/'.length);
    return name.endsWith('.keep') || name.startsWith('tmp_');
  }
  return false;
}

class Lease implements WorkspaceLease {
  private released = false;
  private isReadyNow: boolean;

  constructor(
    readonly repositoryId: string,
    readonly dir: string,
    readonly gitDir: string,
    ready: boolean,
    private readonly actions: { reset: () => Promise<void>; release: () => Promise<void> },
  ) {
    this.isReadyNow = ready;
  }

  get ready(): boolean {
    return this.isReadyNow;
  }

  snapshotDir(branch: string): string {
    return join(this.dir, 'snapshots', snapshotKey(branch));
  }

  async reset(): Promise<void> {
    if (this.released) throw new Error(`workspace lease of ${this.repositoryId} was already released`);
    await this.actions.reset();
    this.isReadyNow = false;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.actions.release();
  }
}

/** File-system-safe, collision-free directory name for a branch (branch names may contain `/`). */
export function snapshotKey(branch: string): string {
  const readable = branch
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^\.+/, '_')
    .slice(0, 60);
  const hash = createHash('sha256').update(branch).digest('hex').slice(0, 10);
  return `${readable}-${hash}`;
}

/**
 * Allocated bytes under a directory (symlinks are not followed), from `du -sk`: one child process walks
 * the tree, where a walk in this process costs the event loop a stat call per file (20,000 for a large
 * snapshot, about a second of main-thread time). Walked here only when there is no `du`.
 */
export async function directorySize(dir: string, spawn: SpawnFunction = nodeSpawn): Promise<number> {
  const { stdout, error } = await runDu(dir, spawn);
  if (error?.code === 'ENOENT') return walkDirectorySize(dir);
  // du also exits 1 when a file vanished during its walk, still printing the total.
  const kib = duTotal(stdout);
  if (kib !== null) return kib * 1024;
  if (!(await pathExists(dir))) return 0;
  throw error ?? new Error(`du printed no total for ${dir}`);
}

/** `du -sk <dir>`: what it printed, and how it failed (no `du`: code ENOENT; an exit status: a number). */
function runDu(
  dir: string,
  spawn: SpawnFunction,
): Promise<{ stdout: string; error: (Error & { code?: string | number }) | null }> {
  return new Promise((resolve) => {
    const stdout: Buffer[] = [];
    try {
      const child = spawn('du', ['-sk', '--', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
      child.stderr?.resume();
      child.once('error', (error) => resolve({ stdout: '', error }));
      child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
        const failed = code === 0 ? null : new Error(`du exited with ${code ?? signal}`);
        resolve({
          stdout: Buffer.concat(stdout).toString('utf8'),
          error: failed && Object.assign(failed, { code: code ?? undefined }),
        });
      });
    } catch (error) {
      resolve({ stdout: '', error: error instanceof Error ? error : new Error(String(error)) });
    }
  });
}

/** The KiB total of `du -sk <dir>` output (`<kib>\t<dir>`), or null. */
function duTotal(stdout: string): number | null {
  const match = /^(\d+)\t/m.exec(stdout);
  return match ? Number(match[1]) : null;
}

/** Allocated bytes under a directory, walked in this process (symlinks are not followed). */
export async function walkDirectorySize(dir: string): Promise<number> {
  let total = 0;
  const pending = [dir];
  for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
    let entries;
    try {
      entries = await readdir(path, { withFileTypes: true });
    } catch (error) {
      // Vanished meanwhile (or dir itself missing): it takes no space.
      if (isNotFound(error)) continue;
      throw error;
    }
    // Batches bound the number of concurrent stat calls in directories with many files.
    for (let i = 0; i < entries.length; i += 128) {
      const sizes = await Promise.all(
        entries.slice(i, i + 128).map(async (entry) => {
          const full = join(path, entry.name);
          if (entry.isDirectory()) pending.push(full);
          const info = await lstat(full).catch((error: unknown) => {
            if (isNotFound(error)) return null;
            throw error;
          });
          return info ? allocatedBytes(info.blocks, info.size) : 0;
        }),
      );
      for (const size of sizes) total += size;
    }
  }
  return total;
}

function allocatedBytes(blocks: number, size: number): number {
  return Number.isFinite(blocks) && blocks > 0 ? blocks * 512 : size;
}

function assertRepositoryId(repositoryId: string): void {
  if (!REPOSITORY_ID_PATTERN.test(repositoryId)) {
    throw new Error(`invalid repository id for a workspace: ${JSON.stringify(repositoryId)}`);
  }
}

async function touch(path: string): Promise<void> {
  await writeFile(path, '');
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

function isNotFound(error: unknown): boolean {
  // Duck-typed: fs errors may come from another realm (e.g. under jest's vm modules) and fail instanceof.
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Per-key FIFO mutex: one holder per key, others wait their turn. */
class KeyedMutex {
  // A key present in the map is held; its array holds the waiters in arrival order.
  private readonly waiters = new Map<string, Array<() => void>>();

  lock(key: string, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const queue = this.waiters.get(key);
    if (!queue) {
      this.waiters.set(key, []);
      return Promise.resolve(this.releaser(key));
    }
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const index = queue.indexOf(grant);
        if (index >= 0) queue.splice(index, 1);
        reject(abortError(signal));
      };
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(this.releaser(key));
      };
      queue.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Takes the lock only if nobody holds or awaits it. */
  tryLock(key: string): (() => void) | null {
    if (this.waiters.has(key)) return null;
    this.waiters.set(key, []);
    return this.releaser(key);
  }

  private releaser(key: string): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.get(key)?.shift();
      if (next) next();
      else this.waiters.delete(key);
    };
  }
}

function abortError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new Error('workspace acquire aborted');
}
