import { describe, expect, it } from '@jest/globals';
import type { HostChangedFile, HostComparison } from '../../hosts/code-host.js';
import { chooseSyncStrategy, planCompareDelta, type SyncStrategyFacts } from './delta-plan.js';

const BASE = 'b'.repeat(40);
const HEAD = 'c'.repeat(40);

function file(overrides: Partial<HostChangedFile> & { path: string }): HostChangedFile {
  return {
    previousPath: null,
    status: 'modified',
    sha: 'd'.repeat(40),
    mode: null,
    previousMode: null,
    additions: 1,
    deletions: 1,
    patchAvailable: true,
    ...overrides,
  };
}

function comparison(overrides: Partial<HostComparison> = {}): HostComparison {
  return {
    status: 'ahead',
    aheadBy: 2,
    behindBy: 0,
    baseSha: BASE,
    headSha: HEAD,
    mergeBaseSha: BASE,
    commits: [],
    files: [file({ path: 'src/app.ts' })],
    truncated: { commits: false, files: false, timedOut: false, patches: false },
    ...overrides,
  };
}

const OPTIONS = { canFetchByPath: true, expectedBaseSha: BASE, expectedHeadSha: HEAD };

function manyFiles(count: number): HostChangedFile[] {
  return Array.from({ length: count }, (_, i) => file({ path: `f${i}` }));
}

