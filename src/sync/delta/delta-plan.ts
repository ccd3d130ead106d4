/**
 * Whether a code host's comparison can be applied to the previous snapshot (compare-delta), and how the
 * branch is brought to its new head at all (fetch, compare-delta or clone). Pure functions: the engine
 * gathers the facts, these decide and say why.
 *
 * Compare-delta is an optimisation with a proof at the end (the tree id of the result must equal the
 * commit's), so every rule here refuses as soon as the host's answer could be incomplete or could not
 * express the change; refusing only costs a git fetch or clone.
 */
import type { SyncStrategy } from '../../repositories/repositories.types.js';
import type { HostChangedFile, HostComparison, HostProvider } from '../../hosts/code-host.js';
import { isDotGitName, type GitBlobMode } from './git-tree-hash.js';

/** GitHub's compare lists at most this many commits without paging. */
export const GITHUB_COMPARE_COMMIT_LIMIT = 250;
/** GitHub's compare lists at most this many files, and does not say when it stopped there. */
export const GITHUB_COMPARE_FILE_LIMIT = 300;
/** GitLab's default `diff_max_files`: its compare stops listing diffs there. */
export const GITLAB_COMPARE_FILE_LIMIT = 1000;

const GIT_BLOB_MODES: ReadonlySet<string> = new Set<GitBlobMode>(['100644', '100755', '120000']);
const SUBMODULE_MODE = '160000';

/** Where the new content of a path comes from. */
export type DeltaContent =
  /** Download the blob by its id (the host gave one: GitHub). */
  | { from: 'blob'; sha: string }
  /** Download the file at `path` as of commit `ref` (no blob id from the host: GitLab's files API). */
  | { from: 'path'; path: string; ref: string }
  /** Unchanged bytes: those of `source` (a rename or copy) or of the path itself (a mode change). */
  | { from: 'previous' };

/**
 * The mode to write: given by the host, or `inherit` when the host does not say (GitHub): the mode the
 * source (or the path itself) had before, 100644 for a new path. A wrong guess fails the tree proof.
 */
export type DeltaMode = GitBlobMode | 'inherit';

/** One step of a validated delta; the applier removes everything first, then writes. */
export type DeltaChange =
  | { op: 'remove'; path: string }
  | {
      op: 'write';
      path: string;
      /** The rename or copy source, read before anything is changed; null otherwise. */
      source: string | null;
      /** Whether `source` is removed (rename) or kept (copy). */
      removeSource: boolean;
      content: DeltaContent;
      mode: DeltaMode;
    };

/** Why a comparison cannot be applied as a delta. */
export type DeltaRefusalCode =
  | 'RANGE_MISMATCH'
  | 'NOT_FAST_FORWARD'
  | 'TOO_MANY_COMMITS'
  | 'COMPARE_TIMEOUT'
  | 'TOO_MANY_FILES'
  | 'SUBMODULE_CHANGE'
  | 'GITATTRIBUTES_CHANGE'
  | 'UNKNOWN_MODE'
  | 'UNEXPRESSED_RENAME'
  | 'UNEXPRESSED_MODE_CHANGE'
  | 'CONTENT_UNAVAILABLE'
  | 'UNSAFE_PATH'
  | 'CONFLICTING_CHANGES';

export type CompareDeltaPlan =
  | {
      ok: true;
      changes: DeltaChange[];
      /** Writes whose mode the host did not give (`inherit`): only the tree proof confirms them. */
      inferredModes: number;
    }
  | { ok: false; code: DeltaRefusalCode; reason: string };

export interface CompareDeltaPlanOptions {
  /** The host serves a file's content by path at a commit (`CodeHost.getFileAtRef`). */
  canFetchByPath: boolean;
  /** The SHA the previous snapshot is at; the comparison must start there. */
  expectedBaseSha?: string;
  /** The SHA the sync is going to; the comparison must end there. */
  expectedHeadSha?: string;
}

type Refusal = Extract<CompareDeltaPlan, { ok: false }>;

function refuse(code: DeltaRefusalCode, reason: string): Refusal {
  return { ok: false, code, reason };
}

const short = (sha: string): string => sha.slice(0, 12);

/** The problem with a path from the host's answer, or null when it is a plain relative path in the tree. */
export function unsafePathProblem(path: string): string | null {
  if (path === '') return 'the path is empty';
  if (path.includes('\0')) return 'the path contains a NUL byte';
  if (path.startsWith('/')) return 'the path is absolute';
  for (const component of path.split('/')) {
    if (component === '') return 'the path has an empty component (`//` or a trailing `/`)';
    if (component === '.' || component === '..') return `the path has a \`${component}\` component`;
    if (isDotGitName(component)) return 'the path has a `.git` component';
  }
  return null;
}

