/**
 * Compare-delta benchmark: bringing a snapshot of a large repository from one commit to the next (five
 * files changed) with CompareDeltaStrategy (restore the previous archive, compare through the host API,
 * download the changed files, apply, prove the tree id), next to what a worker without a clone does
 * otherwise: the engine's blobless partial clone plus snapshot checkout (GitMirror), and a plain full
 * `git clone`.
 *
 * Build and run from the project root (Redis on 127.0.0.1:6379 for the host API budget):
 *   node node_modules/typescript/bin/tsc -p bench/tsconfig.json
 *   node bench/dist/bench/delta.js [--files 20000] [--commits 2000] [--bytes-per-file 256] [--changed 5]
 *                                  [--rounds 3] [--redis redis://127.0.0.1:6379]
 *
 * Everything runs on 127.0.0.1 in this process (git fixture server, fake GitHub and GitLab APIs computing
 * their answers with git, a filesystem artifact store) and in temporary directories removed at the end;
 * the Redis keys live under `bench-delta-<pid>` and are deleted at the end.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { ArtifactNotFound, archiveKey } from '../src/artifacts/artifact-store.js';
import { FilesystemArtifactStore } from '../src/artifacts/filesystem-artifact-store.js';
import {
  createReproducibleTarball,
  createTarballOfEntries,
  type ReproducibleTarball,
  TARBALL_CONTENT_TYPE,
} from '../src/artifacts/reproducible-tarball.js';
import type { CodeHost } from '../src/hosts/code-host.js';
import { GitHubHost } from '../src/hosts/github-host.js';
import { GitLabHost } from '../src/hosts/gitlab-host.js';
import { HostApiBudget, type FetchFunction } from '../src/hosts/host-budget.js';
import { CompareDeltaStrategy, type CompareDeltaTimings } from '../src/sync/delta/compare-delta-strategy.js';
import { GitMirror } from '../src/sync/git/git-mirror.js';
import { GitRunner } from '../src/sync/git/git-runner.js';
import { deleteKeysWithPrefix } from '../test/support/redis-keys.js';
import { runFixtureGit } from '../test/fixtures/git-server.js';
import type { HostApiProvider } from '../test/fixtures/host-api-server.js';
import { startFixtureHosts, type FixtureHosts } from './fixture-hosts.js';
import { formatBytes, formatMs, median, positiveOption, table } from './bench-report.js';

/** Whole milliseconds: the delta's phases are long enough. */
const msText = (value: number): string => formatMs(value, 0);

interface Options {
  files: number;
  commits: number;
  bytesPerFile: number;
  changed: number;
  rounds: number;
  redisUrl: string;
}

/** One measured way from the old commit to a snapshot of the new one. */
interface Measurement {
  ms: number;
  /** Host API response bodies (delta) or pack bytes received (clones). */
  bytes: number;
  /** Bytes of the previous archive read from the artifact store (delta only). */
  archiveBytes: number;
  requests: number;
  /** Making the new revision's archive from the result (tar + gzip, not stored). */
  archiveMs: number;
  timings?: CompareDeltaTimings;
}

const TENANT = '5d1e7c3a-0b4f-4a2e-9c8d-1f6a7b3e2d90';
const REPOSITORY = '8a2f4e6c-1d3b-4c5a-9e7f-0b2d4c6e8a1f';
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/** Reads a tarball to its end: how long it took to make, and its SHA-256. */
async function timeArchive(tarball: ReproducibleTarball): Promise<{ ms: number; sha256: string }> {
  const started = performance.now();
  for await (const chunk of tarball.stream as AsyncIterable<Buffer>) void chunk;
  const { sha256 } = await tarball.digest;
  return { ms: performance.now() - started, sha256 };
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      files: { type: 'string', default: '20000' },
      commits: { type: 'string', default: '2000' },
      'bytes-per-file': { type: 'string', default: '256' },
      changed: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
      redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    },
  });
  const positive = positiveOption;
  return {
    files: positive('files', values.files),
    commits: positive('commits', values.commits),
    bytesPerFile: positive('bytes-per-file', values['bytes-per-file']),
    changed: positive('changed', values.changed),
    rounds: positive('rounds', values.rounds),
    redisUrl: values.redis,
  };
}

