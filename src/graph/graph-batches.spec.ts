import { describe, expect, it } from '@jest/globals';
import type { FileChange, ParsedCommit } from './git-log-parser.js';
import {
  type BranchMember,
  MAX_STORED_MESSAGE_CHARS,
  inBatches,
  messageSubject,
  personKey,
  planBranchUpdate,
  planGraphWrites,
} from './graph-batches.js';

const sha = (n: number) => n.toString(16).padStart(40, '0');

function commit(
  n: number,
  parents: number[],
  files: Partial<FileChange>[] = [],
  message = `commit ${n}`,
): ParsedCommit {
  return {
    sha: sha(n),
    parents: parents.map(sha),
    author: { name: 'Ann', email: ' Ann@Example.COM ', date: '2024-01-01T10:00:00+01:00' },
    committer: { name: 'Ci Bot', email: 'ci@example.com', date: '2024-01-02T10:00:00Z' },
    message,
    files: files.map((f, i) => ({
      status: 'M',
      similarity: null,
      path: `file-${i}.txt`,
      previousPath: null,
      additions: 1,
      deletions: 0,
      binary: false,
      ...f,
    })),
  };
}

describe('inBatches', () => {
  it('cuts rows into batches of at most the given size', () => {
    const rows = Array.from({ length: 1201 }, (_, i) => i);
    expect(inBatches(rows, 500).map((b) => b.length)).toEqual([500, 500, 201]);
    expect(inBatches(rows, 500).flat()).toEqual(rows);
    expect(inBatches([], 500)).toEqual([]);
    expect(() => inBatches(rows, 0)).toThrow(RangeError);
  });
});

describe('planGraphWrites', () => {
  it('makes one row per commit, parent, authorship and changed file', () => {
    const merge = commit(3, [1, 2], [{ status: 'R', similarity: 90, path: 'b.ts', previousPath: 'a.ts' }]);
    const plan = planGraphWrites([commit(1, []), commit(2, [1]), merge]);
    expect(plan.commits.flat().map((r) => r.sha)).toEqual([sha(1), sha(2), sha(3)]);
    expect(plan.commits[0]![2]).toEqual({
      sha: sha(3),
      subject: 'commit 3',
      message: 'commit 3',
      authoredAt: '2024-01-01T10:00:00+01:00',
      committedAt: '2024-01-02T10:00:00Z',
      parentCount: 2,
      fileCount: 1,
    });
    expect(plan.parents.flat()).toEqual([
      { sha: sha(2), parentSha: sha(1), index: 0 },
      { sha: sha(3), parentSha: sha(1), index: 0 },
      { sha: sha(3), parentSha: sha(2), index: 1 },
    ]);
    expect(plan.authorship.flat()[0]).toEqual({
      sha: sha(1),
      authorEmail: 'ann@example.com',
      authorName: 'Ann',
      committerEmail: 'ci@example.com',
      committerName: 'Ci Bot',
    });
    expect(plan.changes.flat()).toEqual([
      {
        sha: sha(3),
        path: 'b.ts',
        status: 'R',
        similarity: 90,
        additions: 1,
        deletions: 0,
        binary: false,
        previousPath: 'a.ts',
      },
    ]);
  });

  it('bounds every batch, however many files one commit changes', () => {
    const huge = commit(
      1,
      [],
      Array.from({ length: 1234 }, (_, i) => ({ path: `f/${i}` })),
    );
    const plan = planGraphWrites([huge, commit(2, [1])], 500);
    expect(plan.changes.map((b) => b.length)).toEqual([500, 500, 234]);
    expect(plan.commits.map((b) => b.length)).toEqual([2]);
    expect(plan.changes.flat()).toHaveLength(1234);
  });

  it('writes a commit listed twice only once, and an empty commit without changes', () => {
    const plan = planGraphWrites([commit(1, []), commit(1, [])]);
    expect(plan.commits.flat()).toHaveLength(1);
    expect(plan.changes).toEqual([]);
  });

  it('keeps the subject whole and cuts very long messages', () => {
    const long = `Subject line\r\n\n${'x'.repeat(MAX_STORED_MESSAGE_CHARS * 2)}`;
    const [row] = planGraphWrites([commit(1, [], [], long)]).commits.flat();
    expect(row!.subject).toBe('Subject line');
    expect(row!.message).toHaveLength(MAX_STORED_MESSAGE_CHARS);
    expect(messageSubject('only one line')).toBe('only one line');
  });
});

describe('personKey', () => {
  it('is the email, trimmed and lowercased, or the name when there is no email', () => {
    expect(personKey(' Bob@Example.COM ', 'Bob')).toBe('bob@example.com');
    expect(personKey('', 'Ghost Writer')).toBe('unknown-email:Ghost Writer');
  });
});

describe('planBranchUpdate', () => {
  const members = (...entries: [number, number[]][]): BranchMember[] =>
    entries.map(([n, parents]) => ({ sha: sha(n), parents: parents.map(sha) }));

  it('moves HEAD and marks nothing on a fast-forward', () => {
    expect(
      planBranchUpdate({
        headSha: sha(3),
        forcePushed: false,
        members: members([1, []], [2, [1]]),
        newCommits: [],
      }),
    ).toEqual({ headSha: sha(3), noLongerOnBranch: [] });
  });

  it('marks the commits only the old head reached after a force-push', () => {
    // 1 - 2 - 3 - 4 (old head)      rewritten as      1 - 2 - 5 (new head)
    const plan = planBranchUpdate({
      headSha: sha(5),
      forcePushed: true,
      members: members([1, []], [2, [1]], [3, [2]], [4, [3]]),
      newCommits: [commit(5, [2])],
    });
    expect(plan).toEqual({ headSha: sha(5), noLongerOnBranch: [sha(3), sha(4)] });
  });

  it('keeps commits still reachable through any parent of a merge', () => {
    // old: 1 - 2 - 4 (merge of 3) - 6      new head 7 merges 3 on top of 2: only 4 and 6 leave
    //           \- 3 -/
    const plan = planBranchUpdate({
      headSha: sha(7),
      forcePushed: true,
      members: members([1, []], [2, [1]], [3, [2]], [4, [2, 3]], [6, [4]]),
      newCommits: [commit(7, [2, 3])],
    });
    expect(plan.noLongerOnBranch).toEqual([sha(4), sha(6)]);
  });

  it('marks everything above an older commit the branch was reset to', () => {
    const plan = planBranchUpdate({
      headSha: sha(2),
      forcePushed: true,
      members: members([1, []], [2, [1]], [3, [2]]),
      newCommits: [],
    });
    expect(plan.noLongerOnBranch).toEqual([sha(3)]);
  });

  it('marks the whole old history when the new one shares nothing with it', () => {
    const plan = planBranchUpdate({
      headSha: sha(9),
      forcePushed: true,
      members: members([1, []], [2, [1]]),
      newCommits: [commit(8, []), commit(9, [8])],
    });
    expect(plan.noLongerOnBranch).toEqual([sha(1), sha(2)]);
  });
});
