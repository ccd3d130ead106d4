import { Injectable, Logger } from '@nestjs/common';
import { NotFound, Unauthenticated } from '../common/errors.js';
import { generateApiKey, parseApiKey, secretMatches } from './api-key-secret.js';
import { TenancyRepository } from './tenancy.repository.js';
import type { ApiKeyInfo, Tenant, TenantContext } from './tenancy.types.js';

/** lastUsedAt is refreshed at most this often, so authentication is not a write per request. */
const TOUCH_INTERVAL_MS = 60_000;

@Injectable()
export class TenancyService {
  private readonly logger = new Logger(TenancyService.name);

  constructor(private readonly tenants: TenancyRepository) {}

  async createTenant(
    name: string,
    slug: string,
    keyName = 'initial',
  ): Promise<{ tenant: Tenant; apiKey: ApiKeyInfo; plaintextKey: string }> {
    const key = generateApiKey();
    const created = await this.tenants.createTenantWithKey(
      { name, slug },
      { name: keyName, prefix: key.prefix, secretHash: key.secretHash },
    );
    this.logger.log({ tenantId: created.tenant.id, slug }, 'tenant created');
    return { ...created, plaintextKey: key.plaintext };
  }

  async createApiKey(tenantId: string, name: string): Promise<{ apiKey: ApiKeyInfo; plaintextKey: string }> {
    const key = generateApiKey();
    const apiKey = await this.tenants.createApiKey(tenantId, {
      name,
      prefix: key.prefix,
      secretHash: key.secretHash,
    });
    this.logger.log({ tenantId, apiKeyId: apiKey.id, prefix: apiKey.prefix }, 'api key created');
    return { apiKey, plaintextKey: key.plaintext };
  }

  listApiKeys(tenantId: string): Promise<ApiKeyInfo[]> {
    return this.tenants.listApiKeys(tenantId);
  }

  async revokeApiKey(tenantId: string, id: string): Promise<ApiKeyInfo> {
    const revoked = await this.tenants.revokeApiKey(tenantId, id);
    if (!revoked) throw new NotFound('API key', id);
    this.logger.log({ tenantId, apiKeyId: id }, 'api key revoked');
    return revoked;
  }

  /** Resolves the tenant of a presented API key, or throws Unauthenticated. */
  async authenticate(plaintext: string): Promise<TenantContext> {
    const parsed = parseApiKey(plaintext);
    if (!parsed) throw new Unauthenticated('the API key is malformed; keys look like rsk_<12 hex>_<secret>');
    const key = await this.tenants.findKeyForAuth(parsed.prefix);
    // Same answer for unknown and wrong keys: nothing tells a caller which prefixes exist.
    if (!key || !secretMatches(parsed.secret, key.secretHash)) {
      throw new Unauthenticated('the API key is not valid');
    }
    if (key.revokedAt) throw new Unauthenticated('the API key has been revoked; create a new one');
    const now = new Date();
    if (!key.lastUsedAt || now.getTime() - key.lastUsedAt.getTime() > TOUCH_INTERVAL_MS) {
      await this.tenants.touchApiKey(key.id, now);
    }
    return { tenantId: key.tenantId, apiKeyId: key.id };
  }
}
