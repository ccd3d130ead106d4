import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  GitAbortedError,
  GitCommandFailedError,
  GitInvalidArgumentError,
  GitOutputTooLargeError,
  GitTimeoutError,
  classifyGitFailure,
  redactSecrets,
  stderrTail,
} from './git-errors.js';

/** Username and password (or token) for one remote; they reach git only through GIT_ASKPASS. */
export interface GitCredentials {
  username: string;
  password: string;
}

export type SpawnFunction = (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

export interface GitRunnerOptions {
  /** The git executable; `git` from PATH by default. */
  gitBinary?: string;
  /** Time budget of a run that does not set its own. */
  defaultTimeoutMs: number;
  /** Private directory (created 0700) that holds the askpass script. */
  askpassDir: string;
  /** Cap on captured stdout when a run does not set its own (default 64 MiB). */
  defaultMaxOutputBytes?: number;
  /** Transports git may use (GIT_ALLOW_PROTOCOL); https, http and ssh by default. */
  allowedProtocols?: readonly string[];
  /** Environment to take PATH, HOME, proxy and CA settings from; this process's by default. */
  baseEnv?: NodeJS.ProcessEnv;
  /** Replaces child_process.spawn (tests). */
  spawn?: SpawnFunction;
}

export interface GitRunOptions {
  cwd?: string;
  timeoutMs?: number;
  credentials?: GitCredentials;
  /** Extra environment for this run (e.g. GIT_INDEX_FILE); cannot override the hardening variables. */
  env?: Record<string, string>;
  /** Receives stdout as it arrives; stdout is then not captured and the result's stdout is empty. */
  onStdout?: (chunk: Buffer) => void;
  /** Kill git and fail when captured stdout grows beyond this. */
  maxOutputBytes?: number;
  /**
   * Written to git's stdin, which is otherwise closed. A promise lets git start before its input is known;
   * when it rejects, git is killed and the run fails with that error.
   */
  stdin?: string | Buffer | Promise<string | Buffer>;
  /** Kills git when aborted. */
  signal?: AbortSignal;
}

export interface GitRunResult {
  stdout: string;
  /** Redacted stderr (capped to its last 256 KiB). */
  stderr: string;
  durationMs: number;
}

const ASKPASS_FILE = 'git-askpass.sh';
const STDERR_CAP_BYTES = 256 * 1024;
const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

// Answers git's "Username for ..." / "Password for ..." prompts from variables set only on the one git
// process that needs them; exits non-zero when they are absent so git fails fast instead of guessing.
const ASKPASS_SCRIPT = `#!/bin/sh
# reposync: credentials for git come from this process's environment, never from argv or files.
case "$1" in
  Username*) [ -n "\${REPOSYNC_GIT_USERNAME+set}" ] || exit 1; printf '%s\\n' "$REPOSYNC_GIT_USERNAME" ;;
  *) [ -n "\${REPOSYNC_GIT_PASSWORD+set}" ] || exit 1; printf '%s\\n' "$REPOSYNC_GIT_PASSWORD" ;;
esac
`;

// Only what git needs to run and reach the network; everything else (database URLs, tokens, GIT_DIR of
// a surrounding hook...) stays out of git's environment.
const INHERITED_ENV = [
  'PATH',
  'HOME',
  'TMPDIR',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'ALL_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
  'all_proxy',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'GIT_SSL_CAINFO',
  'GIT_SSL_CAPATH',
];

// Prepended to every command: no credential helper may answer (or store) anything, repository hooks
// never run, user-level attribute files cannot alter checkouts, and auto-gc stays in our process group
// so a timeout kills it too.
const HARDENING_CONFIG = [
  '-c',
  'credential.helper=',
  '-c',
  'core.hooksPath=/dev/null',
  '-c',
  'core.attributesFile=/dev/null',
  '-c',
  'gc.autoDetach=false',
  // A transfer that stalls (below 1 KB/s for a minute) ends by itself, even if no timer is left to kill it.
  '-c',
  'http.lowSpeedLimit=1000',
  '-c',
  'http.lowSpeedTime=60',
];

/** Runs git child processes with a hermetic environment, time limits and typed errors. */
export class GitRunner {
  private readonly gitBinary: string;
  private readonly defaultTimeoutMs: number;
  private readonly askpassDir: string;
  private readonly defaultMaxOutputBytes: number;
  private readonly allowedProtocols: string;
  private readonly baseEnv: Record<string, string>;
  private readonly spawn: SpawnFunction;
  /** Running children, each with the function that aborts it. */
  private readonly active = new Map<ChildProcess, () => void>();
  private askpassPath: Promise<string> | undefined;

  constructor(options: GitRunnerOptions) {
    this.gitBinary = options.gitBinary ?? 'git';
    this.defaultTimeoutMs = options.defaultTimeoutMs;
    this.askpassDir = options.askpassDir;
    this.defaultMaxOutputBytes = options.defaultMaxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
    this.allowedProtocols = (options.allowedProtocols ?? ['https', 'http', 'ssh']).join(':');
    this.spawn = options.spawn ?? nodeSpawn;
    const source = options.baseEnv ?? process.env;
    this.baseEnv = {};
    for (const name of INHERITED_ENV) {
      const value = source[name];
      if (value !== undefined) this.baseEnv[name] = value;
    }
  }

  /** Number of git processes currently running. */
  get runningCount(): number {
    return this.active.size;
  }

  /** Runs `git <args>` and resolves with its output, or rejects with a typed GitError. */
  async run(args: readonly string[], opts: GitRunOptions = {}): Promise<GitRunResult> {
    const secrets = opts.credentials ? [opts.credentials.password] : [];
    if (opts.credentials) assertSafeCredentials(opts.credentials);
    const command = subcommandOf(args);
    // Input refused while git is still being set up is handled once git runs (it is killed with that
    // error); until then it must not count as an unhandled rejection.
    if (opts.stdin instanceof Promise) opts.stdin.catch(() => undefined);
    if (opts.signal?.aborted) throw new GitAbortedError(`git ${command}: aborted before start`);
    const env = await this.childEnv(opts);
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const maxOutputBytes = opts.maxOutputBytes ?? this.defaultMaxOutputBytes;
    const started = performance.now();

    return new Promise<GitRunResult>((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = this.spawn(this.gitBinary, [...HARDENING_CONFIG, ...args], {
          cwd: opts.cwd,
          env,
          // Own process group, so a timeout can kill git together with its helpers (remote-https, ...).
          detached: true,
          stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        });
      } catch (error) {
        reject(spawnFailure(command, error));
        return;
      }

      const stdoutChunks: Buffer[] = [];
      let stdoutBytes = 0;
      const stderrChunks: Buffer[] = [];
      let stderrBytes = 0;
      let stderrTruncated = false;
      // Why we killed git (first reason wins); the error is built on 'close', once stderr is complete.
      let killedFor: KillReason | undefined;
      let settled = false;

      const kill = (reason: KillReason): void => {
        killedFor ??= reason;
        killProcessGroup(child);
      };

      const timer = setTimeout(() => kill({ kind: 'timeout' }), timeoutMs);
      const onAbort = (): void => kill({ kind: 'aborted' });
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.active.set(child, onAbort);

      const collectedStderr = (): string => {
        let text = Buffer.concat(stderrChunks).toString('utf8');
        // After truncation the first line may start mid-secret (too short to match) or mid-character.
        if (stderrTruncated) text = text.slice(text.indexOf('\n') + 1);
        return redactSecrets(text, secrets);
      };

      const finish = (outcome: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        this.active.delete(child);
        outcome();
      };

      child.stdout?.on('data', (chunk: Buffer) => {
        if (killedFor) return;
        if (opts.onStdout) {
          try {
            opts.onStdout(chunk);
          } catch (error) {
            kill({ kind: 'consumer', error: error instanceof Error ? error : new Error(String(error)) });
          }
          return;
        }
        stdoutBytes += chunk.length;
        if (stdoutBytes > maxOutputBytes) {
          kill({ kind: 'output' });
          return;
        }
        stdoutChunks.push(chunk);
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        stderrChunks.push(chunk);
        stderrBytes += chunk.length;
        // Keep only the tail: git's verdict is at the end, progress noise at the start.
        while (stderrBytes > STDERR_CAP_BYTES && stderrChunks.length > 1) {
          stderrBytes -= stderrChunks.shift()?.length ?? 0;
          stderrTruncated = true;
        }
      });
      if (child.stdin && opts.stdin !== undefined) {
        const stdin = child.stdin;
        // git may exit before reading all input (e.g. on a bad argument): that is reported by its exit code.
        stdin.on('error', () => undefined);
        if (opts.stdin instanceof Promise) {
          opts.stdin.then(
            (input) => {
              if (!settled) stdin.end(input);
            },
            (error: unknown) => {
              kill({ kind: 'consumer', error: error instanceof Error ? error : new Error(String(error)) });
              stdin.end();
            },
          );
        } else {
          stdin.end(opts.stdin);
        }
      }

      child.on('error', (error) => {
        // Spawn failure (ENOENT, EACCES...): no 'close' may follow for a process that never started.
        if (child.pid === undefined) finish(() => reject(spawnFailure(command, error)));
      });

      child.on('close', (code, signal) => {
        finish(() => {
          const stderr = collectedStderr();
          if (killedFor) {
            reject(killError(command, killedFor, { timeoutMs, maxOutputBytes }, stderrTail(stderr)));
            return;
          }
          if (code === 0) {
            resolve({
              stdout: Buffer.concat(stdoutChunks).toString('utf8'),
              stderr,
              durationMs: performance.now() - started,
            });
            return;
          }
          const error = classifyGitFailure(command, code, stderr);
          if (code === null && signal) error.message += ` (killed by ${signal})`;
          reject(error);
        });
      });
    });
  }

  /** Kills every running git process group (worker shutdown); their runs fail with GitAbortedError. */
  terminateAll(): void {
    for (const abort of this.active.values()) abort();
  }

  private async childEnv(opts: GitRunOptions): Promise<Record<string, string>> {
    const env: Record<string, string> = { ...this.baseEnv, ...opts.env };
    Object.assign(env, {
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      LC_ALL: 'C',
      GIT_ASKPASS: await this.ensureAskpass(),
      GIT_SSH_COMMAND: 'ssh -o BatchMode=yes -o ConnectTimeout=30',
      GIT_ALLOW_PROTOCOL: this.allowedProtocols,
    });
    delete env.SSH_ASKPASS;
    delete env.REPOSYNC_GIT_USERNAME;
    delete env.REPOSYNC_GIT_PASSWORD;
    if (opts.credentials) {
      env.REPOSYNC_GIT_USERNAME = opts.credentials.username;
      env.REPOSYNC_GIT_PASSWORD = opts.credentials.password;
    }
    return env;
  }

  /** Writes the askpass script once per runner (atomically, so concurrent runners can share the dir). */
  private ensureAskpass(): Promise<string> {
    this.askpassPath ??= (async () => {
      await mkdir(this.askpassDir, { recursive: true, mode: 0o700 });
      await chmod(this.askpassDir, 0o700);
      const target = join(this.askpassDir, ASKPASS_FILE);
      const temp = join(this.askpassDir, `.${ASKPASS_FILE}.${randomBytes(6).toString('hex')}.tmp`);
      try {
        await writeFile(temp, ASKPASS_SCRIPT, { mode: 0o700 });
        await chmod(temp, 0o700);
        await rename(temp, target);
      } catch (error) {
        await rm(temp, { force: true });
        throw error;
      }
      return target;
    })().catch((error: unknown) => {
      this.askpassPath = undefined;
      throw error;
    });
    return this.askpassPath;
  }
}

