/**
 * Reads the history of a commit range from ONE `git log` run (see `gitLogArgs`) into plain commits: sha,
 * parents, author and committer, full message, and every changed file with its status, old and new path,
 * and line counts. Pure: no git is run here.
 *
 * Output shape that `gitLogArgs` asks git for (`-z`: every field and path ends with NUL, no quoting):
 *
 *   MARKER \0 sha \0 parents \0 author name \0 email \0 date \0 committer name \0 email \0 date \0 message \0
 *   \0 \n :<old mode> <new mode> <old blob> <new blob> <status><score> \0 path \0 [new path \0] ...
 *   <added>\t<deleted>\t<path> \0  |  <added>\t<deleted>\t \0 old path \0 new path \0  ...
 *
 * The raw section (`--raw`) gives statuses and paths, the numstat section (`--numstat`) the counts of the
 * same files in the same order; binary files count `-`. Nothing is ever split on newlines: a message or a
 * path may contain anything but NUL (git refuses NUL in messages; paths cannot hold it). Header fields are
 * read by position and diff entries by their structure, so a message or path that looks like a marker, a
 * raw line or a numstat line is never mistaken for one.
 */

/** Name, email and ISO-8601 date (with the original offset) of an author or committer. */
export interface GitSignature {
  name: string;
  email: string;
  date: string;
}

/** How a file changed: added, modified, deleted, renamed, copied or type-changed (file, symlink, submodule). */
export type FileChangeStatus = 'A' | 'M' | 'D' | 'R' | 'C' | 'T';

export interface FileChange {
  status: FileChangeStatus;
  /** Similarity in percent for renames and copies; null otherwise. */
  similarity: number | null;
  /** The path after the change (for a deletion: the deleted path). */
  path: string;
  /** The path before a rename or the source of a copy; null otherwise. */
  previousPath: string | null;
  /** Lines added and deleted; null for binary files (git counts them `-`). */
  additions: number | null;
  deletions: number | null;
  binary: boolean;
}

export interface ParsedCommit {
  sha: string;
  /** First parent first; empty for a root commit, two or more for a merge. */
  parents: string[];
  author: GitSignature;
  committer: GitSignature;
  /** The full message as written (subject, blank line, body), without its trailing newlines. */
  message: string;
  /** Changes against the first parent (merges included: `--diff-merges=first-parent`); empty when none. */
  files: FileChange[];
}

/** Thrown when git's output is not what `gitLogArgs` asks for (truncated output, unknown status...). */
export class GitLogParseError extends Error {
  override readonly name = 'GitLogParseError';
}

/** First field of every commit record; never a valid start of a raw or numstat entry. */
export const GIT_LOG_COMMIT_MARKER = '\u001ereposync-commit';

const HEADER_FIELDS = ['%H', '%P', '%an', '%ae', '%aI', '%cn', '%ce', '%cI', '%B'] as const;
const GIT_LOG_FORMAT = `--format=${['%x1ereposync-commit', ...HEADER_FIELDS].join('%x00')}%x00`;
const OBJECT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
const RAW_ENTRY = /^:(\d{6}) (\d{6}) ([0-9a-f]+) ([0-9a-f]+) ([A-Z])(\d*)$/;
const NUMSTAT_ENTRY = /^(\d+|-)\t(\d+|-)\t([\s\S]*)$/;
const STATUSES: ReadonlySet<string> = new Set<FileChangeStatus>(['A', 'M', 'D', 'R', 'C', 'T']);

/** True for a full SHA-1 or SHA-256 object id in lowercase hex. */
export function isObjectId(value: string): boolean {
  return OBJECT_ID.test(value);
}

/**
 * The exact git arguments (after `git`, run in the repository) that list the commits reachable from `toSha`
 * and not from `fromSha` (all of `toSha`'s history when null), oldest first, in the format `GitLogReader`
 * reads. Merges are diffed against their first parent (`--diff-merges=first-parent`): a merge's changes
 * are what it brought into the branch it was made on. History itself is not limited to first parents.
 */
