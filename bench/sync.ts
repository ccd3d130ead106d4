/**
 * Sync benchmark: a large fixture repository synced through the real engine (API + BullMQ worker +
 * BranchSynchronizer against Postgres, Redis and git over smart HTTP), first as a clone, then one commit
 * at a time, next to a plain `git fetch` of the same commits.
 *
 * Build and run from the project root (Postgres on 127.0.0.1:5432 with trust auth, Redis on 127.0.0.1:6379):
 *   node node_modules/typescript/bin/tsc -p bench/tsconfig.json
 *   node bench/dist/bench/sync.js [--files 20000] [--commits 2000] [--bytes-per-file 256] [--rounds 5]
 *                                 [--warmup 3] [--gzip-level 6]
 *                                 [--pg postgresql://postgres@127.0.0.1:5432] [--redis redis://127.0.0.1:6379]
 *
 * It creates (and drops at the end) a database `reposync_bench_<pid>`, a Redis key prefix `bench-<pid>`
 * and temporary directories; nothing else is touched.
 */
import { type spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { INestApplicationContext } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Queue } from 'bullmq';
import pg from 'pg';
import { createApi } from '../src/api.js';
import { type AppConfig, loadConfig } from '../src/config/app-config.js';
import { SpawnHelper } from '../src/sync/git/spawn-helper.js';
import { SYNC_QUEUE } from '../src/sync/queue/sync-jobs.js';
import { startWorker } from '../src/worker.js';
import { deleteKeysWithPrefix } from '../test/support/redis-keys.js';
import { createBenchDatabase } from './bench-database.js';
import { runFixtureGit } from '../test/fixtures/git-server.js';
import { startFixtureHosts } from './fixture-hosts.js';
import {
  formatBytes,
  formatMs,
  median,
  nonNegativeOption,
  positiveOption,
  projectRoot,
  table,
} from './bench-report.js';

interface Options {
  files: number;
  commits: number;
  bytesPerFile: number;
  rounds: number;
  /** Unmeasured incremental rounds first: a worker is a long-running process, its code compiled by then. */
  warmup: number;
  /** ARCHIVE_GZIP_LEVEL of the service. */
  gzipLevel: number;
  pgUrl: string;
  redisUrl: string;
}

interface RunRecord {
  status: string;
  strategy: string | null;
  toSha: string | null;
  bytesFetched: string | null;
  filesChanged: number | null;
  phaseTimings: Record<string, number>;
  durationMs: number;
  /** Size of the revision's archive. */
  archiveBytes: number | null;
}

/** One measured sync (engine) or fetch (plain git). */
interface Measurement {
  /** Wall clock from the trigger until the new state is visible (engine) or git exits (plain). */
  ms: number;
  /** Engine: wall clock from the trigger until the worker is idle again (the job's work after SYNCED too). */
  jobMs?: number;
  /** Pack bytes received by the fetch/clone step. */
  bytes: number;
  /** Pack bytes the git dir grew by, lazily fetched blobs included (engine only). */
  storedBytes?: number;
  run?: RunRecord;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      files: { type: 'string', default: '20000' },
      commits: { type: 'string', default: '2000' },
      'bytes-per-file': { type: 'string', default: '256' },
      rounds: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '3' },
      'gzip-level': { type: 'string', default: '6' },
      pg: { type: 'string', default: 'postgresql://postgres@127.0.0.1:5432' },
      redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    },
  });
  const positive = positiveOption;
  return {
    files: positive('files', values.files),
    commits: positive('commits', values.commits),
    bytesPerFile: positive('bytes-per-file', values['bytes-per-file']),
    rounds: positive('rounds', values.rounds),
    warmup: nonNegativeOption('warmup', values.warmup),
    gzipLevel: positive('gzip-level', values['gzip-level']),
    pgUrl: values.pg.replace(/\/+$/, ''),
    redisUrl: values.redis,
  };
}

async function packBytes(gitDir: string): Promise<Map<string, number>> {
  const dir = join(gitDir, 'objects', 'pack');
  const sizes = new Map<string, number>();
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name.endsWith('.pack')) sizes.set(name, (await stat(join(dir, name))).size);
  }
  return sizes;
}

function newBytes(before: Map<string, number>, after: Map<string, number>): number {
  let total = 0;
  for (const [name, size] of after) if (!before.has(name)) total += size;
  return total;
}

function totalBytes(sizes: Map<string, number>): number {
  let total = 0;
  for (const size of sizes.values()) total += size;
  return total;
}

/** The service (API + worker in this process) as a client sees it, plus SQL access to what it records. */
class Service {
  private constructor(
    private readonly api: NestFastifyApplication,
    private readonly worker: INestApplicationContext,
    private readonly baseUrl: string,
    private readonly config: AppConfig,
    private readonly db: pg.Client,
    private readonly queue: Queue,
  ) {}

