import { describe, expect, it } from '@jest/globals';
import {
  GIT_LOG_COMMIT_MARKER,
  GitLogParseError,
  GitLogReader,
  gitLogArgs,
  parseGitLog,
  type ParsedCommit,
} from './git-log-parser.js';

const SHA_A = 'a'.repeat(40);
const SHA_B = 'b'.repeat(40);
const SHA_C = 'c'.repeat(40);
const BLOB_0 = '0'.repeat(40);
const BLOB_1 = '1'.repeat(40);

interface FakeCommit {
  sha: string;
  parents?: string[];
  message?: string;
  author?: [string, string, string];
  /** Raw entries then numstat entries, each a list of NUL-terminated fields. */
  raw?: string[][];
  numstat?: string[][];
}

/** Output laid out the way `git log -z --format=... --raw --numstat` writes it (see the integration test). */
function gitOutput(commits: FakeCommit[]): string {
  return commits
    .map((c) => {
      const [name, email, date] = c.author ?? ['Ann', 'ann@example.com', '2024-01-01T00:00:00+00:00'];
      const header = [
        GIT_LOG_COMMIT_MARKER,
        c.sha,
        (c.parents ?? []).join(' '),
        name,
        email,
        date,
        name,
        email,
        date,
        `${c.message ?? 'subject'}\n`,
      ]
        .map((field) => `${field}\0`)
        .join('');
      const entries = [...(c.raw ?? []), ...(c.numstat ?? [])];
      const diff = entries.length
        ? '\n' + entries.map((fields) => fields.map((f) => `${f}\0`).join('')).join('')
        : '';
      return `${header}\0${diff}`;
    })
    .join('\0');
}

const raw = (status: string, ...paths: string[]) => [
  `:100644 100644 ${BLOB_0} ${BLOB_1} ${status}`,
  ...paths,
];
const numstat = (added: string, deleted: string, ...paths: string[]) =>
  paths.length === 1 ? [`${added}\t${deleted}\t${paths[0]}`] : [`${added}\t${deleted}\t`, ...paths];

describe('gitLogArgs', () => {
  it('asks for the whole history of toSha, or the range from..to, oldest first', () => {
    const all = gitLogArgs(null, SHA_B);
    expect(all.slice(-2)).toEqual([SHA_B, '--']);
    expect(all[all.indexOf('--end-of-options') + 1]).toBe(SHA_B);
    const range = gitLogArgs(SHA_A, SHA_B);
    expect(range.slice(-2)).toEqual([`${SHA_A}..${SHA_B}`, '--']);
    expect(range).toEqual(
      expect.arrayContaining([
        '-z',
        '--raw',
        '--numstat',
        '--diff-merges=first-parent',
        '--find-renames',
        '--reverse',
      ]),
    );
    expect(range.slice(0, 2)).toEqual(['-c', 'core.quotePath=false']);
    expect(range).not.toContain('--first-parent');
  });

  it('accepts SHA-256 ids and refuses anything that is not a full lowercase id', () => {
    expect(() => gitLogArgs(null, 'f'.repeat(64))).not.toThrow();
    for (const bad of ['--output=/tmp/x', 'HEAD', 'abc123', SHA_A.toUpperCase(), `${SHA_A}\n`, '']) {
      expect(() => gitLogArgs(null, bad)).toThrow(TypeError);
      expect(() => gitLogArgs(bad, SHA_A)).toThrow(TypeError);
    }
  });
});

