import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayUnique,
  IsArray,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  IsUUID,
  Length,
  Max,
  MaxLength,
  Min,
  ValidateIf,
} from 'class-validator';
import {
  type BranchRecord,
  PROVIDERS,
  type Provider,
  type RepositoryDetail,
  type RepositoryRecord,
  SYNC_STATUSES,
  SYNC_STRATEGIES,
  type SyncRunRecord,
  type SyncStatus,
  type SyncStrategy,
} from './repositories.types.js';

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export class CreateRepositoryDto {
  @ApiPropertyOptional({
    example: 'https://github.com/acme/api.git',
    description: 'Clone URL (https or ssh). Either url, or provider + owner + name.',
  })
  @ValidateIf((o: CreateRepositoryDto) => o.owner === undefined && o.name === undefined)
  @IsString({ message: 'url is required unless provider, owner and name are given' })
  @MaxLength(2048)
  url?: string;

  @ApiPropertyOptional({ enum: PROVIDERS, description: 'Inferred from the URL host when omitted' })
  @IsOptional()
  @IsIn(PROVIDERS, { message: `provider must be one of ${PROVIDERS.join(', ')}` })
  provider?: Provider;

  @ApiPropertyOptional({
    example: 'github.example.com',
    description: 'Host for provider/owner/name (enterprise)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  host?: string;

  @ApiPropertyOptional({ example: 'acme' })
  @ValidateIf((o: CreateRepositoryDto) => o.url === undefined)
  @IsString({ message: 'owner is required when url is not given' })
  @Length(1, 255)
  owner?: string;

  @ApiPropertyOptional({ example: 'api' })
  @ValidateIf((o: CreateRepositoryDto) => o.url === undefined)
  @IsString({ message: 'name is required when url is not given' })
  @Length(1, 255)
  name?: string;

  @ApiPropertyOptional({ type: [String], description: 'Branches to sync; default: the default branch' })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(100)
  @ArrayUnique()
  @IsString({ each: true })
  branches?: string[];

  @ApiPropertyOptional({ format: 'uuid' })
  @IsOptional()
  @IsUUID('4')
  projectId?: string;

  @ApiPropertyOptional({ format: 'uuid', description: 'Connection whose credentials are used' })
  @IsOptional()
  @IsUUID('4')
  connectionId?: string;

  @ApiPropertyOptional({ enum: SYNC_STRATEGIES, default: 'AUTO' })
  @IsOptional()
  @IsIn(SYNC_STRATEGIES, { message: `syncStrategy must be one of ${SYNC_STRATEGIES.join(', ')}` })
  syncStrategy?: SyncStrategy;

  @ApiPropertyOptional({
    description: 'Access token for a private repository (stored encrypted, never returned)',
  })
  @IsOptional()
  @IsString()
  @Length(1, 4096)
  accessToken?: string;
}

export class UpdateRepositoryDto {
  @ApiPropertyOptional({
    type: [String],
    nullable: true,
    description: 'Replace the tracked branches; null follows the default branch',
  })
  @IsOptional()
  @ValidateIf((_, v) => v !== null)
  @IsArray()
  @ArrayMaxSize(100)
  @ArrayUnique()
  @IsString({ each: true })
  branches?: string[] | null;

  @ApiPropertyOptional({ enum: SYNC_STRATEGIES })
  @IsOptional()
  @IsIn(SYNC_STRATEGIES, { message: `syncStrategy must be one of ${SYNC_STRATEGIES.join(', ')}` })
  syncStrategy?: SyncStrategy;

  @ApiPropertyOptional({ format: 'uuid', nullable: true })
  @IsOptional()
  @ValidateIf((_, v) => v !== null)
  @IsUUID('4')
  projectId?: string | null;
}

export class ListRepositoriesQuery {
  @ApiPropertyOptional({ enum: SYNC_STATUSES })
  @IsOptional()
  @IsIn(SYNC_STATUSES, { message: `status must be one of ${SYNC_STATUSES.join(', ')}` })
  status?: SyncStatus;

  @ApiPropertyOptional({ enum: PROVIDERS })
  @IsOptional()
  @IsIn(PROVIDERS, { message: `provider must be one of ${PROVIDERS.join(', ')}` })
  provider?: Provider;

  @ApiPropertyOptional({ format: 'uuid' })
  @IsOptional()
  @IsUUID('4')
  projectId?: string;

  @ApiPropertyOptional({ description: 'Text search on owner, name and host' })
  @IsOptional()
  @IsString()
  @Length(1, 200)
  q?: string;

  @ApiPropertyOptional({ minimum: 1, maximum: 100, default: 20 })
  @IsOptional()
  @Type(() => Number)
  @IsInt({ message: 'limit must be a whole number' })
  @Min(1)
  @Max(100)
  limit?: number;

  @ApiPropertyOptional({ description: 'nextCursor of the previous page' })
  @IsOptional()
  @IsString()
  @MaxLength(512)
  cursor?: string;
}

export class SyncRequestDto {
  @ApiPropertyOptional({ description: 'Only this tracked branch; default: all tracked branches' })
  @IsOptional()
  @IsString()
  @Length(1, 255)
  branch?: string;
}

export class BranchView {
  @ApiProperty() id!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ enum: SYNC_STATUSES }) status!: SyncStatus;
  @ApiProperty({ nullable: true, type: String }) remoteHeadSha!: string | null;
  @ApiProperty({ nullable: true, type: String }) syncedSha!: string | null;
  @ApiProperty({ description: 'A follow-up sync is owed after the running one' }) followUpPending!: boolean;
  @ApiProperty() failureCount!: number;
  @ApiProperty({ nullable: true, type: String }) lastError!: string | null;
  @ApiProperty({ nullable: true, type: String }) lastErrorCode!: string | null;
  @ApiProperty({ nullable: true, type: String, format: 'date-time' }) lastSyncedAt!: string | null;
  @ApiProperty({ description: 'The branch no longer exists on the host' }) deleted!: boolean;

  static of(b: BranchRecord): BranchView {
    return {
      id: b.id,
      name: b.name,
      status: b.status,
      remoteHeadSha: b.remoteHeadSha,
      syncedSha: b.syncedSha,
      followUpPending: b.dirty,
      failureCount: b.failureCount,
      lastError: b.lastError,
      lastErrorCode: b.lastErrorCode,
      lastSyncedAt: iso(b.lastSyncedAt),
      deleted: b.deletedAt !== null,
    };
  }
}