  static async start(config: AppConfig): Promise<Service> {
    const worker = await startWorker(config);
    const api = await createApi(config);
    await api.listen({ host: '127.0.0.1', port: 0 });
    const address = api.getHttpServer().address();
    if (!address || typeof address === 'string') throw new Error('API did not bind a TCP port');
    const db = new pg.Client({ connectionString: config.database.url });
    await db.connect();
    const queue = new Queue(SYNC_QUEUE, {
      connection: { url: config.redis.url, maxRetriesPerRequest: null },
      prefix: config.redis.queuePrefix,
    });
    return new Service(api, worker, `http://127.0.0.1:${address.port}`, config, db, queue);
  }

  async request<T>(method: string, path: string, token: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status >= 300) throw new Error(`${method} ${path} answered ${res.status}: ${text}`);
    return (text ? JSON.parse(text) : null) as T;
  }

  async createTenant(): Promise<string> {
    const res = await this.request<{ apiKey: { key: string } }>(
      'POST',
      '/admin/tenants',
      this.config.adminToken,
      { name: 'Benchmark', slug: 'bench' },
    );
    return res.apiKey.key;
  }

  /** Polls (every 5 ms) until the repository's only branch is SYNCED at `sha`; returns its id. */
  async waitForSynced(repositoryId: string, sha: string, timeoutMs = 600_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const { rows } = await this.db.query<{ id: string; status: string; syncedSha: string | null }>(
        'SELECT "id","status","syncedSha" FROM "Branch" WHERE "repositoryId" = $1 AND "deletedAt" IS NULL',
        [repositoryId],
      );
      const branch = rows[0];
      if (branch?.status === 'FAILED') throw new Error(`sync failed: ${JSON.stringify(branch)}`);
      if (branch && branch.status === 'SYNCED' && branch.syncedSha === sha) return branch.id;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`timed out waiting for ${repositoryId} to be SYNCED at ${sha}`);
  }

  /** Polls (every 5 ms) until no sync job is active or waiting: the worker has finished the whole job. */
  async waitForIdle(timeoutMs = 600_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const counts = await this.queue.getJobCounts('active', 'waiting', 'prioritized');
      if (Object.values(counts).every((n) => n === 0)) return;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error('timed out waiting for the worker to finish its jobs');
  }

  async lastRun(branchId: string): Promise<RunRecord> {
    const { rows } = await this.db.query<{
      status: string;
      strategy: string | null;
      toSha: string | null;
      bytesFetched: string | null;
      filesChanged: number | null;
      phaseTimings: Record<string, number>;
      durationMs: number;
      archiveBytes: number | null;
    }>(
      `SELECT "status","strategy","toSha","bytesFetched"::text AS "bytesFetched","filesChanged","phaseTimings",
         (EXTRACT(EPOCH FROM "finishedAt" - "startedAt") * 1000)::float8 AS "durationMs",
         (SELECT a."sizeBytes"::float8 FROM "Archive" a
           WHERE a."repositoryId" = r."repositoryId" AND a."sha" = r."toSha" LIMIT 1) AS "archiveBytes"
       FROM "SyncRun" r WHERE "branchId" = $1 ORDER BY "startedAt" DESC LIMIT 1`,
      [branchId],
    );
    if (!rows[0]) throw new Error(`no run recorded for branch ${branchId}`);
    return rows[0];
  }

  async stop(): Promise<void> {
    await this.api.close();
    await this.worker.close();
    await this.queue.close();
    await this.db.end();
  }
}

function describeRun(run: RunRecord): string {
  const phases = Object.entries(run.phaseTimings)
    .map(([phase, ms]) => `${phase} ${formatMs(ms)}`)
    .join(', ');
  return `${run.strategy ?? '?'}; run ${formatMs(run.durationMs)} (${phases})`;
}