function isGitAttributes(path: string | null): boolean {
  return path !== null && (path === '.gitattributes' || path.endsWith('/.gitattributes'));
}

/** Decides whether `comparison` can be applied to the base snapshot, and as which changes. */
export function planCompareDelta(
  comparison: HostComparison,
  provider: HostProvider,
  options: CompareDeltaPlanOptions,
): CompareDeltaPlan {
  const { baseSha, headSha } = comparison;
  if (options.expectedBaseSha !== undefined && baseSha !== options.expectedBaseSha) {
    return refuse(
      'RANGE_MISMATCH',
      `the comparison starts at ${short(baseSha)}, not at the synced ${short(options.expectedBaseSha)}`,
    );
  }
  if (options.expectedHeadSha !== undefined && headSha !== options.expectedHeadSha) {
    return refuse(
      'RANGE_MISMATCH',
      `the comparison ends at ${short(headSha)}, not at the remote head ${short(options.expectedHeadSha)}`,
    );
  }
  if (
    comparison.status !== 'ahead' ||
    (comparison.mergeBaseSha !== null && comparison.mergeBaseSha !== baseSha)
  ) {
    return refuse(
      'NOT_FAST_FORWARD',
      `the host reports ${short(headSha)} as ${comparison.status} of ${short(baseSha)}, not a fast-forward ` +
        '(force-push or rewritten history): the files changed since their merge base do not lead from the old snapshot to the new one',
    );
  }
  if (
    comparison.truncated.commits ||
    (provider === 'github' && comparison.aheadBy > GITHUB_COMPARE_COMMIT_LIMIT)
  ) {
    return refuse(
      'TOO_MANY_COMMITS',
      `${comparison.aheadBy} commits in the range: the host lists at most ${GITHUB_COMPARE_COMMIT_LIMIT} without paging, so its answer is incomplete`,
    );
  }
  if (comparison.truncated.timedOut) {
    return refuse(
      'COMPARE_TIMEOUT',
      'the host gave up collecting the diff (GitLab compare_timeout): its file list is incomplete',
    );
  }
  const fileLimit = provider === 'github' ? GITHUB_COMPARE_FILE_LIMIT : GITLAB_COMPARE_FILE_LIMIT;
  if (comparison.truncated.files || comparison.files.length >= fileLimit) {
    return refuse(
      'TOO_MANY_FILES',
      `${comparison.files.length} files changed: the host lists at most ${fileLimit}, so its file list may be cut`,
    );
  }
  // A cut patch (too_large, collapsed; truncated.patches) alone is no reason: the delta downloads whole
  // contents by blob id or by path, never from patches.

  const changes: DeltaChange[] = [];
  const removed = new Set<string>();
  const written = new Set<string>();
  let inferredModes = 0;
  for (const file of comparison.files) {
    const step = changeFor(file, headSha, options);
    if (!step.ok) return step;
    const { change } = step;
    if (change.op === 'remove' || (change.source !== null && change.removeSource)) {
      const path = change.op === 'remove' ? change.path : change.source!;
      if (removed.has(path))
        return refuse('CONFLICTING_CHANGES', `${path} is removed twice in the host's answer`);
      removed.add(path);
    }
    if (change.op === 'write') {
      if (written.has(change.path)) {
        return refuse('CONFLICTING_CHANGES', `${change.path} is written twice in the host's answer`);
      }
      written.add(change.path);
      if (change.mode === 'inherit') inferredModes++;
    }
    changes.push(change);
  }
  return { ok: true, changes, inferredModes };
}

