import type { HostProvider } from '../hosts/host-errors.js';

export type ConnectionProvider = 'GITHUB' | 'GITLAB';
export type ConnectionKind = 'OAUTH' | 'APP_INSTALLATION' | 'TOKEN';

/** A connection as the API shows it: never a token. */
export interface ConnectionRecord {
  id: string;
  tenantId: string;
  provider: ConnectionProvider;
  kind: ConnectionKind;
  host: string;
  accountLogin: string;
  accountId: string;
  scopes: string[];
  installationId: string | null;
  tokenExpiresAt: Date | null;
  lastError: string | null;
  suspendedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

/** A connection with its encrypted credentials, for the token service only. */
export interface ConnectionWithSecrets extends ConnectionRecord {
  accessTokenEncrypted: string | null;
  refreshTokenEncrypted: string | null;
  refreshTokenExpiresAt: Date | null;
}

/** What a new or renewed grant stores (ciphertexts made by the caller). */
export interface ConnectionGrant {
  accessTokenEncrypted: string | null;
  refreshTokenEncrypted: string | null;
  tokenExpiresAt: Date | null;
  refreshTokenExpiresAt: Date | null;
  scopes: string[];
}

/** A connection to store; its ciphertexts are made once its id is known (they are bound to it). */
export interface NewConnection extends Omit<
  ConnectionGrant,
  'accessTokenEncrypted' | 'refreshTokenEncrypted'
> {
  provider: ConnectionProvider;
  kind: ConnectionKind;
  host: string;
  accountLogin: string;
  accountId: string;
  installationId: string | null;
}

export interface OAuthStateRecord {
  id: string;
  tenantId: string;
  provider: ConnectionProvider;
  purpose: 'oauth' | 'install';
  codeVerifierEncrypted: string | null;
  redirectUri: string | null;
}

export const hostProviderOf = (provider: ConnectionProvider): HostProvider =>
  provider === 'GITHUB' ? 'github' : 'gitlab';

/** Encryption contexts: bind each ciphertext to its row and its role. */
export const connectionTokenContext = (connectionId: string, which: 'access' | 'refresh') =>
  `connection:${connectionId}:${which}-token`;
export const oauthVerifierContext = (stateId: string) => `oauth-state:${stateId}:code-verifier`;
