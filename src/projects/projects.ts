import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Injectable,
  Module,
  Param,
  ParseUUIDPipe,
  Post,
} from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiProperty, ApiTags } from '@nestjs/swagger';
import { IsString, Length } from 'class-validator';
import { NotFound } from '../common/errors.js';
import { CurrentTenant } from '../tenancy/auth.decorators.js';
import type { TenantContext } from '../tenancy/tenancy.types.js';
import { ProjectsRepository, type ProjectRecord } from './projects.repository.js';

export class CreateProjectDto {
  @ApiProperty({ example: 'backend' })
  @IsString()
  @Length(1, 200)
  name!: string;
}

export class ProjectView {
  @ApiProperty() id!: string;
  @ApiProperty() name!: string;
  @ApiProperty() repositoryCount!: number;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;

  static of(p: ProjectRecord): ProjectView {
    return {
      id: p.id,
      name: p.name,
      repositoryCount: p.repositoryCount,
      createdAt: p.createdAt.toISOString(),
    };
  }
}

@Injectable()
export class ProjectsService {
  constructor(private readonly projects: ProjectsRepository) {}

  create(tenantId: string, name: string): Promise<ProjectRecord> {
    return this.projects.create(tenantId, name);
  }

  list(tenantId: string): Promise<ProjectRecord[]> {
    return this.projects.list(tenantId);
  }

  async delete(tenantId: string, id: string): Promise<void> {
    if (!(await this.projects.delete(tenantId, id))) throw new NotFound('Project', id);
  }
}

@ApiTags('projects')
@ApiBearerAuth()
@Controller('projects')
export class ProjectsController {
  constructor(private readonly projects: ProjectsService) {}

  @Post()
  @ApiCreatedResponse({ type: ProjectView })
  async create(@CurrentTenant() ctx: TenantContext, @Body() body: CreateProjectDto): Promise<ProjectView> {
    return ProjectView.of(await this.projects.create(ctx.tenantId, body.name));
  }

  @Get()
  @ApiOkResponse({ type: [ProjectView] })
  async list(@CurrentTenant() ctx: TenantContext): Promise<{ items: ProjectView[] }> {
    return { items: (await this.projects.list(ctx.tenantId)).map((p) => ProjectView.of(p)) };
  }

  @Delete(':id')
  @HttpCode(204)
  async delete(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', new ParseUUIDPipe({ version: '4' })) id: string,
  ): Promise<void> {
    await this.projects.delete(ctx.tenantId, id);
  }
}

@Module({ controllers: [ProjectsController], providers: [ProjectsService, ProjectsRepository] })
export class ProjectsModule {}
