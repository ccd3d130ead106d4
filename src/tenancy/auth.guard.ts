import { type CanActivate, type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { Unauthenticated } from '../common/errors.js';
import { tokensEqual } from './api-key-secret.js';
import { AUTH_MODE, type AuthMode, type AuthenticatedRequest } from './auth.decorators.js';
import { TenancyService } from './tenancy.service.js';

function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (!header) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1]! : null;
}

/** Global guard: every route is tenant-authenticated unless marked @Public() or @AdminOnly(). */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly tenancy: TenancyService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const mode =
      this.reflector.getAllAndOverride<AuthMode | undefined>(AUTH_MODE, [
        context.getHandler(),
        context.getClass(),
      ]) ?? 'tenant';
    if (mode === 'public') return true;
    const request = context.switchToHttp().getRequest<FastifyRequest & AuthenticatedRequest>();
    const token = bearerToken(request);
    if (!token) {
      throw new Unauthenticated('missing credentials: send "Authorization: Bearer <key>"');
    }
    if (mode === 'admin') {
      if (!tokensEqual(token, this.config.adminToken))
        throw new Unauthenticated('the admin token is not valid');
      return true;
    }
    request.tenant = await this.tenancy.authenticate(token);
    return true;
  }
}
