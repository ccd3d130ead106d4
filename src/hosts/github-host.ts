/**
 * GitHub (github.com or GitHub Enterprise Server at `https://host/api/v3`) behind the CodeHost interface,
 * with @octokit/rest for the REST API and @octokit/oauth-methods for the OAuth token endpoint. Every
 * request goes through the per-token HostApiBudget (it is Octokit's fetch).
 */
import { exchangeWebFlowCode, refreshToken as refreshOAuthToken } from '@octokit/oauth-methods';
import { Octokit, type RestEndpointMethodTypes } from '@octokit/rest';
import { verifyBlob } from './blob-integrity.js';
import type {
  CodeHost,
  HostAccount,
  HostChangedFile,
  HostCommit,
  HostComparison,
  HostFileContent,
  HostFileStatus,
  HostRepository,
  HostRepositoryPage,
  HostSignature,
  HostTokenGrant,
  HostWebhookSpec,
} from './code-host.js';
import { fetchWithTimeout, type FetchFunction, type HostApiBudget } from './host-budget.js';
import {
  HostAuthFailed,
  HostError,
  HostNotFound,
  HostRequestFailed,
  HostUnavailable,
} from './host-errors.js';

export const GITHUB_API_URL = 'https://api.github.com';
/** GitHub's compare lists at most this many files and says nothing when it stops there. */
export const GITHUB_COMPARE_FILE_LIMIT = 300;

export interface GitHubOAuthClient {
  clientId: string;
  clientSecret: string;
  /** `github-app` for a GitHub App's user tokens (they expire and refresh), `oauth-app` otherwise. */
  clientType: 'oauth-app' | 'github-app';
}

/** A GitHub App installation as a user sees it. */
export interface GitHubUserInstallation {
  id: string;
  appId: string;
  account: HostAccount;
  suspended: boolean;
}

export interface GitHubHostOptions {
  /** REST API root: `https://api.github.com` (default) or `https://ghe.example.com/api/v3`. */
  apiBaseUrl?: string;
  budget: HostApiBudget;
  oauth?: GitHubOAuthClient;
  /** Time limit of one request (default 30 s). */
  timeoutMs?: number;
  /** Repositories per page of listRepositories (default 100, GitHub's maximum). */
  pageSize?: number;
  userAgent?: string;
  /** Replaces global fetch (tests). */
  fetch?: FetchFunction;
}

type RepositoryData =
  | RestEndpointMethodTypes['repos']['get']['response']['data']
  | RestEndpointMethodTypes['repos']['listForAuthenticatedUser']['response']['data'][number];
type ComparisonData = RestEndpointMethodTypes['repos']['compareCommitsWithBasehead']['response']['data'];
type CommitData = ComparisonData['commits'][number];
type DiffEntryData = NonNullable<ComparisonData['files']>[number];

const SILENT_LOG = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
const FULL_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** The page number of the `rel="next"` link of a Link header, or null. */
export function nextPageFromLinkHeader(link: string | undefined | null): number | null {
  if (!link) return null;
  for (const part of link.split(',')) {
    const match = /<([^>]+)>\s*;\s*rel="?next"?/.exec(part);
    if (!match?.[1]) continue;
    const page = new URL(match[1]).searchParams.get('page');
    return page === null ? null : Number(page);
  }
  return null;
}

/** GitHub App installation tokens start with `ghs_`; they list repositories through /installation. */
export function isInstallationToken(token: string): boolean {
  return token.startsWith('ghs_');
}

interface OctokitRequestError extends Error {
  status: number;
  response?: { data: unknown; headers: Record<string, string | number | undefined> };
}

function isOctokitRequestError(error: unknown): error is OctokitRequestError {
  return (
    error instanceof Error &&
    error.name === 'HttpError' &&
    typeof (error as Partial<OctokitRequestError>).status === 'number'
  );
}

function messageOf(data: unknown): string | null {
  if (typeof data === 'object' && data !== null) {
    const record = data as Record<string, unknown>;
    if (typeof record.error_description === 'string') return record.error_description;
    if (typeof record.message === 'string') return record.message;
  }
  return typeof data === 'string' && data.length > 0 ? data.slice(0, 300) : null;
}

