/**
 * GitLab (gitlab.com or self-managed) behind the CodeHost interface, with @gitbeaker/rest's resource
 * classes over our own requester (one attempt per request, through the per-token HostApiBudget) and
 * fetch for the OAuth token endpoint, which gitbeaker does not cover.
 */
import {
  Branches,
  Commits,
  ProjectHooks,
  Projects,
  Repositories,
  RepositoryFiles,
  Users,
  type CommitDiffSchema,
  type ProjectSchema,
} from '@gitbeaker/rest';
import { gitTreeObjectId } from '../sync/delta/git-tree-hash.js';
import { verifyBlob } from './blob-integrity.js';
import type {
  CodeHost,
  HostAccount,
  HostChangedFile,
  HostCommit,
  HostComparison,
  HostComparisonStatus,
  HostFileContent,
  HostFileStatus,
  HostRepository,
  HostRepositoryPage,
  HostSignature,
  HostTokenGrant,
  HostWebhookSpec,
} from './code-host.js';
import { createGitlabRequester, GitLabHttpError, type GitlabRequesterFn } from './gitlab-requester.js';
import { fetchWithTimeout, type FetchFunction, type HostApiBudget } from './host-budget.js';
import {
  HostAuthFailed,
  HostError,
  HostNotFound,
  HostRequestFailed,
  HostUnavailable,
} from './host-errors.js';

export const GITLAB_URL = 'https://gitlab.com';

export interface GitLabOAuthClient {
  clientId: string;
  clientSecret: string;
}

export interface GitLabHostOptions {
  /** Instance root without `/api/v4`: `https://gitlab.com` (default) or a self-managed URL. */
  baseUrl?: string;
  budget: HostApiBudget;
  oauth?: GitLabOAuthClient;
  timeoutMs?: number;
  /** Projects per page of listRepositories (default 100, GitLab's maximum). */
  pageSize?: number;
  /** GitLab stops listing diffs of a comparison at this many files (`diff_max_files`, default 1000). */
  maxDiffFiles?: number;
  fetch?: FetchFunction;
}

/** GitLab's commit entity as the compare, branch and commit endpoints return it. */
interface GitLabCommit {
  id: string;
  parent_ids?: string[];
  message?: string;
  title?: string;
  author_name?: string;
  author_email?: string;
  authored_date?: string;
  committer_name?: string;
  committer_email?: string;
  committed_date?: string;
}

/** GitLab's diff entity (lib/api/entities/diff.rb) including the fields gitbeaker's type leaves out. */
type GitLabDiff = CommitDiffSchema & { too_large?: boolean; collapsed?: boolean; generated_file?: boolean };

interface GitLabTokenResponse {
  access_token?: string;
  refresh_token?: string;
  expires_in?: number;
  created_at?: number;
  scope?: string;
  error?: string;
  error_description?: string;
}

const FULL_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

function signature(name?: string, email?: string, date?: string): HostSignature | null {
  if (date === undefined) return null;
  return { name: name ?? '', email: email ?? '', date: new Date(date) };
}

function toCommit(commit: GitLabCommit): HostCommit {
  return {
    sha: commit.id,
    parents: commit.parent_ids ?? [],
    message: (commit.message ?? commit.title ?? '').replace(/\n+$/, ''),
    author: signature(commit.author_name, commit.author_email, commit.authored_date),
    committer: signature(commit.committer_name, commit.committer_email, commit.committed_date),
  };
}

function toRepository(project: ProjectSchema): HostRepository {
  const fullName = project.path_with_namespace;
  const slash = fullName.lastIndexOf('/');
  return {
    id: String(project.id),
    owner: fullName.slice(0, slash),
    name: fullName.slice(slash + 1),
    fullName,
    cloneUrl: project.http_url_to_repo,
    webUrl: project.web_url,
    defaultBranch: project.empty_repo ? null : project.default_branch || null,
    private: project.visibility !== 'public',
    archived: project.archived === true,
  };
}

/** Line counts of a GitLab diff text (hunks only: GitLab leaves out the `---`/`+++` header). */
function countLines(diff: string): { additions: number; deletions: number } {
  let additions = 0;
  let deletions = 0;
  for (const line of diff.split('\n')) {
    if (line.startsWith('+')) additions++;
    else if (line.startsWith('-')) deletions++;
  }
  return { additions, deletions };
}