/** A fetch that counts the bytes of every response body it passes on (and retries a GET once on a reset socket). */
function countingFetch(counter: { bytes: number; requests: number }): FetchFunction {
  return async (input, init) => {
    let response: Response;
    try {
      response = await globalThis.fetch(input, init);
    } catch (error) {
      // A keep-alive socket the fake host closed while the clones ran (its idle timeout is 5 s) fails
      // the first request of the next round; a GET is safe to send once more.
      if (init?.method !== undefined && init.method !== 'GET') throw error;
      response = await globalThis.fetch(input, init);
    }
    const body = NULL_BODY_STATUSES.has(response.status) ? null : Buffer.from(await response.arrayBuffer());
    counter.requests++;
    counter.bytes += body?.length ?? 0;
    return new Response(body, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}

async function packBytes(gitDir: string): Promise<number> {
  const dir = join(gitDir, 'objects', 'pack');
  let total = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name.endsWith('.pack')) total += (await stat(join(dir, name))).size;
  }
  return total;
}

/**
 * Writes dirty pages out before a measured step: every step writes 20,000 files, and the write-back of one
 * step would otherwise land in the next one's time. Nothing is removed before the end for the same
 * reason: on a file system mounted with online `discard` (this machine's ext4) removing 20,000 files
 * slows every file operation for seconds afterwards.
 */
