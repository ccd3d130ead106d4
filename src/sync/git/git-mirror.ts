/**
 * The sync engine's git steps over a bare, blobless partial clone.
 *
 * Layout of a git dir (inside a workspace, see WorkspaceCache):
 *   <gitDir>/                                bare repository, `extensions.partialClone = origin`
 *     config                                 remote.origin.url (never with credentials), promisor settings,
 *                                            one `+refs/heads/<b>:refs/remotes/origin/<b>` fetch refspec
 *                                            per tracked branch, so branches share objects
 *     refs/remotes/origin/<branch>           fetched head of each tracked branch (full history, no blobs)
 *     refs/reposync/snapshots/<key>          commit last checked out into one snapshot dir (keeps it from gc)
 *     reposync/index/<key>                   index file of that snapshot dir (GIT_INDEX_FILE)
 *     info/attributes                        disables eol/filter/ident conversion so snapshots equal the tree
 *     .reposync-ready                        completion marker (WorkspaceCache contract)
 * A snapshot dir holds exactly the files of one commit and no `.git`. The clone is blobless; incremental
 * fetches bring the new commits' blobs, and any other blob a checkout needs is fetched lazily (in one batch
 * per checkout) from the promisor remote, which is why checkouts take credentials too.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { markReady } from '../workspace/workspace-cache.js';
import {
  GitAbortedError,
  GitCommandFailedError,
  GitInvalidArgumentError,
  GitRefNotFoundError,
} from './git-errors.js';
import { hasBlobContent, parseCatFileBatch, parseRawTreeDiff, type TreeChange } from './tree-changes.js';
import type { GitCredentials, GitRunner, GitRunOptions } from './git-runner.js';
import { settleAll } from '../settle-all.js';

export interface GitMirrorTimeouts {
  /** `ls-remote` (one round trip). */
  lsRemoteMs: number;
  /** A whole initial clone. */
  cloneMs: number;
  /** An incremental fetch of one branch. */
  fetchMs: number;
  /** Checking out a snapshot, including the lazy blob download. */
  checkoutMs: number;
  /** Local commands (rev-parse, merge-base, config...). */
  localMs: number;
}

export interface GitMirrorOptions {
  runner: GitRunner;
  /** Per-step time budgets; unset ones use the runner's default. */
  timeouts?: Partial<GitMirrorTimeouts>;
  log?: (msg: string, fields?: object) => void;
}

export interface RemoteHeads {
  /** Target of the remote HEAD symref (e.g. `refs/heads/main`), null when the remote does not say. */
  headSymref: string | null;
  /** Default branch name derived from headSymref (e.g. `main`). */
  defaultBranch: string | null;
  /** Branch name (without `refs/heads/`) to commit SHA. */
  branches: Map<string, string>;
}

export interface TreeChangeLimits {
  /** More changed paths (directories included) than this: no changes returned. */
  maxChanges: number;
  /** More bytes of new content than this: no changes returned. */
  maxBytes: number;
}

export interface FetchResult {
  /** Commit the branch points to after the fetch. */
  sha: string;
  /** Size of the packs received (0 when already up to date). */
  bytesFetched: number;
}

/** The arguments and options of git commands that work on one snapshot dir with its own index. */
interface SnapshotWorktree {
  gitDir: string;
  snapshotDir: string;
  indexFile: string;
  /** `refs/reposync/snapshots/<key>`: the commit the dir last held. */
  ref: string;
  args: string[];
  options: GitRunOptions;
}

export interface CheckoutSnapshotOptions {
  /** For blobs the clone lacks. */
  credentials?: GitCredentials;
  /** The snapshot's checks, started earlier (beside the fetch); run here when not given. */
  inspection?: Promise<SnapshotInspection>;
  /** false: the changed paths are not counted (filesChanged null), the caller knows them. */
  countChanges?: boolean;
}

/** The changes between two commits' trees, and the new commit's committer time. */
export interface TreeChanges {
  changes: TreeChange[];
  /** Changed paths other than directories, as changedPathCount counts them. */
  filesChanged: number;
  commitTime: Date;
  /** The new commit's parents. */
  parents: string[];
}

/** Whether a snapshot dir can be updated in place (see GitMirror.inspectSnapshot). */
export interface SnapshotInspection {
  /** The commit the dir last held, null before its first checkout. */
  previous: string | null;
  /** Why it cannot be updated in place; null when it can. */
  problem: string | null;
}

/**
 * Exit codes that mean "not as expected" (and local failures: a damaged index) send a snapshot down the
 * full checkout. Credentials, network, timeouts propagate: the full way would fail the same.
 */
