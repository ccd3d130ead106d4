import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { PrismaService } from '../database/prisma.service.js';
import { Prisma } from '../generated/prisma/client.js';
import type {
  ConnectionGrant,
  ConnectionProvider,
  ConnectionRecord,
  ConnectionWithSecrets,
  NewConnection,
  OAuthStateRecord,
} from './connections.types.js';

const recordSelect = {
  id: true,
  tenantId: true,
  provider: true,
  kind: true,
  host: true,
  accountLogin: true,
  accountId: true,
  scopes: true,
  installationId: true,
  tokenExpiresAt: true,
  lastError: true,
  suspendedAt: true,
  createdAt: true,
  updatedAt: true,
} as const;

const secretSelect = {
  ...recordSelect,
  accessTokenEncrypted: true,
  refreshTokenEncrypted: true,
  refreshTokenExpiresAt: true,
} as const;

type Row = Prisma.ConnectionGetPayload<{ select: typeof secretSelect }>;

function toRecord(
  row: Omit<Row, 'accessTokenEncrypted' | 'refreshTokenEncrypted' | 'refreshTokenExpiresAt'>,
) {
  return { ...row, provider: row.provider as ConnectionProvider } satisfies ConnectionRecord;
}

function toSecrets(row: Row): ConnectionWithSecrets {
  return { ...row, provider: row.provider as ConnectionProvider };
}

