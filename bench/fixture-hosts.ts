/**
 * The fixture repository of delta.ts and sync.ts, served from a child process: git over smart HTTP and the
 * fake GitHub and GitLab APIs. Their work (git processes, computing comparisons, checking answers against GitHub's
 * OpenAPI description) would otherwise share the event loop of the code being measured, which a real
 * code host's servers do not.
 *
 * The parent sends requests over the IPC channel (`{ id, type, ... }`) and gets `{ id, result }` or
 * `{ id, error }` back; `startFixtureHosts` wraps that.
 */
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GitFixtureServer, type FixtureRepository } from '../test/fixtures/git-server.js';
import { HostApiServer, type HostApiProvider } from '../test/fixtures/host-api-server.js';

export interface FixtureSpec {
  /** Where the git server keeps its repositories. */
  root: string;
  files: number;
  commits: number;
  bytesPerFile: number;
  /** Files the last commit changes (0: no such commit, `from` and `to` are the same). */
  changed: number;
}

export interface FixtureBuilt {
  url: string;
  bareDir: string;
  /** The commit before the last, and the last. */
  from: string;
  to: string;
  githubApiUrl: string;
  gitlabUrl: string;
  /** Files and symlinks in the tree of `to`. */
  files: number;
}

type RequestBody =
  | { type: 'build'; spec: FixtureSpec }
  | { type: 'token'; provider: HostApiProvider }
  | { type: 'gitRequests' }
  | { type: 'commit'; files: Record<string, string> }
  | { type: 'stop' };
type Request = RequestBody & { id: number };

/** The fixture hosts, in a child process. */
export interface FixtureHosts {
  built: FixtureBuilt;
  issueToken(provider: HostApiProvider): Promise<string>;
  /** HTTP requests the git server has answered so far. */
  gitRequests(): Promise<number>;
  /** Commits these file contents on the default branch; resolves with the new commit. */
  commit(files: Record<string, string>): Promise<string>;
  stop(): Promise<void>;
}

/** Starts the child process and builds the repository in it. */
export async function startFixtureHosts(spec: FixtureSpec): Promise<FixtureHosts> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let next = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  child.on('message', (message: { id: number; result?: unknown; error?: string }) => {
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.error !== undefined) waiter?.reject(new Error(message.error));
    else waiter?.resolve(message.result);
  });
  child.on('exit', (code) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`the fixture hosts exited with ${code}`));
    pending.clear();
  });
  const call = <T>(request: RequestBody): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ ...request, id });
    });
  const built = await call<FixtureBuilt>({ type: 'build', spec });
  return {
    built,
    issueToken: (provider) => call<string>({ type: 'token', provider }),
    gitRequests: () => call<number>({ type: 'gitRequests' }),
    commit: (files) => call<string>({ type: 'commit', files }),
    stop: async () => {
      await call({ type: 'stop' }).catch(() => undefined);
      if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

/** The child: builds the repository, then serves until told to stop. */
async function serve(): Promise<void> {
  let git: GitFixtureServer | null = null;
  let api: HostApiServer | null = null;
  let repo: FixtureRepository | null = null;
  const answer = (id: number, result: unknown): void => {
    process.send!({ id, result });
  };
  process.on('message', (request: Request) => {
    void (async () => {
      try {
        switch (request.type) {
          case 'build': {
            const { spec } = request;
            git = await GitFixtureServer.start({ root: join(spec.root, 'git') });
            api = await HostApiServer.start();
            repo = await git.createRepository('bench/delta');
            await repo.generateTree({
              files: spec.files,
              bytesPerFile: spec.bytesPerFile,
              date: new Date('2024-01-01T00:00:00Z'),
            });
            const from = await repo.generateHistory({
              commits: spec.commits,
              date: new Date('2024-01-02T00:00:00Z'),
            });
            const changes: Record<string, string> = {};
            for (let i = 0; i < spec.changed; i++) {
              // Spread over directories: every changed file rewrites its directory's tree.
              const n = Math.floor((i * spec.files) / spec.changed);
              changes[`generated/d${String(n % 100).padStart(2, '0')}/file-${n}.txt`] =
                `changed ${i}\n`.repeat(8);
            }
            const to =
              spec.changed === 0
                ? from
                : await repo.commit(changes, {
                    message: `change ${spec.changed} files`,
                    date: new Date('2024-02-01T00:00:00Z'),
                  });
            api.addRepository(repo);
            const built: FixtureBuilt = {
              url: repo.url,
              bareDir: repo.bareDir,
              from,
              to,
              githubApiUrl: api.githubApiUrl,
              gitlabUrl: api.gitlabUrl,
              files: (await repo.lsTree(to)).length,
            };
            return answer(request.id, built);
          }
          case 'token':
            return answer(request.id, api!.issueToken(request.provider));
          case 'gitRequests':
            return answer(request.id, git!.requests.length);
          case 'commit':
            return answer(request.id, await repo!.commit(request.files));
          case 'stop':
            await api?.stop();
            await git?.stop();
            answer(request.id, null);
            return process.disconnect();
        }
      } catch (error) {
        process.send!({
          id: request.id,
          error: error instanceof Error ? (error.stack ?? error.message) : String(error),
        });
      }
    })();
  });
}

if (process.argv.includes('--serve') && process.send) void serve();