function problemOf(error: unknown): string {
  if (!(error instanceof GitCommandFailedError)) throw error;
  return error.message;
}

// Snapshots must be byte-exact copies of the tree: highest-precedence attributes switch off every
// checkout conversion a repository's own .gitattributes could ask for (eol, smudge filters, $Id$...).
const EXACT_CHECKOUT_ATTRIBUTES = '* -text -eol -ident -filter -working-tree-encoding\n';
const OBJECT_ID_PATTERN = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Git operations of the sync engine: ls-remote, partial clone, single-branch fetch, snapshot checkout. */
export class GitMirror {
  private readonly runner: GitRunner;
  private readonly timeouts: Partial<GitMirrorTimeouts>;
  private readonly log: (msg: string, fields?: object) => void;
  /**
   * `remote.origin.url` and fetch refspecs of the clones this process made or read, by git dir: a fetch
   * then needs no git run to read them first. Only this process writes a workspace's config.
   */
  private readonly remotes = new Map<string, { url: string | null; refspecs: string[] }>();

  constructor(options: GitMirrorOptions) {
    this.runner = options.runner;
    this.timeouts = options.timeouts ?? {};
    this.log = options.log ?? (() => undefined);
  }

  /** Lists the remote's branches and where its HEAD points (empty map for an empty repository). */
  async lsRemote(url: string, credentials?: GitCredentials): Promise<RemoteHeads> {
    assertSafeUrl(url);
    const { stdout } = await this.runner.run(['ls-remote', '--symref', url, 'HEAD', 'refs/heads/*'], {
      credentials,
      timeoutMs: this.timeouts.lsRemoteMs,
    });
    return parseLsRemote(stdout);
  }

  /**
   * Creates a fresh blobless bare clone of one branch (full history) in `gitDir`, replacing whatever
   * was there, and marks it ready. The stored remote URL carries no credentials.
   */
  async clone(
    url: string,
    gitDir: string,
    branch: string,
    credentials?: GitCredentials,
  ): Promise<FetchResult> {
    assertSafeUrl(url);
    assertBranchName(branch);
    this.remotes.delete(gitDir);
    await rm(gitDir, { recursive: true, force: true });
    await mkdir(gitDir, { recursive: true });
    const local = this.localOptions();
    // No template: no sample hooks or description file, just the repository.
    await this.runner.run(['init', '--quiet', '--bare', '--template=', gitDir], local);
    for (const [key, value] of [
      // extensions.* need repository format version 1; together they make origin a promisor remote
      // from which missing blobs are fetched on demand.
      ['core.repositoryformatversion', '1'],
      ['extensions.partialClone', 'origin'],
      ['remote.origin.url', url],
      ['remote.origin.promisor', 'true'],
      ['remote.origin.partialclonefilter', 'blob:none'],
    ] as const) {
      await this.runner.run(['--git-dir', gitDir, 'config', key, value], local);
    }
    await writeExactCheckoutAttributes(gitDir);
    const remote = { url, refspecs: [] };
    this.remotes.set(gitDir, remote);
    const result = await this.fetchBranch(
      gitDir,
      branch,
      remote.refspecs,
      credentials,
      this.timeouts.cloneMs,
      'blob:none',
    );
    await markReady(gitDir);
    return result;
  }

  /**
   * Fetches one branch into an existing clone (force-pushes included) and reports the bytes received and
   * the branch's new head. A branch the remote does not have (deleted, or an empty repository) fails with
   * GitRemoteRefNotFoundError. Does not repack: call collectGarbage() once the clone is not busy.
   */
  async fetch(
    gitDir: string,
    url: string,
    branch: string,
    credentials?: GitCredentials,
  ): Promise<FetchResult> {
    assertSafeUrl(url);
    assertBranchName(branch);
    let remote = this.remotes.get(gitDir);
    if (!remote) {
      // One git run for both settings the fetch depends on.
      const entries = await this.configEntries(gitDir, '^remote\\.origin\\.(url|fetch)$');
      remote = {
        url: entries.get('remote.origin.url')?.[0] ?? null,
        refspecs: entries.get('remote.origin.fetch') ?? [],
      };
      this.remotes.set(gitDir, remote);
    }
    // The repository may have been renamed or moved on the host since the clone.
    if (remote.url !== url) {
      await this.runner.run(['--git-dir', gitDir, 'config', 'remote.origin.url', url], this.localOptions());
      remote.url = url;
    }
    return this.fetchBranch(gitDir, branch, remote.refspecs, credentials, this.timeouts.fetchMs, null);
  }