function changeFor(
  file: HostChangedFile,
  headSha: string,
  options: CompareDeltaPlanOptions,
): { ok: true; change: DeltaChange } | Refusal {
  for (const path of [file.path, file.previousPath]) {
    if (path === null) continue;
    const problem = unsafePathProblem(path);
    if (problem) return refuse('UNSAFE_PATH', `the host named the path ${JSON.stringify(path)}: ${problem}`);
  }
  if (file.mode === SUBMODULE_MODE || file.previousMode === SUBMODULE_MODE) {
    return refuse(
      'SUBMODULE_CHANGE',
      `${file.path} is a submodule (mode 160000): its commit is not in the host's file contents`,
    );
  }
  if (isGitAttributes(file.path) || isGitAttributes(file.previousPath)) {
    return refuse(
      'GITATTRIBUTES_CHANGE',
      `${file.path} changed: attributes decide LFS and other filters, so the change is checked out with git`,
    );
  }
  for (const mode of [file.mode, file.previousMode]) {
    if (mode !== null && !GIT_BLOB_MODES.has(mode)) {
      return refuse('UNKNOWN_MODE', `${file.path} has the mode ${mode}, which a snapshot cannot hold`);
    }
  }
  if (file.status === 'removed') return { ok: true, change: { op: 'remove', path: file.path } };

  const moved = file.status === 'renamed' || file.status === 'copied';
  if (moved && file.previousPath === null) {
    return refuse(
      'UNEXPRESSED_RENAME',
      `${file.path} is ${file.status} but the host does not say from where`,
    );
  }
  if (file.status === 'changed' && file.mode === null) {
    return refuse(
      'UNEXPRESSED_MODE_CHANGE',
      `${file.path} changed type or mode and the host does not say to which (GitHub's "changed")`,
    );
  }
  const source = moved ? file.previousPath : null;
  const mode: DeltaMode = (file.mode as GitBlobMode | null) ?? 'inherit';
  // Unchanged bytes: a pure rename or a mode change with no lines changed and no patch (GitLab's answer
  // for those). Anything else is downloaded.
  const unchangedBytes =
    (file.status === 'renamed' || file.status === 'changed') &&
    !file.patchAvailable &&
    file.additions === 0 &&
    file.deletions === 0;
  let content: DeltaContent;
  if (file.sha !== null) content = { from: 'blob', sha: file.sha };
  else if (unchangedBytes) content = { from: 'previous' };
  else if (options.canFetchByPath) content = { from: 'path', path: file.path, ref: headSha };
  else {
    return refuse(
      'CONTENT_UNAVAILABLE',
      `the host gave no blob id for ${file.path} and cannot serve files by path, so its new content cannot be downloaded`,
    );
  }
  return {
    ok: true,
    change: { op: 'write', path: file.path, source, removeSource: file.status === 'renamed', content, mode },
  };
}

/** How a branch is brought to its new head. */
export type SyncStrategyChoice = 'fetch' | 'compare-delta' | 'clone';

export interface SyncStrategyFacts {
  /** The repository's setting. */
  syncStrategy: SyncStrategy;
  /** This worker holds a cached clone of the repository that git can fetch into. */
  hasUsableClone: boolean;
  /** The archive of the branch's synced revision is stored (there is a synced revision at all). */
  hasPreviousArchive: boolean;
  /** The repository's host has a compare API we can call for it (GitHub, GitLab; not plain git). */
  hostApiAvailable: boolean;
  /** Compare-delta was tried for this range and refused or failed its proof: the reason. */
  compareDeltaRefused?: string;
}

/** Chooses fetch, compare-delta or clone for a branch that is behind its remote head, with the reason. */
export function chooseSyncStrategy(facts: SyncStrategyFacts): {
  strategy: SyncStrategyChoice;
  reason: string;
} {
  if (facts.syncStrategy === 'FULL')
    return { strategy: 'clone', reason: 'the repository forces a full clone' };
  const git = (why: string): { strategy: SyncStrategyChoice; reason: string } =>
    facts.hasUsableClone
      ? { strategy: 'fetch', reason: `${why}; cached clone present` }
      : { strategy: 'clone', reason: `${why}; no cached clone on this worker` };
  if (facts.syncStrategy === 'FETCH') return git('the repository syncs with git');
  const deltaBlocker =
    facts.compareDeltaRefused !== undefined
      ? `compare-delta refused: ${facts.compareDeltaRefused}`
      : !facts.hasPreviousArchive
        ? 'no archive of the previous revision to apply a delta to'
        : !facts.hostApiAvailable
          ? "no compare API for this repository's host"
          : null;
  // COMPARE prefers the delta even over a cached clone; AUTO only when there is no clone to fetch into.
  if (facts.syncStrategy === 'COMPARE') {
    if (deltaBlocker === null) {
      return {
        strategy: 'compare-delta',
        reason: 'the repository prefers compare-delta; previous archive present',
      };
    }
    return git(deltaBlocker);
  }
  if (facts.hasUsableClone) {
    return {
      strategy: 'fetch',
      reason:
        facts.compareDeltaRefused !== undefined
          ? `compare-delta refused: ${facts.compareDeltaRefused}; cached clone present`
          : 'cached clone present',
    };
  }
  if (deltaBlocker === null) {
    return {
      strategy: 'compare-delta',
      reason: 'no cached clone on this worker; previous archive present and the host can compare',
    };
  }
  return { strategy: 'clone', reason: `no cached clone on this worker; ${deltaBlocker}` };
}