export class SyncRunView {
  @ApiProperty() id!: string;
  @ApiProperty() branchId!: string;
  @ApiProperty() trigger!: string;
  @ApiProperty({ nullable: true, type: String }) strategy!: string | null;
  @ApiProperty({ nullable: true, type: String }) strategyReason!: string | null;
  @ApiProperty({ nullable: true, type: String }) fromSha!: string | null;
  @ApiProperty({ nullable: true, type: String }) toSha!: string | null;
  @ApiProperty() status!: string;
  @ApiProperty() attempt!: number;
  @ApiProperty({ description: 'Milliseconds per phase' }) phaseTimings!: Record<string, number>;
  @ApiProperty({ nullable: true, type: Number }) bytesFetched!: number | null;
  @ApiProperty({ nullable: true, type: Number }) filesChanged!: number | null;
  @ApiProperty({ nullable: true, type: String }) errorCode!: string | null;
  @ApiProperty({ nullable: true, type: String }) error!: string | null;
  @ApiProperty({ format: 'date-time' }) startedAt!: string;
  @ApiProperty({ nullable: true, type: String, format: 'date-time' }) finishedAt!: string | null;

  static of(r: SyncRunRecord): SyncRunView {
    return { ...r, startedAt: r.startedAt.toISOString(), finishedAt: iso(r.finishedAt) };
  }
}