export function gitLogArgs(
  fromSha: string | null,
  toSha: string,
  opts: { contentDiffs?: boolean } = {},
): string[] {
  // Line counts and inexact rename/copy detection read blob contents. In a blobless partial clone that
  // would download every historical blob, so a long first index (contentDiffs: false) records exact
  // renames only and no line counts; incremental ranges, whose blobs the checkout already fetched, get both.
  const contentDiffs = opts.contentDiffs ?? true;
  if (!isObjectId(toSha)) throw new TypeError(`toSha must be a full lowercase commit id, got "${toSha}"`);
  if (fromSha !== null && !isObjectId(fromSha)) {
    throw new TypeError(`fromSha must be a full lowercase commit id or null, got "${fromSha}"`);
  }
  return [
    '-c',
    'core.quotePath=false',
    '-c',
    'log.showSignature=false',
    '-c',
    'diff.renameLimit=2000',
    'log',
    '-z',
    '--no-color',
    '--no-decorate',
    '--no-abbrev',
    '--no-ext-diff',
    '--no-textconv',
    '--no-relative',
    '--encoding=UTF-8',
    GIT_LOG_FORMAT,
    '--raw',
    ...(contentDiffs ? ['--numstat'] : []),
    '--diff-merges=first-parent',
    ...(contentDiffs ? ['--find-renames', '--find-copies'] : ['--find-renames=100%']),
    '--topo-order',
    '--reverse',
    '--end-of-options',
    fromSha === null ? toSha : `${fromSha}..${toSha}`,
    '--',
  ];
}

/** Parses the whole output of `git <gitLogArgs(...)>` at once. */
export function parseGitLog(output: string | Buffer): ParsedCommit[] {
  const reader = new GitLogReader();
  const commits = reader.push(typeof output === 'string' ? Buffer.from(output, 'utf8') : output);
  commits.push(...reader.end());
  return commits;
}

interface RawEntry {
  status: FileChangeStatus;
  similarity: number | null;
  paths: string[];
  pathsNeeded: number;
}

interface NumstatEntry {
  additions: number | null;
  deletions: number | null;
  paths: string[];
  pathsNeeded: number;
}

interface CommitDraft {
  header: string[];
  raw: RawEntry[];
  numstat: NumstatEntry[];
}

/**
 * Incremental reader: feed stdout chunks as git writes them (`push`), get every commit as soon as the next
 * one starts, and the last one from `end`. Memory stays bounded by one commit, whatever the range's size.
 */
export class GitLogReader {
  private pending: Buffer = Buffer.alloc(0);
  private draft: CommitDraft | null = null;
  private openEntry: RawEntry | NumstatEntry | null = null;

  /** Consumes a chunk of git's stdout; returns the commits completed by it. */
  push(chunk: Buffer): ParsedCommit[] {
    const done: ParsedCommit[] = [];
    let data = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let nul = data.indexOf(0);
    while (nul !== -1) {
      // A NUL byte never occurs inside a UTF-8 sequence, so each field decodes on its own.
      const commit = this.token(data.toString('utf8', 0, nul));
      if (commit) done.push(commit);
      data = data.subarray(nul + 1);
      nul = data.indexOf(0);
    }
    this.pending = Buffer.from(data);
    return done;
  }

  /** Signals the end of git's output; returns the last commit. Throws if the output was cut short. */
  end(): ParsedCommit[] {
    if (this.pending.length && this.pending.toString('utf8').replace(/\n/g, '') !== '') {
      throw new GitLogParseError('git log output ends in the middle of a field (truncated output?)');
    }
    this.pending = Buffer.alloc(0);
    if (!this.draft) return [];
    if (this.openEntry) throw new GitLogParseError('git log output ends in the middle of a file entry');
    const last = finish(this.draft);
    this.draft = null;
    return [last];
  }

