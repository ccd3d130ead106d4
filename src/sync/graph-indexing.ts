import { GitLogReader, type ParsedCommit, gitLogArgs } from '../graph/git-log-parser.js';
import type { GraphIndex } from '../graph/graph-index.js';
import type { GraphStep } from './engine/sync-types.js';
import type { GitMirror } from './git/git-mirror.js';
import type { GitCredentials } from './git/git-runner.js';

const GRAPH_RETRY_AFTER_MS = 60_000;

export interface GraphIndexRequest {
  tenantId: string;
  repository: { id: string; host: string; owner: string; name: string };
  branch: string;
  /** The branch head already in the graph (null: index its whole history). */
  fromSha: string | null;
  toSha: string;
  gitDir: string;
  credentials?: GitCredentials;
  onProgress?: (done: number, total: number) => void;
}

/**
 * The graph step of a sync: lists the new commits with `git log` from the cached clone and writes them to
 * the graph index. Any failure of the graph (Neo4j down) is reported as `pending`, never as a failed sync:
 * the branch keeps its last indexed commit and a later sync or the catch-up pass resumes from there.
 */
export class GraphIndexing {
  /** After a failure the graph is not tried again for a while: syncs must not wait on a dead Neo4j. */
  private unavailableUntil = 0;

  constructor(
    private readonly graph: GraphIndex,
    private readonly mirror: GitMirror,
    private readonly log: (msg: string, fields?: object) => void = () => undefined,
  ) {}

  get enabled(): boolean {
    return this.graph.enabled;
  }

  /** Indexes the commits between the graph's head of the branch and `toSha`. */
  async index(r: GraphIndexRequest): Promise<GraphStep> {
    if (!this.graph.enabled) return { status: 'disabled', commits: 0, indexedSha: null };
    if (r.fromSha === r.toSha) return { status: 'indexed', commits: 0, indexedSha: r.toSha };
    if (Date.now() < this.unavailableUntil) return { status: 'pending', commits: 0, indexedSha: null };
    try {
      // A cheap round trip first: an unreachable server fails here in milliseconds, not after write retries.
      await this.graph.ping();
      let from = r.fromSha;
      let forcePushed = false;
      if (from !== null && !(await this.mirror.isAncestor(r.gitDir, from, r.toSha, r.credentials))) {
        forcePushed = true;
      }
      const commits = await this.commits(r.gitDir, from, r.toSha, r.credentials);
      if (forcePushed && commits.length === 0) from = null;
      const result = await this.graph.indexRange({
        tenantId: r.tenantId,
        repository: { id: r.repository.id, host: r.repository.host, fullName: fullName(r.repository) },
        branch: r.branch,
        fromSha: from,
        toSha: r.toSha,
        commits,
        forcePushed,
        onProgress: r.onProgress,
      });
      if (result.status === 'disabled') return { status: 'disabled', commits: 0, indexedSha: null };
      return { status: 'indexed', commits: result.commits, indexedSha: r.toSha };
    } catch (e) {
      this.unavailableUntil = Date.now() + GRAPH_RETRY_AFTER_MS;
      this.log('graph indexing pending', {
        repositoryId: r.repository.id,
        branch: r.branch,
        err: e instanceof Error ? e.message : String(e),
      });
      return { status: 'pending', commits: 0, indexedSha: null };
    }
  }

  private async commits(
    gitDir: string,
    from: string | null,
    to: string,
    credentials?: GitCredentials,
  ): Promise<ParsedCommit[]> {
    const reader = new GitLogReader();
    const commits: ParsedCommit[] = [];
    // A first index walks the whole history: no blob contents (see gitLogArgs), so nothing is downloaded.
    const args = gitLogArgs(from, to, { contentDiffs: from !== null });
    await this.mirror.streamOutput(gitDir, args, (chunk) => commits.push(...reader.push(chunk)), credentials);
    commits.push(...reader.end());
    return commits;
  }
}

function fullName(repository: { owner: string; name: string }): string {
  return repository.owner ? `${repository.owner}/${repository.name}` : repository.name;
}