  /**
   * Makes `snapshotDir` exactly the tree of `sha` (tracked files only, no `.git`, untracked files
   * removed) and counts the paths that changed since the commit this dir held before (0 the first time).
   *
   * Two ways there, with the same guarantee once it returns:
   * - In place, when the dir held a commit before and its index is there. The snapshot is first checked
   *   to be exactly that commit (inspectSnapshot: index equal to its tree, every indexed path on disk
   *   matching the index, untracked files removed); then a two-way merge writes only the paths that
   *   differ. Starting from an index equal to the old tree, the merge leaves exactly the new tree.
   * - In full: the first time, and whenever a check or the merge fails. A one-way reset to the commit
   *   rewrites whatever differs from the index, then untracked files are removed.
   * Both trust git's stat data alike (content is compared when size, times or inode changed, or when the
   * file is as new as the index; a same-size edit that also restores all of them goes unseen by either)
   * and both lstat every tracked path. What the in-place way saves is the reset's per-path work and,
   * mostly, time: its checks need no new objects, so they can run before `sha` is even fetched (pass
   * their `inspection`, started beside the fetch). Blobs the clone lacks are fetched by the merge, in one
   * batch.
   */
  async checkoutSnapshot(
    gitDir: string,
    snapshotDir: string,
    sha: string,
    opts: CheckoutSnapshotOptions = {},
  ): Promise<{ filesChanged: number | null }> {
    assertObjectId(sha);
    // The inspection (given, or run here) creates the dirs and writes the clone's attributes first.
    const inspected = await (opts.inspection ?? this.inspectSnapshot(gitDir, snapshotDir));
    const snapshot = this.snapshotWorktree(gitDir, snapshotDir, opts.credentials);
    const previous = inspected.previous;
    const countChanges = (): Promise<number | null> =>
      opts.countChanges === false
        ? Promise.resolve(null)
        : previous !== null && previous !== sha
          ? this.changedPathCount(gitDir, previous, sha)
          : Promise.resolve(0);

    let filesChanged: number | null = null;
    let merged = false;
    let problem = inspected.problem;
    if (previous !== null && problem === null) {
      [problem, filesChanged] = await settleAll([
        previous === sha
          ? Promise.resolve(null)
          : this.runner
              .run([...snapshot.args, 'read-tree', '-m', '-u', previous, sha], snapshot.options)
              .then(() => null, problemOf),
        countChanges(),
      ]);
      merged = problem === null;
    }
    if (previous !== null && problem !== null) {
      this.log('snapshot not updatable in place; checking it out in full', { snapshotDir, problem });
    }
    if (!merged) {
      // --reset -u: a one-way merge to `sha` that also restores tracked files someone changed or deleted
      // in the snapshot and overwrites untracked files in the way (the index alone is not trusted).
      await this.runner.run([...snapshot.args, 'read-tree', '--reset', '-u', sha], snapshot.options);
      [, filesChanged] = await settleAll([this.cleanSnapshot(snapshot), countChanges()]);
    }
    await this.runner.run(['--git-dir', gitDir, 'update-ref', snapshot.ref, sha], this.localOptions());
    return { filesChanged };
  }

  /**
   * Checks that the snapshot is still exactly the commit it last held, and removes untracked files: the
   * first half of an in-place checkoutSnapshot, which needs no new objects and so can run beside a fetch.
   * `problem` is null when the snapshot can be updated in place, or says why not.
   */
  async inspectSnapshot(gitDir: string, snapshotDir: string): Promise<SnapshotInspection> {
    const snapshot = this.snapshotWorktree(gitDir, snapshotDir);
    await mkdir(dirname(snapshot.indexFile), { recursive: true });
    await mkdir(snapshotDir, { recursive: true });
    // Written on every checkout so clones made before this rule existed get it too.
    await writeExactCheckoutAttributes(gitDir);
    // A commit the ref names that is missing fails diff-index below, which sends the snapshot the full way.
    const previous =
      (await readLooseRef(gitDir, snapshot.ref)) ?? (await this.resolveOptional(gitDir, snapshot.ref));
    if (previous === null) return { previous, problem: 'no commit checked out yet' };
    if (!(await pathExists(snapshot.indexFile))) return { previous, problem: 'the index is missing' };
    const { args, options } = snapshot;
    // All of these only read the index (update-index writes back refreshed stat data, same paths), so
    // they run side by side.
    const [treeProblem, diskProblem, cleanProblem] = await settleAll([
      // Exits 1 unless the index is exactly the old commit's tree, which is what makes the two-way merge
      // exact: an index that is not (a crash between checkout and update-ref, a damaged file) would
      // carry its differences over unchanged paths into the new snapshot.
      this.runner
        .run([...args, 'diff-index', '--cached', '--quiet', previous, '--'], options)
        .then(() => null, problemOf),
      // Exits 1 when a tracked path on disk differs from the index (content, mode, type, missing); also
      // stores fresh stat data for files whose stat changed but not their content, so the next check
      // stays cheap. The paths it lists are not needed, only whether there are any.
      this.runner
        .run([...args, 'update-index', '--refresh'], { ...options, onStdout: () => undefined })
        .then(() => null, problemOf),
      // Untracked files go now, including any in the way of paths the merge adds.
      this.cleanSnapshot(snapshot).then(() => null, problemOf),
    ]);
    return { previous, problem: treeProblem ?? diskProblem ?? cleanProblem };
  }