export class RepositoryView {
  @ApiProperty() id!: string;
  @ApiProperty({ enum: PROVIDERS }) provider!: Provider;
  @ApiProperty() host!: string;
  @ApiProperty() owner!: string;
  @ApiProperty() name!: string;
  @ApiProperty() fullName!: string;
  @ApiProperty() cloneUrl!: string;
  @ApiProperty({ nullable: true, type: String }) defaultBranch!: string | null;
  @ApiProperty() trackDefaultBranch!: boolean;
  @ApiProperty({ nullable: true, type: String }) projectId!: string | null;
  @ApiProperty({ nullable: true, type: String }) connectionId!: string | null;
  @ApiProperty({ description: 'A per-repository access token is stored' }) hasAccessToken!: boolean;
  @ApiProperty({ nullable: true, type: String }) webhookId!: string | null;
  @ApiProperty({ nullable: true, type: String }) webhookError!: string | null;
  @ApiProperty({ enum: SYNC_STRATEGIES }) syncStrategy!: SyncStrategy;
  @ApiProperty({ enum: SYNC_STATUSES }) status!: SyncStatus;
  @ApiProperty({ nullable: true, type: String }) lastCommitSha!: string | null;
  @ApiProperty({ nullable: true, type: String, format: 'date-time' }) lastSyncedAt!: string | null;
  @ApiProperty({ nullable: true, type: String }) lastError!: string | null;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;
  @ApiProperty({ format: 'date-time' }) updatedAt!: string;

  static of(r: RepositoryRecord): RepositoryView {
    return {
      id: r.id,
      provider: r.provider,
      host: r.host,
      owner: r.owner,
      name: r.name,
      fullName: r.owner ? `${r.owner}/${r.name}` : r.name,
      cloneUrl: r.cloneUrl,
      defaultBranch: r.defaultBranch,
      trackDefaultBranch: r.trackDefaultBranch,
      projectId: r.projectId,
      connectionId: r.connectionId,
      hasAccessToken: r.hasAccessToken,
      webhookId: r.webhookId,
      webhookError: r.webhookError,
      syncStrategy: r.syncStrategy,
      status: r.status,
      lastCommitSha: r.lastCommitSha,
      lastSyncedAt: iso(r.lastSyncedAt),
      lastError: r.lastError,
      createdAt: r.createdAt.toISOString(),
      updatedAt: r.updatedAt.toISOString(),
    };
  }
}

export class BranchArchiveView {
  @ApiProperty() sha!: string;
  @ApiProperty() sizeBytes!: number;
  @ApiProperty() sha256!: string;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;
}

export class BranchDetailView extends BranchView {
  @ApiProperty({ type: BranchArchiveView, nullable: true, description: 'Archive of the synced commit' })
  archive!: BranchArchiveView | null;
}

export class RepositoryDetailView extends RepositoryView {
  @ApiProperty({ type: [BranchDetailView] }) branches!: BranchDetailView[];
  @ApiProperty({ type: [SyncRunView], description: 'The most recent runs, newest first' })
  recentRuns!: SyncRunView[];

  static detail(r: RepositoryDetail): RepositoryDetailView {
    return {
      ...RepositoryView.of(r),
      branches: r.branches.map((b) => ({
        ...BranchView.of(b),
        archive: b.archive ? { ...b.archive, createdAt: b.archive.createdAt.toISOString() } : null,
      })),
      recentRuns: r.recentRuns.map((run) => SyncRunView.of(run)),
    };
  }
}

export class RepositoryPageView {
  @ApiProperty({ type: [RepositoryView] }) items!: RepositoryView[];
  @ApiProperty({ nullable: true, type: String, description: 'Pass as cursor to get the next page' })
  nextCursor!: string | null;
}

export class SyncRequestedView {
  @ApiProperty() repositoryId!: string;
  @ApiProperty({ type: [BranchView] }) branches!: BranchView[];
}
