// Build and run from the repository root (bench/dist is git-ignored by the `dist/` rule):
//   npx tsc -p bench/tsconfig.json && node bench/dist/bench/archive.js [--mb 256] [--runs 3]
//
// Archive benchmark: builds a tree of at least 200 MiB (incompressible and text-like large files plus
// thousands of small files), commits it, then times
//   - reproducible tarball, bytes thrown away       (createReproducibleTarball alone)
//   - reproducible tarball uploaded to S3 (s3rver)   (createReproducibleTarball -> S3ArtifactStore.put)
//   - git archive --format=tar.gz <sha> > /dev/null  (the reference)
// and prints wall time, throughput (tree bytes per second) and peak RSS. Each measurement runs in a fresh
// Node process so its peak RSS is its own; s3rver runs in another process so its memory is not counted.
import { spawn } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { archiveKey } from '../src/artifacts/artifact-store.js';
import { createReproducibleTarball, TARBALL_CONTENT_TYPE } from '../src/artifacts/reproducible-tarball.js';
import { S3ArtifactStore } from '../src/artifacts/s3-artifact-store.js';
import { runFixtureGit } from '../test/fixtures/git-server.js';
import { S3FixtureServer } from '../test/fixtures/s3-server.js';

const MIB = 1024 * 1024;
const LARGE_FILE_BYTES = 8 * MIB;
const SMALL_FILES = 2000;
const COMMIT_DATE = '1714978089 +0000';
const TENANT = '6f1c2a1e-8d5b-4c1e-9a43-1b2c3d4e5f60';
const REPOSITORY = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const SELF = fileURLToPath(import.meta.url);

type Mode = 'archive-discard' | 'archive-s3';

interface Measurement {
  seconds: number;
  /** RSS once everything is imported, before archiving starts, in bytes. */
  startRss: number;
  /** Highest RSS sampled every 10 ms, in bytes. */
  sampledPeakRss: number;
  /** The kernel's maximum resident set size of the process, in bytes. */
  maxRss: number;
  archiveBytes: number;
  sha256: string;
}

interface S3Endpoint {
  endpoint: string;
  region: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
}

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  const value = index >= 0 ? Number(process.argv[index + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}

function argument(name: string): string {
  const index = process.argv.indexOf(`--${name}`);
  const value = index >= 0 ? process.argv[index + 1] : undefined;
  if (value === undefined) throw new Error(`--${name} is required`);
  return value;
}

/** Deterministic incompressible bytes (AES-CTR keystream). */
function noise(bytes: number, seed: number): Buffer {
  const key = Buffer.alloc(16, seed);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(bytes));
}

