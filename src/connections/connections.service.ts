import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { Conflict, DomainError, NotFound, ValidationFailed } from '../common/errors.js';
import { SecretBox } from '../common/secret-box.js';
import type { HostAccount, HostRepository } from '../hosts/code-host.js';
import { CodeHosts } from '../hosts/code-hosts.js';
import { parseRepositoryUrl, type RepositoryLocation } from '../repositories/repository-url.js';
import { ConnectionTokens } from './connection-tokens.js';
import { ConnectionsRepository } from './connections.repository.js';
import {
  type ConnectionKind,
  type ConnectionProvider,
  type ConnectionRecord,
  hostProviderOf,
  oauthVerifierContext,
} from './connections.types.js';

/** The OAuth callback could not complete: the user must start again. */
export class OAuthFlowFailed extends DomainError {
  readonly kind = 'invalid' as const;
  constructor(code: string, message: string) {
    super(code, message);
  }
}

class NotConfigured extends DomainError {
  readonly kind = 'conflict' as const;
  constructor(message: string) {
    super('NOT_CONFIGURED', message);
  }
}

export interface AuthorizationStart {
  url: string;
  state: string;
  expiresAt: Date;
}

export interface CallbackQuery {
  code?: string;
  state?: string;
  error?: string;
  errorDescription?: string;
  installationId?: string;
}

export interface CallbackResult {
  connection: ConnectionRecord;
  created: boolean;
  /** Where to send the browser (the returnTo given when the flow started), if any. */
  returnTo: string | null;
}

export interface ConnectionRepositoryEntry extends HostRepository {
  /** Id of the tenant's repository tracking it, or null. */
  trackedRepositoryId: string | null;
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

export function providerParam(value: string): ConnectionProvider {
  if (value === 'github') return 'GITHUB';
  if (value === 'gitlab') return 'GITLAB';
  throw ValidationFailed.field('provider', 'must be github or gitlab');
}

/** OAuth and GitHub App onboarding, personal-token connections, and what a connection can see. */
@Injectable()
export class ConnectionsService {
  private readonly logger = new Logger(ConnectionsService.name);