describe('parseGitLog', () => {
  it('reads nothing from empty output', () => {
    expect(parseGitLog('')).toEqual([]);
  });

  it('reads header fields, renames with two paths, binary counts and empty commits', () => {
    const output = gitOutput([
      {
        sha: SHA_A,
        message: 'first\n\nbody line',
        raw: [raw('A', 'new.txt'), raw('R087', 'old name.txt', 'new name.txt'), raw('A', 'img.png')],
        numstat: [
          numstat('3', '0', 'new.txt'),
          numstat('1', '2', 'old name.txt', 'new name.txt'),
          numstat('-', '-', 'img.png'),
        ],
      },
      { sha: SHA_B, parents: [SHA_A], message: 'empty' },
    ]);
    const [first, empty] = parseGitLog(output) as [ParsedCommit, ParsedCommit];
    expect(first).toMatchObject({
      sha: SHA_A,
      parents: [],
      message: 'first\n\nbody line',
      author: { name: 'Ann', email: 'ann@example.com', date: '2024-01-01T00:00:00+00:00' },
    });
    expect(first.files).toEqual([
      {
        status: 'A',
        similarity: null,
        path: 'new.txt',
        previousPath: null,
        additions: 3,
        deletions: 0,
        binary: false,
      },
      {
        status: 'R',
        similarity: 87,
        path: 'new name.txt',
        previousPath: 'old name.txt',
        additions: 1,
        deletions: 2,
        binary: false,
      },
      {
        status: 'A',
        similarity: null,
        path: 'img.png',
        previousPath: null,
        additions: null,
        deletions: null,
        binary: true,
      },
    ]);
    expect(empty).toMatchObject({ sha: SHA_B, parents: [SHA_A], message: 'empty', files: [] });
  });

  it('is not fooled by messages and paths that look like records or entries', () => {
    const sneaky = `${GIT_LOG_COMMIT_MARKER}\n:100644 100644 ${BLOB_0} ${BLOB_1} M\n1\t2\tx`;
    const output = gitOutput([
      {
        sha: SHA_A,
        parents: [SHA_B, SHA_C],
        message: sneaky,
        raw: [raw('M', GIT_LOG_COMMIT_MARKER), raw('M', `:100644 x\n1\t2\tpath`)],
        numstat: [numstat('1', '1', GIT_LOG_COMMIT_MARKER), numstat('4', '5', `:100644 x\n1\t2\tpath`)],
      },
      { sha: SHA_B },
    ]);
    const commits = parseGitLog(output);
    expect(commits.map((c) => c.sha)).toEqual([SHA_A, SHA_B]);
    expect(commits[0]!.message).toBe(sneaky);
    expect(commits[0]!.parents).toEqual([SHA_B, SHA_C]);
    expect(commits[0]!.files.map((f) => [f.path, f.additions, f.deletions])).toEqual([
      [GIT_LOG_COMMIT_MARKER, 1, 1],
      [`:100644 x\n1\t2\tpath`, 4, 5],
    ]);
  });

  it('gives the same result however the output is cut into chunks, even inside a UTF-8 character', () => {
    const output = Buffer.from(
      gitOutput([
        {
          sha: SHA_A,
          author: ['Zoë 佐伊', 'zoe@example.com', '2024-01-01T09:00:00+09:00'],
          message: 'résumé 🎉',
          raw: [raw('A', 'docs/文档.md')],
          numstat: [numstat('1', '0', 'docs/文档.md')],
        },
        { sha: SHA_B, parents: [SHA_A] },
      ]),
      'utf8',
    );
    const whole = parseGitLog(output);
    expect(whole[0]!.author.name).toBe('Zoë 佐伊');
    expect(whole[0]!.files[0]!.path).toBe('docs/文档.md');
    for (const size of [1, 2, 3, 7, 64]) {
      const reader = new GitLogReader();
      const commits: ParsedCommit[] = [];
      for (let i = 0; i < output.length; i += size)
        commits.push(...reader.push(output.subarray(i, i + size)));
      commits.push(...reader.end());
      expect(commits).toEqual(whole);
    }
  });

  it('hands out each commit as soon as the next one starts', () => {
    const reader = new GitLogReader();
    const output = gitOutput([{ sha: SHA_A }, { sha: SHA_B }]);
    const cut = output.indexOf(GIT_LOG_COMMIT_MARKER, 1) + GIT_LOG_COMMIT_MARKER.length + 1;
    expect(reader.push(Buffer.from(output.slice(0, cut))).map((c) => c.sha)).toEqual([SHA_A]);
    expect(reader.push(Buffer.from(output.slice(cut)))).toEqual([]);
    expect(reader.end().map((c) => c.sha)).toEqual([SHA_B]);
  });

  it('keeps counts unknown when git printed no numstat line for a file', () => {
    const [commit] = parseGitLog(gitOutput([{ sha: SHA_A, raw: [raw('M', 'sub')] }]));
    expect(commit!.files).toEqual([
      {
        status: 'M',
        similarity: null,
        path: 'sub',
        previousPath: null,
        additions: null,
        deletions: null,
        binary: false,
      },
    ]);
  });

  it('rejects output it does not understand instead of guessing', () => {
    expect(() => parseGitLog('commit abc\n')).toThrow(GitLogParseError);
    const whole = gitOutput([{ sha: SHA_A, raw: [raw('R100', 'a', 'b')] }]);
    expect(() => parseGitLog(whole.slice(0, whole.lastIndexOf('b\0')))).toThrow(GitLogParseError);
    expect(() => parseGitLog(gitOutput([{ sha: SHA_A }]).slice(0, 60))).toThrow(GitLogParseError);
    expect(() => parseGitLog(gitOutput([{ sha: SHA_A, raw: [raw('X', 'a')] }]))).toThrow(
      /unexpected change status "X"/,
    );
    expect(() => parseGitLog(gitOutput([{ sha: 'not-a-sha' }]))).toThrow(/not a commit id/);
  });
});