/** Deterministic source-like text (compresses roughly 5-10x, like real code). */
function sourceText(bytes: number, seed: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line =
      i % 7 === 0
        ? `// section ${seed}.${i}: ${'lorem ipsum dolor sit amet '.slice(0, (i * 13 + seed) % 27)}\n`
        : `export function handler${seed}_${i}(value: number): number { return value * ${(i * 31 + seed) % 997} + ${i}; }\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

/** Writes the tree into `dir` and commits it there; returns the commit SHA and the tree's bytes. */
async function buildRepository(dir: string, targetMb: number): Promise<{ sha: string; treeBytes: number }> {
  let treeBytes = 0;
  const put = async (path: string, data: Buffer, mode = 0o644): Promise<void> => {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), data, { mode });
    treeBytes += data.length;
  };
  for (let i = 0; i < SMALL_FILES; i++) {
    await put(
      `src/module-${i % 40}/part-${Math.floor(i / 40) % 10}/file-${i}.ts`,
      sourceText(2048 + ((i * 977) % 14336), i),
    );
  }
  await put('tools/build.sh', Buffer.from('#!/bin/sh\nset -e\necho build\n'), 0o755);
  await symlink('tools/build.sh', join(dir, 'build'));
  // Half incompressible (media, binaries), half text, until the target size is reached.
  for (let i = 0; treeBytes < targetMb * MIB; i++) {
    if (i % 2 === 0) await put(`assets/blob-${i}.bin`, noise(LARGE_FILE_BYTES, i));
    else await put(`data/dump-${i}.sql`, sourceText(LARGE_FILE_BYTES, i));
  }
  const env = {
    GIT_AUTHOR_NAME: 'Bench',
    GIT_AUTHOR_EMAIL: 'bench@example.test',
    GIT_AUTHOR_DATE: COMMIT_DATE,
    GIT_COMMITTER_NAME: 'Bench',
    GIT_COMMITTER_EMAIL: 'bench@example.test',
    GIT_COMMITTER_DATE: COMMIT_DATE,
  };
  await runFixtureGit(['init', '--quiet', '--initial-branch=main', dir]);
  await runFixtureGit(['add', '-A'], { cwd: dir, env, timeoutMs: 600_000 });
  await runFixtureGit(['commit', '--quiet', '-m', 'bench tree'], { cwd: dir, env, timeoutMs: 600_000 });
  const { stdout } = await runFixtureGit(['rev-parse', 'HEAD'], { cwd: dir });
  return { sha: stdout.trim(), treeBytes };
}

/** Child process: one measured archive of `--dir` (the repository's work tree is the snapshot). */
async function measure(mode: Mode): Promise<Measurement> {
  const dir = argument('dir');
  const sha = argument('sha');
  const mtime = new Date(Number(COMMIT_DATE.split(' ')[0]) * 1000);
  const startRss = process.memoryUsage.rss();
  let sampledPeakRss = startRss;
  const sampler = setInterval(() => {
    sampledPeakRss = Math.max(sampledPeakRss, process.memoryUsage.rss());
  }, 10);
  const started = process.hrtime.bigint();
  let digest: { size: number; sha256: string };
  if (mode === 'archive-discard') {
    const tarball = createReproducibleTarball(dir, { mtime, commitId: sha });
    await pipeline(tarball.stream, new Writable({ write: (_chunk, _encoding, done) => done() }));
    digest = await tarball.digest;
  } else {
    const s3 = JSON.parse(argument('s3')) as S3Endpoint;
    const store = new S3ArtifactStore({ ...s3, forcePathStyle: true });
    const tarball = createReproducibleTarball(dir, { mtime, commitId: sha });
    digest = await store.put(archiveKey('bench', TENANT, REPOSITORY, sha), tarball.stream, {
      contentType: TARBALL_CONTENT_TYPE,
    });
    store.close();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  clearInterval(sampler);
  sampledPeakRss = Math.max(sampledPeakRss, process.memoryUsage.rss());
  return {
    seconds,
    startRss,
    sampledPeakRss,
    maxRss: process.resourceUsage().maxRSS * 1024,
    archiveBytes: digest.size,
    sha256: digest.sha256,
  };
}

/** Child process: s3rver until stdin closes; prints its settings as one JSON line. */
async function serveS3(): Promise<void> {
  const server = await S3FixtureServer.start({ bucket: 'reposync-bench' });
  const settings: S3Endpoint = {
    endpoint: server.endpoint,
    region: server.region,
    bucket: server.bucket,
    credentials: server.credentials,
  };
  process.stdout.write(`${JSON.stringify(settings)}\n`);
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.once('end', resolve));
  await server.stop();
}

function runChild(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SELF, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`${args[0]} exited ${code}`)),
    );
  });
}

/** `git archive --format=tar.gz` to /dev/null under /usr/bin/time: wall seconds and max RSS. */
function gitArchive(dir: string, sha: string): Promise<{ seconds: number; maxRss: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      '/usr/bin/time',
      ['-f', '%e %M', 'git', '-C', dir, 'archive', '--format=tar.gz', sha],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const started = process.hrtime.bigint();
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const [, maxRssKb] = stderr.trim().split('\n').pop()?.split(' ') ?? [];
      if (code !== 0) reject(new Error(`git archive failed: ${stderr}`));
      else resolve({ seconds, maxRss: Number(maxRssKb) * 1024 });
    });
  });
}

async function main(): Promise<void> {
  const targetMb = option('mb', 256);
  const runs = option('runs', 3);
  const root = await mkdtemp(join(tmpdir(), 'reposync-bench-archive-'));
  const s3Child = spawn(process.execPath, [SELF, '--serve-s3'], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const repoDir = join(root, 'repo');
    process.stdout.write(`building a ${targetMb} MiB tree and committing it... `);
    const built = Date.now();
    const { sha, treeBytes } = await buildRepository(repoDir, targetMb);
    process.stdout.write(`${((Date.now() - built) / 1000).toFixed(1)} s\n`);

    const s3Line = await new Promise<string>((resolve, reject) => {
      let buffered = '';
      s3Child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        if (buffered.includes('\n')) resolve(buffered.split('\n')[0] ?? '');
      });
      s3Child.on('exit', (code) => reject(new Error(`s3rver child exited ${code}`)));
    });

    const mib = (bytes: number): string => `${(bytes / MIB).toFixed(1)} MiB`;
    console.log(
      `tree: ${mib(treeBytes)} in ${SMALL_FILES + 2 + Math.ceil(treeBytes / LARGE_FILE_BYTES)} files, commit ${sha}`,
    );
    console.log('');
    console.log(
      'run  what                              time      throughput    RSS before / peak sampled / max  output',
    );
    const row = (run: number, what: string, seconds: number, rss: string, output: string): void => {
      console.log(
        `${String(run).padEnd(4)} ${what.padEnd(33)} ${seconds.toFixed(2).padStart(6)} s  ${(treeBytes / MIB / seconds).toFixed(1).padStart(7)} MiB/s  ${rss.padEnd(32)} ${output}`,
      );
    };

    const best: Record<string, number> = {};
    const peaks: Record<string, number> = {};
    const digests = new Set<string>();
    for (let run = 1; run <= runs; run++) {
      for (const mode of ['archive-discard', 'archive-s3'] as const) {
        const args = ['--measure', mode, '--dir', repoDir, '--sha', sha, '--s3', s3Line];
        const result = JSON.parse(await runChild(args)) as Measurement;
        digests.add(result.sha256);
        best[mode] = Math.min(best[mode] ?? Infinity, result.seconds);
        peaks[mode] = Math.max(peaks[mode] ?? 0, result.maxRss);
        row(
          run,
          mode === 'archive-discard'
            ? 'reproducible tar.gz -> discard'
            : 'reproducible tar.gz -> S3 (s3rver)',
          result.seconds,
          `${mib(result.startRss)} / ${mib(result.sampledPeakRss)} / ${mib(result.maxRss)}`,
          `${mib(result.archiveBytes)} sha256 ${result.sha256.slice(0, 12)}`,
        );
      }
      const git = await gitArchive(repoDir, sha);
      best.git = Math.min(best.git ?? Infinity, git.seconds);
      peaks.git = Math.max(peaks.git ?? 0, git.maxRss);
      row(run, 'git archive --format=tar.gz', git.seconds, `- / - / ${mib(git.maxRss)}`, '');
    }

    const gitBest = best.git ?? Number.NaN;
    console.log('');
    console.log(
      `best of ${runs}: discard ${best['archive-discard']?.toFixed(2)} s, S3 ${best['archive-s3']?.toFixed(2)} s, git archive ${gitBest.toFixed(2)} s`,
    );
    console.log(
      `ratio to git archive: discard ${((best['archive-discard'] ?? Number.NaN) / gitBest).toFixed(2)}x, ` +
        `S3 ${((best['archive-s3'] ?? Number.NaN) / gitBest).toFixed(2)}x (target <= 1.5x)`,
    );
    console.log(
      `peak RSS: discard ${mib(peaks['archive-discard'] ?? 0)}, S3 ${mib(peaks['archive-s3'] ?? 0)} (target < 200 MiB), git archive ${mib(peaks.git ?? 0)}`,
    );
    console.log(
      `reproducible: ${digests.size === 1 ? 'yes, every run gave the same sha256' : `NO: ${[...digests].join(', ')}`}`,
    );
  } finally {
    s3Child.stdin.end();
    await new Promise((resolve) => s3Child.once('close', resolve));
    await rm(root, { recursive: true, force: true });
  }
}

const measureIndex = process.argv.indexOf('--measure');
if (measureIndex >= 0) {
  const mode = process.argv[measureIndex + 1];
  if (mode !== 'archive-discard' && mode !== 'archive-s3') throw new Error(`unknown mode ${mode}`);
  process.stdout.write(JSON.stringify(await measure(mode)));
} else if (process.argv.includes('--serve-s3')) {
  await serveS3();
} else {
  await main();
}
