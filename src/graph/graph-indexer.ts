import { isObjectId } from './git-log-parser.js';
import {
  type BranchMember,
  DEFAULT_GRAPH_BATCH_SIZE,
  inBatches,
  planBranchUpdate,
  planGraphWrites,
} from './graph-batches.js';
import {
  GraphConnection,
  type GraphConnectionSettings,
  type GraphRow,
  type GraphTimeouts,
} from './graph-connection.js';
import {
  AWAIT_INDEXES,
  type BranchScope,
  type CypherStatement,
  DELETE_REPOSITORY_BRANCHES,
  DELETE_REPOSITORY_COMMITS,
  DELETE_REPOSITORY_FILES,
  DELETE_REPOSITORY_NODE,
  MARK_NO_LONGER_ON_BRANCH,
  MOVE_BRANCH_HEAD,
  READ_BRANCH_MEMBERS,
  REMOVE_BRANCH_HEAD,
  SCHEMA_STATEMENTS,
  UPSERT_REPOSITORY_AND_BRANCH,
  WRITE_AUTHORSHIP,
  WRITE_CHANGES,
  WRITE_COMMITS,
  WRITE_PARENTS,
} from './graph-cypher.js';
import { GraphWriteIncomplete } from './graph-errors.js';
import type {
  BranchRef,
  EnsureSchemaResult,
  GraphIndex,
  GraphPing,
  IndexRangeInput,
  IndexRangeResult,
  RemoveBranchHeadResult,
  RemoveRepositoryResult,
} from './graph-index.js';

export { DisabledGraphIndex, GRAPH_INDEX } from './graph-index.js';
export type { GraphIndex, IndexRangeInput, IndexRangeResult } from './graph-index.js';

export interface GraphIndexerOptions {
  /** Rows per UNWIND statement; DEFAULT_GRAPH_BATCH_SIZE (500) by default. */
  batchSize?: number;
  /** How long ensureSchema waits for new indexes to come online. */
  awaitIndexesSeconds?: number;
}

function count(rows: GraphRow[], column: string): number {
  const value = rows[0]?.[column];
  return typeof value === 'number' ? value : 0;
}

function requireText(value: string, what: string): void {
  if (typeof value !== 'string' || value.trim() === '')
    throw new TypeError(`${what} must be a non-empty string`);
}

function member(row: GraphRow): BranchMember {
  const { sha, parents } = row;
  if (typeof sha !== 'string' || !Array.isArray(parents)) {
    throw new GraphWriteIncomplete(`unexpected branch member row ${JSON.stringify(row)}`);
  }
  return { sha, parents: parents.filter((p): p is string => typeof p === 'string') };
}

/**
 * The graph index on Neo4j. An index run writes, in order: the repository and branch, commits (with the
 * branch's CONTAINS), parents, people, changed files, the force-push marks, and the branch HEAD last, each
 * as `UNWIND $rows` batches in their own transaction. Every statement MERGEs, so a run interrupted anywhere
 * and run again ends in the same graph, and a reader never sees a HEAD whose history is missing.
 */
export class Neo4jGraphIndexer implements GraphIndex {
  readonly enabled = true;
  private schema: Promise<EnsureSchemaResult> | null = null;
  private readonly batchSize: number;

  constructor(
    private readonly connection: GraphConnection,
    private readonly options: GraphIndexerOptions = {},
  ) {
    this.batchSize = options.batchSize ?? DEFAULT_GRAPH_BATCH_SIZE;
  }

  /** An indexer with its own connection (closed by `close()`). */
  static fromSettings(settings: GraphConnectionSettings, timeouts?: GraphTimeouts): Neo4jGraphIndexer {
    return new Neo4jGraphIndexer(new GraphConnection(settings, timeouts));
  }

  /** Creates every constraint and index if missing and waits for them to be online. */
  async ensureSchema(): Promise<EnsureSchemaResult> {
    for (const statement of SCHEMA_STATEMENTS) await this.connection.execute(statement, {});
    await this.connection.execute(AWAIT_INDEXES, { timeoutSeconds: this.options.awaitIndexesSeconds ?? 60 });
    return { status: 'ready', statements: SCHEMA_STATEMENTS.length };
  }