/** Turns whatever Octokit threw while trying to `what` into a typed host error. */
export function toGitHubHostError(error: unknown, what: string): unknown {
  if (error instanceof HostError) return error;
  const cause = (error as { cause?: unknown } | null)?.cause;
  if (cause instanceof HostError) return cause;
  if (!isOctokitRequestError(error)) {
    const name = typeof error === 'object' && error !== null ? (error as { name?: unknown }).name : undefined;
    if (name === 'AbortError' || name === 'TimeoutError') {
      return new HostUnavailable('github', `GitHub did not answer in time while trying to ${what}`);
    }
    return error;
  }
  const status = error.status;
  const hostMessage = messageOf(error.response?.data);
  if (!error.response) {
    return new HostUnavailable(
      'github',
      `GitHub could not be reached while trying to ${what}: ${error.message}`,
    );
  }
  if (status === 401) {
    return new HostAuthFailed(
      'github',
      `GitHub rejected the credential while trying to ${what} (401); reconnect it`,
    );
  }
  if (status === 404) {
    return new HostNotFound(
      'github',
      `GitHub found nothing to ${what} (404: ${hostMessage ?? 'Not Found'})`,
      hostMessage,
    );
  }
  if (status >= 500) {
    return new HostUnavailable('github', `GitHub failed while trying to ${what} (HTTP ${status})`, status);
  }
  return new HostRequestFailed(
    'github',
    status,
    `GitHub refused to ${what} (HTTP ${status}${hostMessage ? `: ${hostMessage}` : ''})`,
  );
}

/** GitHub separates granted scopes with commas (`repo,admin:repo_hook`); oauth-methods splits on spaces. */
function splitScopes(scope: string | undefined): string[] {
  return (scope ?? '').split(/[\s,]+/).filter(Boolean);
}

function signature(
  user: { name?: string; email?: string; date?: string } | null | undefined,
): HostSignature | null {
  if (!user || user.date === undefined) return null;
  return { name: user.name ?? '', email: user.email ?? '', date: new Date(user.date) };
}

function toRepository(data: RepositoryData): HostRepository {
  return {
    id: String(data.id),
    owner: data.owner.login,
    name: data.name,
    fullName: data.full_name,
    cloneUrl: data.clone_url,
    webUrl: data.html_url,
    defaultBranch: data.default_branch || null,
    private: data.private,
    archived: data.archived,
  };
}

function toCommit(data: CommitData): HostCommit {
  return {
    sha: data.sha,
    parents: data.parents.map((parent) => parent.sha),
    message: data.commit.message.replace(/\n+$/, ''),
    author: signature(data.commit.author),
    committer: signature(data.commit.committer),
  };
}

function toChangedFile(entry: DiffEntryData): HostChangedFile | null {
  if (entry.status === 'unchanged') return null;
  const status: HostFileStatus = entry.status;
  return {
    path: entry.filename,
    previousPath: entry.previous_filename ?? null,
    status,
    sha: status === 'removed' ? null : entry.sha,
    mode: null,
    previousMode: null,
    additions: entry.additions,
    deletions: entry.deletions,
    patchAvailable: typeof entry.patch === 'string',
  };
}

/** Head SHA from `permalink_url` (`.../compare/owner:base...owner:head`), GitHub's only full statement of it. */
function headFromPermalink(permalink: string): string | null {
  const match = /\.\.\.(?:[^/:]+:)?([0-9a-f]{40}|[0-9a-f]{64})$/.exec(permalink);
  return match?.[1] ?? null;
}

/** The resolved head of a comparison; GitHub states it only through the commits list and permalink_url. */
function headShaOf(
  data: ComparisonData,
  head: string,
  commits: HostCommit[],
  commitsComplete: boolean,
): string | null {
  if (FULL_SHA.test(head)) return head;
  if (data.status === 'identical') return data.base_commit.sha;
  // Behind: head is an ancestor of base, so it is the merge base.
  if (data.status === 'behind') return data.merge_base_commit.sha;
  const last = commits[commits.length - 1];
  if (commitsComplete && last) return last.sha;
  return headFromPermalink(data.permalink_url);
}

