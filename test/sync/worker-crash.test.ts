/**
 * A real worker process (the compiled `worker.js`, as production runs it) killed with SIGKILL in the middle
 * of a fetch, then a second worker process over the same database, Redis prefix and workspace: the branch
 * must end SYNCED at the new head through BullMQ's stalled-job recovery and the engine's takeover, with the
 * killed run closed honestly and the repository's token never visible outside the git processes that need it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import type { AppConfig } from '../../src/config/app-config.js';
import { snapshotKey } from '../../src/sync/workspace/workspace-cache.js';
import { GitFixtureServer } from '../fixtures/git-server.js';
import { ApiHarness, type TestTenant } from '../support/api-harness.js';
import type { BranchRow, RunRow } from '../support/sync-harness.js';

const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const REPOSITORY = 'acme/private';
/** Distinctive, so that any occurrence in argv, logs or files is this token and nothing else. */
const TOKEN = `crashtok-${randomBytes(16).toString('hex')}`;

interface WorkerProcess {
  name: string;
  child: ChildProcess;
  output: string[];
  exited: Promise<void>;
}

interface ProcessInfo {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
  cmdline: string;
}

/** Every process on the machine, from /proc (processes that vanish while we read are skipped). */
async function listProcesses(): Promise<ProcessInfo[]> {
  const found: ProcessInfo[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      // `pid (comm) state ppid pgrp ...`; comm may contain spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmdline = (await readFile(`/proc/${entry}/cmdline`)).toString('utf8').replace(/\0/g, ' ');
      found.push({
        pid: Number(entry),
        state: fields[0] ?? '?',
        ppid: Number(fields[1]),
        pgid: Number(fields[2]),
        cmdline,
      });
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/** The processes started (directly or not) by `rootPid`. */
function descendantsOf(processes: ProcessInfo[], rootPid: number): ProcessInfo[] {
  const result: ProcessInfo[] = [];
  const parents = new Set([rootPid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of processes) {
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        result.push(p);
        grew = true;
      }
    }
  }
  return result;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * What a crashed machine or container does to a worker: every process of it dies at once. Killing the
 * worker's process group is not enough, because GitRunner starts each git in a session of its own (so that
 * a timeout can kill git with its helpers); those would survive as orphans. So: freeze the worker (it can
 * start nothing new), collect its whole process tree, and SIGKILL every group in it.
 */
async function crash(worker: WorkerProcess): Promise<ProcessInfo[]> {
  const pid = worker.child.pid!;
  process.kill(-pid, 'SIGSTOP');
  const tree = descendantsOf(await listProcesses(), pid);
  for (const p of tree) {
    try {
      if (p.pgid > 1 && p.pgid !== pid) process.kill(-p.pgid, 'SIGKILL');
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  process.kill(-pid, 'SIGKILL');
  await worker.exited;
  return tree;
}

/**
 * The worker's environment, built back from the API's configuration so that both processes agree on
 * everything (database, queue prefix, encryption keys, workspace, archive store, timings).
 */
function workerEnvironment(config: AppConfig): Record<string, string> {
  const { sync, archives, polling, webhooks } = config;
  const env: Record<string, string | undefined> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? tmpdir(),
    NODE_ENV: config.env,
    LOG_LEVEL: 'debug',
    DATABASE_URL: config.database.url,
    DATABASE_POOL_SIZE: String(config.database.poolSize),
    REDIS_URL: config.redis.url,
    QUEUE_PREFIX: config.redis.queuePrefix,
    ADMIN_TOKEN: config.adminToken,
    ENCRYPTION_KEYS: config.encryption.keys.map((k) => `${k.id}:${k.key.toString('base64')}`).join(','),
    ENCRYPTION_ACTIVE_KEY_ID: config.encryption.activeKeyId,
    ALLOW_INSECURE_REPOSITORY_URLS: String(config.repositories.allowInsecureUrls),
    PUBLIC_URL: webhooks.publicUrl,
    GITHUB_APP_WEBHOOK_SECRET: webhooks.githubAppSecret ?? undefined,
    GITLAB_SYSTEM_HOOK_TOKEN: webhooks.gitlabSystemHookToken ?? undefined,
    GITHUB_HOST: webhooks.githubHost,
    GITLAB_HOST: webhooks.gitlabHost,
    WEBHOOK_DELIVERY_RETENTION_DAYS: String(webhooks.retentionDays),
    POLL_INTERVAL_MIN_MS: String(polling.minIntervalMs),
    POLL_INTERVAL_MAX_MS: String(polling.maxIntervalMs),
    POLL_TICK_MS: String(polling.tickMs),
    POLL_BATCH: String(polling.batch),
    ARCHIVE_STORE: archives.store,
    ARCHIVE_DIR: archives.directory,
    ARCHIVE_PREFIX: archives.prefix,
    ARCHIVE_RETENTION: String(archives.retention),
    ARCHIVE_URL_TTL_SECONDS: String(archives.urlTtlSeconds),
    S3_ENDPOINT: archives.s3?.endpoint,
    S3_REGION: archives.s3?.region,
    S3_BUCKET: archives.s3?.bucket,
    S3_FORCE_PATH_STYLE: archives.s3 ? String(archives.s3.forcePathStyle) : undefined,
    S3_ACCESS_KEY_ID: archives.s3?.credentials?.accessKeyId,
    S3_SECRET_ACCESS_KEY: archives.s3?.credentials?.secretAccessKey,
    WORKSPACE_DIR: sync.workspaceDir,
    WORKSPACE_MAX_BYTES: String(sync.workspaceMaxBytes),
    GIT_TIMEOUT_MS: String(sync.gitTimeoutMs),
    SYNC_CONCURRENCY: String(sync.concurrency),
    SYNC_TENANT_CONCURRENCY: String(sync.tenantConcurrency),
    SYNC_MAX_ATTEMPTS: String(sync.maxAttempts),
    SYNC_BACKOFF_MS: String(sync.backoffMs),
    SYNC_LOCK_DURATION_MS: String(sync.lockDurationMs),
    SYNC_STALLED_INTERVAL_MS: String(sync.stalledIntervalMs),
    RECONCILE_INTERVAL_MS: String(sync.reconcileIntervalMs),
  };
  return Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
}

/** Runs a command to completion; rejects with its output when it fails. */
function run(command: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} failed (${code}):\n${output}`)),
    );
  });
}

describe('worker killed mid-fetch (separate process, SIGKILL)', () => {
  let scratch: string;
  let buildDir: string;
  let workspaceDir: string;
  let api: ApiHarness;
  let git: GitFixtureServer;
  let db: pg.Client;
  let tenant: TestTenant;
  const workers: WorkerProcess[] = [];
  let stopSampling = async (): Promise<void> => undefined;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'reposync-crash-'));
    buildDir = join(scratch, 'build');
    workspaceDir = join(scratch, 'workspace');
    // The child runs the compiled service exactly as `node dist/worker.js` would (Prisma client included).
    const compiled = run(
      process.execPath,
      ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json', '--outDir', buildDir],
      PROJECT_ROOT,
    );
    api = await ApiHarness.start({
      ALLOW_INSECURE_REPOSITORY_URLS: 'true',
      WORKSPACE_DIR: workspaceDir,
      ARCHIVE_STORE: 'filesystem',
      ARCHIVE_DIR: join(scratch, 'archives'),
      SYNC_LOCK_DURATION_MS: '3000',
      SYNC_STALLED_INTERVAL_MS: '1000',
      SYNC_BACKOFF_MS: '200',
      SYNC_MAX_ATTEMPTS: '3',
      SYNC_CONCURRENCY: '2',
      RECONCILE_INTERVAL_MS: '60000',
      // No polling: every sync in this test is one the test asked for.
      POLL_TICK_MS: '3600000',
    });
    git = await GitFixtureServer.start();
    db = new pg.Client({ connectionString: api.config.database.url });
    await db.connect();
    tenant = await api.createTenant('crash');
    await compiled;
    // Outside the project, packages resolve through this link and the .js files need "type": "module".
    await symlink(join(PROJECT_ROOT, 'node_modules'), join(buildDir, 'node_modules'), 'dir');
    await writeFile(join(buildDir, 'package.json'), '{ "type": "module" }\n');
  }, 60_000);

  afterAll(async () => {
    await stopSampling().catch(() => undefined);
    for (const worker of workers) {
      if (worker.child.exitCode === null && worker.child.signalCode === null) await crash(worker);
    }
    await db?.end();
    await api?.stop();
    await git?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }, 30_000);

  function startWorkerProcess(name: string): WorkerProcess {
    const child = spawn(process.execPath, [join(buildDir, 'worker.js')], {
      // No .env there: the environment below is the whole configuration.
      cwd: buildDir,
      env: workerEnvironment(api.config),
      // Its own process group, which crash() freezes and kills as a whole.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const worker = { name, child, output, exited };
    workers.push(worker);
    return worker;
  }

  /** Polls `check` until it returns a value; fails early (with its logs) if a worker process died. */
  async function waitFor<T>(
    what: string,
    check: () => Promise<T | undefined>,
    alive: WorkerProcess[] = [],
    timeoutMs = 30_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      for (const w of alive) {
        if (w.child.exitCode !== null || w.child.signalCode !== null) {
          throw new Error(`worker ${w.name} exited while waiting for ${what}:\n${w.output.join('')}`);
        }
      }
      try {
        const value = await check();
        if (value !== undefined) return value;
      } catch (e) {
        last = e;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const cause = last instanceof Error ? `: ${last.message}` : '';
    throw new Error(`timed out waiting for ${what}${cause}`);
  }

  async function branch(repositoryId: string): Promise<BranchRow & { lockedBy: string | null }> {
    const { rows } = await db.query<BranchRow & { lockedBy: string | null }>(
      'SELECT "id","name","status","syncedSha","deletedAt","lastError","lastErrorCode","dirty","lockedBy" FROM "Branch" WHERE "repositoryId" = $1',
      [repositoryId],
    );
    expect(rows).toHaveLength(1);
    return rows[0]!;
  }

  async function runs(branchId: string): Promise<RunRow[]> {
    const { rows } = await db.query<RunRow>(
      'SELECT "id","status","strategy","strategyReason","fromSha","toSha","trigger","errorCode","error" FROM "SyncRun" WHERE "branchId" = $1 ORDER BY "startedAt"',
      [branchId],
    );
    return rows;
  }

  /** Upload-pack POSTs the fixture server accepted but has not answered yet (e.g. sleeping on the delay). */
  function uploadPacksInFlight(): number {
    const answered = git.requests.filter(
      (r) =>
        r.repository === REPOSITORY &&
        r.method === 'POST' &&
        r.path.endsWith('/git-upload-pack') &&
        r.status !== 401,
    ).length;
    return git.uploadPackRequests(REPOSITORY) - answered;
  }

  it('recovers the branch on a second worker, closes the killed run, and never exposes the token', async () => {
    const remote = await git.createRepository(REPOSITORY, { auth: { username: 'git', password: TOKEN } });
    await remote.generateHistory({ commits: 300 });
    const initial = await remote.generateTree({ files: 400, bytesPerFile: 512 });

    const first = startWorkerProcess('first');
    const added = await api.request<{ id: string }>('POST', '/repositories', {
      token: tenant.apiKey,
      body: { url: remote.url, branches: ['main'], accessToken: TOKEN },
    });
    expect({ status: added.status, body: added.body }).toMatchObject({ status: 201 });
    const repositoryId = added.body.id;
    const synced = await waitFor(
      'first sync',
      async () => {
        const b = await branch(repositoryId);
        return b.status === 'SYNCED' && b.syncedSha === initial ? b : undefined;
      },
      [first],
    );
    const branchId = synced.id;

    // Sample the runs for the rest of the test: never two RUNNING at once.
    let maxRunning = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "SyncRun" WHERE "branchId" = $1 AND "status" = 'RUNNING'`,
          [branchId],
        );
        maxRunning = Math.max(maxRunning, rows[0]!.n);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    stopSampling = async () => {
      sampling = false;
      await sampler;
    };

    const next = await remote.commit({ 'CHANGELOG.md': '# v2\n', 'generated/d07/file-7.txt': 'changed\n' });
    git.resetCounters();
    // Short delay first: it holds the resolve step's ls-remote; once that is in flight every later
    // upload-pack POST (the fetch's) waits long enough for the kill.
    git.setUploadPackDelay(1500, REPOSITORY);
    const triggered = await api.request('POST', `/repositories/${repositoryId}/sync`, {
      token: tenant.apiKey,
      body: {},
    });
    expect(triggered.status).toBe(202);
    await waitFor(
      'the resolve step at the server',
      async () => (uploadPacksInFlight() > 0 ? true : undefined),
      [first],
    );
    const resolvePosts = git.uploadPackRequests(REPOSITORY);
    git.setUploadPackDelay(120_000, REPOSITORY);

    const fetching = await waitFor(
      'the fetch in flight',
      async () => {
        const b = await branch(repositoryId);
        if (b.status !== 'SYNCING') return undefined;
        if (git.uploadPackRequests(REPOSITORY) <= resolvePosts || uploadPacksInFlight() === 0)
          return undefined;
        const fetch = descendantsOf(await listProcesses(), first.child.pid!).find(
          (p) => /\bgit\b/.test(p.cmdline) && / fetch /.test(p.cmdline) && p.cmdline.includes('origin'),
        );
        return fetch ? { branch: b, fetch } : undefined;
      },
      [first],
    );
    expect(fetching.branch.lockedBy?.startsWith(`sync-branch-${branchId}:`)).toBe(true);
    const killedRun = (await runs(branchId)).find((r) => r.status === 'RUNNING');
    expect(killedRun).toMatchObject({ fromSha: initial, toSha: null });

    // While git is waiting for the server: the token is on no command line on this machine, and only
    // the worker's own git processes carry it (in their environment, for the askpass helper).
    const processes = await listProcesses();
    expect(processes.filter((p) => p.cmdline.includes(TOKEN)).map((p) => p.cmdline)).toEqual([]);
    const workerTree = new Set(descendantsOf(processes, first.child.pid!).map((p) => p.pid));
    const carriers: ProcessInfo[] = [];
    for (const p of processes) {
      const environ = await readFile(`/proc/${p.pid}/environ`).catch(() => Buffer.alloc(0));
      if (environ.includes(TOKEN)) carriers.push(p);
    }
    expect(carriers.map((p) => p.pid)).toContain(fetching.fetch.pid);
    for (const p of carriers) {
      expect({ pid: p.pid, cmdline: p.cmdline, inWorkerTree: workerTree.has(p.pid) }).toEqual({
        pid: p.pid,
        cmdline: expect.stringMatching(/git/),
        inWorkerTree: true,
      });
    }
    const gitConfig = await readFile(join(workspaceDir, 'repos', repositoryId, 'git', 'config'), 'utf8');
    expect(gitConfig).toContain(remote.url);
    expect(gitConfig).not.toContain(TOKEN);

    const killed = await crash(first);
    git.setUploadPackDelay(0, REPOSITORY);
    expect(killed.map((p) => p.pid)).toContain(fetching.fetch.pid);
    const survivors = (await listProcesses()).filter(
      (p) => killed.some((k) => k.pid === p.pid) && p.state !== 'Z',
    );
    expect(survivors).toEqual([]);
    expect(isAlive(first.child.pid!)).toBe(false);
    // Nobody is left to release anything: the crash leaves the branch SYNCING and its run RUNNING.
    expect(await branch(repositoryId)).toMatchObject({ status: 'SYNCING' });
    expect((await runs(branchId)).filter((r) => r.status === 'RUNNING')).toHaveLength(1);

    const second = startWorkerProcess('second');
    const done = await waitFor(
      'the branch SYNCED at the new head on the second worker',
      async () => {
        const b = await branch(repositoryId);
        return b.status === 'SYNCED' && b.syncedSha === next && !b.dirty ? b : undefined;
      },
      [second],
    );
    expect(done).toMatchObject({ lockedBy: null, lastError: null });
    const finalRuns = await waitFor(
      'no run left RUNNING',
      async () => {
        const all = await runs(branchId);
        return all.every((r) => r.status !== 'RUNNING') ? all : undefined;
      },
      [second],
    );
    // Let a stray follow-up (there must be none) show up before judging.
    await new Promise((r) => setTimeout(r, 500));
    await stopSampling();

    expect(maxRunning).toBe(1);
    expect((await runs(branchId)).length).toBe(finalRuns.length);
    expect(finalRuns.map((r) => r.status)).toEqual(['SUCCEEDED', 'ABANDONED', 'SUCCEEDED']);
    expect(finalRuns[1]).toMatchObject({
      id: killedRun!.id,
      fromSha: initial,
      toSha: null,
      error: 'the worker stopped during this run',
    });
    // The interrupted fetch left the cached clone usable: the second worker fetched into it.
    expect(finalRuns[2]).toMatchObject({ strategy: 'fetch', fromSha: initial, toSha: next });
    const snapshot = join(workspaceDir, 'repos', repositoryId, 'snapshots', snapshotKey('main'));
    expect(await remote.diffAgainstDirectory(next, snapshot)).toEqual([]);

    const firstLog = first.output.join('');
    const secondLog = second.output.join('');
    expect(firstLog).toMatch(/sync worker started/);
    expect(secondLog).toMatch(/took over a branch whose previous worker stopped/);
    expect(firstLog.includes(TOKEN)).toBe(false);
    expect(secondLog.includes(TOKEN)).toBe(false);
    expect(
      (await readFile(join(workspaceDir, 'repos', repositoryId, 'git', 'config'), 'utf8')).includes(TOKEN),
    ).toBe(false);

    // A clean stop of the second worker (SIGTERM runs the shutdown hooks).
    second.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([second.exited, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
    clearTimeout(timer);
    expect(second.child.exitCode ?? second.child.signalCode).not.toBeNull();
  }, 60_000);
});
