/**
 * A usable access token for a connection, whatever its kind: a stored OAuth or personal token (decrypted in
 * memory), an OAuth token refreshed shortly before it expires (once, under a row lock, because refresh
 * tokens rotate), or a GitHub App installation token minted on demand and cached until shortly before its
 * hour is up. Tokens are never logged and never leave this process except towards the host.
 */
import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { DomainError } from '../common/errors.js';
import { SecretBox } from '../common/secret-box.js';
import { GIT_TOKEN_USERNAME } from '../hosts/code-host.js';
import { CodeHosts } from '../hosts/code-hosts.js';
import { HostAuthFailed, type HostProvider } from '../hosts/host-errors.js';
import { ConnectionsRepository } from './connections.repository.js';
import {
  type ConnectionGrant,
  type ConnectionWithSecrets,
  connectionTokenContext,
  hostProviderOf,
} from './connections.types.js';

/** A token renewed this long before it expires. */
const RENEW_BEFORE_MS = 5 * 60_000;

/** The connection cannot give a token until a user acts (reconnect, unsuspend, reinstall). */
export class ConnectionUnusable extends DomainError {
  readonly kind = 'conflict' as const;
  constructor(connectionId: string, reason: string) {
    super('CONNECTION_UNUSABLE', `connection ${connectionId} cannot be used: ${reason}`);
  }
}

export interface ConnectionToken {
  provider: HostProvider;
  token: string;
  /** The user name git sends with the token over HTTPS. */
  gitUsername: string;
}

@Injectable()
export class ConnectionTokens {
  private readonly logger = new Logger(ConnectionTokens.name);

  constructor(
    private readonly connections: ConnectionsRepository,
    private readonly hosts: CodeHosts,
    private readonly secrets: SecretBox,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** A token for the connection, valid for at least a few minutes. */
  async token(tenantId: string, connectionId: string): Promise<ConnectionToken> {
    const connection = await this.connections.getWithSecrets(tenantId, connectionId);
    if (!connection) throw new ConnectionUnusable(connectionId, 'it was deleted; pick another connection');
    const provider = hostProviderOf(connection.provider);
    if (connection.kind === 'APP_INSTALLATION') {
      return {
        provider,
        token: await this.installationToken(connection),
        gitUsername: GIT_TOKEN_USERNAME.github,
      };
    }
    const fresh = this.expiresSoon(connection) ? await this.renew(connection) : connection;
    if (!fresh.accessTokenEncrypted) throw new ConnectionUnusable(connectionId, 'it holds no access token');
    return {
      provider,
      token: this.secrets.decrypt(fresh.accessTokenEncrypted, connectionTokenContext(connectionId, 'access')),
      gitUsername: GIT_TOKEN_USERNAME[provider],
    };
  }

  /** Encrypts a grant for storage on the connection's row. */
  seal(connectionId: string, grant: { accessToken: string; refreshToken?: string }) {
    return {
      accessTokenEncrypted: this.secrets.encrypt(
        grant.accessToken,
        connectionTokenContext(connectionId, 'access'),
      ),
      refreshTokenEncrypted: grant.refreshToken
        ? this.secrets.encrypt(grant.refreshToken, connectionTokenContext(connectionId, 'refresh'))
        : null,
    };
  }

  private expiresSoon(c: { tokenExpiresAt: Date | null }): boolean {
    return c.tokenExpiresAt !== null && c.tokenExpiresAt.getTime() - Date.now() < RENEW_BEFORE_MS;
  }

  private async installationToken(connection: ConnectionWithSecrets): Promise<string> {
    const app = this.hosts.githubApp;
    if (!app) {
      throw new ConnectionUnusable(
        connection.id,
        'no GitHub App is configured (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY)',
      );
    }
    if (connection.suspendedAt) {
      throw new ConnectionUnusable(
        connection.id,
        connection.lastError ?? 'the GitHub App installation is suspended: unsuspend it on GitHub',
      );
    }
    if (!connection.installationId) throw new ConnectionUnusable(connection.id, 'it has no installation id');
    try {
      return (await app.installationToken(connection.installationId)).token;
    } catch (e) {
      if (e instanceof HostAuthFailed || (e instanceof DomainError && e.kind === 'not_found')) {
        const reason = `GitHub refused a token for installation ${connection.installationId} (removed or suspended)`;
        await this.connections.setLastError(connection.tenantId, connection.id, reason);
        throw new ConnectionUnusable(connection.id, reason);
      }
      throw e;
    }
  }

  /** Refreshes the access token under the row lock; a second caller finds it already renewed. */
  private async renew(connection: ConnectionWithSecrets): Promise<ConnectionWithSecrets> {
    const provider = hostProviderOf(connection.provider);
    const result = await this.connections.renewLocked(
      connection.tenantId,
      connection.id,
      async (current): Promise<ConnectionGrant | { error: string } | null> => {
        if (!this.expiresSoon(current)) return null;
        if (!current.refreshTokenEncrypted) {
          return {
            error: 'the access token expired and there is no refresh token: connect the account again',
          };
        }
        const refreshToken = this.secrets.decrypt(
          current.refreshTokenEncrypted,
          connectionTokenContext(current.id, 'refresh'),
        );
        try {
          const grant = await this.hosts.get(provider).refreshToken(refreshToken);
          this.logger.log({ connectionId: current.id, provider }, 'access token refreshed');
          return {
            ...this.seal(current.id, {
              accessToken: grant.accessToken,
              refreshToken: grant.refreshToken ?? refreshToken,
            }),
            tokenExpiresAt: grant.expiresAt ?? null,
            refreshTokenExpiresAt: current.refreshTokenExpiresAt,
            scopes: grant.scopes.length ? grant.scopes : current.scopes,
          };
        } catch (e) {
          if (e instanceof HostAuthFailed || (e instanceof DomainError && e.code === 'HOST_REQUEST_FAILED')) {
            return {
              error: `the host refused to refresh the token (${e.message}): connect the account again`,
            };
          }
          throw e;
        }
      },
      this.config.hosts.timeoutMs + 5000,
    );
    if (result === null) throw new ConnectionUnusable(connection.id, 'it was deleted');
    if ('error' in result) throw new ConnectionUnusable(connection.id, result.error);
    return result;
  }
}
