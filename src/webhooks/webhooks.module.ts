import { Module } from '@nestjs/common';
import { ConnectionsModule } from '../connections/connections.module.js';
import { DeliveryHandoff } from './delivery-handoff.js';
import { DeliveryRecorder } from './delivery-recorder.js';
import { WebhookCounters } from './webhook-counters.js';
import { WebhookDeliveryRepository } from './webhook-delivery.repository.js';
import { WebhookTargets } from './webhook-targets.js';
import { WebhookSetupController, WebhooksController } from './webhooks.controller.js';
import { WebhooksService } from './webhooks.service.js';

@Module({
  imports: [ConnectionsModule],
  controllers: [WebhooksController, WebhookSetupController],
  providers: [
    WebhookDeliveryRepository,
    DeliveryRecorder,
    DeliveryHandoff,
    WebhookTargets,
    WebhooksService,
    WebhookCounters,
  ],
})
export class WebhooksModule {}
