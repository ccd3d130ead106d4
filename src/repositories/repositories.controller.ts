import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  ParseUUIDPipe,
  Patch,
  Post,
  Query,
} from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiBearerAuth,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { CurrentTenant } from '../tenancy/auth.decorators.js';
import type { TenantContext } from '../tenancy/tenancy.types.js';
import {
  BranchView,
  CreateRepositoryDto,
  ListRepositoriesQuery,
  RepositoryDetailView,
  RepositoryPageView,
  RepositoryView,
  SyncRequestDto,
  SyncRequestedView,
  UpdateRepositoryDto,
} from './repositories.dto.js';
import { RepositoriesService } from './repositories.service.js';

const uuid = new ParseUUIDPipe({ version: '4' });

@ApiTags('repositories')
@ApiBearerAuth()
@Controller('repositories')
export class RepositoriesController {
  constructor(private readonly repositories: RepositoriesService) {}

  @Post()
  @ApiOperation({ summary: 'Add a repository; its tracked branches start syncing right away' })
  @ApiCreatedResponse({ type: RepositoryDetailView })
  async create(
    @CurrentTenant() ctx: TenantContext,
    @Body() body: CreateRepositoryDto,
  ): Promise<RepositoryDetailView> {
    return RepositoryDetailView.detail(await this.repositories.create(ctx.tenantId, body));
  }

  @Get()
  @ApiOperation({ summary: 'List repositories, newest first, with filters and cursor pagination' })
  @ApiOkResponse({ type: RepositoryPageView })
  async list(
    @CurrentTenant() ctx: TenantContext,
    @Query() query: ListRepositoriesQuery,
  ): Promise<RepositoryPageView> {
    const page = await this.repositories.list(ctx.tenantId, query);
    return { items: page.items.map((r) => RepositoryView.of(r)), nextCursor: page.nextCursor };
  }

  @Get(':id')
  @ApiOkResponse({ type: RepositoryDetailView })
  async get(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
  ): Promise<RepositoryDetailView> {
    return RepositoryDetailView.detail(await this.repositories.get(ctx.tenantId, id));
  }

  @Patch(':id')
  @ApiOperation({ summary: 'Change tracked branches, sync strategy or project' })
  @ApiOkResponse({ type: RepositoryDetailView })
  async update(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
    @Body() body: UpdateRepositoryDto,
  ): Promise<RepositoryDetailView> {
    return RepositoryDetailView.detail(await this.repositories.update(ctx.tenantId, id, body));
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiNoContentResponse()
  async delete(@CurrentTenant() ctx: TenantContext, @Param('id', uuid) id: string): Promise<void> {
    await this.repositories.delete(ctx.tenantId, id);
  }

  @Post(':id/sync')
  @HttpCode(202)
  @ApiOperation({ summary: 'Request a sync of all tracked branches, or of one' })
  @ApiAcceptedResponse({ type: SyncRequestedView })
  async sync(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
    @Body() body: SyncRequestDto = {},
  ): Promise<SyncRequestedView> {
    const branches = await this.repositories.requestSync(ctx.tenantId, id, 'MANUAL', body.branch);
    return { repositoryId: id, branches: branches.map((b) => BranchView.of(b)) };
  }
}