  /** The git arguments, index file and ref of a snapshot dir. */
  private snapshotWorktree(
    gitDir: string,
    snapshotDir: string,
    credentials?: GitCredentials,
  ): SnapshotWorktree {
    const key = snapshotKeyOf(snapshotDir);
    const indexFile = join(gitDir, 'reposync', 'index', key);
    return {
      gitDir,
      snapshotDir,
      indexFile,
      ref: snapshotRef(snapshotDir),
      args: [
        '--git-dir',
        gitDir,
        '--work-tree',
        snapshotDir,
        '-c',
        'core.bare=false',
        '-c',
        'core.symlinks=true',
        '-c',
        'core.autocrlf=false',
        '-c',
        'checkout.workers=0',
      ],
      options: { credentials, timeoutMs: this.timeouts.checkoutMs, env: { GIT_INDEX_FILE: indexFile } },
    };
  }

  /** Removes everything the snapshot's index does not list, ignored files and nested repositories included. */
  private async cleanSnapshot(snapshot: SnapshotWorktree): Promise<void> {
    await this.runner.run([...snapshot.args, 'clean', '-ffdxq'], snapshot.options);
  }

  /** Number of paths (files, symlinks, submodules) that differ between two commits' trees. */
  async changedPathCount(gitDir: string, from: string, to: string): Promise<number> {
    const { stdout } = await this.runner.run(
      ['--git-dir', gitDir, 'diff-tree', '-r', '-z', '--no-renames', '--name-only', from, to],
      this.localOptions({ maxOutputBytes: 256 * 1024 * 1024 }),
    );
    return stdout.split('\0').filter((path) => path.length > 0).length;
  }

  /** Commit SHA that a revision (SHA or ref, e.g. `refs/remotes/origin/<b>`) names; throws if none. */
  async revParse(gitDir: string, rev: string): Promise<string> {
    const sha = await this.resolveOptional(gitDir, rev);
    if (sha === null) throw new GitRefNotFoundError(`git rev-parse: revision ${rev} not found`);
    return sha;
  }

  /** Whether commit `a` is an ancestor of (or equal to) `b`: false means `b` is not a fast-forward of `a`. */
  async isAncestor(gitDir: string, a: string, b: string, credentials?: GitCredentials): Promise<boolean> {
    assertRevision(a);
    assertRevision(b);
    try {
      await this.runner.run(['--git-dir', gitDir, 'merge-base', '--is-ancestor', a, b], {
        ...this.localOptions(),
        // A commit missing from the clone is fetched from the promisor remote.
        credentials,
      });
      return true;
    } catch (error) {
      if (error instanceof GitCommandFailedError && error.exitCode === 1) return false;
      // `a` unknown here and on the remote (force-pushed away and collected): it cannot be an ancestor.
      // (Auth and network failures of that lazy fetch are classified differently and propagate.)
      if (error instanceof GitCommandFailedError && error.stderr.includes(`Not a valid commit name ${a}`)) {
        return false;
      }
      throw error;
    }
  }

  /** Tree id of a commit (what tree verification compares against). */
  async treeId(gitDir: string, sha: string): Promise<string> {
    assertRevision(sha);
    const { stdout } = await this.runner.run(
      ['--git-dir', gitDir, 'rev-parse', '--verify', `${sha}^{tree}`],
      this.localOptions(),
    );
    return stdout.trim();
  }

  /** Runs `git <args>` in the clone and hands its stdout to `onStdout` as it arrives (for `git log`). */
  async streamOutput(
    gitDir: string,
    args: string[],
    onStdout: (chunk: Buffer) => void,
    credentials?: GitCredentials,
  ): Promise<void> {
    await this.runner.run(['--git-dir', gitDir, ...args], {
      credentials,
      timeoutMs: this.timeouts.cloneMs,
      onStdout,
    });
  }

