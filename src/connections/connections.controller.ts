import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  ParseUUIDPipe,
  Post,
  Query,
  Res,
} from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { CurrentTenant, Public } from '../tenancy/auth.decorators.js';
import type { TenantContext } from '../tenancy/tenancy.types.js';
import {
  AuthorizationView,
  AuthorizeQuery,
  CallbackQueryDto,
  ConnectionListView,
  ConnectionView,
  CreateTokenConnectionDto,
  HostRepositoriesQuery,
  HostRepositoryPageView,
  HostRepositoryView,
} from './connections.dto.js';
import { type AuthorizationStart, ConnectionsService, providerParam } from './connections.service.js';

const uuid = new ParseUUIDPipe({ version: '4' });
const view = (start: AuthorizationStart): AuthorizationView => ({
  url: start.url,
  state: start.state,
  expiresAt: start.expiresAt.toISOString(),
});

@ApiTags('connections')
@ApiBearerAuth()
@Controller('connections')
export class ConnectionsController {
  constructor(private readonly connections: ConnectionsService) {}

  @Get('github/install')
  @ApiOperation({ summary: 'Start installing the GitHub App: the install page URL with a single-use state' })
  @ApiOkResponse({ type: AuthorizationView })
  async install(
    @CurrentTenant() ctx: TenantContext,
    @Query() query: AuthorizeQuery,
  ): Promise<AuthorizationView> {
    return view(await this.connections.install(ctx.tenantId, query.returnTo));
  }

  @Get(':provider/authorize')
  @ApiOperation({ summary: 'Start the OAuth flow: the authorize URL with a single-use state (PKCE)' })
  @ApiOkResponse({ type: AuthorizationView })
  async authorize(
    @CurrentTenant() ctx: TenantContext,
    @Param('provider') provider: string,
    @Query() query: AuthorizeQuery,
  ): Promise<AuthorizationView> {
    return view(await this.connections.authorize(ctx.tenantId, providerParam(provider), query.returnTo));
  }

  @Public()
  @Get(':provider/callback')
  @ApiOperation({
    summary: 'OAuth callback (and GitHub App setup URL): the host sends the browser here with code and state',
  })
  @ApiCreatedResponse({ type: ConnectionView, description: 'Stored (or a redirect to returnTo)' })
  async callback(
    @Param('provider') provider: string,
    @Query() query: CallbackQueryDto,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<ConnectionView | undefined> {
    const result = await this.connections.callback(providerParam(provider), {
      code: query.code,
      state: query.state,
      error: query.error,
      errorDescription: query.error_description,
      installationId: query.installation_id,
    });
    if (result.returnTo) {
      const target = new URL(result.returnTo);
      target.searchParams.set('connection', result.connection.id);
      void reply.redirect(target.href, 303);
      return undefined;
    }
    void reply.status(result.created ? 201 : 200);
    return ConnectionView.of(result.connection);
  }

  @Post()
  @ApiOperation({ summary: 'Connect an account with a personal or project access token' })
  @ApiCreatedResponse({ type: ConnectionView })
  async create(
    @CurrentTenant() ctx: TenantContext,
    @Body() body: CreateTokenConnectionDto,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<ConnectionView> {
    const { connection, created } = await this.connections.createWithToken(
      ctx.tenantId,
      body.provider,
      body.token,
    );
    void reply.status(created ? 201 : 200);
    return ConnectionView.of(connection);
  }

  @Get()
  @ApiOperation({ summary: 'List the connections of the tenant' })
  @ApiOkResponse({ type: ConnectionListView })
  async list(@CurrentTenant() ctx: TenantContext): Promise<ConnectionListView> {
    return { items: (await this.connections.list(ctx.tenantId)).map((c) => ConnectionView.of(c)) };
  }

  @Get(':id')
  @ApiOkResponse({ type: ConnectionView })
  async get(@CurrentTenant() ctx: TenantContext, @Param('id', uuid) id: string): Promise<ConnectionView> {
    return ConnectionView.of(await this.connections.get(ctx.tenantId, id));
  }

  @Get(':id/repositories')
  @ApiOperation({ summary: 'Repositories the connection can see on its host, one page at a time' })
  @ApiOkResponse({ type: HostRepositoryPageView })
  async repositories(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
    @Query() query: HostRepositoriesQuery,
  ): Promise<HostRepositoryPageView> {
    const page = await this.connections.repositories(ctx.tenantId, id, query.page ?? 1);
    return { items: page.items.map((r) => HostRepositoryView.of(r)), nextPage: page.nextPage };
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a connection no repository uses any more' })
  @ApiNoContentResponse()
  async delete(@CurrentTenant() ctx: TenantContext, @Param('id', uuid) id: string): Promise<void> {
    await this.connections.delete(ctx.tenantId, id);
  }
}