// git's global options that take their value as the next argument.
const GLOBAL_OPTIONS_WITH_VALUE = new Set([
  '-c',
  '-C',
  '--git-dir',
  '--work-tree',
  '--namespace',
  '--config-env',
]);

/** The git subcommand in an argv (skipping global options), for messages that must not echo URLs. */
export function subcommandOf(args: readonly string[]): string {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === undefined) break;
    if (GLOBAL_OPTIONS_WITH_VALUE.has(arg)) {
      i++;
      continue;
    }
    if (!arg.startsWith('-')) return arg;
  }
  return 'command';
}

function assertSafeCredentials(credentials: GitCredentials): void {
  // A newline would end the askpass answer early; git would then send a truncated secret.
  for (const value of [credentials.username, credentials.password]) {
    if (/[\r\n\0]/.test(value)) {
      throw new GitInvalidArgumentError('git credentials must not contain line breaks or NUL characters');
    }
  }
}

function killProcessGroup(child: ChildProcess): void {
  if (child.pid === undefined) {
    // Not started yet as far as we know (a helper-started process reports its pid later): its own kill
    // takes care of it, and is a no-op for a process that never started.
    child.kill('SIGKILL');
    return;
  }
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone (ESRCH): nothing left to kill.
  }
}

function spawnFailure(command: string, error: unknown): GitCommandFailedError {
  const reason = error instanceof Error ? error.message : String(error);
  return new GitCommandFailedError(`git ${command}: could not start git (${reason})`);
}

type KillReason =
  { kind: 'timeout' } | { kind: 'aborted' } | { kind: 'output' } | { kind: 'consumer'; error: Error };

function killError(
  command: string,
  reason: KillReason,
  limits: { timeoutMs: number; maxOutputBytes: number },
  stderr: string,
): Error {
  switch (reason.kind) {
    case 'timeout':
      return new GitTimeoutError(`git ${command}: timed out after ${limits.timeoutMs} ms`, { stderr });
    case 'aborted':
      return new GitAbortedError(`git ${command}: aborted`, { stderr });
    case 'output':
      return new GitOutputTooLargeError(`git ${command}: output exceeded ${limits.maxOutputBytes} bytes`, {
        stderr,
      });
    case 'consumer':
      // The caller's own stdout consumer failed: surface its error unchanged.
      return reason.error;
  }
}
