import { Injectable } from '@nestjs/common';
import { PrismaService } from '../database/prisma.service.js';
import { Prisma } from '../generated/prisma/client.js';
import { Conflict } from '../common/errors.js';
import type { ApiKeyInfo, Tenant } from './tenancy.types.js';

const apiKeySelect = {
  id: true,
  tenantId: true,
  name: true,
  prefix: true,
  lastUsedAt: true,
  revokedAt: true,
  createdAt: true,
} as const;

@Injectable()
export class TenancyRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** Creates a tenant together with its first API key, atomically. */
  async createTenantWithKey(
    tenant: { name: string; slug: string },
    key: { name: string; prefix: string; secretHash: string },
  ): Promise<{ tenant: Tenant; apiKey: ApiKeyInfo }> {
    try {
      return await this.prisma.$transaction(async (tx) => {
        const created = await tx.tenant.create({
          data: tenant,
          select: { id: true, name: true, slug: true, createdAt: true },
        });
        const apiKey = await tx.apiKey.create({
          data: { ...key, tenantId: created.id },
          select: apiKeySelect,
        });
        return { tenant: created, apiKey };
      });
    } catch (e) {
      if (e instanceof Prisma.PrismaClientKnownRequestError && e.code === 'P2002') {
        throw new Conflict(
          'TENANT_EXISTS',
          `a tenant with slug "${tenant.slug}" already exists; choose another slug`,
        );
      }
      throw e;
    }
  }

  async createApiKey(
    tenantId: string,
    key: { name: string; prefix: string; secretHash: string },
  ): Promise<ApiKeyInfo> {
    return this.prisma.apiKey.create({ data: { ...key, tenantId }, select: apiKeySelect });
  }

  async listApiKeys(tenantId: string): Promise<ApiKeyInfo[]> {
    return this.prisma.apiKey.findMany({
      where: { tenantId },
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      select: apiKeySelect,
    });
  }

  /** Revokes a key of this tenant; returns null when the tenant has no such key. */
  async revokeApiKey(tenantId: string, id: string): Promise<ApiKeyInfo | null> {
    const existing = await this.prisma.apiKey.findFirst({ where: { tenantId, id }, select: apiKeySelect });
    if (!existing) return null;
    if (existing.revokedAt) return existing;
    return this.prisma.apiKey.update({
      where: { id },
      data: { revokedAt: new Date() },
      select: apiKeySelect,
    });
  }

  /** Key lookup for authentication (by its public prefix, across tenants by nature). */
  async findKeyForAuth(prefix: string): Promise<{
    id: string;
    tenantId: string;
    secretHash: string;
    revokedAt: Date | null;
    lastUsedAt: Date | null;
  } | null> {
    return this.prisma.apiKey.findUnique({
      where: { prefix },
      select: { id: true, tenantId: true, secretHash: true, revokedAt: true, lastUsedAt: true },
    });
  }

  async touchApiKey(id: string, at: Date): Promise<void> {
    await this.prisma.apiKey.update({ where: { id }, data: { lastUsedAt: at } });
  }
}