  /**
   * What changed from `from`'s tree to `to`'s (directories included), with the new content of every added
   * or changed file and symlink; null when that is more than `limits` allow. A blob the clone lacks (a
   * change back to content an older commit had) is fetched from the promisor remote, hence credentials.
   *
   * `to` may be a commit still to come (a fetch under way): git starts at once and reads it when it
   * settles, so only the work itself is left to wait for then. A rejected `to` stops git with that error.
   */
  async treeChanges(
    gitDir: string,
    from: string,
    to: string | Promise<string>,
    limits: TreeChangeLimits,
    credentials?: GitCredentials,
  ): Promise<TreeChanges | null> {
    assertObjectId(from);
    const early = typeof to !== 'string';
    const target = Promise.resolve(to).then((sha) => {
      assertObjectId(sha);
      return sha;
    });
    // Settled below, or git was stopped with its error.
    target.catch(() => undefined);
    // Started before `to` is known, git waits for it besides its own work.
    const waited = (timeoutMs: number | undefined): number | undefined =>
      early && timeoutMs !== undefined && this.timeouts.fetchMs !== undefined
        ? timeoutMs + this.timeouts.fetchMs
        : timeoutMs;
    // cat-file starts beside diff-tree and gets its input once the changes are known: one git start less
    // to wait for. The commit itself comes first in its batch, for its committer time and parents.
    let input!: { give: (ids: string[]) => void; cancel: (reason: unknown) => void };
    const batchInput = new Promise<string>((resolve, reject) => {
      input = {
        give: (ids) => resolve(`${ids.join('\n')}\n`),
        cancel: reject,
      };
    });
    const batch = this.collectOutput(
      ['--git-dir', gitDir, 'cat-file', '--batch'],
      // Each answer's header and newline come on top of the content; a commit is a few KiB.
      limits.maxBytes + limits.maxChanges * 100 + 1024 * 1024,
      { credentials, timeoutMs: waited(this.timeouts.checkoutMs), stdin: batchInput },
    );
    // Settled here or by the caller of cancel(): never left unhandled.
    batch.catch(() => undefined);
    let listed: ListedTreeChanges | null = null;
    try {
      listed = await this.listTreeChanges(
        gitDir,
        from,
        target,
        limits.maxChanges,
        waited(this.timeouts.localMs),
      );
    } catch (error) {
      // diff-tree failed, or `to` was refused: cat-file is stopped with the same error.
      input.cancel(error);
      throw error;
    } finally {
      // Not needed after all (too many changes, or the error above): cat-file is stopped first.
      if (listed === null) {
        input.cancel(new TreeChangesNotNeeded());
        await batch.catch(() => undefined);
      }
    }
    if (listed === null) return null;
    const { changes, withContent, ids } = listed;
    const sha = await target;
    input.give([sha, ...ids]);
    const output = await batch;
    if (output === null) return null;
    const contents = parseCatFileBatch(output, ids, sha);
    const commit = contents.get(sha)!;
    let bytes = 0;
    for (const change of withContent) {
      change.data = contents.get(change.newId)!;
      bytes += change.data.length;
    }
    if (bytes > limits.maxBytes) return null;
    // As changedPathCount counts them (`diff-tree -r`): no directories.
    const filesChanged = changes.filter((c) => c.oldMode !== '040000' && c.newMode !== '040000').length;
    return { changes, filesChanged, commitTime: committerTime(commit, sha), parents: commitParents(commit) };
  }

  /** diff-tree's changes between two commits, and the blobs to read; null beyond `maxChanges`. */
  private async listTreeChanges(
    gitDir: string,
    from: string,
    to: Promise<string>,
    maxChanges: number,
    timeoutMs: number | undefined,
  ): Promise<ListedTreeChanges | null> {
    // `<to> <from>` on stdin: the commit `to` with `from` as its only parent, compared with it (the same
    // records as `diff-tree <from> <to>`), read when `to` is known; --no-commit-id leaves out its id line.
    const diff = await this.collectOutput(
      [
        '--git-dir',
        gitDir,
        'diff-tree',
        '--stdin',
        '--no-commit-id',
        '-r',
        '-t',
        '-z',
        '--raw',
        '--no-renames',
        '--no-abbrev',
      ],
      // A raw record is under 200 bytes plus its path, which git caps at 4096.
      maxChanges * 4400,
      { timeoutMs, stdin: to.then((sha) => `${sha} ${from}\n`) },
    );
    if (diff === null) return null;
    const changes = parseRawTreeDiff(diff);
    if (changes.length > maxChanges) return null;
    const withContent = changes.filter((change) => change.status !== 'D' && hasBlobContent(change.newMode));
    return { changes, withContent, ids: [...new Set(withContent.map((change) => change.newId))] };
  }

