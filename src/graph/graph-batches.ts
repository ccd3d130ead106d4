/**
 * Turns parsed commits into the rows of the graph writes (`UNWIND $rows` statements in graph-cypher.ts),
 * in bounded batches, and plans a branch update. Pure: no driver, no I/O.
 */
import type { FileChangeStatus, ParsedCommit } from './git-log-parser.js';

/** Rows per `UNWIND $rows` statement: small enough for one short transaction each. */
export const DEFAULT_GRAPH_BATCH_SIZE = 500;

/** Longest message kept on a Commit node; longer ones are cut (the subject is always kept whole). */
export const MAX_STORED_MESSAGE_CHARS = 16_384;

export interface CommitRow {
  sha: string;
  subject: string;
  message: string;
  /** ISO-8601 with offset, as git printed it; stored as a Neo4j datetime. */
  authoredAt: string;
  committedAt: string;
  parentCount: number;
  fileCount: number;
}

export interface ParentRow {
  sha: string;
  parentSha: string;
  /** 0 for the first parent. */
  index: number;
}

/** Who wrote and who committed one commit; the name is kept on the relationship (see graph-cypher.ts). */
export interface AuthorshipRow {
  sha: string;
  authorEmail: string;
  authorName: string;
  committerEmail: string;
  committerName: string;
}

export interface ChangeRow {
  sha: string;
  path: string;
  status: FileChangeStatus;
  similarity: number | null;
  additions: number | null;
  deletions: number | null;
  binary: boolean;
  previousPath: string | null;
}

/** Every row of a range, cut into batches; written in this order: commits, parents, people, changes. */
export interface GraphWritePlan {
  commits: CommitRow[][];
  parents: ParentRow[][];
  authorship: AuthorshipRow[][];
  changes: ChangeRow[][];
}

/** Splits rows into batches of at most `size` rows (none for no rows). */
export function inBatches<T>(rows: readonly T[], size: number = DEFAULT_GRAPH_BATCH_SIZE): T[][] {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`batch size must be a positive integer`);
  const batches: T[][] = [];
  for (let i = 0; i < rows.length; i += size) batches.push(rows.slice(i, i + size));
  return batches;
}

/**
 * The key of a Person: the email, trimmed and lowercased (git hosts treat emails case-insensitively). A
 * commit without an email (git allows `<>`) is keyed by its name so it is not merged with every other one.
 */
export function personKey(email: string, name: string): string {
  const normalized = email.trim().toLowerCase();
  return normalized !== '' ? normalized : `unknown-email:${name.trim()}`;
}

/** The first line of a message. */
export function messageSubject(message: string): string {
  const end = message.search(/\r?\n/);
  return end === -1 ? message : message.slice(0, end);
}

/** Rows for every node and relationship a range of commits adds, in batches of `batchSize` rows. */
export function planGraphWrites(
  commits: readonly ParsedCommit[],
  batchSize: number = DEFAULT_GRAPH_BATCH_SIZE,
): GraphWritePlan {
  const commitRows: CommitRow[] = [];
  const parentRows: ParentRow[] = [];
  const authorshipRows: AuthorshipRow[] = [];
  const changeRows: ChangeRow[] = [];
  const seen = new Set<string>();
  for (const commit of commits) {
    if (seen.has(commit.sha)) continue;
    seen.add(commit.sha);
    commitRows.push({
      sha: commit.sha,
      subject: messageSubject(commit.message),
      message:
        commit.message.length > MAX_STORED_MESSAGE_CHARS
          ? commit.message.slice(0, MAX_STORED_MESSAGE_CHARS)
          : commit.message,
      authoredAt: commit.author.date,
      committedAt: commit.committer.date,
      parentCount: commit.parents.length,
      fileCount: commit.files.length,
    });
    commit.parents.forEach((parentSha, index) => parentRows.push({ sha: commit.sha, parentSha, index }));
    authorshipRows.push({
      sha: commit.sha,
      authorEmail: personKey(commit.author.email, commit.author.name),
      authorName: commit.author.name,
      committerEmail: personKey(commit.committer.email, commit.committer.name),
      committerName: commit.committer.name,
    });
    for (const file of commit.files) {
      changeRows.push({
        sha: commit.sha,
        path: file.path,
        status: file.status,
        similarity: file.similarity,
        additions: file.additions,
        deletions: file.deletions,
        binary: file.binary,
        previousPath: file.previousPath,
      });
    }
  }
  return {
    commits: inBatches(commitRows, batchSize),
    parents: inBatches(parentRows, batchSize),
    authorship: inBatches(authorshipRows, batchSize),
    changes: inBatches(changeRows, batchSize),
  };
}

/** A commit the branch contains in the graph, with its parents (as read before a force-push update). */
export interface BranchMember {
  sha: string;
  parents: readonly string[];
}

export interface BranchUpdatePlan {
  /** The commit the branch's HEAD moves to, last of all writes. */
  headSha: string;
  /** Commits the branch contained that the new HEAD cannot reach: marked, never deleted. Sorted. */
  noLongerOnBranch: string[];
}

/**
 * Plans moving a branch to `headSha`. A fast-forward only adds commits. After a force-push, every commit
 * the branch contained (`members`) that is no longer reachable from the new HEAD, through the parents of the
 * members and of the newly indexed commits, is to be marked as no longer on the branch.
 */
export function planBranchUpdate(input: {
  headSha: string;
  forcePushed: boolean;
  members: readonly BranchMember[];
  newCommits: readonly ParsedCommit[];
}): BranchUpdatePlan {
  if (!input.forcePushed) return { headSha: input.headSha, noLongerOnBranch: [] };
  const parentsOf = new Map<string, readonly string[]>();
  for (const member of input.members) parentsOf.set(member.sha, member.parents);
  for (const commit of input.newCommits) parentsOf.set(commit.sha, commit.parents);

  const reachable = new Set<string>([input.headSha]);
  const stack = [input.headSha];
  for (let sha = stack.pop(); sha !== undefined; sha = stack.pop()) {
    for (const parent of parentsOf.get(sha) ?? []) {
      if (!reachable.has(parent)) {
        reachable.add(parent);
        stack.push(parent);
      }
    }
  }
  const noLongerOnBranch = [...new Set(input.members.map((m) => m.sha))].filter((sha) => !reachable.has(sha));
  return { headSha: input.headSha, noLongerOnBranch: noLongerOnBranch.sort() };
}