  /** Writes a range of a branch's history, then moves its HEAD to `toSha`. */
  async indexRange(input: IndexRangeInput): Promise<IndexRangeResult> {
    const started = performance.now();
    requireText(input.tenantId, 'tenantId');
    requireText(input.repository.id, 'repository.id');
    requireText(input.branch, 'branch');
    if (!isObjectId(input.toSha)) throw new TypeError(`toSha must be a full commit id, got "${input.toSha}"`);
    if (input.fromSha !== null && !isObjectId(input.fromSha)) {
      throw new TypeError(`fromSha must be a full commit id or null, got "${input.fromSha}"`);
    }
    await this.schemaOnce();

    const scope: BranchScope = {
      tenantId: input.tenantId,
      repositoryId: input.repository.id,
      branch: input.branch,
    };
    const plan = planGraphWrites(input.commits, this.batchSize);
    let total =
      1 +
      plan.commits.length +
      plan.parents.length +
      plan.authorship.length +
      plan.changes.length +
      (input.forcePushed ? 1 : 0) +
      1;
    let done = 0;
    const progress = () => input.onProgress?.(++done, total);

    await this.connection.execute(UPSERT_REPOSITORY_AND_BRANCH, {
      ...scope,
      host: input.repository.host,
      fullName: input.repository.fullName,
    });
    progress();
    for (const rows of plan.commits) {
      await this.writeAll(WRITE_COMMITS, { ...scope, rows }, rows.length);
      progress();
    }
    for (const rows of plan.parents) {
      await this.writeAll(WRITE_PARENTS, { ...scope, rows }, rows.length);
      progress();
    }
    for (const rows of plan.authorship) {
      await this.writeAll(WRITE_AUTHORSHIP, { ...scope, rows }, rows.length);
      progress();
    }
    for (const rows of plan.changes) {
      await this.writeAll(WRITE_CHANGES, { ...scope, rows }, rows.length);
      progress();
    }

    let noLongerOnBranch = 0;
    if (input.forcePushed) {
      const members = (await this.connection.execute(READ_BRANCH_MEMBERS, scope)).map(member);
      const update = planBranchUpdate({
        headSha: input.toSha,
        forcePushed: true,
        members,
        newCommits: input.commits,
      });
      const markBatches = inBatches(
        update.noLongerOnBranch.map((sha) => ({ sha })),
        this.batchSize,
      );
      total += markBatches.length;
      progress();
      for (const rows of markBatches) {
        noLongerOnBranch += count(
          await this.connection.execute(MARK_NO_LONGER_ON_BRANCH, { ...scope, rows, headSha: input.toSha }),
          'written',
        );
        progress();
      }
    }

    await this.connection.execute(MOVE_BRANCH_HEAD, { ...scope, headSha: input.toSha });
    progress();
    return {
      status: 'indexed',
      headSha: input.toSha,
      commits: plan.commits.reduce((n, rows) => n + rows.length, 0),
      parents: plan.parents.reduce((n, rows) => n + rows.length, 0),
      changes: plan.changes.reduce((n, rows) => n + rows.length, 0),
      noLongerOnBranch,
      batches: done,
      durationMs: Math.round(performance.now() - started),
    };
  }

  /** Removes the HEAD of a branch deleted on the host; reports whether the branch was known. */
  async removeBranchHead(ref: BranchRef): Promise<RemoveBranchHeadResult> {
    requireText(ref.tenantId, 'tenantId');
    requireText(ref.repositoryId, 'repositoryId');
    requireText(ref.branch, 'branch');
    const rows = await this.connection.execute(REMOVE_BRANCH_HEAD, ref);
    return { status: 'removed', found: count(rows, 'branches') > 0 };
  }

  /** Deletes a repository's nodes in batches, and the tenant's people left without commits. */
  async removeRepository(tenantId: string, repositoryId: string): Promise<RemoveRepositoryResult> {
    requireText(tenantId, 'tenantId');
    requireText(repositoryId, 'repositoryId');
    const params = { tenantId, repositoryId, batchSize: 5_000 };
    let nodes = 0;
    for (const statement of [
      DELETE_REPOSITORY_COMMITS,
      DELETE_REPOSITORY_FILES,
      DELETE_REPOSITORY_BRANCHES,
      DELETE_REPOSITORY_NODE,
    ]) {
      for (;;) {
        const deleted = count(await this.connection.execute(statement, params), 'deleted');
        nodes += deleted;
        if (deleted === 0) break;
      }
    }
    return { status: 'removed', nodes };
  }

  /** Answers `up` with the server's address and version, or throws GraphUnavailable. */
  async ping(): Promise<GraphPing> {
    const started = performance.now();
    const info = await this.connection.ping();
    return { status: 'up', ...info, latencyMs: Math.round(performance.now() - started) };
  }

  /** Closes the connection (shared with the reader when built by GraphModule). */
  close(): Promise<void> {
    return this.connection.close();
  }

  /** The schema is ensured once per process before the first write; a failure is retried next time. */
  private schemaOnce(): Promise<EnsureSchemaResult> {
    this.schema ??= this.ensureSchema().catch((error: unknown) => {
      this.schema = null;
      throw error;
    });
    return this.schema;
  }

  private async writeAll<P extends object>(statement: CypherStatement<P>, params: P, expected: number) {
    const written = count(await this.connection.execute(statement, params), 'written');
    if (written !== expected) {
      throw new GraphWriteIncomplete(
        `${statement.name} wrote ${written} of ${expected} rows: the branch or commits it links to are ` +
          'missing from the graph (was the range indexed out of order, or its branch removed meanwhile?)',
      );
    }
  }
}