  /** The stdout of a git run as bytes, or null (git stopped) once it grows beyond `maxBytes`. */
  private async collectOutput(
    args: string[],
    maxBytes: number,
    options: GitRunOptions,
  ): Promise<Buffer | null> {
    const chunks: Buffer[] = [];
    let size = 0;
    const tooLarge = new AbortController();
    try {
      await this.runner.run(args, {
        ...options,
        signal: tooLarge.signal,
        onStdout: (chunk) => {
          size += chunk.length;
          if (size > maxBytes) tooLarge.abort();
          else chunks.push(chunk);
        },
      });
    } catch (error) {
      if (error instanceof GitAbortedError && tooLarge.signal.aborted) return null;
      throw error;
    }
    return Buffer.concat(chunks, size);
  }

  /** Committer date of a commit (archives use it as every entry's mtime, as `git archive` does). */
  async commitTime(gitDir: string, sha: string): Promise<Date> {
    assertObjectId(sha);
    // The raw commit object only: `git show` may look for other objects (a mailmap), and in a partial
    // clone a missing one would be fetched from the remote, which this local command has no credentials for.
    const { stdout } = await this.runner.run(
      ['--git-dir', gitDir, 'cat-file', 'commit', sha],
      this.localOptions(),
    );
    return committerTime(Buffer.from(stdout, 'utf8'), sha);
  }

  /**
   * `filter` null: no filter, overriding the clone's `blob:none`. An incremental fetch then brings the
   * blobs of the new commits' changes (what a plain `git fetch` brings), which the snapshot update and the
   * archive need at once; the server leaves out whatever the old head already reaches, so unchanged
   * files are not sent. Only the initial clone skips blobs, where that saves the whole history's.
   */
  private async fetchBranch(
    gitDir: string,
    branch: string,
    /** The clone's fetch refspecs; the branch's is added to the config and to this list when missing. */
    refspecs: string[],
    credentials: GitCredentials | undefined,
    timeoutMs: number | undefined,
    filter: 'blob:none' | null,
  ): Promise<FetchResult> {
    const refspec = `+refs/heads/${branch}:refs/remotes/origin/${branch}`;
    if (!refspecs.includes(refspec)) {
      await this.runner.run(
        ['--git-dir', gitDir, 'config', '--add', 'remote.origin.fetch', refspec],
        this.localOptions(),
      );
      refspecs.push(refspec);
    }
    const packsBefore = await packSizes(gitDir);
    await this.runner.run(
      [
        '--git-dir',
        gitDir,
        // Keep every received pack as a pack (no exploding into loose objects) so its size is what
        // came over the wire; gc runs separately below so it cannot repack while we measure.
        '-c',
        'fetch.unpackLimit=1',
        'fetch',
        '--quiet',
        filter === null ? '--no-filter' : `--filter=${filter}`,
        '--no-tags',
        '--no-write-fetch-head',
        '--no-auto-maintenance',
        'origin',
        refspec,
      ],
      { credentials, timeoutMs },
    );
    const packsAfter = await packSizes(gitDir);
    let bytesFetched = 0;
    for (const [name, size] of packsAfter) if (!packsBefore.has(name)) bytesFetched += size;
    const sha =
      (await readLooseRef(gitDir, `refs/remotes/origin/${branch}`)) ??
      (await this.revParse(gitDir, `refs/remotes/origin/${branch}`));
    return { sha, bytesFetched };
  }

