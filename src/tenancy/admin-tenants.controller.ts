import { Body, Controller, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AdminOnly } from './auth.decorators.js';
import { ApiKeyView, CreateTenantDto, CreatedTenantView, TenantView } from './tenancy.dto.js';
import { TenancyService } from './tenancy.service.js';

@ApiTags('admin')
@ApiBearerAuth()
@AdminOnly()
@Controller('admin/tenants')
export class AdminTenantsController {
  constructor(private readonly tenancy: TenancyService) {}

  @Post()
  @ApiOperation({ summary: 'Create a tenant and its first API key (authorised by ADMIN_TOKEN)' })
  @ApiCreatedResponse({ type: CreatedTenantView })
  async create(@Body() body: CreateTenantDto): Promise<CreatedTenantView> {
    const created = await this.tenancy.createTenant(body.name, body.slug, body.keyName);
    return {
      tenant: TenantView.of(created.tenant),
      apiKey: { ...ApiKeyView.of(created.apiKey), key: created.plaintextKey },
    };
  }
}
