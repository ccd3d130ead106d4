import {
  Body,
  Controller,
  Get,
  Inject,
  Module,
  Param,
  ParseUUIDPipe,
  Patch,
  Query,
  Res,
} from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiOkResponse,
  ApiOperation,
  ApiProperty,
  ApiPropertyOptional,
  ApiTags,
} from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsBoolean, IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';
import type { FastifyReply } from 'fastify';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { decodeCursor } from '../common/cursor.js';
import { NotFound, ValidationFailed } from '../common/errors.js';
import { CurrentTenant } from '../tenancy/auth.decorators.js';
import type { TenantContext } from '../tenancy/tenancy.types.js';
import type { ArtifactStore } from './artifact-store.js';
import { ARTIFACT_STORE } from './artifact-store.provider.js';
import { type ArchiveRecord, ArchivesRepository } from './archives.repository.js';
import { TARBALL_CONTENT_TYPE } from './reproducible-tarball.js';

const SHA = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

export class ArchiveView {
  @ApiProperty() sha!: string;
  @ApiProperty() sizeBytes!: number;
  @ApiProperty({ description: 'SHA-256 of the tar.gz' }) sha256!: string;
  @ApiProperty() pinned!: boolean;
  @ApiProperty({ nullable: true, type: String }) branchId!: string | null;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;

  static of(a: ArchiveRecord): ArchiveView {
    return {
      sha: a.sha,
      sizeBytes: a.sizeBytes,
      sha256: a.sha256,
      pinned: a.pinned,
      branchId: a.branchId,
      createdAt: a.createdAt.toISOString(),
    };
  }
}

class ArchiveDownloadView extends ArchiveView {
  @ApiProperty({ description: 'Pre-signed URL; download with a plain GET before expiresAt' }) url!: string;
  @ApiProperty({ format: 'date-time' }) expiresAt!: string;
}

class ListArchivesQuery {
  @ApiPropertyOptional({ minimum: 1, maximum: 100, default: 20 })
  @IsOptional()
  @Type(() => Number)
  @IsInt({ message: 'limit must be a whole number' })
  @Min(1)
  @Max(100)
  limit?: number;

  @ApiPropertyOptional()
  @IsOptional()
  @IsString()
  @MaxLength(512)
  cursor?: string;
}

class PinArchiveDto {
  @ApiProperty({ description: 'Pinned archives are never removed by retention' })
  @IsBoolean()
  pinned!: boolean;
}

function checkSha(sha: string): string {
  const lower = sha.toLowerCase();
  if (!SHA.test(lower)) throw ValidationFailed.field('sha', 'must be a full 40-character commit SHA');
  return lower;
}

const uuid = new ParseUUIDPipe({ version: '4' });

@ApiTags('archives')
@ApiBearerAuth()
@Controller('repositories/:id/archives')
export class ArchivesController {
  constructor(
    private readonly archives: ArchivesRepository,
    @Inject(ARTIFACT_STORE) private readonly store: ArtifactStore,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  @Get()
  @ApiOperation({ summary: "A repository's archives, newest first" })
  async list(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
    @Query() query: ListArchivesQuery,
  ): Promise<{ items: ArchiveView[]; nextCursor: string | null }> {
    const page = await this.archives.list(
      ctx.tenantId,
      id,
      query.cursor ? decodeCursor(query.cursor) : null,
      query.limit ?? 20,
    );
    return { items: page.items.map((a) => ArchiveView.of(a)), nextCursor: page.nextCursor };
  }

  @Get(':sha')
  @ApiOperation({
    summary: 'Download one revision: a pre-signed URL (S3), or the tar.gz itself (filesystem store)',
  })
  @ApiOkResponse({ type: ArchiveDownloadView })
  async download(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
    @Param('sha') rawSha: string,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    const sha = checkSha(rawSha);
    const archive = await this.archives.get(ctx.tenantId, id, sha);
    if (!archive) throw new NotFound('Archive', `${sha} of repository ${id}`);
    const ttl = this.config.archives.urlTtlSeconds;
    const url = await this.store.presignedDownloadUrl(archive.objectKey, ttl);
    if (url) {
      return { ...ArchiveView.of(archive), url, expiresAt: new Date(Date.now() + ttl * 1000).toISOString() };
    }
    const body = await this.store.open(archive.objectKey);
    void reply
      .header('content-type', TARBALL_CONTENT_TYPE)
      .header('content-length', String(archive.sizeBytes))
      .header('content-disposition', `attachment; filename="${sha}.tar.gz"`)
      .header('x-archive-sha256', archive.sha256);
    return reply.send(body);
  }

  @Patch(':sha')
  @ApiOperation({ summary: 'Pin or unpin an archive' })
  @ApiOkResponse({ type: ArchiveView })
  async pin(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', uuid) id: string,
    @Param('sha') rawSha: string,
    @Body() body: PinArchiveDto,
  ): Promise<ArchiveView> {
    const sha = checkSha(rawSha);
    const archive = await this.archives.setPinned(ctx.tenantId, id, sha, body.pinned);
    if (!archive) throw new NotFound('Archive', `${sha} of repository ${id}`);
    return ArchiveView.of(archive);
  }
}

@Module({ controllers: [ArchivesController] })
export class ArchivesApiModule {}
