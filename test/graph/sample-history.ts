/**
 * A real git repository in a temporary directory with a known history for the graph tests: renames, a copy,
 * a type change, a merge with two parents, unicode and control characters in paths and names, an empty
 * commit, a binary file and a deletion. git runs through spawn with argument arrays and no user config.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GitLogReader, gitLogArgs, type ParsedCommit } from '../../src/graph/git-log-parser.js';

export interface Identity {
  name: string;
  email: string;
}

export const ALICE: Identity = { name: 'Alice Example', email: 'alice@example.com' };
export const BOB: Identity = { name: 'Bob Example', email: 'Bob@Example.com' };
export const ZOE: Identity = { name: 'Zoë Ünïcode 佐伊', email: 'zoe@example.com' };

/** Paths with characters that break line-based or quoted git output. */
export const UNICODE_PATH = 'docs/résumé 文档.md';
export const ODD_PATH = 'odd\tname\nwith newline.txt';

/** A message that contains every separator a naive parser might split on. */
export const TRICKY_MESSAGE = [
  'Empty commit: nothing changed',
  '',
  '\u001ereposync-commit',
  ':100644 100644 0000000000000000000000000000000000000000 1111111111111111111111111111111111111111 M',
  '12\t3\tsrc/fake.ts',
  'tabs\tand\r\ncarriage returns, emoji 🎉, and a trailing blank line',
].join('\n');

export interface CommitOptions {
  author: Identity;
  committer?: Identity;
  /** Author and committer date, ISO-8601 with offset. */
  date: string;
  allowEmpty?: boolean;
}

export class ScratchRepository {
  private messages = 0;

  private constructor(
    readonly dir: string,
    private readonly scratch: string,
  ) {}

  /** An empty repository on branch `main`. */
  static async create(): Promise<ScratchRepository> {
    const scratch = await mkdtemp(join(tmpdir(), 'reposync-graph-'));
    const repo = new ScratchRepository(join(scratch, 'repo'), scratch);
    await mkdir(repo.dir);
    await repo.git(['init', '-q', '-b', 'main']);
    return repo;
  }

  /** Runs git in the repository; resolves with stdout as bytes, rejects with stderr on failure. */
  git(args: string[], env: Record<string, string> = {}): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const child = spawn('git', args, {
        cwd: this.dir,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: this.scratch,
          GIT_CONFIG_NOSYSTEM: '1',
          GIT_CONFIG_GLOBAL: '/dev/null',
          GIT_TERMINAL_PROMPT: '0',
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      child.on('error', reject);
      child.on('close', (code) => {
        if (code === 0) resolve(Buffer.concat(out));
        else reject(new Error(`git ${args.join(' ')} failed (${code}): ${Buffer.concat(err).toString()}`));
      });
    });
  }

  async write(path: string, content: string | Buffer): Promise<void> {
    const full = join(this.dir, path);
    await mkdir(dirname(full), { recursive: true });
    await writeFile(full, content);
  }

  async remove(path: string): Promise<void> {
    await unlink(join(this.dir, path));
  }

  async symlink(path: string, target: string): Promise<void> {
    await symlink(target, join(this.dir, path));
  }

  /** Stages everything and commits with the message verbatim; returns the new commit's sha. */
  async commit(message: string, opts: CommitOptions): Promise<string> {
    await this.git(['add', '-A']);
    const file = join(this.scratch, `message-${++this.messages}.txt`);
    await writeFile(file, message);
    const flags = ['--no-verify', '--cleanup=verbatim', ...(opts.allowEmpty ? ['--allow-empty'] : [])];
    await this.git(['commit', '-q', ...flags, '-F', file], this.identity(opts));
    return this.head();
  }

  /** Merges `branch` into the current branch with a merge commit (never fast-forward). */
  async merge(branch: string, message: string, opts: CommitOptions): Promise<string> {
    await this.git(['merge', '-q', '--no-ff', '--no-edit', '-m', message, branch], this.identity(opts));
    return this.head();
  }

  /** Checks out `branch`, creating it at `at` when given. */
  async checkout(branch: string, at?: string): Promise<void> {
    await this.git(at ? ['checkout', '-q', '-B', branch, at] : ['checkout', '-q', branch]);
  }

  async head(): Promise<string> {
    return (await this.git(['rev-parse', 'HEAD'])).toString().trim();
  }

  /** `git log` through `gitLogArgs`, read incrementally as git writes it. */
  log(fromSha: string | null, toSha: string): Promise<ParsedCommit[]> {
    return new Promise((resolve, reject) => {
      const child = spawn('git', gitLogArgs(fromSha, toSha), {
        cwd: this.dir,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: this.scratch,
          GIT_CONFIG_NOSYSTEM: '1',
          GIT_CONFIG_GLOBAL: '/dev/null',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const reader = new GitLogReader();
      const commits: ParsedCommit[] = [];
      let failure: Error | null = null;
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => {
        if (failure) return;
        try {
          commits.push(...reader.push(chunk));
        } catch (e) {
          failure = e instanceof Error ? e : new Error(String(e));
        }
      });
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code) => {
        if (failure) return reject(failure);
        if (code !== 0) return reject(new Error(`git log failed (${code}): ${stderr}`));
        try {
          resolve([...commits, ...reader.end()]);
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      });
    });
  }

  async destroy(): Promise<void> {
    await rm(this.scratch, { recursive: true, force: true });
  }

  private identity(opts: CommitOptions): Record<string, string> {
    const committer = opts.committer ?? opts.author;
    return {
      GIT_AUTHOR_NAME: opts.author.name,
      GIT_AUTHOR_EMAIL: opts.author.email,
      GIT_AUTHOR_DATE: opts.date,
      GIT_COMMITTER_NAME: committer.name,
      GIT_COMMITTER_EMAIL: committer.email,
      GIT_COMMITTER_DATE: opts.date,
    };
  }
}

