import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GitAbortedError,
  GitAuthFailedError,
  GitInvalidArgumentError,
  GitOutputTooLargeError,
  GitTimeoutError,
} from '../../src/sync/git/git-errors.js';
import { GitRunner, type SpawnFunction } from '../../src/sync/git/git-runner.js';
import { SpawnHelper } from '../../src/sync/git/spawn-helper.js';

/** Live (non-zombie) processes of the process group `pgid`, from /proc (Linux). */
async function liveGroupMembers(pgid: number): Promise<number[]> {
  const members: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // Fields after the parenthesised command: state, ppid, pgrp, ...
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') members.push(Number(entry));
  }
  return members;
}

const helper = new SpawnHelper();
afterAll(() => helper.close());

describe.each([
  ['by this process', undefined],
  ['by the spawn helper', helper.spawn],
] as const)('GitRunner (git started %s)', (_how, startedBy) => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'reposync-git-runner-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A stand-in git binary: a shell script with the given body. */
  async function fakeGit(name: string, body: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return path;
  }

  function runner(overrides: Partial<ConstructorParameters<typeof GitRunner>[0]> = {}): GitRunner {
    return new GitRunner({
      defaultTimeoutMs: 10_000,
      askpassDir: join(dir, 'askpass'),
      spawn: startedBy,
      ...overrides,
    });
  }

  it('runs real git and writes a private askpass script', async () => {
    const git = runner();
    const result = await git.run(['--version']);
    expect(result.stdout).toMatch(/^git version/);
    expect(result.durationMs).toBeGreaterThan(0);
    expect((await stat(join(dir, 'askpass'))).mode & 0o777).toBe(0o700);
    const script = join(dir, 'askpass', 'git-askpass.sh');
    expect((await stat(script)).mode & 0o777).toBe(0o700);
    expect(await readFile(script, 'utf8')).toContain('$REPOSYNC_GIT_PASSWORD');
  });

  it('gives git a hermetic environment and credentials only through askpass variables', async () => {
    const gitBinary = await fakeGit('env-git', 'printf "%s\\n" "$@"; echo ---; env');
    const git = runner({
      gitBinary,
      baseEnv: {
        PATH: '/usr/bin:/bin',
        DATABASE_URL: 'postgres://secret',
        GIT_DIR: '/elsewhere',
        HOME: '/home/x',
      },
    });

    const plain = await git.run(['fetch', 'origin'], {
      env: { GIT_INDEX_FILE: '/tmp/index', GIT_TERMINAL_PROMPT: '1' },
    });
    const [argv = '', env = ''] = plain.stdout.split('---\n');
    expect(argv.split('\n')).toEqual(expect.arrayContaining(['credential.helper=', 'fetch', 'origin']));
    expect(env).toContain('GIT_TERMINAL_PROMPT=0\n');
    expect(env).toContain('GIT_CONFIG_NOSYSTEM=1\n');
    expect(env).toContain('GIT_CONFIG_GLOBAL=/dev/null\n');
    expect(env).toContain('LC_ALL=C\n');
    expect(env).toContain(`GIT_ASKPASS=${join(dir, 'askpass', 'git-askpass.sh')}\n`);
    expect(env).toMatch(/GIT_SSH_COMMAND=ssh .*BatchMode=yes/);
    expect(env).toContain('GIT_INDEX_FILE=/tmp/index\n');
    expect(env).toContain('HOME=/home/x\n');
    expect(env).not.toContain('DATABASE_URL');
    expect(env).not.toContain('GIT_DIR=');
    expect(env).not.toContain('REPOSYNC_GIT_');

    const withCredentials = await git.run(['fetch'], {
      credentials: { username: 'bot', password: 'hunter2' },
    });
    expect(withCredentials.stdout).toContain('REPOSYNC_GIT_USERNAME=bot\n');
    expect(withCredentials.stdout.split('---\n')[0]).not.toContain('hunter2');
  });

  it('lets the askpass script answer username and password prompts', async () => {
    const git = runner();
    await git.run(['--version']);
    const askpass = join(dir, 'askpass', 'git-askpass.sh');
    const answer = (
      prompt: string,
      env: Record<string, string>,
    ): Promise<{ code: number | null; out: string }> =>
      new Promise((resolve) => {
        const child = spawn(askpass, [prompt], { env });
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.on('close', (code) => resolve({ code, out }));
      });
    const env = { REPOSYNC_GIT_USERNAME: 'bot', REPOSYNC_GIT_PASSWORD: 'pa ss$word' };
    expect(await answer("Username for 'https://h': ", env)).toEqual({ code: 0, out: 'bot\n' });
    expect(await answer("Password for 'https://bot@h': ", env)).toEqual({ code: 0, out: 'pa ss$word\n' });
    expect((await answer("Username for 'https://h': ", {})).code).not.toBe(0);
  });

  it('redacts the password from stderr and error messages', async () => {
    const gitBinary = await fakeGit(
      'leaky-git',
      [
        'echo "remote: bad password $REPOSYNC_GIT_PASSWORD" >&2',
        'echo "fatal: Authentication failed for \'https://bot:$REPOSYNC_GIT_PASSWORD@h/x\'" >&2',
        'exit 128',
      ].join('\n'),
    );
    const error = await runner({ gitBinary })
      .run(['ls-remote', 'https://h/x'], { credentials: { username: 'bot', password: 'hunter2' } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitAuthFailedError);
    const { message, stderr } = error as GitAuthFailedError;
    expect(message).not.toContain('hunter2');
    expect(stderr).not.toContain('hunter2');
    expect(stderr).toContain('bad password ***');
    expect(message).toMatch(/^git ls-remote: authentication failed/);
  });

  it('kills the whole process group on timeout', async () => {
    const gitBinary = await fakeGit('slow-git', 'sleep 30 &\nsleep 30');
    const pids: number[] = [];
    const spawnSpy: SpawnFunction = (command, args, options): ChildProcess => {
      const child = spawn(command, args, options);
      if (child.pid !== undefined) pids.push(child.pid);
      return child;
    };
    const git = runner({ gitBinary, spawn: spawnSpy });
    const started = Date.now();
    await expect(git.run(['fetch'], { timeoutMs: 300 })).rejects.toBeInstanceOf(GitTimeoutError);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(pids).toHaveLength(1);
    // The background `sleep` is a grandchild: only a process-group kill reaches it.
    expect(await liveGroupMembers(pids[0] ?? 0)).toEqual([]);
    expect(git.runningCount).toBe(0);
  });

  it('aborts on signal and on terminateAll', async () => {
    const gitBinary = await fakeGit('sleepy-git', 'sleep 30');
    const git = runner({ gitBinary });
    const controller = new AbortController();
    const aborted = git.run(['fetch'], { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await expect(aborted).rejects.toBeInstanceOf(GitAbortedError);

    const running = git.run(['fetch']);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(git.runningCount).toBe(1);
    git.terminateAll();
    await expect(running).rejects.toBeInstanceOf(GitAbortedError);
    await expect(git.run(['fetch'], { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(GitAbortedError);
  });

  it('stops git that writes more than allowed, and streams stdout when asked', async () => {
    const gitBinary = await fakeGit('chatty-git', 'yes 0123456789');
    await expect(runner({ gitBinary }).run(['log'], { maxOutputBytes: 100_000 })).rejects.toBeInstanceOf(
      GitOutputTooLargeError,
    );

    let streamed = 0;
    const counted = await runner().run(['--version'], {
      onStdout: (chunk) => {
        streamed += chunk.length;
      },
    });
    expect(streamed).toBeGreaterThan(0);
    expect(counted.stdout).toBe('');
  });

  it('reports a missing binary and refuses credentials that would break askpass', async () => {
    await expect(runner({ gitBinary: join(dir, 'no-such-git') }).run(['status'])).rejects.toThrow(
      /could not start git/,
    );
    await expect(
      runner().run(['--version'], { credentials: { username: 'a', password: 'line\nbreak' } }),
    ).rejects.toBeInstanceOf(GitInvalidArgumentError);
  });

  it('feeds stdin', async () => {
    const { stdout } = await runner().run(['hash-object', '--stdin'], { stdin: 'hello\n' });
    expect(stdout.trim()).toBe('ce013625030ba8dba906f756967f9e9ca394464a');
  });

  it('feeds stdin that comes after git started, and kills git when it cannot come', async () => {
    // The fake git says it started, then echoes its input: the input is only given once it has started.
    const gitBinary = await fakeGit('echo-git', 'echo started >&2; cat');
    const git = runner({ gitBinary });
    let give!: (input: string) => void;
    const later = new Promise<string>((resolve) => (give = resolve));
    const run = git.run(['cat-file', '--batch'], { stdin: later });
    await new Promise((r) => setTimeout(r, 200));
    give('line one\nline two\n');
    expect((await run).stdout).toBe('line one\nline two\n');

    const failed = new Error('the input could not be made');
    await expect(git.run(['cat-file', '--batch'], { stdin: Promise.reject(failed) })).rejects.toBe(failed);
    const pidFile = join(dir, 'waiting-git.pid');
    const sleeper = await fakeGit('waiting-git', `echo $$ > ${pidFile}; cat >/dev/null; sleep 30`);
    let refuse!: (error: Error) => void;
    const never = new Promise<string>((_resolve, reject) => (refuse = reject));
    const waiting = runner({ gitBinary: sleeper }).run(['cat-file', '--batch'], { stdin: never });
    let pid = 0;
    while (!pid) {
      await new Promise((r) => setTimeout(r, 20));
      pid = Number(await readFile(pidFile, 'utf8').catch(() => '0'));
    }
    refuse(failed);
    await expect(waiting).rejects.toBe(failed);
    // Killed with its process group, not left to sleep once its input closed.
    expect(await liveGroupMembers(pid)).toEqual([]);
  });
});

describe('SpawnHelper', () => {
  it('fails the runs of a helper that died, and starts a new one for the next run', async () => {
    const own = new SpawnHelper();
    const dir = await mkdtemp(join(tmpdir(), 'reposync-spawn-helper-'));
    try {
      const gitRunner = new GitRunner({
        defaultTimeoutMs: 10_000,
        askpassDir: join(dir, 'askpass'),
        spawn: own.spawn,
      });
      expect((await gitRunner.run(['--version'])).stdout).toMatch(/^git version/);
      const helperPid = await new Promise<number>((resolve) => {
        // The helper is the parent of the git it starts.
        const probe = own.spawn('sh', ['-c', 'echo $PPID'], { stdio: ['ignore', 'pipe', 'pipe'] });
        probe.stdout?.on('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
      });
      expect(helperPid).not.toBe(process.pid);
      let slowPid: number | undefined;
      const spawnRecorded: SpawnFunction = (command, args, options) => {
        const child = own.spawn(command, args, options);
        setTimeout(() => (slowPid = child.pid), 150);
        return child;
      };
      const recorded = new GitRunner({
        defaultTimeoutMs: 10_000,
        askpassDir: join(dir, 'askpass'),
        spawn: spawnRecorded,
      });
      const slow = recorded.run(['-c', 'alias.wait=!sleep 30', 'wait']);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(slowPid).toEqual(expect.any(Number));
      process.kill(helperPid, 'SIGKILL');
      await expect(slow).rejects.toThrow(/killed/i);
      // Its process group was killed with it, not left running without a helper.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await liveGroupMembers(slowPid!)).toEqual([]);
      expect((await gitRunner.run(['--version'])).stdout).toMatch(/^git version/);
    } finally {
      own.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
