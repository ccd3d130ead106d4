import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, Length, Matches } from 'class-validator';
import type { ApiKeyInfo, Tenant } from './tenancy.types.js';

export class CreateTenantDto {
  @ApiProperty({ example: 'Acme Inc.' })
  @IsString()
  @Length(1, 200)
  name!: string;

  @ApiProperty({ example: 'acme', description: 'Unique, lowercase letters, digits and dashes' })
  @IsString()
  @Matches(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, {
    message: 'slug must be 1-63 lowercase letters, digits or dashes, not starting or ending with a dash',
  })
  slug!: string;

  @ApiPropertyOptional({ example: 'ci', description: 'Name of the first API key' })
  @IsOptional()
  @IsString()
  @Length(1, 100)
  keyName?: string;
}

export class CreateApiKeyDto {
  @ApiProperty({ example: 'dashboard' })
  @IsString()
  @Length(1, 100)
  name!: string;
}

export class ApiKeyView {
  @ApiProperty() id!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ description: 'Public part of the key, to recognise it' }) prefix!: string;
  @ApiProperty({ nullable: true, type: String, format: 'date-time' }) lastUsedAt!: string | null;
  @ApiProperty({ nullable: true, type: String, format: 'date-time' }) revokedAt!: string | null;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;

  static of(k: ApiKeyInfo): ApiKeyView {
    return {
      id: k.id,
      name: k.name,
      prefix: k.prefix,
      lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
      revokedAt: k.revokedAt?.toISOString() ?? null,
      createdAt: k.createdAt.toISOString(),
    };
  }
}

export class CreatedApiKeyView extends ApiKeyView {
  @ApiProperty({ description: 'The key itself. Shown once: store it now.' }) key!: string;
}

export class TenantView {
  @ApiProperty() id!: string;
  @ApiProperty() name!: string;
  @ApiProperty() slug!: string;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;

  static of(t: Tenant): TenantView {
    return { id: t.id, name: t.name, slug: t.slug, createdAt: t.createdAt.toISOString() };
  }
}

export class CreatedTenantView {
  @ApiProperty({ type: TenantView }) tenant!: TenantView;
  @ApiProperty({ type: CreatedApiKeyView }) apiKey!: CreatedApiKeyView;
}