function gitMode(mode: string | undefined | null): string | null {
  return !mode || /^0+$/.test(mode) ? null : mode;
}

function toChangedFile(diff: GitLabDiff): HostChangedFile {
  const cut = diff.too_large === true || diff.collapsed === true;
  const patchAvailable = !cut && diff.diff.startsWith('@@');
  const mode = gitMode(diff.b_mode);
  const previousMode = gitMode(diff.a_mode);
  let status: HostFileStatus;
  if (diff.new_file) status = 'added';
  else if (diff.deleted_file) status = 'removed';
  else if (diff.renamed_file) status = 'renamed';
  // Same term as GitHub's for a mode (or type) change without new content.
  else if (previousMode !== mode && diff.diff === '' && !cut) status = 'changed';
  else status = 'modified';
  // No diff text and nothing cut: a mode change or pure rename, no lines changed. A binary says so in text.
  const counts = patchAvailable
    ? countLines(diff.diff)
    : diff.diff === '' && !cut
      ? { additions: 0, deletions: 0 }
      : null;
  return {
    path: diff.new_path,
    previousPath: diff.renamed_file ? diff.old_path : null,
    status,
    sha: null,
    mode: status === 'removed' ? null : mode,
    previousMode,
    additions: counts?.additions ?? null,
    deletions: counts?.deletions ?? null,
    patchAvailable,
  };
}

/** Turns a requester or fetch failure while trying to `what` into a typed host error. */
export function toGitLabHostError(error: unknown, what: string): unknown {
  if (error instanceof HostError) return error;
  if (error instanceof GitLabHttpError) {
    const { status, hostMessage } = error;
    if (status === 401) {
      return new HostAuthFailed(
        'gitlab',
        `GitLab rejected the token while trying to ${what} (401); reconnect it`,
      );
    }
    if (status === 404) {
      return new HostNotFound(
        'gitlab',
        `GitLab found nothing to ${what} (${hostMessage ?? '404 Not Found'})`,
        hostMessage,
      );
    }
    if (status >= 500) {
      return new HostUnavailable('gitlab', `GitLab failed while trying to ${what} (HTTP ${status})`, status);
    }
    return new HostRequestFailed(
      'gitlab',
      status,
      `GitLab refused to ${what} (HTTP ${status}${hostMessage ? `: ${hostMessage}` : ''})`,
    );
  }
  // By name, not instanceof: fetch's errors may come from another realm (undici inside Node, test VMs).
  const name = typeof error === 'object' && error !== null ? (error as { name?: unknown }).name : undefined;
  if (name === 'AbortError' || name === 'TimeoutError') {
    return new HostUnavailable('gitlab', `GitLab did not answer in time while trying to ${what}`);
  }
  if (name === 'TypeError') {
    const message = (error as { message?: unknown }).message;
    return new HostUnavailable(
      'gitlab',
      `GitLab could not be reached while trying to ${what}: ${typeof message === 'string' ? message : 'fetch failed'}`,
    );
  }
  return error;
}

export class GitLabHost implements CodeHost {
  readonly provider = 'gitlab' as const;
  private readonly baseUrl: string;
  private readonly budget: HostApiBudget;
  private readonly oauth: GitLabOAuthClient | null;
  private readonly pageSize: number;
  private readonly maxDiffFiles: number;
  private readonly timeoutMs: number;
  private readonly fetch: FetchFunction;

  constructor(opts: GitLabHostOptions) {
    this.baseUrl = (opts.baseUrl ?? GITLAB_URL).replace(/\/+$/, '');
    this.budget = opts.budget;
    this.oauth = opts.oauth ?? null;
    this.pageSize = opts.pageSize ?? 100;
    this.maxDiffFiles = opts.maxDiffFiles ?? 1000;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    // Gitbeaker passes its own timeout signal (queryTimeout); the wrapper covers the OAuth calls.
    this.fetch = fetchWithTimeout(opts.fetch ?? globalThis.fetch, this.timeoutMs);
  }

  /** The account the token belongs to. */
  async getAccount(token: string): Promise<HostAccount> {
    const user = await this.call('read the authenticated user', () =>
      new Users(this.options(token)).showCurrentUser(),
    );
    return { id: String(user.id), login: user.username, name: user.name || null };
  }

