import { Controller, Headers, HttpCode, Param, ParseUUIDPipe, Post, Query, Req, Res } from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiBearerAuth,
  ApiCreatedResponse,
  ApiOperation,
  ApiProperty,
  ApiQuery,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ValidationFailed } from '../common/errors.js';
import { CurrentTenant, Public } from '../tenancy/auth.decorators.js';
import type { TenantContext } from '../tenancy/tenancy.types.js';
import { type WebhookHeaders, type WebhookResult, WebhooksService } from './webhooks.service.js';

class WebhookSetupView {
  @ApiProperty({ description: 'Payload URL to configure on the host' }) url!: string;
  @ApiProperty({ description: 'Secret (GitHub) or secret token (GitLab). Shown once.' }) secret!: string;
  @ApiProperty() contentType!: string;
  @ApiProperty({ type: [String] }) events!: string[];
}

function rawBody(request: FastifyRequest): Buffer {
  // The JSON parser leaves webhook bodies as raw bytes: signatures are checked over exactly what was sent.
  if (!Buffer.isBuffer(request.body)) {
    throw ValidationFailed.field('body', 'send the payload as application/json');
  }
  return request.body;
}

@ApiTags('webhooks')
@Public()
@Controller('webhooks')
export class WebhooksController {
  constructor(private readonly webhooks: WebhooksService) {}

  @Post('github')
  @ApiOperation({ summary: 'GitHub webhook receiver (X-Hub-Signature-256 verified over the raw body)' })
  @ApiQuery({
    name: 'repository',
    required: false,
    description: 'Repository id; omit for GitHub App webhooks',
  })
  @ApiAcceptedResponse({ description: 'Recorded (200 for a delivery already received)' })
  async github(
    @Query('repository') repository: string | undefined,
    @Headers() headers: WebhookHeaders,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<WebhookResult['body']> {
    const result = await this.webhooks.github(repository, headers, rawBody(request));
    void reply.status(result.status);
    return result.body;
  }

  @Post('gitlab')
  @ApiOperation({ summary: 'GitLab webhook receiver (X-Gitlab-Token compared in constant time)' })
  @ApiQuery({ name: 'repository', required: false, description: 'Repository id; omit for system hooks' })
  @ApiAcceptedResponse({ description: 'Recorded (200 for a delivery already received)' })
  async gitlab(
    @Query('repository') repository: string | undefined,
    @Headers() headers: WebhookHeaders,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<WebhookResult['body']> {
    const result = await this.webhooks.gitlab(repository, headers, rawBody(request));
    void reply.status(result.status);
    return result.body;
  }
}

@ApiTags('webhooks')
@ApiBearerAuth()
@Controller('repositories')
export class WebhookSetupController {
  constructor(private readonly webhooks: WebhooksService) {}

  @Post(':id/webhook')
  @HttpCode(201)
  @ApiOperation({
    summary: 'Create or rotate the webhook secret of a repository, for a webhook set up by hand on the host',
  })
  @ApiQuery({ name: 'provider', required: false, enum: ['github', 'gitlab'] })
  @ApiCreatedResponse({ type: WebhookSetupView })
  async create(
    @CurrentTenant() ctx: TenantContext,
    @Param('id', new ParseUUIDPipe({ version: '4' })) id: string,
    @Query('provider') provider: string | undefined,
  ): Promise<WebhookSetupView> {
    const p = provider ?? 'github';
    if (p !== 'github' && p !== 'gitlab')
      throw ValidationFailed.field('provider', 'must be github or gitlab');
    return this.webhooks.createWebhookSecret(ctx.tenantId, id, p);
  }
}
