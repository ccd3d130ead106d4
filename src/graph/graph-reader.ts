import { GraphConnection, type GraphReadRunner, type GraphRow } from './graph-connection.js';
import {
  BRANCH_COMMITS,
  CO_CHANGED_FILES,
  FILE_HISTORY,
  READ_BRANCH,
  READ_REPOSITORY,
  REPOSITORY_BRANCHES,
  REPOSITORY_COUNTS,
  TOP_CONTRIBUTORS,
} from './graph-cypher.js';
import { GraphDisabled, GraphNotIndexed } from './graph-errors.js';

export const GRAPH_READER = Symbol('GRAPH_READER');

export interface GraphPerson {
  email: string;
  name: string | null;
}

export interface Contributor extends GraphPerson {
  commits: number;
  firstAuthoredAt: string | null;
  lastAuthoredAt: string | null;
}

export interface FileHistoryEntry {
  sha: string;
  subject: string | null;
  authoredAt: string | null;
  committedAt: string | null;
  author: GraphPerson | null;
  status: string;
  previousPath: string | null;
  additions: number | null;
  deletions: number | null;
  binary: boolean;
}

export interface CoChangedFile {
  path: string;
  /** Commits that changed both files. */
  commits: number;
  lastChangedTogetherAt: string | null;
}

export interface BranchCommit {
  sha: string;
  subject: string | null;
  authoredAt: string | null;
  committedAt: string | null;
  author: GraphPerson | null;
  parentCount: number | null;
}

export interface BranchCommits {
  branch: string;
  headSha: string | null;
  /** The branch was deleted on the host (its HEAD removed). */
  deleted: boolean;
  since: string | null;
  commits: BranchCommit[];
}

export interface GraphBranchSummary {
  name: string;
  headSha: string | null;
  deleted: boolean;
  commits: number;
  noLongerOnBranch: number;
}

export interface GraphRepositorySummary {
  id: string;
  host: string | null;
  fullName: string | null;
  /** Commit nodes, including stubs known only as a parent or HEAD. */
  commits: number;
  /** Commits whose own data (message, dates, files) is indexed. */
  indexedCommits: number;
  files: number;
  parents: number;
  changes: number;
  people: number;
  branches: GraphBranchSummary[];
}

export interface ListOptions {
  limit: number;
}

/** The dashboard's read queries; every one takes the tenant first and sees only that tenant's data. */
export interface GraphReader {
  summary(tenantId: string, repositoryId: string): Promise<GraphRepositorySummary>;
  topContributors(tenantId: string, repositoryId: string, options: ListOptions): Promise<Contributor[]>;
  fileHistory(
    tenantId: string,
    repositoryId: string,
    path: string,
    options: ListOptions,
  ): Promise<FileHistoryEntry[]>;
  coChangedFiles(
    tenantId: string,
    repositoryId: string,
    path: string,
    options: ListOptions & { maxFilesPerCommit: number },
  ): Promise<CoChangedFile[]>;
  branchCommits(
    tenantId: string,
    repositoryId: string,
    branch: string,
    since: string | null,
    options: ListOptions,
  ): Promise<BranchCommits>;
}

// Rows come back as `unknown` values; these read them into the typed shapes above.
function text(row: GraphRow, key: string): string {
  const value = row[key];
  if (typeof value !== 'string') throw new TypeError(`graph row: ${key} is not a string`);
  return value;
}

function optionalText(row: GraphRow, key: string): string | null {
  const value = row[key];
  return typeof value === 'string' ? value : null;
}

function optionalNumber(row: GraphRow, key: string): number | null {
  const value = row[key];
  return typeof value === 'number' ? value : null;
}

function number(row: GraphRow, key: string): number {
  return optionalNumber(row, key) ?? 0;
}

function isoFromMillis(row: GraphRow, key: string): string | null {
  const millis = optionalNumber(row, key);
  return millis === null ? null : new Date(millis).toISOString();
}

function author(row: GraphRow): GraphPerson | null {
  const email = optionalText(row, 'authorEmail');
  return email === null ? null : { email, name: optionalText(row, 'authorName') };
}

/** The dashboard's reads on Neo4j: one read transaction per call, no retries (fails fast with 503). */
export class Neo4jGraphReader implements GraphReader {
  constructor(private readonly connection: GraphConnection) {}

  /** Counts and branches of one repository's graph. */
  async summary(tenantId: string, repositoryId: string): Promise<GraphRepositorySummary> {
    return this.connection.read(async (run) => {
      const repository = await this.repository(run, tenantId, repositoryId);
      const [counts] = await run(REPOSITORY_COUNTS, { tenantId, repositoryId });
      const branches = await run(REPOSITORY_BRANCHES, { tenantId, repositoryId });
      const row = counts ?? {};
      return {
        id: text(repository, 'id'),
        host: optionalText(repository, 'host'),
        fullName: optionalText(repository, 'fullName'),
        commits: number(row, 'commits'),
        indexedCommits: number(row, 'indexedCommits'),
        files: number(row, 'files'),
        parents: number(row, 'parents'),
        changes: number(row, 'changes'),
        people: number(row, 'people'),
        branches: branches.map((b) => ({
          name: text(b, 'name'),
          headSha: optionalText(b, 'headSha'),
          deleted: b.deleted === true,
          commits: number(b, 'commits'),
          noLongerOnBranch: number(b, 'noLongerOnBranch'),
        })),
      };
    });
  }

