export interface Tenant {
  id: string;
  name: string;
  slug: string;
  createdAt: Date;
}

export interface ApiKeyInfo {
  id: string;
  tenantId: string;
  name: string;
  prefix: string;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  createdAt: Date;
}

/** Who is calling: resolved by the auth guard on every request. */
export interface TenantContext {
  tenantId: string;
  apiKeyId: string;
}