export class GitHubHost implements CodeHost {
  readonly provider = 'github' as const;
  private readonly apiBaseUrl: string;
  private readonly budget: HostApiBudget;
  private readonly oauth: GitHubOAuthClient | null;
  private readonly pageSize: number;
  private readonly userAgent: string;
  private readonly fetch: FetchFunction;

  constructor(opts: GitHubHostOptions) {
    this.apiBaseUrl = (opts.apiBaseUrl ?? GITHUB_API_URL).replace(/\/+$/, '');
    this.budget = opts.budget;
    this.oauth = opts.oauth ?? null;
    this.pageSize = opts.pageSize ?? 100;
    this.userAgent = opts.userAgent ?? 'reposync';
    this.fetch = fetchWithTimeout(opts.fetch ?? globalThis.fetch, opts.timeoutMs ?? 30_000);
  }

  /** The account a user token belongs to (installation tokens have none: GitHub answers 403). */
  async getAccount(token: string): Promise<HostAccount> {
    const { data } = await this.call('read the authenticated user', () =>
      this.client(token).rest.users.getAuthenticated(),
    );
    return { id: String(data.id), login: data.login, name: data.name ?? null };
  }

  async listRepositories(token: string, page: number): Promise<HostRepositoryPage> {
    const octokit = this.client(token);
    if (isInstallationToken(token)) {
      const response = await this.call('list the installation repositories', () =>
        octokit.rest.apps.listReposAccessibleToInstallation({ per_page: this.pageSize, page }),
      );
      return {
        repositories: response.data.repositories.map(toRepository),
        nextPage: nextPageFromLinkHeader(response.headers.link),
      };
    }
    const response = await this.call('list the repositories of the user', () =>
      octokit.rest.repos.listForAuthenticatedUser({
        per_page: this.pageSize,
        page,
        sort: 'full_name',
        direction: 'asc',
      }),
    );
    return {
      repositories: response.data.map(toRepository),
      nextPage: nextPageFromLinkHeader(response.headers.link),
    };
  }

  async getRepository(token: string, owner: string, name: string): Promise<HostRepository> {
    const { data } = await this.call(`read repository ${owner}/${name}`, () =>
      this.client(token).rest.repos.get({ owner, repo: name }),
    );
    return toRepository(data);
  }

  async getBranchHead(token: string, owner: string, name: string, branch: string): Promise<string | null> {
    try {
      const { data } = await this.call(`read branch ${branch} of ${owner}/${name}`, () =>
        this.client(token).rest.repos.getBranch({ owner, repo: name, branch }),
      );
      return data.commit.sha;
    } catch (error) {
      // A missing repository is "Not Found"; only a missing branch is "Branch not found".
      if (error instanceof HostNotFound && error.hostMessage === 'Branch not found') return null;
      throw error;
    }
  }

  async createWebhook(token: string, owner: string, name: string, hook: HostWebhookSpec): Promise<string> {
    // push covers branches and tags; create and delete report branches made or removed without commits.
    const { data } = await this.call(`create a webhook on ${owner}/${name}`, () =>
      this.client(token).rest.repos.createWebhook({
        owner,
        repo: name,
        name: 'web',
        active: true,
        events: ['push', 'create', 'delete'],
        config: { url: hook.url, content_type: 'json', secret: hook.secret, insecure_ssl: '0' },
      }),
    );
    return String(data.id);
  }