  async listRepositories(token: string, page: number): Promise<HostRepositoryPage> {
    const { data, paginationInfo } = await this.call('list the projects of the user', () =>
      new Projects(this.options(token)).all({
        membership: true,
        pagination: 'offset',
        page,
        perPage: this.pageSize,
        orderBy: 'id',
        sort: 'asc',
        showExpanded: true,
      }),
    );
    return { repositories: data.map(toRepository), nextPage: paginationInfo.next };
  }

  async getRepository(token: string, owner: string, name: string): Promise<HostRepository> {
    const project = await this.call(`read project ${owner}/${name}`, () =>
      new Projects(this.options(token)).show(`${owner}/${name}`),
    );
    return toRepository(project);
  }

  async getBranchHead(token: string, owner: string, name: string, branch: string): Promise<string | null> {
    try {
      const found = await this.call(`read branch ${branch} of ${owner}/${name}`, () =>
        new Branches(this.options(token)).show(`${owner}/${name}`, branch),
      );
      return found.commit.id;
    } catch (error) {
      // A missing project is "404 Project Not Found"; only a missing branch is "404 Branch Not Found".
      if (error instanceof HostNotFound && /branch not found/i.test(error.hostMessage ?? '')) return null;
      throw error;
    }
  }

  async createWebhook(token: string, owner: string, name: string, hook: HostWebhookSpec): Promise<string> {
    const created = await this.call(`create a webhook on ${owner}/${name}`, () =>
      new ProjectHooks(this.options(token)).add(`${owner}/${name}`, hook.url, {
        token: hook.secret,
        pushEvents: hook.events.includes('push'),
        tagPushEvents: hook.events.includes('tag_push'),
        enableSslVerification: true,
      }),
    );
    return String(created.id);
  }

  async deleteWebhook(token: string, owner: string, name: string, hookId: string): Promise<void> {
    try {
      await this.call(`delete webhook ${hookId} of ${owner}/${name}`, () =>
        new ProjectHooks(this.options(token)).remove(`${owner}/${name}`, Number(hookId)),
      );
    } catch (error) {
      if (error instanceof HostNotFound) return;
      throw error;
    }
  }

  async compare(
    token: string,
    owner: string,
    name: string,
    base: string,
    head: string,
  ): Promise<HostComparison> {
    const project = `${owner}/${name}`;
    const options = this.options(token);
    const what = `compare ${base}...${head} in ${project}`;
    // The compare endpoint says neither the base SHA nor how the refs relate: the merge base does.
    const [comparison, mergeBase, baseSha] = await this.call(what, () =>
      Promise.all([
        new Repositories(options).compare(project, base, head, { straight: false }),
        new Repositories(options).mergeBase(project, [base, head]),
        FULL_SHA.test(base)
          ? Promise.resolve(base)
          : new Commits(options).show(project, base).then((c) => c.id),
      ]),
    );
    const commits = ((comparison.commits ?? []) as GitLabCommit[]).map(toCommit);
    const diffs = (comparison.diffs ?? []) as GitLabDiff[];
    const last = comparison.commit as GitLabCommit | null | undefined;
    // No commits in base..head: head is the merge base (identical or behind).
    const headSha = last?.id ?? mergeBase.id;
    let status: HostComparisonStatus;
    if (baseSha === headSha) status = 'identical';
    else if (mergeBase.id === baseSha) status = 'ahead';
    else if (mergeBase.id === headSha) status = 'behind';
    else status = 'diverged';
    const files = diffs.map(toChangedFile);
    return {
      status,
      aheadBy: commits.length,
      behindBy: status === 'ahead' || status === 'identical' ? 0 : null,
      baseSha,
      headSha,
      mergeBaseSha: mergeBase.id,
      commits,
      files,
      truncated: {
        commits: false,
        files: comparison.compare_timeout || diffs.length >= this.maxDiffFiles,
        timedOut: comparison.compare_timeout,
        patches: diffs.some((diff) => diff.too_large === true || diff.collapsed === true),
      },
    };
  }

