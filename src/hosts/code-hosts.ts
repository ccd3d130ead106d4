/**
 * The code hosts of this deployment, built once from config: one GitHub and one GitLab client sharing the
 * Redis-backed API budget, and the GitHub App's installation tokens when an app is configured.
 */
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { RedisService } from '../redis/redis.service.js';
import type { CodeHost } from './code-host.js';
import { GitHubAppInstallationTokens } from './github-app.js';
import { GitHubHost } from './github-host.js';
import { GitLabHost } from './gitlab-host.js';
import { HostApiBudget } from './host-budget.js';
import type { HostProvider } from './host-errors.js';

@Injectable()
export class CodeHosts {
  readonly budget: HostApiBudget;
  private readonly github: GitHubHost;
  private readonly gitlab: GitLabHost;
  /** Null when no GitHub App is configured (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY). */
  readonly githubApp: GitHubAppInstallationTokens | null;

  constructor(@Inject(APP_CONFIG) config: AppConfig, redis: RedisService) {
    const hosts = config.hosts;
    this.budget = new HostApiBudget({
      redis: redis.client,
      keyPrefix: `${config.redis.queuePrefix}:host-budget`,
      maxConcurrentPerToken: hosts.concurrencyPerToken,
    });
    const github = hosts.github;
    this.github = new GitHubHost({
      apiBaseUrl: github.apiUrl,
      budget: this.budget,
      timeoutMs: hosts.timeoutMs,
      oauth: github.oauth
        ? {
            clientId: github.oauth.clientId,
            clientSecret: github.oauth.clientSecret,
            clientType: github.oauth.clientType,
          }
        : undefined,
    });
    this.gitlab = new GitLabHost({
      baseUrl: hosts.gitlab.url,
      budget: this.budget,
      timeoutMs: hosts.timeoutMs,
      oauth: hosts.gitlab.oauth
        ? { clientId: hosts.gitlab.oauth.clientId, clientSecret: hosts.gitlab.oauth.clientSecret }
        : undefined,
    });
    this.githubApp = github.app
      ? new GitHubAppInstallationTokens({
          appId: github.app.id,
          privateKey: github.app.privateKey,
          apiBaseUrl: github.apiUrl,
          budget: this.budget,
          timeoutMs: hosts.timeoutMs,
        })
      : null;
  }

  /** The client of one host. */
  get(provider: HostProvider): CodeHost {
    return provider === 'github' ? this.github : this.gitlab;
  }

  /** The GitHub client with its GitHub-only calls (user installations). */
  get gitHub(): GitHubHost {
    return this.github;
  }
}
