import { describe, expect, it } from '@jest/globals';
import {
  GitAbortedError,
  GitAuthFailedError,
  GitCommandFailedError,
  GitInvalidArgumentError,
  GitNetworkError,
  GitOutputTooLargeError,
  GitRefNotFoundError,
  GitRemoteRefNotFoundError,
  GitRepositoryNotFoundError,
  GitTimeoutError,
  classifyGitFailure,
  isRetryableGitError,
  redactSecrets,
  stderrTail,
} from './git-errors.js';

describe('classifyGitFailure', () => {
  const cases: Array<[string, string, new (...args: never[]) => Error]> = [
    [
      'wrong password',
      "remote: Invalid credentials\nfatal: Authentication failed for 'https://github.com/a/b.git/'",
      GitAuthFailedError,
    ],
    [
      'no credentials, prompts disabled',
      "error: unable to read askpass response from '/x/askpass'\nfatal: could not read Username for 'https://github.com': terminal prompts disabled",
      GitAuthFailedError,
    ],
    [
      'HTTP 403',
      "fatal: unable to access 'https://h/a.git/': The requested URL returned error: 403",
      GitAuthFailedError,
    ],
    [
      'HTTP 401',
      'error: RPC failed; HTTP 401 curl 22 The requested URL returned error: 401',
      GitAuthFailedError,
    ],
    [
      'ssh key rejected',
      'git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.',
      GitAuthFailedError,
    ],
    [
      'GitHub private/missing',
      "remote: Repository not found.\nfatal: repository 'https://github.com/a/b.git/' not found",
      GitRepositoryNotFoundError,
    ],
    [
      'HTTP 404',
      "fatal: unable to access 'https://h/a.git/': The requested URL returned error: 404",
      GitRepositoryNotFoundError,
    ],
    [
      'local path',
      "fatal: '/nope' does not appear to be a git repository\nfatal: Could not read from remote repository.",
      GitRepositoryNotFoundError,
    ],
    [
      'GitLab',
      "remote: The project you were looking for could not be found or you don't have permission to view it.\nfatal: repository 'https://gitlab.com/a/b.git/' not found",
      GitRepositoryNotFoundError,
    ],
    ['missing branch', "fatal: couldn't find remote ref refs/heads/gone", GitRemoteRefNotFoundError],
    [
      'clone of missing branch',
      'warning: Could not find remote branch x to clone.\nfatal: Remote branch x not found in upstream origin',
      GitRemoteRefNotFoundError,
    ],
    [
      'DNS',
      "fatal: unable to access 'https://nohost/a.git/': Could not resolve host: nohost",
      GitNetworkError,
    ],
    [
      'refused',
      "fatal: unable to access 'http://127.0.0.1:1/x.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server",
      GitNetworkError,
    ],
    ['connection refused', 'ssh: connect to host h port 22: Connection refused', GitNetworkError],
    [
      'early EOF',
      'error: RPC failed; curl 18 transfer closed with outstanding read data remaining\nfatal: early EOF\nfatal: index-pack failed',
      GitNetworkError,
    ],
    [
      'HTTP 503',
      "fatal: unable to access 'https://h/a.git/': The requested URL returned error: 503",
      GitNetworkError,
    ],
    ['hung up', 'fatal: the remote end hung up unexpectedly', GitNetworkError],
    ['anything else', 'fatal: bad object HEAD', GitCommandFailedError],
    ['no stderr at all', '', GitCommandFailedError],
  ];

  it.each(cases)('%s', (_name, stderr, expected) => {
    const error = classifyGitFailure('fetch', 128, stderr);
    expect(error).toBeInstanceOf(expected);
    expect(error.exitCode).toBe(128);
    expect(error.stderr).toBe(stderrTail(stderr));
    expect(error.message).toMatch(/^git fetch/);
  });

  it('names the last fatal line in the message and keeps a stable code', () => {
    const error = classifyGitFailure(
      'ls-remote',
      128,
      'warning: x\nfatal: Could not resolve host: h\nhint: y',
    );
    expect(error.message).toBe('git ls-remote: network error (fatal: Could not resolve host: h)');
    expect(error.code).toBe('GIT_NETWORK');
    expect(classifyGitFailure('gc', 1, 'boom').message).toBe('git gc failed with exit code 1: boom');
  });

  it('keeps only the tail of long stderr, with progress lines collapsed', () => {
    const progress = Array.from({ length: 50 }, (_, i) => `Receiving objects: ${i}%`).join('\r');
    const tail = stderrTail(`${progress}\rReceiving objects: 100%, done.\n${'x'.repeat(5000)}\nfatal: end`);
    expect(tail.length).toBeLessThanOrEqual(2000);
    expect(tail.endsWith('fatal: end')).toBe(true);
    expect(stderrTail('a\rb\rc\nd')).toBe('c\nd');
  });
});

describe('redactSecrets', () => {
  it('removes the secret, its URL-encoded form and userinfo in URLs', () => {
    const secret = 'p@ss/w:rd';
    const text = `tried ${secret} and ${encodeURIComponent(secret)} at https://user:${encodeURIComponent(secret)}@h/x.git`;
    const redacted = redactSecrets(text, [secret]);
    expect(redacted).not.toContain(secret);
    expect(redacted).not.toContain(encodeURIComponent(secret));
    expect(redacted).toContain('https://***@h/x.git');
    expect(redactSecrets('https://x-access-token:ghs_abc@github.com/a/b')).toBe('https://***@github.com/a/b');
    expect(redactSecrets('nothing here', [''])).toBe('nothing here');
  });
});

describe('isRetryableGitError', () => {
  it('retries transport trouble and cancellations, not verdicts', () => {
    expect(isRetryableGitError(new GitNetworkError('x'))).toBe(true);
    expect(isRetryableGitError(new GitTimeoutError('x'))).toBe(true);
    expect(isRetryableGitError(new GitAbortedError('x'))).toBe(true);
    expect(isRetryableGitError(new GitAuthFailedError('x'))).toBe(false);
    expect(isRetryableGitError(new GitRepositoryNotFoundError('x'))).toBe(false);
    expect(isRetryableGitError(new GitRefNotFoundError('x'))).toBe(false);
    expect(isRetryableGitError(new GitOutputTooLargeError('x'))).toBe(false);
    expect(isRetryableGitError(new GitInvalidArgumentError('x'))).toBe(false);
    expect(isRetryableGitError(new GitCommandFailedError('x'))).toBe(false);
    expect(isRetryableGitError(new Error('x'))).toBe(false);
  });

  it('gives every error its class name and code', () => {
    const error = new GitAuthFailedError('denied', { stderr: 'fatal: x', exitCode: 128 });
    expect(error.name).toBe('GitAuthFailedError');
    expect(error.code).toBe('GIT_AUTH_FAILED');
    expect(error).toBeInstanceOf(Error);
  });
});