  private token(token: string): ParsedCommit | null {
    const draft = this.draft;
    if (draft === null || draft.header.length < HEADER_FIELDS.length) {
      if (draft === null) {
        if (token.replace(/\n/g, '') === '') return null;
        if (token !== GIT_LOG_COMMIT_MARKER) {
          throw new GitLogParseError(`expected a commit record, got ${JSON.stringify(token.slice(0, 80))}`);
        }
        this.draft = { header: [], raw: [], numstat: [] };
        return null;
      }
      draft.header.push(token);
      return null;
    }
    if (this.openEntry) {
      if (token === '') throw new GitLogParseError(`empty path in commit ${draft.header[0] ?? '?'}`);
      this.openEntry.paths.push(token);
      if (this.openEntry.paths.length === this.openEntry.pathsNeeded) this.openEntry = null;
      return null;
    }
    const entry = token.replace(/^\n+/, '');
    if (entry === '') return null;
    if (entry === GIT_LOG_COMMIT_MARKER) {
      const commit = finish(draft);
      this.draft = { header: [], raw: [], numstat: [] };
      return commit;
    }
    const raw = RAW_ENTRY.exec(entry);
    if (raw) {
      const letter = raw[5]!;
      if (!STATUSES.has(letter)) {
        throw new GitLogParseError(
          `unexpected change status "${letter}" in commit ${draft.header[0] ?? '?'}`,
        );
      }
      const status = letter as FileChangeStatus;
      const twoPaths = status === 'R' || status === 'C';
      const rawEntry: RawEntry = {
        status,
        similarity: raw[6] ? Number(raw[6]) : null,
        paths: [],
        pathsNeeded: twoPaths ? 2 : 1,
      };
      draft.raw.push(rawEntry);
      this.openEntry = rawEntry;
      return null;
    }
    const numstat = NUMSTAT_ENTRY.exec(entry);
    if (numstat) {
      const inlinePath = numstat[3]!;
      const numstatEntry: NumstatEntry = {
        additions: numstat[1] === '-' ? null : Number(numstat[1]),
        deletions: numstat[2] === '-' ? null : Number(numstat[2]),
        paths: inlinePath === '' ? [] : [inlinePath],
        pathsNeeded: inlinePath === '' ? 2 : 1,
      };
      draft.numstat.push(numstatEntry);
      if (inlinePath === '') this.openEntry = numstatEntry;
      return null;
    }
    throw new GitLogParseError(
      `unexpected diff entry ${JSON.stringify(entry.slice(0, 80))} in commit ${draft.header[0] ?? '?'}`,
    );
  }
}

function finish(draft: CommitDraft): ParsedCommit {
  if (draft.header.length < HEADER_FIELDS.length) {
    throw new GitLogParseError('git log output ends in the middle of a commit header');
  }
  const [
    sha,
    parents,
    authorName,
    authorEmail,
    authorDate,
    committerName,
    committerEmail,
    committerDate,
    body,
  ] = draft.header as [string, string, string, string, string, string, string, string, string];
  if (!isObjectId(sha)) throw new GitLogParseError(`not a commit id: ${JSON.stringify(sha.slice(0, 80))}`);

  // Counts belong to the file with the same new path; raw and numstat list files in the same order, but
  // matching by path keeps a missing numstat line from shifting every count after it.
  const countsByPath = new Map<string, NumstatEntry[]>();
  for (const entry of draft.numstat) {
    const path = entry.paths[entry.paths.length - 1]!;
    const list = countsByPath.get(path);
    if (list) list.push(entry);
    else countsByPath.set(path, [entry]);
  }
  const files = draft.raw.map((entry): FileChange => {
    const path = entry.paths[entry.paths.length - 1]!;
    const counts = countsByPath.get(path)?.shift();
    const binary = counts !== undefined && counts.additions === null;
    return {
      status: entry.status,
      similarity: entry.similarity,
      path,
      previousPath: entry.pathsNeeded === 2 ? entry.paths[0]! : null,
      additions: counts?.additions ?? null,
      deletions: counts?.deletions ?? null,
      binary,
    };
  });
  return {
    sha,
    parents: parents === '' ? [] : parents.split(' '),
    author: { name: authorName, email: authorEmail, date: authorDate },
    committer: { name: committerName, email: committerEmail, date: committerDate },
    message: body.replace(/\n+$/, ''),
    files,
  };
}
