import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { CurrentTenant } from './auth.decorators.js';
import { ApiKeyView, CreateApiKeyDto, CreatedApiKeyView } from './tenancy.dto.js';
import { TenancyService } from './tenancy.service.js';
import type { TenantContext } from './tenancy.types.js';

@ApiTags('api-keys')
@ApiBearerAuth()
@Controller('api-keys')
export class ApiKeysController {
  constructor(private readonly tenancy: TenancyService) {}

  @Post()
  @ApiCreatedResponse({
    type: CreatedApiKeyView,
    description: 'The key is in `key`, shown only in this response',
  })
  async create(
    @CurrentTenant() ctx: TenantContext,
    @Body() body: CreateApiKeyDto,
  ): Promise<CreatedApiKeyView> {
    const { apiKey, plaintextKey } = await this.tenancy.createApiKey(ctx.tenantId, body.name);
    return { ...ApiKeyView.of(apiKey), key: plaintextKey };
  }

  @Get()
  @ApiOkResponse({ type: [ApiKeyView] })
  async list(@CurrentTenant() ctx: TenantContext): Promise<{ items: ApiKeyView[] }> {
    return { items: (await this.tenancy.listApiKeys(ctx.tenantId)).map((k) => ApiKeyView.of(k)) };
  }

  @Delete(':id')
  @HttpCode(200)
  @ApiOkResponse({ type: ApiKeyView, description: 'The key, now revoked (revoking twice is harmless)' })
  async revoke(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', new ParseUUIDPipe({ version: '4' })) id: string,
  ): Promise<ApiKeyView> {
    return ApiKeyView.of(await this.tenancy.revokeApiKey(ctx.tenantId, id));
  }
}
