/**
 * Shared setting for the host client tests: a git fixture server with real repositories, the fake GitHub
 * and GitLab APIs over them, a Redis-backed HostApiBudget with this file's own key prefix, and a change
 * range whose commits add, modify, remove, rename, chmod and change a binary file.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { HostApiBudget, type HostApiBudgetOptions } from '../../src/hosts/host-budget.js';
import { GitFixtureServer, runFixtureGit, type FixtureRepository } from '../fixtures/git-server.js';
import { HostApiServer, type HostApiServerOptions } from '../fixtures/host-api-server.js';
import { TEST_REDIS_URL } from '../setup/test-env.js';

export interface ChangeRange {
  /** Commit the feature branch started from. */
  base: string;
  /** Head of the feature branch. */
  head: string;
  /** Head of main after it moved on (diverged from the feature branch). */
  mainHead: string;
  branch: string;
}

export interface HostWorld {
  git: GitFixtureServer;
  api: HostApiServer;
  redis: Redis;
  keyPrefix: string;
  widgets: FixtureRepository;
  gadgets: FixtureRepository;
  range: ChangeRange;
  budget(opts?: Partial<HostApiBudgetOptions>): HostApiBudget;
  stop(): Promise<void>;
}

/** A file's change as `git diff-tree -r -M --raw` states it. */
export interface GitRawChange {
  status: string;
  path: string;
  previousPath: string | null;
  oldMode: string;
  newMode: string;
  oldSha: string;
  newSha: string;
}

const BINARY_V1 = Buffer.from([0, 1, 2, 3, 255, 254, 0, 10, 13, 0x89, 0x50, 0x4e, 0x47]);
const BINARY_V2 = Buffer.concat([BINARY_V1, Buffer.from([0, 0, 7, 200])]);
const APP_SOURCE = Array.from({ length: 40 }, (_, i) => `export const value${i} = ${i};`).join('\n') + '\n';

/** Writes the history of `widgets`: a base, a feature branch with every kind of change, and main moving on. */
async function writeHistory(repo: FixtureRepository): Promise<ChangeRange> {
  const base = await repo.commit(
    {
      'README.md': '# widgets\n',
      'src/app.ts': APP_SOURCE,
      'docs/old.md': 'old docs\n',
      'scripts/run.sh': '#!/bin/sh\necho run\n',
      'assets/logo.bin': BINARY_V1,
      'keep.txt': 'unchanged\n',
    },
    { message: 'base: initial layout', date: new Date('2024-03-01T10:00:00Z') },
  );
  const branch = 'feature/every-change';
  await repo.createBranch(branch, base);
  await repo.commit(
    { 'README.md': '# widgets\n\nNow with docs.\n', 'notes/new.txt': 'a new file\n', 'docs/old.md': null },
    {
      branch,
      message: 'modify, add and remove',
      author: { name: 'Outside Contributor', email: 'outside@elsewhere.test' },
      date: new Date('2024-03-02T10:00:00Z'),
    },
  );
  const head = await repo.commit(
    {
      'src/app.ts': null,
      'lib/app.ts': APP_SOURCE.replace('value0 = 0', 'value0 = 100'),
      'scripts/run.sh': { content: '#!/bin/sh\necho run\n', executable: true },
      'assets/logo.bin': BINARY_V2,
    },
    {
      branch,
      message: 'rename, chmod +x, change a binary\n\nWith a body line.',
      date: new Date('2024-03-03T10:00:00Z'),
    },
  );
  const mainHead = await repo.commit(
    { 'CHANGELOG.md': 'main moved on\n' },
    { message: 'main moves on', date: new Date('2024-03-04T10:00:00Z') },
  );
  return { base, head, mainHead, branch };
}

/** Starts git, the fake hosts and Redis for one test file. */
export async function startHostWorld(opts: HostApiServerOptions = {}): Promise<HostWorld> {
  const git = await GitFixtureServer.start();
  const api = await HostApiServer.start(opts);
  const widgets = await git.createRepository('acme/widgets');
  const gadgets = await git.createRepository('acme/gadgets', { defaultBranch: 'trunk' });
  await gadgets.commit({ 'gadget.txt': 'g\n' }, { message: 'gadgets start' });
  const range = await writeHistory(widgets);
  api.addRepository(widgets);
  api.addRepository(gadgets, { private: false });
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  const keyPrefix = `rstest-hosts-${randomBytes(4).toString('hex')}`;
  return {
    git,
    api,
    redis,
    keyPrefix,
    widgets,
    gadgets,
    range,
    budget: (budgetOpts = {}) => new HostApiBudget({ redis, keyPrefix, ...budgetOpts }),
    stop: async () => {
      const keys = await redis.keys(`${keyPrefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
      await api.stop();
      await git.stop();
    },
  };
}

/** What git itself says changed between two commits (rename detection on, like the hosts). */
export async function gitRawChanges(
  repo: FixtureRepository,
  from: string,
  to: string,
): Promise<GitRawChange[]> {
  const { stdout } = await runFixtureGit(['diff-tree', '-r', '-M', '-z', '--raw', from, to], {
    gitDir: repo.bareDir,
  });
  const fields = stdout.split('\0');
  const changes: GitRawChange[] = [];
  for (let i = 0; i < fields.length;) {
    const meta = fields[i++];
    if (!meta) continue;
    const [oldMode = '', newMode = '', oldSha = '', newSha = '', status = ''] = meta.slice(1).split(' ');
    const first = fields[i++] ?? '';
    const renamed = status.startsWith('R') || status.startsWith('C');
    const second = renamed ? (fields[i++] ?? '') : null;
    changes.push({
      status: status[0] ?? '',
      path: second ?? first,
      previousPath: second === null ? null : first,
      oldMode,
      newMode,
      oldSha,
      newSha,
    });
  }
  return changes;
}

/** Runs git in a fixture repository and returns trimmed stdout. */
export async function gitOut(repo: FixtureRepository, args: string[]): Promise<string> {
  const { stdout } = await runFixtureGit(args, { gitDir: repo.bareDir });
  return stdout.trim();
}
