import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A throwaway git repository driven by synchronous git calls, isolated from the machine's git config. */
export class ScratchGitRepo {
  private constructor(
    private readonly root: string,
    /** The work tree (with `.git` inside). */
    readonly dir: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  static async create(prefix: string): Promise<ScratchGitRepo> {
    const root = await mkdtemp(join(tmpdir(), prefix));
    const dir = join(root, 'repo');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      GIT_CONFIG_NOSYSTEM: '1',
      HOME: root,
      XDG_CONFIG_HOME: root,
    };
    delete env.GIT_CONFIG_GLOBAL;
    await mkdir(dir);
    const repo = new ScratchGitRepo(root, dir, env);
    repo.git(['init', '-q']);
    return repo;
  }

  /** Runs git in the repository: its stdout, or an error carrying its stderr. */
  git(args: readonly string[], input?: Buffer | string): Buffer {
    const result = spawnSync('git', ['-C', this.dir, ...args], {
      env: this.env,
      input,
      maxBuffer: 64 * 1024 * 1024,
    });
    if (result.error) throw result.error;
    if (result.status !== 0) {
      throw new Error(`git ${args.join(' ')} failed (${result.status}): ${result.stderr.toString()}`);
    }
    return result.stdout;
  }

  /** Stages the whole work tree and commits it (an empty commit too): the new commit id. */
  commitAll(message: string): string {
    this.git(['add', '-A']);
    return this.commitIndex(message);
  }

  /** Commits what is staged: the new commit id. */
  commitIndex(message: string): string {
    this.git(['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '--allow-empty', '-m', message]);
    return this.git(['rev-parse', 'HEAD']).toString('utf8').trim();
  }

  async remove(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }
}
