import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsIn, IsInt, IsOptional, IsString, Length, Max, MaxLength, Min } from 'class-validator';
import type { ConnectionRepositoryEntry } from './connections.service.js';
import type { ConnectionRecord } from './connections.types.js';

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export class AuthorizeQuery {
  @ApiPropertyOptional({
    description: 'Where the callback sends the browser afterwards (must start with one of OAUTH_RETURN_URLS)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(2048)
  returnTo?: string;
}

export class AuthorizationView {
  @ApiProperty({ description: "Send the user's browser here" }) url!: string;
  @ApiProperty({ description: 'Single-use state carried through the flow' }) state!: string;
  @ApiProperty({ format: 'date-time' }) expiresAt!: string;
}

/** What the host appends to the callback URL (names as the hosts send them). */
export class CallbackQueryDto {
  @IsOptional() @IsString() @MaxLength(2048) code?: string;
  @IsOptional() @IsString() @MaxLength(512) state?: string;
  @IsOptional() @IsString() @MaxLength(256) error?: string;
  @IsOptional() @IsString() @MaxLength(2048) error_description?: string;
  /** GitHub adds a link to its troubleshooting page to a refusal; accepted and ignored. */
  @IsOptional() @IsString() @MaxLength(2048) error_uri?: string;
  @IsOptional() @IsString() @MaxLength(32) installation_id?: string;
  /** GitHub says whether the app was installed or updated; either way the installation is checked. */
  @IsOptional() @IsString() @MaxLength(32) setup_action?: string;
}

export class CreateTokenConnectionDto {
  @ApiProperty({ enum: ['GITHUB', 'GITLAB'] })
  @IsIn(['GITHUB', 'GITLAB'], { message: 'provider must be GITHUB or GITLAB' })
  provider!: 'GITHUB' | 'GITLAB';

  @ApiProperty({ description: 'Personal, project or group access token (stored encrypted, never returned)' })
  @IsString()
  @Length(1, 4096)
  token!: string;
}

export class ConnectionView {
  @ApiProperty() id!: string;
  @ApiProperty({ enum: ['GITHUB', 'GITLAB'] }) provider!: string;
  @ApiProperty({ enum: ['OAUTH', 'APP_INSTALLATION', 'TOKEN'] }) kind!: string;
  @ApiProperty() host!: string;
  @ApiProperty() accountLogin!: string;
  @ApiProperty() accountId!: string;
  @ApiProperty({ type: [String] }) scopes!: string[];
  @ApiProperty({ nullable: true, type: String }) installationId!: string | null;
  @ApiProperty({ nullable: true, type: String, format: 'date-time' }) tokenExpiresAt!: string | null;
  @ApiProperty({ nullable: true, type: String, description: 'Why the connection cannot be used' })
  lastError!: string | null;
  @ApiProperty({ nullable: true, type: String, format: 'date-time' }) suspendedAt!: string | null;
  @ApiPropertyOptional() repositoryCount?: number;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;
  @ApiProperty({ format: 'date-time' }) updatedAt!: string;

  static of(c: ConnectionRecord & { repositoryCount?: number }): ConnectionView {
    const view: ConnectionView = {
      id: c.id,
      provider: c.provider,
      kind: c.kind,
      host: c.host,
      accountLogin: c.accountLogin,
      accountId: c.accountId,
      scopes: c.scopes,
      installationId: c.installationId,
      tokenExpiresAt: iso(c.tokenExpiresAt),
      lastError: c.lastError,
      suspendedAt: iso(c.suspendedAt),
      createdAt: c.createdAt.toISOString(),
      updatedAt: c.updatedAt.toISOString(),
    };
    if (c.repositoryCount !== undefined) view.repositoryCount = c.repositoryCount;
    return view;
  }
}

export class ConnectionListView {
  @ApiProperty({ type: [ConnectionView] }) items!: ConnectionView[];
}

export class HostRepositoriesQuery {
  @ApiPropertyOptional({ minimum: 1, default: 1 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(10_000)
  page?: number;
}

export class HostRepositoryView {
  @ApiProperty({ description: "The host's id of the repository" }) id!: string;
  @ApiProperty() owner!: string;
  @ApiProperty() name!: string;
  @ApiProperty() fullName!: string;
  @ApiProperty() webUrl!: string;
  @ApiProperty({ nullable: true, type: String }) defaultBranch!: string | null;
  @ApiProperty() private!: boolean;
  @ApiProperty() archived!: boolean;
  @ApiProperty({ nullable: true, type: String, description: 'The repository tracking it here, if any' })
  trackedRepositoryId!: string | null;

  static of(r: ConnectionRepositoryEntry): HostRepositoryView {
    return {
      id: r.id,
      owner: r.owner,
      name: r.name,
      fullName: r.fullName,
      webUrl: r.webUrl,
      defaultBranch: r.defaultBranch,
      private: r.private,
      archived: r.archived,
      trackedRepositoryId: r.trackedRepositoryId,
    };
  }
}

export class HostRepositoryPageView {
  @ApiProperty({ type: [HostRepositoryView] }) items!: HostRepositoryView[];
  @ApiProperty({ nullable: true, type: Number, description: 'Pass as page for the next page' })
  nextPage!: number | null;
}