  /**
   * Repacks when git thinks it is due (every fetch keeps its pack, see fetchBranch); a failure only costs
   * disk space, so it is logged, not thrown. Safe beside commands that only read the clone's objects.
   */
  async collectGarbage(gitDir: string): Promise<void> {
    // git's own test, without starting git: most syncs add one pack and no loose objects.
    if (!(await garbageCollectionDue(gitDir))) return;
    try {
      // Not detached: a gc outliving the lease could lose its lock files to the next lease's clean-up.
      // No bitmaps: git writes them by default in a bare repository, and fails the whole repack when a
      // pack lacks the blobs a partial clone leaves out ("Packfile doesn't have full closure").
      await this.runner.run(
        [
          '--git-dir',
          gitDir,
          '-c',
          'gc.autoDetach=false',
          '-c',
          'repack.writeBitmaps=false',
          'gc',
          '--auto',
          '--quiet',
        ],
        { timeoutMs: this.timeouts.fetchMs },
      );
    } catch (error) {
      this.log('git gc --auto failed', {
        gitDir,
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }

  private async resolveOptional(gitDir: string, rev: string): Promise<string | null> {
    assertRevision(rev);
    try {
      const { stdout } = await this.runner.run(
        ['--git-dir', gitDir, 'rev-parse', '--verify', '--quiet', `${rev}^{commit}`],
        this.localOptions(),
      );
      return stdout.trim() || null;
    } catch (error) {
      if (error instanceof GitCommandFailedError && error.exitCode === 1) return null;
      throw error;
    }
  }

  /** Values of the config keys matching `pattern`, by key (in file order); empty when none is set. */
  private async configEntries(gitDir: string, pattern: string): Promise<Map<string, string[]>> {
    const entries = new Map<string, string[]>();
    let stdout: string;
    try {
      ({ stdout } = await this.runner.run(
        ['--git-dir', gitDir, 'config', '-z', '--get-regexp', pattern],
        this.localOptions(),
      ));
    } catch (error) {
      // Exit code 1: no key matches.
      if (error instanceof GitCommandFailedError && error.exitCode === 1) return entries;
      throw error;
    }
    // -z: each entry is `<key>\n<value>\0`.
    for (const entry of stdout.split('\0')) {
      const newline = entry.indexOf('\n');
      if (newline < 0) continue;
      const key = entry.slice(0, newline);
      entries.set(key, [...(entries.get(key) ?? []), entry.slice(newline + 1)]);
    }
    return entries;
  }

  private localOptions(extra: GitRunOptions = {}): GitRunOptions {
    return { timeoutMs: this.timeouts.localMs, ...extra };
  }
}

/** Tree changes as diff-tree lists them: all, those with content to read, and their distinct blob ids. */
interface ListedTreeChanges {
  changes: TreeChange[];
  withContent: TreeChange[];
  ids: string[];
}

/** git's changes were not needed after all (too many, diff-tree failed, or the fetch brought no commit to go to). */
export class TreeChangesNotNeeded extends Error {
  constructor() {
    super('the tree changes were not needed');
    this.name = 'TreeChangesNotNeeded';
  }
}

/** The parents of a raw commit object (its `parent` header lines, before the first blank line). */
function commitParents(commit: Buffer): string[] {
  const text = commit.toString('latin1');
  const end = text.indexOf('\n\n');
  const parents: string[] = [];
  for (const line of (end >= 0 ? text.slice(0, end) : text).split('\n')) {
    if (line.startsWith('parent ') && OBJECT_ID_PATTERN.test(line.slice(7))) parents.push(line.slice(7));
  }
  return parents;
}

/** The committer time of a raw commit object. */
function committerTime(commit: Buffer, sha: string): Date {
  const text = commit.toString('utf8');
  const end = text.indexOf('\n\n');
  const header = end >= 0 ? text.slice(0, end) : text;
  const committer = header.split('\n').find((line) => line.startsWith('committer '));
  const seconds = Number(/ (\d+) [+-]\d{4}$/.exec(committer ?? '')?.[1]);
  if (!Number.isSafeInteger(seconds))
    throw new GitCommandFailedError(`git cat-file: no committer time in commit ${sha}`);
  return new Date(seconds * 1000);
}

/** Parses `git ls-remote --symref <url> HEAD refs/heads/*` output. */
export function parseLsRemote(stdout: string): RemoteHeads {
  let headSymref: string | null = null;
  const branches = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const tab = line.indexOf('\t');
    if (tab < 0) continue;
    const left = line.slice(0, tab);
    const ref = line.slice(tab + 1);
    if (left.startsWith('ref: ')) {
      if (ref === 'HEAD') headSymref = left.slice('ref: '.length);
    } else if (ref.startsWith('refs/heads/') && OBJECT_ID_PATTERN.test(left)) {
      branches.set(ref.slice('refs/heads/'.length), left);
    }
  }
  const defaultBranch = headSymref?.startsWith('refs/heads/') ? headSymref.slice('refs/heads/'.length) : null;
  return { headSymref, defaultBranch, branches };
}

/** Throws unless `branch` is a branch name git would accept (and that cannot smuggle in a refspec). */
export function assertBranchName(branch: string): void {
  const problems =
    branch.length === 0 ||
    branch.length > 255 ||
    branch === '@' ||
    branch.startsWith('-') ||
    branch.startsWith('/') ||
    branch.endsWith('/') ||
    branch.endsWith('.') ||
    branch.includes('..') ||
    branch.includes('//') ||
    branch.includes('@{') ||
    // Control characters, space and the characters git reserves for revision and refspec syntax.
    // eslint-disable-next-line no-control-regex
    /[\x00-\x20\x7f~^:?*[\\]/.test(branch) ||
    branch.split('/').some((part) => part.startsWith('.') || part.endsWith('.lock'));
  if (problems) throw new GitInvalidArgumentError(`invalid branch name ${JSON.stringify(branch)}`);
}

/** Throws unless `url` is a remote URL without embedded credentials (they travel via askpass only). */
export function assertSafeUrl(url: string): void {
  if (url.length === 0 || url.startsWith('-') || /[\s\0]/.test(url)) {
    throw new GitInvalidArgumentError('invalid remote URL');
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new GitInvalidArgumentError('invalid remote URL');
    }
    const isHttp = parsed.protocol === 'http:' || parsed.protocol === 'https:';
    if (parsed.password !== '' || (isHttp && parsed.username !== '')) {
      throw new GitInvalidArgumentError('remote URL must not contain credentials; pass them separately');
    }
  }
}

function assertObjectId(sha: string): void {
  if (!OBJECT_ID_PATTERN.test(sha))
    throw new GitInvalidArgumentError(`not a full commit SHA: ${JSON.stringify(sha)}`);
}

function assertRevision(rev: string): void {
  // A leading dash would be read as an option.
  if (rev.length === 0 || rev.startsWith('-') || /[\s\0]/.test(rev)) {
    throw new GitInvalidArgumentError(`invalid revision ${JSON.stringify(rev)}`);
  }
}

function snapshotKeyOf(snapshotDir: string): string {
  return createHash('sha256').update(resolve(snapshotDir)).digest('hex').slice(0, 16);
}

/** The ref (in the clone) naming the commit a snapshot dir holds, moved once a checkout is complete. */
export function snapshotRef(snapshotDir: string): string {
  return `refs/reposync/snapshots/${snapshotKeyOf(snapshotDir)}`;
}

async function writeExactCheckoutAttributes(gitDir: string): Promise<void> {
  await mkdir(join(gitDir, 'info'), { recursive: true });
  await writeFile(join(gitDir, 'info', 'attributes'), EXACT_CHECKOUT_ATTRIBUTES);
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if (typeof error === 'object' && error !== null && 'code' in error && error.code === 'ENOENT')
      return false;
    throw error;
  }
}

/**
 * The object id a loose ref file holds, or null when there is none (packed, or not a plain id): the fetch
 * has just written the branch's ref, and reading the file saves a git run.
 */
async function readLooseRef(gitDir: string, ref: string): Promise<string | null> {
  // Anything unexpected (no such file, a directory) is left to rev-parse, which knows every ref format.
  const content = await readFile(join(gitDir, ref), 'utf8').catch(() => '');
  const id = content.trim();
  return OBJECT_ID_PATTERN.test(id) ? id : null;
}

/** `gc.autoPackLimit` and `gc.auto` as git defaults them (a clone's config sets neither). */
const GC_AUTO_PACK_LIMIT = 50;
const GC_AUTO_LOOSE_OBJECTS = 6700;

/**
 * Whether `git gc --auto` would do anything: more packs than its limit, or more loose objects than its
 * threshold, estimated as git does from the one directory `objects/17` (1/256 of them).
 */
async function garbageCollectionDue(gitDir: string): Promise<boolean> {
  if ((await packSizes(gitDir)).size > GC_AUTO_PACK_LIMIT) return true;
  const sample = await readdir(join(gitDir, 'objects', '17')).catch(() => [] as string[]);
  const loose = sample.filter((name) => /^[0-9a-f]{38}$|^[0-9a-f]{62}$/.test(name)).length;
  return loose > Math.ceil(GC_AUTO_LOOSE_OBJECTS / 256);
}

/** Sizes of the `.pack` files of a git dir by name. */
async function packSizes(gitDir: string): Promise<Map<string, number>> {
  const dir = join(gitDir, 'objects', 'pack');
  const sizes = new Map<string, number>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if (typeof error === 'object' && error !== null && 'code' in error && error.code === 'ENOENT')
      return sizes;
    throw error;
  }
  for (const name of names) {
    if (!name.endsWith('.pack')) continue;
    const info = await stat(join(dir, name)).catch(() => null);
    if (info) sizes.set(name, info.size);
  }
  return sizes;
}
