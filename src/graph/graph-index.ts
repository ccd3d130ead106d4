/**
 * What the sync engine knows of the graph: this interface and its result types. No Neo4j here, so the
 * engine depends on `GraphIndex` and never on the driver; graph.module.ts provides either the Neo4j indexer
 * or `DisabledGraphIndex` under `GRAPH_INDEX`.
 */
import type { ParsedCommit } from './git-log-parser.js';

export const GRAPH_INDEX = Symbol('GRAPH_INDEX');

export interface GraphRepositoryRef {
  /** The repository's id in Postgres. */
  id: string;
  host: string;
  /** `owner/name` (or the GitLab namespace path). */
  fullName: string;
}

export interface IndexRangeInput {
  tenantId: string;
  repository: GraphRepositoryRef;
  branch: string;
  /** The branch head the graph had before this run; null on the branch's first index. */
  fromSha: string | null;
  /** The new branch head. */
  toSha: string;
  /** `git <gitLogArgs(fromSha, toSha)>`, parsed: the commits reachable from toSha and not from fromSha. */
  commits: readonly ParsedCommit[];
  /** fromSha is not an ancestor of toSha: commits only the old head reached are marked as off the branch. */
  forcePushed: boolean;
  /** Called after every write batch with the batches done and the total so far. */
  onProgress?: (done: number, total: number) => void;
}

export type IndexRangeResult =
  | {
      status: 'indexed';
      headSha: string;
      commits: number;
      parents: number;
      changes: number;
      /** Commits marked as no longer on the branch (force-push only). */
      noLongerOnBranch: number;
      batches: number;
      durationMs: number;
    }
  | { status: 'disabled' };

export interface BranchRef {
  tenantId: string;
  repositoryId: string;
  branch: string;
}

export type RemoveBranchHeadResult = { status: 'removed'; found: boolean } | { status: 'disabled' };

export type RemoveRepositoryResult = { status: 'removed'; nodes: number } | { status: 'disabled' };

export type EnsureSchemaResult = { status: 'ready'; statements: number } | { status: 'disabled' };

export type GraphPing =
  { status: 'up'; address: string; agent: string; latencyMs: number } | { status: 'disabled' };

/** The graph side of a sync: every write is idempotent (MERGE), keyed by repository, branch and SHA. */
export interface GraphIndex {
  /** False when no Neo4j is configured: every method is then a no-op answering `disabled`. */
  readonly enabled: boolean;
  /** Creates constraints and indexes if missing (safe to run any number of times, concurrently too). */
  ensureSchema(): Promise<EnsureSchemaResult>;
  /** Writes a range of a branch's history in batches, then moves the branch HEAD (last). */
  indexRange(input: IndexRangeInput): Promise<IndexRangeResult>;
  /** A branch deleted on the host: removes its HEAD; the branch node and the commits stay. */
  removeBranchHead(ref: BranchRef): Promise<RemoveBranchHeadResult>;
  /** A repository removed from reposync: deletes its repository, branch, commit and file nodes. */
  removeRepository(tenantId: string, repositoryId: string): Promise<RemoveRepositoryResult>;
  /** Answers `up` or throws GraphUnavailable quickly (short connection timeouts, no retries). */
  ping(): Promise<GraphPing>;
  close(): Promise<void>;
}

/** The graph index when NEO4J_URI is unset: indexing is skipped and every call says so. */
export class DisabledGraphIndex implements GraphIndex {
  readonly enabled = false;

  async ensureSchema(): Promise<EnsureSchemaResult> {
    return { status: 'disabled' };
  }

  async indexRange(_input: IndexRangeInput): Promise<IndexRangeResult> {
    return { status: 'disabled' };
  }

  async removeBranchHead(_ref: BranchRef): Promise<RemoveBranchHeadResult> {
    return { status: 'disabled' };
  }

  async removeRepository(_tenantId: string, _repositoryId: string): Promise<RemoveRepositoryResult> {
    return { status: 'disabled' };
  }

  async ping(): Promise<GraphPing> {
    return { status: 'disabled' };
  }

  async close(): Promise<void> {}
}