async function main(): Promise<void> {
  const options = parseOptions();
  const root = projectRoot();
  const scratch = await mkdtemp(join(tmpdir(), 'reposync-bench-'));
  const cleanups: Array<() => Promise<unknown>> = [() => rm(scratch, { recursive: true, force: true })];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) {
      await step().catch((e: unknown) => console.error('cleanup step failed:', e));
    }
  };

  try {
    console.log(
      `reposync sync benchmark: ${options.files} files x ${options.bytesPerFile} B, ${options.commits} commits, ` +
        `${options.rounds} incremental rounds; node ${process.version}, ${spawnSync('git', ['--version'], { encoding: 'utf8' }).stdout.trim()}`,
    );

    let t = performance.now();
    // In a child process, as a code host is elsewhere: its git processes must not run on (and block) the
    // event loop of the worker being measured.
    const hosts = await startFixtureHosts({
      root: join(scratch, 'server'),
      files: options.files,
      commits: options.commits,
      bytesPerFile: options.bytesPerFile,
      changed: 0,
    });
    cleanups.push(() => hosts.stop());
    const remote = { url: hosts.built.url, commit: (files: Record<string, string>) => hosts.commit(files) };
    const tip = hosts.built.to;
    console.log(
      `fixture: ${hosts.built.files} files at the tip, generated in ${formatMs(performance.now() - t)} (served by a child process)`,
    );

    t = performance.now();
    const database = await createBenchDatabase(options.pgUrl, root);
    cleanups.push(() => database.drop());
    console.log(`database ${database.name} created and migrated in ${formatMs(performance.now() - t)}`);

    const workspaceDir = join(scratch, 'workspace');
    const config = loadConfig({
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      DATABASE_URL: database.url,
      REDIS_URL: options.redisUrl,
      QUEUE_PREFIX: `bench-${process.pid}`,
      ADMIN_TOKEN: randomBytes(32).toString('hex'),
      ENCRYPTION_KEYS: `bench:${randomBytes(32).toString('base64')}`,
      // The fixture server is http:// on 127.0.0.1.
      ALLOW_INSECURE_REPOSITORY_URLS: 'true',
      WORKSPACE_DIR: workspaceDir,
      // Archives of every synced revision are part of a sync: kept in the scratch directory.
      ARCHIVE_STORE: 'filesystem',
      ARCHIVE_DIR: join(scratch, 'archives'),
      ARCHIVE_GZIP_LEVEL: String(options.gzipLevel),
      // Only the syncs the benchmark asks for: no periodic reconcile or host polling in between.
      RECONCILE_INTERVAL_MS: String(3600_000),
      POLL_TICK_MS: String(3600_000),
    });
    cleanups.push(() => deleteKeysWithPrefix(config.redis.url, config.redis.queuePrefix));
    const service = await Service.start(config);
    cleanups.push(() => service.stop());
    const apiKey = await service.createTenant();

    // (a) First sync: onboarding + clone + snapshot of the tip, from the API call to SYNCED.
    let started = performance.now();
    const repo = await service.request<{ id: string }>('POST', '/repositories', apiKey, {
      url: remote.url,
      branches: ['main'],
    });
    const branchId = await service.waitForSynced(repo.id, tip);
    const firstMs = performance.now() - started;
    await service.waitForIdle();
    const gitDir = join(workspaceDir, 'repos', repo.id, 'git');
    const firstRun = await service.lastRun(branchId);
    const first: Measurement = {
      ms: firstMs,
      jobMs: performance.now() - started,
      bytes: Number(firstRun.bytesFetched ?? 0),
      storedBytes: totalBytes(await packBytes(gitDir)),
      run: firstRun,
    };
    console.log(`(a) first sync: ${formatMs(first.ms)}, ${describeRun(firstRun)}`);

    // The side-by-side baseline: a plain full bare clone, made once, then fetched into.
    const plainDir = join(scratch, 'plain.git');
    // Plain git starts from a helper process, as the worker's does: forking this process (the worker's)
    // would stop its event loop and make its next writes to every page fault, slowing the next sync.
    const plainGit = new SpawnHelper();
    cleanups.push(async () => plainGit.close());
    const spawnPlain = plainGit.spawn as unknown as typeof spawn;
    started = performance.now();
    await runFixtureGit(['clone', '--bare', '--quiet', remote.url, plainDir], { spawn: spawnPlain });
    const plainClone: Measurement = {
      ms: performance.now() - started,
      bytes: totalBytes(await packBytes(plainDir)),
    };

    const incremental: Measurement[] = [];
    const bare: Measurement[] = [];
    for (let round = 1 - options.warmup; round <= options.rounds; round++) {
      const path = `generated/d${String((round + 100) % 100).padStart(2, '0')}/file-${round + options.warmup}.txt`;
      const sha = await remote.commit({ [path]: `round ${round} ${randomBytes(8).toString('hex')}\n` });

      // (b) the engine: trigger through the API, until the branch is SYNCED at the new commit.
      const storedBefore = await packBytes(gitDir);
      started = performance.now();
      await service.request('POST', `/repositories/${repo.id}/sync`, apiKey, {});
      await service.waitForSynced(repo.id, sha);
      const ms = performance.now() - started;
      // What the job does after SYNCED (the snapshot update) must not overlap the plain fetch below.
      await service.waitForIdle();
      const jobMs = performance.now() - started;
      const run = await service.lastRun(branchId);
      if (run.status !== 'SUCCEEDED' || run.toSha !== sha || run.strategy !== 'fetch') {
        throw new Error(`round ${round}: unexpected run ${JSON.stringify(run)}`);
      }
      const measured: Measurement = {
        ms,
        jobMs,
        bytes: Number(run.bytesFetched ?? 0),
        storedBytes: newBytes(storedBefore, await packBytes(gitDir)),
        run,
      };

      // (c) plain git: fetch the same commit into the full bare clone (packs kept, as the engine does).
      const plainBefore = await packBytes(plainDir);
      started = performance.now();
      await runFixtureGit(
        [
          '-c',
          'fetch.unpackLimit=1',
          'fetch',
          '--quiet',
          '--no-tags',
          'origin',
          '+refs/heads/main:refs/heads/main',
        ],
        { gitDir: plainDir, spawn: spawnPlain },
      );
      const b = measured;
      const c = { ms: performance.now() - started, bytes: newBytes(plainBefore, await packBytes(plainDir)) };
      if (round >= 1) {
        incremental.push(b);
        bare.push(c);
      }
      console.log(
        `${round >= 1 ? `round ${round}` : `warm-up ${round + options.warmup}`}: engine ${formatMs(b.ms)}, job ${formatMs(b.jobMs!)} (${describeRun(run)}; ${run.filesChanged} file changed), ` +
          `${formatBytes(b.bytes)} fetched + ${formatBytes(b.storedBytes! - b.bytes)} lazy blobs; ` +
          `git fetch ${formatMs(c.ms)}, ${formatBytes(c.bytes)}`,
      );
    }

    const bMs = median(incremental.map((m) => m.ms));
    const bRunMs = median(incremental.map((m) => m.run!.durationMs));
    const bJobMs = median(incremental.map((m) => m.jobMs!));
    const bBytes = median(incremental.map((m) => m.bytes));
    const bStored = median(incremental.map((m) => m.storedBytes!));
    const cMs = median(bare.map((m) => m.ms));
    const cBytes = median(bare.map((m) => m.bytes));
    console.log('');
    console.log(
      table(
        [
          ['step', 'time', 'whole job', 'engine run', 'bytes fetched', 'pack bytes stored', 'how'],
          [
            '(a) first sync, engine',
            formatMs(first.ms),
            formatMs(first.jobMs!),
            formatMs(firstRun.durationMs),
            formatBytes(first.bytes),
            formatBytes(first.storedBytes!),
            'API -> onboard -> blobless clone -> snapshot -> archive',
          ],
          [
            '    plain git clone --bare',
            formatMs(plainClone.ms),
            '',
            '',
            formatBytes(plainClone.bytes),
            formatBytes(plainClone.bytes),
            'full clone, no checkout',
          ],
          [
            `(b) incremental, engine (median of ${options.rounds})`,
            formatMs(bMs),
            formatMs(bJobMs),
            formatMs(bRunMs),
            formatBytes(bBytes),
            formatBytes(bStored),
            'API -> queue -> fetch -> archive from the last one (snapshot updated after)',
          ],
          [
            `(c) git fetch, plain clone (median of ${options.rounds})`,
            formatMs(cMs),
            '',
            '',
            formatBytes(cBytes),
            formatBytes(cBytes),
            'one fetch of the same commit',
          ],
          [
            'ratio (b)/(c)',
            `${(bMs / cMs).toFixed(1)}x`,
            `${(bJobMs / cMs).toFixed(1)}x`,
            `${(bRunMs / cMs).toFixed(1)}x`,
            `${(bBytes / cBytes).toFixed(2)}x`,
            `${(bStored / cBytes).toFixed(2)}x`,
            '',
          ],
        ],
        { lastIsText: true, rule: true },
      ),
    );
    console.log(
      '\ntime: wall clock from the API call until Postgres shows SYNCED at the commit (engine) or until git ' +
        'exits (plain); whole job: until the worker is idle again (the snapshot update after SYNCED included); ' +
        'engine run: SyncRun finishedAt - startedAt (recorded with the branch, before that update). bytes fetched: packs received by the ' +
        'fetch/clone step; pack bytes stored: growth of the git dir, blobs fetched lazily by the checkout included.',
    );
    // Where an incremental sync spends its time (median per phase over the rounds).
    const phases = [...new Set(incremental.flatMap((m) => Object.keys(m.run!.phaseTimings)))].sort();
    const phaseMedians = phases.map(
      (phase) => [phase, median(incremental.map((m) => m.run!.phaseTimings[phase] ?? 0))] as const,
    );
    console.log(
      `archive of the tip at gzip level ${options.gzipLevel}: ${formatBytes(median(incremental.map((m) => m.run!.archiveBytes ?? 0)))}`,
    );
    console.log(
      `(b) phases, median ms: ${phaseMedians.map(([phase, ms]) => `${phase} ${ms}`).join(', ')}; ` +
        `sum without archive ${phaseMedians.filter(([phase]) => phase !== 'archive').reduce((t, [, ms]) => t + ms, 0)} ms`,
    );
  } finally {
    await cleanup();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
