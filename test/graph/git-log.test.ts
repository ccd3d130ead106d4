import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import {
  gitLogArgs,
  parseGitLog,
  type FileChange,
  type ParsedCommit,
} from '../../src/graph/git-log-parser.js';
import {
  ALICE,
  BOB,
  ODD_PATH,
  type SampleHistory,
  TRICKY_MESSAGE,
  UNICODE_PATH,
  ZOE,
  buildSampleHistory,
} from './sample-history.js';

function byPath(commit: ParsedCommit): Map<string, FileChange> {
  return new Map(commit.files.map((f) => [f.path, f]));
}

describe('git log parsing against real git output', () => {
  let history: SampleHistory;
  let commits: ParsedCommit[];
  const find = (sha: string): ParsedCommit => {
    const commit = commits.find((c) => c.sha === sha);
    if (!commit) throw new Error(`commit ${sha} is missing from the parsed log`);
    return commit;
  };

  beforeAll(async () => {
    history = await buildSampleHistory();
    commits = await history.repo.log(null, history.copyAndTypeChange);
  });

  afterAll(async () => {
    await history.repo.destroy();
  });

  it('lists every commit once, parents before children', () => {
    expect(commits).toHaveLength(10);
    expect(new Set(commits.map((c) => c.sha)).size).toBe(10);
    const position = new Map(commits.map((c, i) => [c.sha, i]));
    for (const commit of commits) {
      for (const parent of commit.parents)
        expect(position.get(parent)).toBeLessThan(position.get(commit.sha)!);
    }
    expect(commits[0]!.sha).toBe(history.root);
    expect(commits.at(-1)!.sha).toBe(history.copyAndTypeChange);
  });

  it('reads a root commit as additions with line counts', () => {
    const root = find(history.root);
    expect(root.parents).toEqual([]);
    expect(root.author).toEqual({ ...ALICE, date: '2024-01-01T10:00:00+01:00' });
    expect(root.message).toBe('Initial commit');
    expect(byPath(root).get('src/app.ts')).toEqual({
      status: 'A',
      similarity: null,
      path: 'src/app.ts',
      previousPath: null,
      additions: 22,
      deletions: 0,
      binary: false,
    });
    expect(root.files.map((f) => f.path).sort()).toEqual(['README.md', 'link-target.txt', 'src/app.ts']);
  });

  it('keeps author and committer apart, with their own offsets and the email as written', () => {
    const modify = find(history.modify);
    expect(modify.author).toEqual({ ...BOB, date: '2024-01-02T11:30:00-05:00' });
    expect(modify.committer).toEqual({ ...ALICE, date: '2024-01-02T11:30:00-05:00' });
    expect(byPath(modify).get('src/app.ts')).toMatchObject({ status: 'M', additions: 1, deletions: 0 });
  });

  it('detects a rename with its similarity and both paths', () => {
    const rename = find(history.rename);
    expect(rename.files).toHaveLength(1);
    const [change] = rename.files;
    expect(change).toMatchObject({
      status: 'R',
      path: 'src/main.ts',
      previousPath: 'src/app.ts',
      additions: 1,
    });
    expect(change!.similarity).toBeGreaterThanOrEqual(50);
    expect(change!.similarity).toBeLessThan(100);
  });

  it('reads unicode and control characters in paths and names, and binary files', () => {
    const unicode = find(history.unicode);
    expect(unicode.author.name).toBe(ZOE.name);
    const files = byPath(unicode);
    expect(files.get(UNICODE_PATH)).toMatchObject({ status: 'A', additions: 1, deletions: 0 });
    expect(files.get(ODD_PATH)).toMatchObject({ status: 'A', additions: 1 });
    expect(files.get('assets/logo.bin')).toMatchObject({
      status: 'A',
      additions: null,
      deletions: null,
      binary: true,
    });
  });

  it('reads an empty commit whose message looks like git output', () => {
    const empty = find(history.empty);
    expect(empty.files).toEqual([]);
    expect(empty.message).toBe(TRICKY_MESSAGE);
    expect(empty.committer.name).toBe(BOB.name);
  });

  it('reads a merge with two parents, diffed against its first parent', () => {
    const merge = find(history.merge);
    expect(merge.parents).toEqual([history.mainline, history.side]);
    // What the merge brought into main: the side branch's changes, not main's own work.
    expect(merge.files.map((f) => [f.status, f.path]).sort()).toEqual([
      ['A', 'side.txt'],
      ['M', 'README.md'],
    ]);
  });

  it('reads a deletion, a copy and a type change', () => {
    expect(find(history.deletion).files).toEqual([
      {
        status: 'D',
        similarity: null,
        path: 'assets/logo.bin',
        previousPath: null,
        additions: null,
        deletions: null,
        binary: true,
      },
    ]);
    const files = byPath(find(history.copyAndTypeChange));
    expect(files.get('src/main-copy.ts')).toMatchObject({ status: 'C', previousPath: 'src/main.ts' });
    expect(files.get('src/main.ts')).toMatchObject({ status: 'M', additions: 1, deletions: 0 });
    expect(files.get('link-target.txt')).toMatchObject({ status: 'T' });
  });

  it('lists only the commits of a range, including the merged side branch', async () => {
    const range = await history.repo.log(history.empty, history.deletion);
    expect(range.map((c) => c.sha).sort()).toEqual(
      [history.side, history.mainline, history.merge, history.deletion].sort(),
    );
    const tip = await history.repo.log(history.deletion, history.deletion);
    expect(tip).toEqual([]);
  });

  it('gives the same commits whether read at once or as a stream', () => {
    const result = spawnSync('git', gitLogArgs(null, history.copyAndTypeChange), {
      cwd: history.repo.dir,
      env: { PATH: process.env.PATH, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' },
      maxBuffer: 16 * 1024 * 1024,
    });
    expect(result.status).toBe(0);
    expect(parseGitLog(result.stdout)).toEqual(commits);
  });
});