  async deleteWebhook(token: string, owner: string, name: string, hookId: string): Promise<void> {
    try {
      await this.call(`delete webhook ${hookId} of ${owner}/${name}`, () =>
        this.client(token).rest.repos.deleteWebhook({ owner, repo: name, hook_id: Number(hookId) }),
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
    const { data } = await this.call(`compare ${base}...${head} in ${owner}/${name}`, () =>
      this.client(token).rest.repos.compareCommitsWithBasehead({
        owner,
        repo: name,
        basehead: `${base}...${head}`,
      }),
    );
    const commits = data.commits.map(toCommit);
    const files = (data.files ?? [])
      .map(toChangedFile)
      .filter((file): file is HostChangedFile => file !== null);
    const commitsComplete = data.commits.length >= data.total_commits;
    const headSha = headShaOf(data, head, commits, commitsComplete);
    if (!headSha) {
      throw new HostRequestFailed(
        'github',
        200,
        `GitHub's comparison of ${base}...${head} does not name its head commit`,
      );
    }
    return {
      status: data.status,
      aheadBy: data.ahead_by,
      behindBy: data.behind_by,
      baseSha: data.base_commit.sha,
      headSha,
      mergeBaseSha: data.merge_base_commit.sha,
      commits,
      files,
      truncated: {
        commits: !commitsComplete,
        files: (data.files?.length ?? 0) >= GITHUB_COMPARE_FILE_LIMIT,
        timedOut: false,
        // GitHub drops the patch of a large diff; binaries have no patch and no line counts.
        patches: files.some(
          (file) => !file.patchAvailable && (file.additions ?? 0) + (file.deletions ?? 0) > 0,
        ),
      },
    };
  }

  /** `GET /repos/{owner}/{repo}/git/commits/{sha}`: the commit's `tree.sha`. */
  async getCommitTree(token: string, owner: string, name: string, sha: string): Promise<string> {
    const { data } = await this.call(`read commit ${sha} of ${owner}/${name}`, () =>
      this.client(token).rest.git.getCommit({ owner, repo: name, commit_sha: sha }),
    );
    const tree = data.tree.sha.toLowerCase();
    if ((FULL_SHA.test(sha) && data.sha.toLowerCase() !== sha.toLowerCase()) || !FULL_SHA.test(tree)) {
      throw new HostRequestFailed(
        'github',
        200,
        `GitHub answered commit ${data.sha} with tree ${JSON.stringify(data.tree.sha)} when asked for commit ${sha}`,
      );
    }
    return tree;
  }

  async getBlob(token: string, owner: string, name: string, sha: string): Promise<Buffer> {
    const { data } = await this.call(`read blob ${sha} of ${owner}/${name}`, () =>
      this.client(token).rest.git.getBlob({ owner, repo: name, file_sha: sha }),
    );
    const content = Buffer.from(data.content, data.encoding === 'base64' ? 'base64' : 'utf8');
    return verifyBlob('github', sha, content);
  }

  /**
   * The contents API (`GET /repos/{owner}/{repo}/contents/{path}?ref=`): inline base64 up to 1 MB; larger
   * files and symlinks are read as blobs by their SHA. GitHub resolves a symlink to a file into that file,
   * which is refused (compare-delta reads GitHub content by blob SHA anyway).
   */
  async getFileAtRef(
    token: string,
    owner: string,
    name: string,
    path: string,
    ref: string,
  ): Promise<HostFileContent> {
    const { data } = await this.call(`read ${path} at ${ref} of ${owner}/${name}`, () =>
      this.client(token).rest.repos.getContent({ owner, repo: name, path, ref }),
    );
    if (Array.isArray(data) || (data.type !== 'file' && data.type !== 'symlink')) {
      const kind = Array.isArray(data) ? 'dir' : data.type;
      throw new HostRequestFailed(
        'github',
        200,
        `${path} at ${ref} of ${owner}/${name} is a ${kind}, not a file`,
      );
    }
    // For a symlink to a file GitHub answers with the target file (its path, its content), not the link.
    if (data.path !== path) {
      throw new HostRequestFailed(
        'github',
        200,
        `${path} at ${ref} of ${owner}/${name} is a symlink GitHub resolved to ${data.path}; read it by blob SHA`,
      );
    }
    if (data.type === 'file' && 'content' in data && data.encoding === 'base64' && data.content !== '') {
      const content = Buffer.from(data.content, 'base64');
      return { content: verifyBlob('github', data.sha, content), blobSha: data.sha };
    }
    return { content: await this.getBlob(token, owner, name, data.sha), blobSha: data.sha };
  }

  async exchangeCode(code: string, redirectUri: string, codeVerifier?: string): Promise<HostTokenGrant> {
    const oauth = this.requireOAuth();
    const request = this.oauthRequest(oauth, codeVerifier);
    const what = 'exchange the authorization code';
    if (oauth.clientType === 'oauth-app') {
      const { data, authentication } = await this.callOAuth(what, () =>
        exchangeWebFlowCode({ ...oauth, clientType: 'oauth-app', code, redirectUrl: redirectUri, request }),
      );
      return { accessToken: authentication.token, scopes: splitScopes(data.scope) };
    }
    const { authentication } = await this.callOAuth(what, () =>
      exchangeWebFlowCode({ ...oauth, clientType: 'github-app', code, redirectUrl: redirectUri, request }),
    );
    // GitHub App user tokens carry the app's permissions, not OAuth scopes.
    const grant: HostTokenGrant = { accessToken: authentication.token, scopes: [] };
    if ('refreshToken' in authentication) grant.refreshToken = authentication.refreshToken;
    if ('expiresAt' in authentication) grant.expiresAt = new Date(authentication.expiresAt);
    return grant;
  }

  async refreshToken(refreshToken: string): Promise<HostTokenGrant> {
    const oauth = this.requireOAuth();
    if (oauth.clientType !== 'github-app') {
      throw new HostRequestFailed(
        'github',
        400,
        'GitHub OAuth app tokens do not expire and have no refresh token',
      );
    }
    const { authentication } = await this.callOAuth('refresh the user token', () =>
      refreshOAuthToken({
        ...oauth,
        clientType: 'github-app',
        refreshToken,
        request: this.oauthRequest(oauth),
      }),
    );
    return {
      accessToken: authentication.token,
      refreshToken: authentication.refreshToken,
      expiresAt: new Date(authentication.expiresAt),
      scopes: [],
    };
  }

  /**
   * GitHub App installations the user behind a user token can access (GitHub App user tokens only). Used
   * to prove that the user who came back from installing the app may connect that installation.
   */
  async listUserInstallations(token: string): Promise<GitHubUserInstallation[]> {
    const octokit = this.client(token);
    const found: GitHubUserInstallation[] = [];
    for (let page = 1; page <= 10; page++) {
      const { data } = await this.call('list the installations of the user', () =>
        octokit.rest.apps.listInstallationsForAuthenticatedUser({ per_page: 100, page }),
      );
      for (const installation of data.installations) {
        const account = installation.account;
        const login =
          account && 'login' in account ? account.login : account && 'slug' in account ? account.slug : '';
        found.push({
          id: String(installation.id),
          appId: String(installation.app_id),
          account: {
            id: String(account?.id ?? ''),
            login,
            name: account && 'name' in account ? (account.name ?? null) : null,
          },
          suspended: installation.suspended_at !== null && installation.suspended_at !== undefined,
        });
      }
      if (data.installations.length < 100) break;
    }
    return found;
  }

  private client(token: string): Octokit {
    return new Octokit({
      auth: token,
      baseUrl: this.apiBaseUrl,
      userAgent: this.userAgent,
      log: SILENT_LOG,
      request: { fetch: this.budget.fetchFor('github', token, this.fetch) },
    });
  }

  /** Octokit's request for the OAuth endpoints (oauth-methods derives github.com or the GHES root from it). */
  private oauthRequest(oauth: GitHubOAuthClient, codeVerifier?: string): Octokit['request'] {
    const octokit = new Octokit({
      baseUrl: this.apiBaseUrl,
      userAgent: this.userAgent,
      log: SILENT_LOG,
      request: { fetch: this.budget.fetchFor('github', `oauth-client:${oauth.clientId}`, this.fetch) },
    });
    // Extra parameters of a POST become body fields: this adds the PKCE verifier to the token request.
    return codeVerifier === undefined
      ? octokit.request
      : octokit.request.defaults({ code_verifier: codeVerifier });
  }

  private requireOAuth(): GitHubOAuthClient {
    if (!this.oauth)
      throw new Error('GitHubHost was created without an OAuth client (clientId, clientSecret)');
    return this.oauth;
  }

  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw toGitHubHostError(error, what);
    }
  }

  private async callOAuth<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      // The token endpoint answers 200 with `error` in the body; oauth-methods turns that into a 400.
      if (isOctokitRequestError(error) && error.status === 400) {
        const description = messageOf(error.response?.data) ?? error.message;
        throw new HostAuthFailed('github', `GitHub refused to ${what}: ${description}`, 400);
      }
      throw toGitHubHostError(error, what);
    }
  }
}