  constructor(
    private readonly connections: ConnectionsRepository,
    private readonly tokens: ConnectionTokens,
    private readonly hosts: CodeHosts,
    private readonly secrets: SecretBox,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The host name repositories of this provider are recorded under. */
  hostOf(provider: ConnectionProvider): string {
    return provider === 'GITHUB' ? this.config.webhooks.githubHost : this.config.webhooks.gitlabHost;
  }

  callbackUrl(provider: ConnectionProvider): string {
    return `${this.config.webhooks.publicUrl}/connections/${hostProviderOf(provider)}/callback`;
  }

  /** Starts the OAuth authorization code flow (PKCE S256): the URL to send the user's browser to. */
  async authorize(
    tenantId: string,
    provider: ConnectionProvider,
    returnTo?: string,
  ): Promise<AuthorizationStart> {
    const hosts = this.config.hosts;
    const oauth = provider === 'GITHUB' ? hosts.github.oauth : hosts.gitlab.oauth;
    if (!oauth) {
      const prefix = provider === 'GITHUB' ? 'GITHUB' : 'GITLAB';
      throw new NotConfigured(
        `OAuth is not configured for ${provider === 'GITHUB' ? 'GitHub' : 'GitLab'}: set ${prefix}_OAUTH_CLIENT_ID and ${prefix}_OAUTH_CLIENT_SECRET`,
      );
    }
    const verifier = randomBytes(48).toString('base64url');
    const { state, expiresAt } = await this.newState(tenantId, provider, 'oauth', returnTo, verifier);
    const params = new URLSearchParams({
      client_id: oauth.clientId,
      redirect_uri: this.callbackUrl(provider),
      state,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    });
    if (oauth.scopes.length) params.set('scope', oauth.scopes.join(' '));
    if (provider === 'GITLAB') params.set('response_type', 'code');
    const url =
      provider === 'GITHUB'
        ? `${hosts.github.webUrl}/login/oauth/authorize?${params.toString()}`
        : `${hosts.gitlab.url}/oauth/authorize?${params.toString()}`;
    return { url, state, expiresAt };
  }

  /** Starts a GitHub App installation: the app's install page, carrying a single-use state. */
  async install(tenantId: string, returnTo?: string): Promise<AuthorizationStart> {
    const github = this.config.hosts.github;
    if (!github.app?.slug) {
      throw new NotConfigured(
        'no GitHub App is configured: set GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and GITHUB_APP_SLUG',
      );
    }
    if (github.oauth?.clientType !== 'github-app') {
      throw new NotConfigured(
        "installations are verified with the app's user authorization: set GITHUB_OAUTH_CLIENT_ID/SECRET to the app's client and GITHUB_OAUTH_CLIENT_TYPE=github-app",
      );
    }
    const { state, expiresAt } = await this.newState(tenantId, 'GITHUB', 'install', returnTo, null);
    return {
      url: `${github.webUrl}/apps/${github.app.slug}/installations/new?${new URLSearchParams({ state }).toString()}`,
      state,
      expiresAt,
    };
  }

  /** Completes a flow started by authorize() or install(); the state alone identifies the tenant. */
  async callback(provider: ConnectionProvider, query: CallbackQuery): Promise<CallbackResult> {
    if (!query.state) {
      throw new OAuthFlowFailed(
        'OAUTH_STATE_MISSING',
        'the state parameter is missing: start again from the authorize endpoint',
      );
    }
    const state = await this.connections.consumeState(sha256(query.state), provider);
    if (!state) {
      throw new OAuthFlowFailed(
        'OAUTH_STATE_INVALID',
        'the state is unknown, expired or already used: start again from the authorize endpoint',
      );
    }
    if (query.error) {
      throw new OAuthFlowFailed(
        'OAUTH_DENIED',
        `the host did not authorize the connection (${query.error}${query.errorDescription ? `: ${query.errorDescription}` : ''})`,
      );
    }
    if (!query.code) throw new OAuthFlowFailed('OAUTH_CODE_MISSING', 'the code parameter is missing');
    const host = this.hosts.get(hostProviderOf(provider));
    const verifier = state.codeVerifierEncrypted
      ? this.secrets.decrypt(state.codeVerifierEncrypted, oauthVerifierContext(state.id))
      : undefined;
    const grant = await host.exchangeCode(query.code, this.callbackUrl(provider), verifier);
    const returnTo = state.redirectUri;

    if (state.purpose === 'install') {
      const connection = await this.claimInstallation(
        state.tenantId,
        grant.accessToken,
        query.installationId,
      );
      return { ...connection, returnTo };
    }
    const account = await host.getAccount(grant.accessToken);
    const { connection, created } = await this.storeAccount(state.tenantId, provider, 'OAUTH', account, {
      grant,
      expiresAt: grant.expiresAt ?? null,
      scopes: grant.scopes,
    });
    this.logger.log(
      { tenantId: state.tenantId, connectionId: connection.id, provider, created },
      'OAuth connection stored',
    );
    return { connection, created, returnTo };
  }

  /** Connects an account with a personal (or project) access token. */
  async createWithToken(
    tenantId: string,
    provider: ConnectionProvider,
    token: string,
  ): Promise<{ connection: ConnectionRecord; created: boolean }> {
    const account = await this.hosts.get(hostProviderOf(provider)).getAccount(token);
    const result = await this.storeAccount(tenantId, provider, 'TOKEN', account, {
      grant: { accessToken: token },
      expiresAt: null,
      scopes: [],
    });
    this.logger.log({ tenantId, connectionId: result.connection.id, provider }, 'token connection stored');
    return result;
  }

  list(tenantId: string) {
    return this.connections.list(tenantId);
  }

  async get(tenantId: string, id: string): Promise<ConnectionRecord> {
    const connection = await this.connections.get(tenantId, id);
    if (!connection) throw new NotFound('Connection', id);
    return connection;
  }

  async delete(tenantId: string, id: string): Promise<void> {
    await this.get(tenantId, id);
    const using = await this.connections.repositoryCount(tenantId, id);
    if (using > 0) {
      throw new Conflict(
        'CONNECTION_IN_USE',
        `${using} repositor${using === 1 ? 'y uses' : 'ies use'} this connection: delete them or add them again with another connection first`,
      );
    }
    await this.connections.delete(tenantId, id);
    this.logger.log({ tenantId, connectionId: id }, 'connection deleted');
  }

  /** One page of the repositories the connection can see, each with the id of the repository tracking it. */
  async repositories(
    tenantId: string,
    id: string,
    page: number,
  ): Promise<{ items: ConnectionRepositoryEntry[]; nextPage: number | null }> {
    const connection = await this.get(tenantId, id);
    const { provider, token } = await this.tokens.token(tenantId, id);
    const listed = await this.hosts.get(provider).listRepositories(token, page);
    const tracked = await this.connections.trackedRepositories(
      tenantId,
      connection.host,
      listed.repositories.map((r) => r.fullName),
    );
    return {
      items: listed.repositories.map((r) => ({
        ...r,
        trackedRepositoryId: tracked.get(r.fullName.toLowerCase()) ?? null,
      })),
      nextPage: listed.nextPage,
    };
  }

  /**
   * Where a repository the connection can see lives: owner, name and clone URL as the host reports them
   * (the clone URL still passes the SSRF rules), and its default branch.
   */
  async locateRepository(
    tenantId: string,
    connectionId: string,
    ref: { url?: string; provider?: string; owner?: string; name?: string },
  ): Promise<{ location: RepositoryLocation; defaultBranch: string | null }> {
    const connection = await this.connections.get(tenantId, connectionId);
    if (!connection)
      throw ValidationFailed.field('connectionId', 'no connection with this id exists in your tenant');
    if (ref.provider !== undefined && ref.provider !== connection.provider) {
      throw ValidationFailed.field('provider', `the connection is a ${connection.provider} connection`);
    }
    const policy = { allowInsecure: this.config.repositories.allowInsecureUrls };
    let owner = ref.owner;
    let name = ref.name;
    if (ref.url !== undefined) {
      const parsed = parseRepositoryUrl(ref.url, policy, connection.provider);
      if (parsed.host !== connection.host) {
        throw ValidationFailed.field('url', `the connection is for ${connection.host}, not ${parsed.host}`);
      }
      owner = parsed.owner;
      name = parsed.name;
    }
    if (!owner || !name)
      throw ValidationFailed.field('name', 'give url, or owner and name, of the repository');
    const { provider, token } = await this.tokens.token(tenantId, connectionId);
    let found: HostRepository;
    try {
      found = await this.hosts.get(provider).getRepository(token, owner, name);
    } catch (e) {
      if (e instanceof DomainError && e.kind === 'not_found') {
        throw ValidationFailed.field(
          'name',
          `${owner}/${name} does not exist on ${connection.host} or connection ${connectionId} cannot see it`,
        );
      }
      throw e;
    }
    let cloneUrl: string;
    try {
      cloneUrl = parseRepositoryUrl(found.cloneUrl, policy, connection.provider).cloneUrl;
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      throw ValidationFailed.field(
        'connectionId',
        `the host reported a clone URL that is not allowed (${reason})`,
      );
    }
    return {
      location: {
        provider: connection.provider,
        host: connection.host,
        owner: found.owner,
        name: found.name,
        cloneUrl,
      },
      defaultBranch: found.defaultBranch,
    };
  }

  /** Creates the account's connection, or renews the grant of the one it already has (same id). */
  private storeAccount(
    tenantId: string,
    provider: ConnectionProvider,
    kind: ConnectionKind,
    account: HostAccount,
    opts: {
      grant: { accessToken: string; refreshToken?: string } | null;
      expiresAt: Date | null;
      scopes: string[];
      installationId?: string;
    },
  ) {
    const grant = opts.grant;
    return this.connections.upsert(
      tenantId,
      {
        provider,
        kind,
        host: this.hostOf(provider),
        accountId: account.id,
        accountLogin: account.login,
        installationId: opts.installationId ?? null,
        tokenExpiresAt: opts.expiresAt,
        refreshTokenExpiresAt: null,
        scopes: opts.scopes,
      },
      (id) =>
        grant ? this.tokens.seal(id, grant) : { accessTokenEncrypted: null, refreshTokenEncrypted: null },
    );
  }

  private async newState(
    tenantId: string,
    provider: ConnectionProvider,
    purpose: 'oauth' | 'install',
    returnTo: string | undefined,
    verifier: string | null,
  ): Promise<{ state: string; expiresAt: Date }> {
    if (returnTo !== undefined) this.checkReturnTo(returnTo);
    const state = randomBytes(32).toString('base64url');
    const id = randomUUID();
    const expiresAt = new Date(Date.now() + this.config.hosts.oauthStateTtlSeconds * 1000);
    await this.connections.createState({
      id,
      stateHash: sha256(state),
      tenantId,
      provider,
      purpose,
      codeVerifierEncrypted:
        verifier === null ? null : this.secrets.encrypt(verifier, oauthVerifierContext(id)),
      redirectUri: returnTo ?? null,
      expiresAt,
    });
    return { state, expiresAt };
  }

  /** returnTo must start with one of OAUTH_RETURN_URLS: the callback must not be an open redirect. */
  private checkReturnTo(returnTo: string): void {
    let parsed: URL;
    try {
      parsed = new URL(returnTo);
    } catch {
      throw ValidationFailed.field('returnTo', 'must be an absolute URL');
    }
    // Same origin first: a bare prefix like https://app.example.com also matches
    // https://app.example.com.evil.net/ and https://app.example.com@evil.net/.
    const allowed = this.config.hosts.returnUrls.some((prefix) => {
      const base = URL.canParse(prefix) ? new URL(prefix) : null;
      return (
        base !== null &&
        parsed.origin === base.origin &&
        !parsed.username &&
        !parsed.password &&
        parsed.href.startsWith(base.href)
      );
    });
    if (!allowed) {
      throw ValidationFailed.field(
        'returnTo',
        this.config.hosts.returnUrls.length
          ? `must start with one of: ${this.config.hosts.returnUrls.join(', ')}`
          : 'no return URLs are allowed on this deployment (OAUTH_RETURN_URLS is empty); omit returnTo',
      );
    }
  }

  /**
   * The user came back from installing the GitHub App: the installation id in the URL is only trusted once
   * GitHub confirms, with the user's own token, that this user can access that installation of our app.
   */
  private async claimInstallation(
    tenantId: string,
    userToken: string,
    installationId: string | undefined,
  ): Promise<{ connection: ConnectionRecord; created: boolean }> {
    if (!installationId || !/^\d+$/.test(installationId)) {
      throw new OAuthFlowFailed(
        'INSTALLATION_ID_MISSING',
        'installation_id is missing: install the app again from the install URL',
      );
    }
    const app = this.config.hosts.github.app!;
    const installations = await this.hosts.gitHub.listUserInstallations(userToken);
    const installation = installations.find((i) => i.id === installationId && i.appId === app.id);
    if (!installation) {
      throw new OAuthFlowFailed(
        'INSTALLATION_NOT_ACCESSIBLE',
        `installation ${installationId} of this app is not accessible to the GitHub user who completed the flow`,
      );
    }
    const others = (await this.connections.byInstallation(installationId)).filter(
      (c) => c.tenantId !== tenantId,
    );
    if (others.length > 0) {
      throw new Conflict(
        'INSTALLATION_CLAIMED',
        `installation ${installationId} is already connected to another tenant`,
      );
    }
    const result = await this.storeAccount(tenantId, 'GITHUB', 'APP_INSTALLATION', installation.account, {
      grant: null,
      expiresAt: null,
      scopes: [],
      installationId,
    });
    if (installation.suspended) {
      await this.connections.updateInstallation(installationId, { suspendedAt: new Date() });
    }
    this.logger.log(
      { tenantId, connectionId: result.connection.id, installationId },
      'GitHub App installation connected',
    );
    return result;
  }
}