describe('planCompareDelta', () => {
  it('turns a GitHub comparison into changes, with modes inherited where GitHub gives none', () => {
    const plan = planCompareDelta(
      comparison({
        files: [
          file({ path: 'a.txt', status: 'added', sha: '1'.repeat(40) }),
          file({ path: 'b.txt', status: 'modified', sha: '2'.repeat(40) }),
          file({ path: 'gone.txt', status: 'removed', sha: null }),
          file({
            path: 'new/name.txt',
            previousPath: 'old/name.txt',
            status: 'renamed',
            sha: '3'.repeat(40),
          }),
          file({ path: 'copy.txt', previousPath: 'b.txt', status: 'copied', sha: '2'.repeat(40) }),
        ],
      }),
      'github',
      OPTIONS,
    );
    expect(plan).toEqual({
      ok: true,
      inferredModes: 4,
      changes: [
        {
          op: 'write',
          path: 'a.txt',
          source: null,
          removeSource: false,
          content: { from: 'blob', sha: '1'.repeat(40) },
          mode: 'inherit',
        },
        {
          op: 'write',
          path: 'b.txt',
          source: null,
          removeSource: false,
          content: { from: 'blob', sha: '2'.repeat(40) },
          mode: 'inherit',
        },
        { op: 'remove', path: 'gone.txt' },
        {
          op: 'write',
          path: 'new/name.txt',
          source: 'old/name.txt',
          removeSource: true,
          content: { from: 'blob', sha: '3'.repeat(40) },
          mode: 'inherit',
        },
        {
          op: 'write',
          path: 'copy.txt',
          source: 'b.txt',
          removeSource: false,
          content: { from: 'blob', sha: '2'.repeat(40) },
          mode: 'inherit',
        },
      ],
    });
  });

  it('reads GitLab content by path at the head, and reuses bytes of pure renames and mode changes', () => {
    const plan = planCompareDelta(
      comparison({
        files: [
          file({ path: 'tool.sh', sha: null, mode: '100755', previousMode: '100644', additions: 3 }),
          file({
            path: 'moved.txt',
            previousPath: 'orig.txt',
            status: 'renamed',
            sha: null,
            mode: '100644',
            previousMode: '100644',
            additions: 0,
            deletions: 0,
            patchAvailable: false,
          }),
          file({
            path: 'run.sh',
            status: 'changed',
            sha: null,
            mode: '100755',
            previousMode: '100644',
            additions: 0,
            deletions: 0,
            patchAvailable: false,
          }),
          // too_large: no patch, no counts; still fetched whole by path.
          file({
            path: 'huge.json',
            sha: null,
            mode: '100644',
            previousMode: '100644',
            additions: null,
            deletions: null,
            patchAvailable: false,
          }),
        ],
        truncated: { commits: false, files: false, timedOut: false, patches: true },
      }),
      'gitlab',
      OPTIONS,
    );
    expect(plan.ok && plan.changes.map((c) => (c.op === 'write' ? [c.path, c.content, c.mode] : c))).toEqual([
      ['tool.sh', { from: 'path', path: 'tool.sh', ref: HEAD }, '100755'],
      ['moved.txt', { from: 'previous' }, '100644'],
      ['run.sh', { from: 'previous' }, '100755'],
      ['huge.json', { from: 'path', path: 'huge.json', ref: HEAD }, '100644'],
    ]);
    expect(plan.ok && plan.inferredModes).toBe(0);
  });

  const refusals: [string, Parameters<typeof planCompareDelta>, string, RegExp][] = [
    [
      'a range other than synced..remote head',
      [comparison({ baseSha: 'e'.repeat(40) }), 'github', OPTIONS],
      'RANGE_MISMATCH',
      /starts at eeeeeeeeeeee, not at the synced/,
    ],
    [
      'a diverged range (force-push)',
      [comparison({ status: 'diverged', mergeBaseSha: 'f'.repeat(40) }), 'github', OPTIONS],
      'NOT_FAST_FORWARD',
      /as diverged of .*not a fast-forward/,
    ],
    [
      'a range behind the synced revision',
      [comparison({ status: 'behind' }), 'gitlab', OPTIONS],
      'NOT_FAST_FORWARD',
      /as behind of/,
    ],
    [
      'more than 250 commits on GitHub',
      [comparison({ aheadBy: 251 }), 'github', OPTIONS],
      'TOO_MANY_COMMITS',
      /251 commits .* at most 250/,
    ],
    [
      'a cut commit list',
      [
        comparison({ truncated: { commits: true, files: false, timedOut: false, patches: false } }),
        'github',
        OPTIONS,
      ],
      'TOO_MANY_COMMITS',
      /incomplete/,
    ],
    [
      "GitLab's compare_timeout",
      [
        comparison({ truncated: { commits: false, files: true, timedOut: true, patches: false } }),
        'gitlab',
        OPTIONS,
      ],
      'COMPARE_TIMEOUT',
      /compare_timeout/,
    ],
    [
      '300 files on GitHub',
      [comparison({ files: manyFiles(300) }), 'github', OPTIONS],
      'TOO_MANY_FILES',
      /300 files changed: the host lists at most 300/,
    ],
    [
      '1,000 files on GitLab',
      [comparison({ files: manyFiles(1000) }), 'gitlab', OPTIONS],
      'TOO_MANY_FILES',
      /1000 files changed: the host lists at most 1000/,
    ],
    [
      'a cut file list',
      [
        comparison({ truncated: { commits: false, files: true, timedOut: false, patches: false } }),
        'gitlab',
        OPTIONS,
      ],
      'TOO_MANY_FILES',
      /may be cut/,
    ],
    [
      'a submodule change',
      [
        comparison({
          files: [file({ path: 'vendor/lib', sha: null, mode: '160000', previousMode: '160000' })],
        }),
        'gitlab',
        OPTIONS,
      ],
      'SUBMODULE_CHANGE',
      /vendor\/lib is a submodule/,
    ],
    [
      'a .gitattributes change (LFS and filters)',
      [comparison({ files: [file({ path: 'assets/.gitattributes' })] }), 'github', OPTIONS],
      'GITATTRIBUTES_CHANGE',
      /assets\/\.gitattributes changed/,
    ],
    [
      'an unknown mode',
      [comparison({ files: [file({ path: 'x', sha: null, mode: '100664' })] }), 'gitlab', OPTIONS],
      'UNKNOWN_MODE',
      /mode 100664/,
    ],
    [
      'a rename without its source',
      [comparison({ files: [file({ path: 'x', status: 'renamed' })] }), 'github', OPTIONS],
      'UNEXPRESSED_RENAME',
      /x is renamed but the host does not say from where/,
    ],
    [
      "GitHub's mode change without the mode",
      [comparison({ files: [file({ path: 'run.sh', status: 'changed' })] }), 'github', OPTIONS],
      'UNEXPRESSED_MODE_CHANGE',
      /run\.sh changed type or mode/,
    ],
    [
      'content with no blob id and no by-path download (a too_large GitLab diff on a host without it)',
      [
        comparison({
          files: [
            file({ path: 'big.bin', sha: null, mode: '100644', additions: null, patchAvailable: false }),
          ],
        }),
        'gitlab',
        { ...OPTIONS, canFetchByPath: false },
      ],
      'CONTENT_UNAVAILABLE',
      /no blob id for big\.bin/,
    ],
    [
      'a path escaping the snapshot',
      [comparison({ files: [file({ path: 'docs/../../etc/passwd' })] }), 'github', OPTIONS],
      'UNSAFE_PATH',
      /`\.\.` component/,
    ],
    [
      'a .git path',
      [comparison({ files: [file({ path: 'sub/.git/hooks/post-checkout' })] }), 'github', OPTIONS],
      'UNSAFE_PATH',
      /`\.git` component/,
    ],
    [
      'an absolute path',
      [comparison({ files: [file({ path: '/etc/passwd' })] }), 'github', OPTIONS],
      'UNSAFE_PATH',
      /absolute/,
    ],
    [
      'the same path written twice',
      [comparison({ files: [file({ path: 'x' }), file({ path: 'x', status: 'added' })] }), 'github', OPTIONS],
      'CONFLICTING_CHANGES',
      /x is written twice/,
    ],
  ];

  it.each(refusals)('refuses %s', (_name, args, code, reason) => {
    const plan = planCompareDelta(...args);
    expect(plan.ok).toBe(false);
    if (plan.ok) return;
    expect(plan.code).toBe(code);
    expect(plan.reason).toMatch(reason);
  });

  it('accepts 299 files on GitHub and a removal plus an addition of the same path (type change)', () => {
    expect(planCompareDelta(comparison({ files: manyFiles(299) }), 'github', OPTIONS).ok).toBe(true);
    const plan = planCompareDelta(
      comparison({
        files: [
          file({ path: 'x', status: 'removed', sha: null, previousMode: '100644' }),
          file({ path: 'x', status: 'added', sha: null, mode: '120000' }),
        ],
      }),
      'gitlab',
      OPTIONS,
    );
    expect(plan.ok).toBe(true);
  });
});