/** The shas of the sample history, by role. */
export interface SampleHistory {
  repo: ScratchRepository;
  root: string;
  modify: string;
  rename: string;
  unicode: string;
  empty: string;
  side: string;
  mainline: string;
  merge: string;
  deletion: string;
  copyAndTypeChange: string;
}

const APP_V1 = [
  'export function main(): void {',
  ...Array.from({ length: 20 }, (_, i) => `  step(${i});`),
  '}',
  '',
];

/**
 * Builds, on `main`:
 *   root - modify - rename - unicode - empty - mainline - merge - deletion - copyAndTypeChange
 *                                           \- side ---------/
 */
export async function buildSampleHistory(): Promise<SampleHistory> {
  const repo = await ScratchRepository.create();
  await repo.write('README.md', '# Sample\n');
  await repo.write('src/app.ts', APP_V1.join('\n'));
  await repo.write('link-target.txt', 'a plain file that becomes a symlink\n');
  const root = await repo.commit('Initial commit', { author: ALICE, date: '2024-01-01T10:00:00+01:00' });

  await repo.write('src/app.ts', [...APP_V1.slice(0, -1), '// tuned', ''].join('\n'));
  await repo.write('src/config.ts', 'export const config = {};\n');
  const modify = await repo.commit('Tune the app and add config', {
    author: BOB,
    committer: ALICE,
    date: '2024-01-02T11:30:00-05:00',
  });

  await repo.remove('src/app.ts');
  await repo.write('src/main.ts', [...APP_V1.slice(0, -1), '// tuned', '// renamed', ''].join('\n'));
  const rename = await repo.commit('Rename app.ts to main.ts', {
    author: ALICE,
    date: '2024-01-03T09:00:00Z',
  });

  await repo.write(UNICODE_PATH, 'Ünïcode résumé 文档\n');
  await repo.write(ODD_PATH, 'tabs and newlines in a path\n');
  await repo.write('assets/logo.bin', Buffer.from([0, 1, 2, 3, 0, 255, 254, 0, 10, 13, 0]));
  const unicode = await repo.commit('Add docs, an odd path and a binary logo', {
    author: ZOE,
    date: '2024-01-04T12:00:00+09:00',
  });

  const empty = await repo.commit(TRICKY_MESSAGE + '\n\n', {
    author: ZOE,
    committer: BOB,
    date: '2024-01-05T08:00:00+00:00',
    allowEmpty: true,
  });

  await repo.checkout('side', empty);
  await repo.write('README.md', '# Sample\n\nSide notes.\n');
  await repo.write('side.txt', 'from the side branch\n');
  const side = await repo.commit('Side work', { author: BOB, date: '2024-01-06T10:00:00+00:00' });

  await repo.checkout('main');
  await repo.write(
    'src/main.ts',
    [...APP_V1.slice(0, -1), '// tuned', '// renamed', '// mainline', ''].join('\n'),
  );
  const mainline = await repo.commit('Mainline work', { author: ALICE, date: '2024-01-07T10:00:00+00:00' });

  const merge = await repo.merge('side', "Merge branch 'side'", {
    author: ALICE,
    date: '2024-01-08T10:00:00+00:00',
  });

  await repo.remove('assets/logo.bin');
  const deletion = await repo.commit('Remove the logo', { author: BOB, date: '2024-01-09T10:00:00+00:00' });

  await repo.write(
    'src/main.ts',
    [...APP_V1.slice(0, -1), '// tuned', '// renamed', '// mainline', '// more', ''].join('\n'),
  );
  await repo.write(
    'src/main-copy.ts',
    [...APP_V1.slice(0, -1), '// tuned', '// renamed', '// mainline', ''].join('\n'),
  );
  await repo.remove('link-target.txt');
  await repo.symlink('link-target.txt', 'README.md');
  const copyAndTypeChange = await repo.commit('Copy main.ts and turn link-target into a symlink', {
    author: ALICE,
    date: '2024-01-10T10:00:00+00:00',
  });

  return { repo, root, modify, rename, unicode, empty, side, mainline, merge, deletion, copyAndTypeChange };
}