/** Connections to code hosts and the single-use OAuth states that create them. Every query takes the tenant. */
@Injectable()
export class ConnectionsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** Creates the connection, or renews the grant of the same account's existing one (same id). */
  async upsert(
    tenantId: string,
    connection: NewConnection,
    encrypt: (
      connectionId: string,
    ) => Pick<ConnectionGrant, 'accessTokenEncrypted' | 'refreshTokenEncrypted'>,
  ): Promise<{ connection: ConnectionRecord; created: boolean }> {
    const key = {
      tenantId,
      provider: connection.provider,
      host: connection.host,
      kind: connection.kind,
      accountId: connection.accountId,
    };
    for (let attempt = 0; ; attempt++) {
      const existing = await this.prisma.connection.findUnique({
        where: { tenantId_provider_host_kind_accountId: key },
        select: { id: true },
      });
      const id = existing?.id ?? randomUUID();
      const data = {
        accountLogin: connection.accountLogin,
        installationId: connection.installationId,
        tokenExpiresAt: connection.tokenExpiresAt,
        refreshTokenExpiresAt: connection.refreshTokenExpiresAt,
        scopes: connection.scopes,
        lastError: null,
        suspendedAt: null,
        ...encrypt(id),
      };
      try {
        if (existing) {
          const row = await this.prisma.connection.update({ where: { id }, data, select: recordSelect });
          return { connection: toRecord(row), created: false };
        }
        const row = await this.prisma.connection.create({
          data: { id, ...key, ...data },
          select: recordSelect,
        });
        return { connection: toRecord(row), created: true };
      } catch (e) {
        // Two callbacks for one account at once: the loser renews the winner's row.
        if (attempt === 0 && e instanceof Prisma.PrismaClientKnownRequestError && e.code === 'P2002')
          continue;
        throw e;
      }
    }
  }

  async list(tenantId: string): Promise<(ConnectionRecord & { repositoryCount: number })[]> {
    const rows = await this.prisma.connection.findMany({
      where: { tenantId },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
      select: { ...recordSelect, _count: { select: { repositories: true } } },
    });
    return rows.map(({ _count, ...row }) => ({ ...toRecord(row), repositoryCount: _count.repositories }));
  }

  async get(tenantId: string, id: string): Promise<ConnectionRecord | null> {
    const row = await this.prisma.connection.findFirst({ where: { tenantId, id }, select: recordSelect });
    return row ? toRecord(row) : null;
  }

  async getWithSecrets(tenantId: string, id: string): Promise<ConnectionWithSecrets | null> {
    const row = await this.prisma.connection.findFirst({ where: { tenantId, id }, select: secretSelect });
    return row ? toSecrets(row) : null;
  }

  async repositoryCount(tenantId: string, id: string): Promise<number> {
    return this.prisma.repository.count({ where: { tenantId, connectionId: id } });
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    const { count } = await this.prisma.connection.deleteMany({ where: { tenantId, id } });
    return count > 0;
  }

  /**
   * Runs `renew` with the connection's row locked, so concurrent workers refresh a rotating refresh token
   * once: the others wait, then see the renewed row. `renew` returns the new grant, or null to keep the row.
   */
  async renewLocked(
    tenantId: string,
    id: string,
    renew: (current: ConnectionWithSecrets) => Promise<ConnectionGrant | { error: string } | null>,
    timeoutMs: number,
  ): Promise<ConnectionWithSecrets | { error: string } | null> {
    return this.prisma.$transaction(
      async (tx) => {
        const locked = await tx.$queryRaw<{ id: string }[]>`
          SELECT "id" FROM "Connection" WHERE "id" = ${id}::uuid AND "tenantId" = ${tenantId}::uuid FOR UPDATE`;
        if (locked.length === 0) return null;
        const current = toSecrets(
          await tx.connection.findUniqueOrThrow({ where: { id }, select: secretSelect }),
        );
        const grant = await renew(current);
        if (grant === null) return current;
        if ('error' in grant) {
          await tx.connection.update({ where: { id }, data: { lastError: grant.error } });
          return grant;
        }
        const row = await tx.connection.update({
          where: { id },
          data: { ...grant, lastError: null },
          select: secretSelect,
        });
        return toSecrets(row);
      },
      { timeout: timeoutMs, maxWait: timeoutMs },
    );
  }

  async setLastError(tenantId: string, id: string, error: string | null): Promise<void> {
    await this.prisma.connection.updateMany({ where: { tenantId, id }, data: { lastError: error } });
  }

  /** Connections of a GitHub App installation, across tenants (installation webhooks name only the installation). */
  async byInstallation(installationId: string): Promise<ConnectionRecord[]> {
    const rows = await this.prisma.connection.findMany({
      where: { kind: 'APP_INSTALLATION', provider: 'GITHUB', installationId },
      select: recordSelect,
    });
    return rows.map(toRecord);
  }

  async updateInstallation(
    installationId: string,
    change: { suspendedAt?: Date | null; accountLogin?: string; lastError?: string | null },
  ): Promise<number> {
    const { count } = await this.prisma.connection.updateMany({
      where: { kind: 'APP_INSTALLATION', provider: 'GITHUB', installationId },
      data: change,
    });
    return count;
  }

  /** Ids of the tenant's repositories at these `owner/name` paths of a host, keyed by lower-cased path. */
  async trackedRepositories(
    tenantId: string,
    host: string,
    fullNames: string[],
  ): Promise<Map<string, string>> {
    if (fullNames.length === 0) return new Map();
    const rows = await this.prisma.$queryRaw<{ id: string; fullName: string }[]>`
      SELECT "id", lower("owner" || '/' || "name") AS "fullName" FROM "Repository"
      WHERE "tenantId" = ${tenantId}::uuid AND "host" = ${host}
        AND lower("owner" || '/' || "name") = ANY(${fullNames.map((n) => n.toLowerCase())})`;
    return new Map(rows.map((r) => [r.fullName, r.id]));
  }

  async createState(state: {
    id: string;
    stateHash: string;
    tenantId: string;
    provider: ConnectionProvider;
    purpose: 'oauth' | 'install';
    codeVerifierEncrypted: string | null;
    redirectUri: string | null;
    expiresAt: Date;
  }): Promise<void> {
    await this.prisma.oAuthState.create({ data: state });
  }

  /** Marks a state used and returns it, once: a second call, an expired or unknown state give null. */
  async consumeState(stateHash: string, provider: ConnectionProvider): Promise<OAuthStateRecord | null> {
    const rows = await this.prisma.$queryRaw<OAuthStateRecord[]>`
      UPDATE "OAuthState" SET "usedAt" = now()
      WHERE "stateHash" = ${stateHash} AND "provider" = ${provider}::"Provider"
        AND "usedAt" IS NULL AND "expiresAt" > now()
      RETURNING "id", "tenantId", "provider", "purpose", "codeVerifierEncrypted", "redirectUri"`;
    return rows[0] ?? null;
  }

  /** Removes OAuth states that expired more than a day ago (used or not). */
  async pruneStates(): Promise<number> {
    const { count } = await this.prisma.oAuthState.deleteMany({
      where: { expiresAt: { lt: new Date(Date.now() - 24 * 3600 * 1000) } },
    });
    return count;
  }
}
