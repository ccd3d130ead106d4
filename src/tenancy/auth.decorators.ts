import { createParamDecorator, type ExecutionContext, SetMetadata } from '@nestjs/common';
import type { TenantContext } from './tenancy.types.js';

export const AUTH_MODE = 'reposync:auth-mode';
export type AuthMode = 'tenant' | 'admin' | 'public';

/** No authentication (health, docs, webhooks which verify their own signatures). */
export const Public = () => SetMetadata(AUTH_MODE, 'public' satisfies AuthMode);
/** Operator endpoints, authorised by ADMIN_TOKEN. */
export const AdminOnly = () => SetMetadata(AUTH_MODE, 'admin' satisfies AuthMode);

export interface AuthenticatedRequest {
  tenant?: TenantContext;
}

/** The calling tenant, resolved by the auth guard. */
export const CurrentTenant = createParamDecorator((_: unknown, ctx: ExecutionContext): TenantContext => {
  const request = ctx.switchToHttp().getRequest<AuthenticatedRequest>();
  if (!request.tenant) throw new Error('CurrentTenant used on a route that is not tenant-authenticated');
  return request.tenant;
});