function settleDisk(): void {
  spawnSync('sync');
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const work = await mkdtemp(join(tmpdir(), 'reposync-bench-delta-'));
  const keyPrefix = `bench-delta-${process.pid}`;
  const redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 1 });
  let hosts: FixtureHosts | null = null;
  try {
    // The repository: a large tree, a history on top, then one commit changing `changed` files; served
    // (git and the host APIs) from a child process.
    let t = performance.now();
    hosts = await startFixtureHosts({
      root: work,
      files: opts.files,
      commits: opts.commits,
      bytesPerFile: opts.bytesPerFile,
      changed: opts.changed,
    });
    const fixture = hosts.built;
    const { from, to } = fixture;
    const repo = { url: fixture.url, bareDir: fixture.bareDir };
    console.log(
      `fixture: ${opts.files} files, ${opts.commits + 2} commits, one commit changing ${opts.changed} files, ` +
        `served from a child process (${msText(performance.now() - t)})`,
    );

    // The engine's git side, and the archive of the previous revision made from its snapshot.
    const runner = new GitRunner({ defaultTimeoutMs: 600_000, askpassDir: join(work, 'askpass') });
    const mirror = new GitMirror({ runner });
    const store = new FilesystemArtifactStore(join(work, 'store'));
    t = performance.now();
    const seedGit = join(work, 'seed.git');
    const seedSnapshot = join(work, 'seed-snapshot');
    await mirror.clone(repo.url, seedGit, 'main');
    await mirror.checkoutSnapshot(seedGit, seedSnapshot, from);
    const { stdout: time } = await runFixtureGit(['show', '-s', '--format=%ct', from], {
      gitDir: repo.bareDir,
    });
    const tarball = createReproducibleTarball(seedSnapshot, {
      mtime: new Date(Number(time.trim()) * 1000),
      commitId: from,
    });
    const stored = await store.put(archiveKey('archives', TENANT, REPOSITORY, from), tarball.stream, {
      contentType: TARBALL_CONTENT_TYPE,
    });
    console.log(
      `archive of the previous revision: ${formatBytes(stored.size)} (${msText(performance.now() - t)})`,
    );
    const { stdout: toTree } = await runFixtureGit(['rev-parse', `${to}^{tree}`], { gitDir: repo.bareDir });
    const { stdout: toSeconds } = await runFixtureGit(['show', '-s', '--format=%ct', to], {
      gitDir: repo.bareDir,
    });
    const toTime = new Date(Number(toSeconds.trim()) * 1000);
    // Every way must end in this archive of the new revision (that of the seed clone moved to it).
    await mirror.checkoutSnapshot(seedGit, seedSnapshot, to);
    const expectedArchive = (
      await timeArchive(createReproducibleTarball(seedSnapshot, { mtime: toTime, commitId: to }))
    ).sha256;

    const openArchive = async (repositoryId: string, sha: string): Promise<Readable | null> => {
      try {
        return await store.open(archiveKey('archives', TENANT, repositoryId, sha));
      } catch (error) {
        if (error instanceof ArtifactNotFound) return null;
        throw error;
      }
    };
    const budget = new HostApiBudget({ redis, keyPrefix });

    const delta = async (provider: HostApiProvider): Promise<Measurement> => {
      const counter = { bytes: 0, requests: 0 };
      const fetch = countingFetch(counter);
      const host: CodeHost =
        provider === 'github'
          ? new GitHubHost({ apiBaseUrl: fixture.githubApiUrl, budget, fetch })
          : new GitLabHost({ baseUrl: fixture.gitlabUrl, budget, fetch });
      const token = await hosts!.issueToken(provider);
      const strategy = new CompareDeltaStrategy({
        repositoryId: REPOSITORY,
        openArchive,
        hostAccess: { host, token: () => Promise.resolve(token), owner: 'bench', name: 'delta' },
      });
      const workDir = join(work, `delta-${randomUUID()}`);
      settleDisk();
      const started = performance.now();
      const outcome = await strategy.run({ workDir, fromSha: from, toSha: to, provider });
      const ms = performance.now() - started;
      if (!outcome.ok)
        throw new Error(`compare-delta fell back on ${provider}: ${outcome.code}: ${outcome.reason}`);
      if (outcome.treeId !== toTree.trim()) throw new Error('compare-delta proved the wrong tree');
      const archived = await timeArchive(
        createTarballOfEntries(outcome.entries(), { mtime: outcome.commitTime, commitId: to }),
      );
      if (archived.sha256 !== expectedArchive) throw new Error('compare-delta archived other bytes than git');
      await rm(workDir, { recursive: true, force: true });
      return {
        ms,
        bytes: counter.bytes,
        archiveBytes: outcome.archiveBytes,
        requests: counter.requests,
        archiveMs: archived.ms,
        timings: outcome.timings,
      };
    };

    const bloblessClone = async (): Promise<Measurement> => {
      const gitDir = join(work, `clone-${randomUUID()}.git`);
      const snapshotDir = join(work, `snapshot-${randomUUID()}`);
      const before = await hosts!.gitRequests();
      settleDisk();
      const started = performance.now();
      await mirror.clone(repo.url, gitDir, 'main');
      await mirror.checkoutSnapshot(gitDir, snapshotDir, to);
      const ms = performance.now() - started;
      // The clone's pack plus the blobs the checkout fetched lazily from the promisor remote.
      const bytes = await packBytes(gitDir);
      const requests = (await hosts!.gitRequests()) - before;
      const archived = await timeArchive(
        createReproducibleTarball(snapshotDir, { mtime: toTime, commitId: to }),
      );
      if (archived.sha256 !== expectedArchive) throw new Error('the blobless checkout archived other bytes');
      return { ms, bytes, archiveBytes: 0, requests, archiveMs: archived.ms };
    };

    const fullClone = async (): Promise<Measurement> => {
      const dir = join(work, `full-${randomUUID()}`);
      const before = await hosts!.gitRequests();
      settleDisk();
      const started = performance.now();
      await runFixtureGit(['clone', '--quiet', '--branch', 'main', repo.url, dir]);
      const ms = performance.now() - started;
      const bytes = await packBytes(join(dir, '.git'));
      const requests = (await hosts!.gitRequests()) - before;
      // The archive skips .git, as it does in a snapshot.
      const archived = await timeArchive(createReproducibleTarball(dir, { mtime: toTime, commitId: to }));
      if (archived.sha256 !== expectedArchive) throw new Error('the full clone archived other bytes');
      return { ms, bytes, archiveBytes: 0, requests, archiveMs: archived.ms };
    };

    const results: Record<'github' | 'gitlab' | 'blobless' | 'full', Measurement[]> = {
      github: [],
      gitlab: [],
      blobless: [],
      full: [],
    };
    const steps: Record<keyof typeof results, () => Promise<Measurement>> = {
      github: () => delta('github'),
      gitlab: () => delta('gitlab'),
      blobless: bloblessClone,
      full: fullClone,
    };
    const order = Object.keys(steps) as (keyof typeof results)[];
    // A worker is a long-running process: by the time a sync comes, its code has been compiled. One
    // unmeasured delta per host first, so the rounds do not time V8 compiling the reader and the hashing.
    // (git's side is native code; its first clone is measured like the others.)
    await delta('github');
    await delta('gitlab');
    for (let round = 1; round <= opts.rounds; round++) {
      // The order rotates every round: on this disk the step after one that wrote or removed 20,000
      // files pays for part of their write-back, whoever it is.
      const rotated = [
        ...order.slice((round - 1) % order.length),
        ...order.slice(0, (round - 1) % order.length),
      ];
      for (const key of rotated) results[key].push(await steps[key]());
      const last = (key: keyof typeof results): string => msText(results[key].at(-1)!.ms);
      console.log(
        `round ${round} (${rotated.join(', ')}): delta GitHub ${last('github')}, delta GitLab ${last('gitlab')}, ` +
          `blobless clone + checkout ${last('blobless')}, full clone ${last('full')}`,
      );
    }

    const med = (key: keyof typeof results, pick: (m: Measurement) => number): number =>
      median(results[key].map(pick));
    const rows: string[][] = [
      [
        'way (median of rounds)',
        'time',
        '+ archive',
        'API bytes',
        'archive bytes',
        'API + archive',
        'pack bytes',
        'requests',
        '',
      ],
    ];
    for (const key of ['github', 'gitlab'] as const) {
      const api = med(key, (m) => m.bytes);
      const archive = med(key, (m) => m.archiveBytes);
      rows.push([
        `compare-delta (${key === 'github' ? 'GitHub' : 'GitLab'})`,
        msText(med(key, (m) => m.ms)),
        msText(med(key, (m) => m.archiveMs)),
        formatBytes(api),
        formatBytes(archive),
        formatBytes(api + archive),
        '',
        String(med(key, (m) => m.requests)),
        'API requests',
      ]);
    }
    rows.push([
      'blobless clone + checkout',
      msText(med('blobless', (m) => m.ms)),
      msText(med('blobless', (m) => m.archiveMs)),
      '',
      '',
      '',
      formatBytes(med('blobless', (m) => m.bytes)),
      String(med('blobless', (m) => m.requests)),
      'git HTTP requests',
    ]);
    rows.push([
      'full git clone',
      msText(med('full', (m) => m.ms)),
      msText(med('full', (m) => m.archiveMs)),
      '',
      '',
      '',
      formatBytes(med('full', (m) => m.bytes)),
      String(med('full', (m) => m.requests)),
      'git HTTP requests',
    ]);
    console.log('');
    console.log(table(rows, { lastIsText: true, rule: false }));
    console.log('');
    for (const key of ['github', 'gitlab'] as const) {
      const ms = med(key, (m) => m.ms);
      const api = med(key, (m) => m.bytes);
      const withArchive = api + med(key, (m) => m.archiveBytes);
      const label = key === 'github' ? 'GitHub' : 'GitLab';
      for (const [clone, name] of [
        ['blobless', 'blobless clone + checkout'],
        ['full', 'full clone'],
      ] as const) {
        const cloneMs = med(clone, (m) => m.ms);
        const cloneBytes = med(clone, (m) => m.bytes);
        const endToEnd = (cloneMs + med(clone, (m) => m.archiveMs)) / (ms + med(key, (m) => m.archiveMs));
        console.log(
          `${label} delta vs ${name}: ${(cloneMs / ms).toFixed(1)}x less time ` +
            `(${endToEnd.toFixed(1)}x with the archive made on both sides), ` +
            `${(cloneBytes / api).toFixed(0)}x fewer bytes (API only), ` +
            `${(cloneBytes / withArchive).toFixed(1)}x fewer bytes (API + archive read from the store)`,
        );
      }
      const phases = results[key].map((m) => m.timings!);
      const phase = (name: keyof CompareDeltaTimings): string => msText(median(phases.map((p) => p[name])));
      console.log(
        `  ${label} delta phases (median): compare ${phase('compareMs')}, read archive ${phase('restoreMs')}, ` +
          `verify base ${phase('verifyBaseMs')}, download + apply ${phase('applyMs')}, verify ${phase('verifyMs')}`,
      );
    }
    console.log(
      '\nAPI bytes: bodies of every host API response (compare, tree ids, file contents). archive bytes: the ' +
        'compressed archive read from the artifact store (local disk here, S3 in production). pack bytes: packs ' +
        'received by git (clone pack, plus the blobs the blobless checkout fetched lazily). Protocol overhead ' +
        '(HTTP headers, ref advertisement) is counted on neither side.',
    );
  } finally {
    redis.disconnect();
    await deleteKeysWithPrefix(opts.redisUrl, keyPrefix).catch(() => undefined);
    await hosts?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
