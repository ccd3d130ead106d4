/**
 * GitHub App installation tokens: minted with @octokit/auth-app (an RS256 JWT signed with the app's private
 * key, exchanged at POST /app/installations/{id}/access_tokens) when first needed, then served from memory
 * until shortly before they expire. Concurrent callers for one installation share one mint.
 */
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { GITHUB_API_URL, toGitHubHostError } from './github-host.js';
import { fetchWithTimeout, type FetchFunction, type HostApiBudget } from './host-budget.js';

export interface GitHubAppOptions {
  appId: number | string;
  /** The app's private key, PEM (PKCS#1 or PKCS#8). */
  privateKey: string;
  /** REST API root: `https://api.github.com` (default) or `https://ghe.example.com/api/v3`. */
  apiBaseUrl?: string;
  budget: HostApiBudget;
  /** A cached token is replaced once it expires within this margin (default 5 minutes). */
  renewBeforeMs?: number;
  now?: () => number;
  timeoutMs?: number;
  userAgent?: string;
  fetch?: FetchFunction;
}

export interface InstallationAccessToken {
  token: string;
  expiresAt: Date;
  permissions: Record<string, string>;
  repositorySelection: 'all' | 'selected' | null;
}

const SILENT_LOG = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

export class GitHubAppInstallationTokens {
  private readonly auth: ReturnType<typeof createAppAuth>;
  private readonly renewBeforeMs: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, InstallationAccessToken>();
  private readonly minting = new Map<string, Promise<InstallationAccessToken>>();
  private readonly appId: string;

  constructor(opts: GitHubAppOptions) {
    const apiBaseUrl = (opts.apiBaseUrl ?? GITHUB_API_URL).replace(/\/+$/, '');
    this.appId = String(opts.appId);
    this.renewBeforeMs = opts.renewBeforeMs ?? 5 * 60_000;
    this.now = opts.now ?? Date.now;
    const fetch = fetchWithTimeout(opts.fetch ?? globalThis.fetch, opts.timeoutMs ?? 30_000);
    const octokit = new Octokit({
      baseUrl: apiBaseUrl,
      userAgent: opts.userAgent ?? 'reposync',
      log: SILENT_LOG,
      // The app's budget is keyed by the app, not by the JWT (a new one every mint).
      request: { fetch: opts.budget.fetchFor('github', `github-app:${apiBaseUrl}:${this.appId}`, fetch) },
    });
    this.auth = createAppAuth({ appId: opts.appId, privateKey: opts.privateKey, request: octokit.request });
  }

  /** A token for the installation, minted when none is cached or the cached one expires within the margin. */
  async installationToken(installationId: number | string): Promise<InstallationAccessToken> {
    const key = String(installationId);
    const cached = this.cache.get(key);
    if (cached && cached.expiresAt.getTime() - this.now() > this.renewBeforeMs) return cached;
    const running = this.minting.get(key);
    if (running) return running;
    const mint = this.mint(key).finally(() => this.minting.delete(key));
    this.minting.set(key, mint);
    return mint;
  }

  /** Drops a cached token (e.g. after the host rejected it), so the next call mints a new one. */
  forget(installationId: number | string): void {
    this.cache.delete(String(installationId));
  }

  private async mint(installationId: string): Promise<InstallationAccessToken> {
    let minted: Awaited<ReturnType<typeof this.mintWithAuthApp>>;
    try {
      minted = await this.mintWithAuthApp(installationId);
    } catch (error) {
      throw toGitHubHostError(error, `mint a token for installation ${installationId} of app ${this.appId}`);
    }
    const token: InstallationAccessToken = {
      token: minted.token,
      expiresAt: new Date(minted.expiresAt),
      permissions: Object.fromEntries(
        Object.entries(minted.permissions).filter(
          (entry): entry is [string, string] => typeof entry[1] === 'string',
        ),
      ),
      repositorySelection: minted.repositorySelection ?? null,
    };
    this.cache.set(installationId, token);
    return token;
  }

  private mintWithAuthApp(installationId: string) {
    // refresh: auth-app keeps its own cache on the wall clock; ours decides when to mint.
    return this.auth({ type: 'installation', installationId, refresh: true });
  }
}