describe('chooseSyncStrategy', () => {
  const facts = (overrides: Partial<SyncStrategyFacts>): SyncStrategyFacts => ({
    syncStrategy: 'AUTO',
    hasUsableClone: false,
    hasPreviousArchive: true,
    hostApiAvailable: true,
    ...overrides,
  });

  it.each<[string, Partial<SyncStrategyFacts>, string, RegExp]>([
    ['FULL always clones', { syncStrategy: 'FULL', hasUsableClone: true }, 'clone', /forces a full clone/],
    ['AUTO fetches into a cached clone', { hasUsableClone: true }, 'fetch', /cached clone present/],
    [
      'AUTO applies a delta without a clone',
      {},
      'compare-delta',
      /previous archive present and the host can compare/,
    ],
    [
      'AUTO clones without a previous archive',
      { hasPreviousArchive: false },
      'clone',
      /no archive of the previous revision/,
    ],
    ['AUTO clones without a host API', { hostApiAvailable: false }, 'clone', /no compare API/],
    [
      'AUTO clones after a refused delta',
      { compareDeltaRefused: 'tree mismatch' },
      'clone',
      /no cached clone on this worker; compare-delta refused: tree mismatch/,
    ],
    ['FETCH never applies a delta', { syncStrategy: 'FETCH' }, 'clone', /syncs with git; no cached clone/],
    [
      'FETCH fetches into a cached clone',
      { syncStrategy: 'FETCH', hasUsableClone: true },
      'fetch',
      /cached clone present/,
    ],
    [
      'COMPARE prefers the delta over a clone',
      { syncStrategy: 'COMPARE', hasUsableClone: true },
      'compare-delta',
      /prefers compare-delta/,
    ],
    [
      'COMPARE falls back to fetch when refused',
      { syncStrategy: 'COMPARE', hasUsableClone: true, compareDeltaRefused: 'too many files' },
      'fetch',
      /compare-delta refused: too many files; cached clone present/,
    ],
  ])('%s', (_name, overrides, strategy, reason) => {
    const choice = chooseSyncStrategy(facts(overrides));
    expect(choice.strategy).toBe(strategy);
    expect(choice.reason).toMatch(reason);
  });
});