  /**
   * GitLab's commit entity has no tree id, so the root tree object is rebuilt from the root listing
   * (`GET /projects/:id/repository/tree?ref=<sha>`, every page): its (mode, name, id) entries hashed the
   * way git hashes a tree. Only the root level is listed: subtrees come with their ids.
   */
  async getCommitTree(token: string, owner: string, name: string, sha: string): Promise<string> {
    const what = `list the root tree of ${sha} in ${owner}/${name}`;
    const entries = await this.call(what, () =>
      new Repositories(this.options(token)).allRepositoryTrees(`${owner}/${name}`, {
        ref: sha,
        perPage: 100,
      }),
    );
    try {
      return gitTreeObjectId(
        entries.map((entry) => ({
          mode: entry.mode,
          name: entry.name,
          id: entry.id.toLowerCase(),
        })),
        sha.length === 64 ? 'sha256' : 'sha1',
      );
    } catch (error) {
      throw new HostRequestFailed(
        'gitlab',
        200,
        `GitLab listed a tree entry of ${sha} in ${owner}/${name} that git cannot hold: ${(error as Error).message}`,
      );
    }
  }

  async getBlob(token: string, owner: string, name: string, sha: string): Promise<Buffer> {
    const blob = await this.call(`read blob ${sha} of ${owner}/${name}`, () =>
      new Repositories(this.options(token)).showBlobRaw(`${owner}/${name}`, sha),
    );
    return verifyBlob('gitlab', sha, Buffer.from(await blob.arrayBuffer()));
  }

  /** The repository files API (`GET /projects/:id/repository/files/:path?ref=`): base64 content and blob_id. */
  async getFileAtRef(
    token: string,
    owner: string,
    name: string,
    path: string,
    ref: string,
  ): Promise<HostFileContent> {
    const file = await this.call(`read ${path} at ${ref} of ${owner}/${name}`, () =>
      new RepositoryFiles(this.options(token)).show(`${owner}/${name}`, path, ref),
    );
    const content = Buffer.from(file.content, file.encoding === 'base64' ? 'base64' : 'utf8');
    return { content: verifyBlob('gitlab', file.blob_id, content), blobSha: file.blob_id };
  }

  async exchangeCode(code: string, redirectUri: string, codeVerifier?: string): Promise<HostTokenGrant> {
    const params: Record<string, string> = {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
    };
    if (codeVerifier !== undefined) params.code_verifier = codeVerifier;
    return this.tokenRequest('exchange the authorization code', params);
  }

  async refreshToken(refreshToken: string): Promise<HostTokenGrant> {
    return this.tokenRequest('refresh the token', {
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
    });
  }

  /** POST /oauth/token; GitLab answers 400/401 with `error` and `error_description` on refusal. */
  private async tokenRequest(what: string, params: Record<string, string>): Promise<HostTokenGrant> {
    if (!this.oauth)
      throw new Error('GitLabHost was created without an OAuth client (clientId, clientSecret)');
    const fetch = this.budget.fetchFor('gitlab', `oauth-client:${this.oauth.clientId}`, this.fetch);
    const body = new URLSearchParams({
      ...params,
      client_id: this.oauth.clientId,
      client_secret: this.oauth.clientSecret,
    });
    const response = await this.call(what, () =>
      fetch(`${this.baseUrl}/oauth/token`, {
        method: 'POST',
        headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
        body,
      }),
    );
    const text = await response.text();
    let data: GitLabTokenResponse = {};
    try {
      data = JSON.parse(text) as GitLabTokenResponse;
    } catch {
      // handled below: no access_token
    }
    if (response.status >= 500) {
      throw new HostUnavailable(
        'gitlab',
        `GitLab failed while trying to ${what} (HTTP ${response.status})`,
        response.status,
      );
    }
    if (!response.ok || !data.access_token) {
      const reason = data.error_description ?? data.error ?? `HTTP ${response.status}`;
      throw new HostAuthFailed('gitlab', `GitLab refused to ${what}: ${reason}`, response.status);
    }
    const grant: HostTokenGrant = {
      accessToken: data.access_token,
      scopes: (data.scope ?? '').split(/\s+/).filter(Boolean),
    };
    if (data.refresh_token) grant.refreshToken = data.refresh_token;
    if (typeof data.expires_in === 'number') {
      const issuedAtMs = typeof data.created_at === 'number' ? data.created_at * 1000 : Date.now();
      grant.expiresAt = new Date(issuedAtMs + data.expires_in * 1000);
    }
    return grant;
  }

  private options(token: string): {
    host: string;
    oauthToken: string;
    requesterFn: GitlabRequesterFn;
    queryTimeout: number;
  } {
    return {
      host: this.baseUrl,
      oauthToken: token,
      requesterFn: createGitlabRequester(this.budget.fetchFor('gitlab', token, this.fetch)),
      queryTimeout: this.timeoutMs,
    };
  }

  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw toGitLabHostError(error, what);
    }
  }
}