  /** People who authored the most commits of the repository. */
  async topContributors(
    tenantId: string,
    repositoryId: string,
    options: ListOptions,
  ): Promise<Contributor[]> {
    return this.connection.read(async (run) => {
      await this.repository(run, tenantId, repositoryId);
      const rows = await run(TOP_CONTRIBUTORS, { tenantId, repositoryId, limit: options.limit });
      return rows.map((row) => ({
        email: text(row, 'email'),
        name: optionalText(row, 'name'),
        commits: number(row, 'commits'),
        firstAuthoredAt: isoFromMillis(row, 'firstAuthoredAtMs'),
        lastAuthoredAt: isoFromMillis(row, 'lastAuthoredAtMs'),
      }));
    });
  }

  /** Commits that changed `path`, newest first (a rename shows the path it came from). */
  async fileHistory(
    tenantId: string,
    repositoryId: string,
    path: string,
    options: ListOptions,
  ): Promise<FileHistoryEntry[]> {
    return this.connection.read(async (run) => {
      await this.repository(run, tenantId, repositoryId);
      const rows = await run(FILE_HISTORY, { tenantId, repositoryId, path, limit: options.limit });
      return rows.map((row) => ({
        sha: text(row, 'sha'),
        subject: optionalText(row, 'subject'),
        authoredAt: isoFromMillis(row, 'authoredAtMs'),
        committedAt: isoFromMillis(row, 'committedAtMs'),
        author: author(row),
        status: text(row, 'status'),
        previousPath: optionalText(row, 'previousPath'),
        additions: optionalNumber(row, 'additions'),
        deletions: optionalNumber(row, 'deletions'),
        binary: row.binary === true,
      }));
    });
  }

  /** Files most often changed in the same commits as `path`. */
  async coChangedFiles(
    tenantId: string,
    repositoryId: string,
    path: string,
    options: ListOptions & { maxFilesPerCommit: number },
  ): Promise<CoChangedFile[]> {
    return this.connection.read(async (run) => {
      await this.repository(run, tenantId, repositoryId);
      const rows = await run(CO_CHANGED_FILES, {
        tenantId,
        repositoryId,
        path,
        limit: options.limit,
        maxFilesPerCommit: options.maxFilesPerCommit,
      });
      return rows.map((row) => ({
        path: text(row, 'path'),
        commits: number(row, 'commits'),
        lastChangedTogetherAt: isoFromMillis(row, 'lastChangedTogetherAtMs'),
      }));
    });
  }

  /** Commits on the branch that `since` does not reach (all of the branch's when null), newest first. */
  async branchCommits(
    tenantId: string,
    repositoryId: string,
    branch: string,
    since: string | null,
    options: ListOptions,
  ): Promise<BranchCommits> {
    return this.connection.read(async (run) => {
      await this.repository(run, tenantId, repositoryId);
      const [found] = await run(READ_BRANCH, { tenantId, repositoryId, branch, since });
      if (!found) throw new GraphNotIndexed('branch', branch);
      if (since !== null && found.sinceKnown !== true) throw new GraphNotIndexed('commit', since);
      const rows = await run(BRANCH_COMMITS, { tenantId, repositoryId, branch, since, limit: options.limit });
      return {
        branch,
        headSha: optionalText(found, 'headSha'),
        deleted: found.deleted === true,
        since,
        commits: rows.map((row) => ({
          sha: text(row, 'sha'),
          subject: optionalText(row, 'subject'),
          authoredAt: isoFromMillis(row, 'authoredAtMs'),
          committedAt: isoFromMillis(row, 'committedAtMs'),
          author: author(row),
          parentCount: optionalNumber(row, 'parentCount'),
        })),
      };
    });
  }

  /** The repository row; another tenant's repository is as unknown as a missing one. */
  private async repository(run: GraphReadRunner, tenantId: string, repositoryId: string): Promise<GraphRow> {
    const [row] = await run(READ_REPOSITORY, { tenantId, repositoryId });
    if (!row) throw new GraphNotIndexed('repository', repositoryId);
    return row;
  }
}

/** The reader when NEO4J_URI is unset: every query fails with GraphDisabled (503). */
export class DisabledGraphReader implements GraphReader {
  summary(): Promise<GraphRepositorySummary> {
    return Promise.reject(new GraphDisabled());
  }

  topContributors(): Promise<Contributor[]> {
    return Promise.reject(new GraphDisabled());
  }

  fileHistory(): Promise<FileHistoryEntry[]> {
    return Promise.reject(new GraphDisabled());
  }

  coChangedFiles(): Promise<CoChangedFile[]> {
    return Promise.reject(new GraphDisabled());
  }

  branchCommits(): Promise<BranchCommits> {
    return Promise.reject(new GraphDisabled());
  }
}
