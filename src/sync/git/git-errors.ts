/**
 * Typed failures of git child processes. Every error carries a stable `code` and a redacted tail of
 * git's stderr, so callers can decide about retries and show a useful message without leaking secrets.
 */

/** How much of git's stderr an error keeps: the end is where git says what went wrong. */
const STDERR_TAIL_CHARS = 2_000;

export abstract class GitError extends Error {
  abstract readonly code: string;
  /** Redacted tail of git's stderr (may be empty). */
  readonly stderr: string;
  /** Exit code of git, or null when it did not exit on its own (timeout, abort, spawn failure). */
  readonly exitCode: number | null;

  constructor(message: string, details: { stderr?: string; exitCode?: number | null } = {}) {
    super(message);
    this.name = new.target.name;
    this.stderr = details.stderr ?? '';
    this.exitCode = details.exitCode ?? null;
  }
}

/** The remote rejected the credentials, or credentials were needed and none were given. */
export class GitAuthFailedError extends GitError {
  readonly code = 'GIT_AUTH_FAILED';
}

/** The remote repository does not exist (or is hidden from these credentials). */
export class GitRepositoryNotFoundError extends GitError {
  readonly code = 'GIT_REPOSITORY_NOT_FOUND';
}

/** DNS, TCP, TLS or HTTP transport trouble, or a server-side 5xx: worth retrying later. */
export class GitNetworkError extends GitError {
  readonly code = 'GIT_NETWORK';
}

/** The requested ref (usually a branch) does not exist on the remote, or a revision is unknown locally. */
export class GitRefNotFoundError extends GitError {
  readonly code = 'GIT_REF_NOT_FOUND';
}

/** The remote has no such ref: a fetch asked for a branch that is not (or no longer) there. */
export class GitRemoteRefNotFoundError extends GitRefNotFoundError {}

/** git ran longer than its time budget and was killed. */
export class GitTimeoutError extends GitError {
  readonly code = 'GIT_TIMEOUT';
}

/** The caller cancelled the command (e.g. worker shutdown); git was killed. */
export class GitAbortedError extends GitError {
  readonly code = 'GIT_ABORTED';
}

/** git produced more output than the caller allowed; git was killed. */
export class GitOutputTooLargeError extends GitError {
  readonly code = 'GIT_OUTPUT_TOO_LARGE';
}

/** The caller passed something git must not see (a URL with credentials, an unsafe ref name...). */
export class GitInvalidArgumentError extends GitError {
  readonly code = 'GIT_INVALID_ARGUMENT';
}

/** Any other failure of git: the exit code and stderr tail say more. */
export class GitCommandFailedError extends GitError {
  readonly code = 'GIT_COMMAND_FAILED';
}

/** Whether the operation may succeed when simply tried again later. */
export function isRetryableGitError(error: unknown): boolean {
  return (
    error instanceof GitNetworkError || error instanceof GitTimeoutError || error instanceof GitAbortedError
  );
}

type GitErrorClass = new (
  message: string,
  details: { stderr?: string; exitCode?: number | null },
) => GitError;

/** One case-insensitive pattern matching any of the alternatives (each a regex fragment). */
function anyOf(alternatives: readonly string[]): RegExp {
  return new RegExp(alternatives.join('|'), 'i');
}

// Order matters: ref-not-found before repository-not-found ("Remote branch x not found in upstream"),
// and auth and not-found before network because git prefixes HTTP 401/403/404 with "unable to access".
const STDERR_RULES: ReadonlyArray<{ pattern: RegExp; errorClass: GitErrorClass; summary: string }> = [
  {
    pattern: anyOf([
      'Authentication failed',
      'could not read (Username|Password)',
      'terminal prompts disabled',
      'returned error: 40[13]\\b',
      'HTTP 40[13]\\b',
      'Permission denied \\(publickey',
      'Host key verification failed',
      'Invalid username or password',
      'HTTP Basic: Access denied',
    ]),
    errorClass: GitAuthFailedError,
    summary: 'authentication failed',
  },
  {
    pattern: anyOf(["couldn't find remote ref", 'Remote branch .* not found in upstream']),
    errorClass: GitRemoteRefNotFoundError,
    summary: 'ref not found on remote',
  },
  {
    pattern: anyOf([
      'Repository not found',
      "repository '.*' not found",
      'does not appear to be a git repository',
      'returned error: 404\\b',
      'HTTP 404\\b',
      'project you were looking for could not be found',
    ]),
    errorClass: GitRepositoryNotFoundError,
    summary: 'repository not found',
  },
  {
    pattern: anyOf([
      'Could not resolve (host|proxy)',
      'Connection (refused|reset|timed out)',
      'Operation timed out',
      'Failed to connect',
      'unable to access',
      'early EOF',
      'RPC failed',
      'remote end hung up unexpectedly',
      'transfer closed with outstanding',
      'returned error: (5\\d\\d|429)\\b',
      'HTTP (5\\d\\d|429)\\b',
      'SSL_|gnutls|TLS connection',
      'Network is unreachable',
      'No route to host',
    ]),
    errorClass: GitNetworkError,
    summary: 'network error',
  },
];

/** Removes secrets from git output: each secret (also URL-encoded) and any userinfo in URLs. */
export function redactSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length === 0) continue;
    for (const form of new Set([secret, encodeURIComponent(secret)])) {
      out = out.split(form).join('***');
    }
  }
  // Credentials must never be in URLs we pass, but git may echo a URL from a redirect or remote config.
  return out.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s'"]+@/gi, '$1***@');
}

/** Keeps the last part of git's stderr with progress-bar carriage returns collapsed into lines. */
export function stderrTail(stderr: string, maxChars = STDERR_TAIL_CHARS): string {
  const lines = stderr
    .split('\n')
    .map((line) => {
      // Progress output rewrites a line with \r: keep only what a terminal would finally show.
      const parts = line.split('\r').filter((part) => part.trim().length > 0);
      return parts[parts.length - 1] ?? '';
    })
    .filter((line) => line.trim().length > 0);
  const joined = lines.join('\n');
  return joined.length > maxChars ? joined.slice(joined.length - maxChars) : joined;
}

/** The most telling line of git's stderr: the last `fatal:`/`error:` line, else the last line. */
function headline(stderr: string): string {
  const lines = stderr.split('\n').filter((line) => line.trim().length > 0);
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i];
    if (line !== undefined && /^(fatal|error):/i.test(line)) return line.trim();
  }
  return lines[lines.length - 1]?.trim() ?? '';
}

/**
 * Maps a failed git run to a typed error. `stderr` must already be redacted; `command` names the git
 * subcommand for the message (never the full argv, which could hold a URL).
 */
export function classifyGitFailure(command: string, exitCode: number | null, stderr: string): GitError {
  const tail = stderrTail(stderr);
  const detail = headline(tail);
  for (const rule of STDERR_RULES) {
    if (rule.pattern.test(tail)) {
      return new rule.errorClass(`git ${command}: ${rule.summary}${detail ? ` (${detail})` : ''}`, {
        stderr: tail,
        exitCode,
      });
    }
  }
  return new GitCommandFailedError(
    `git ${command} failed with exit code ${exitCode ?? 'none'}${detail ? `: ${detail}` : ''}`,
    { stderr: tail, exitCode },
  );
}
