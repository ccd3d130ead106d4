import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { SecretBox } from '../common/secret-box.js';
import type { Provider } from '../repositories/repositories.types.js';
import { WebhookDeliveryRepository } from './webhook-delivery.repository.js';
import { webhookSecretContext } from './webhook-signature.js';

/** A repository a webhook URL names, with its decrypted secret (null: none set). */
export interface WebhookTargetSecret {
  id: string;
  tenantId: string;
  provider: Provider;
  secret: string | null;
}

/** Entries kept at most; the oldest go first. */
const MAX_ENTRIES = 10_000;

/**
 * Webhook targets by repository id, each kept for `WEBHOOK_TARGET_CACHE_MS` so that a busy repository's
 * deliveries cost no lookup and no decryption. Only repositories found are kept, with the tenant id of
 * their own row. Staleness is bounded: a rotated secret is re-read as soon as a delivery does not match
 * the cached one (`fresh`), so the new secret works at once and the old one stops working within the
 * TTL; a deleted repository's deliveries are still recorded (without branches to mark) within the TTL.
 */
@Injectable()
export class WebhookTargets {
  private readonly entries = new Map<string, { target: WebhookTargetSecret; expiresAt: number }>();
  private readonly ttlMs: number;

  constructor(
    private readonly deliveries: WebhookDeliveryRepository,
    private readonly secrets: SecretBox,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.ttlMs = config.webhooks.targetCacheMs;
  }

  /** The target, from the cache unless `fresh`; `cached` says where it came from. */
  async get(
    repositoryId: string,
    fresh = false,
  ): Promise<{ target: WebhookTargetSecret; cached: boolean } | null> {
    const now = Date.now();
    const entry = fresh ? undefined : this.entries.get(repositoryId);
    if (entry && entry.expiresAt > now) return { target: entry.target, cached: true };
    const row = await this.deliveries.target(repositoryId);
    if (!row) {
      this.entries.delete(repositoryId);
      return null;
    }
    const target: WebhookTargetSecret = {
      id: row.id,
      tenantId: row.tenantId,
      provider: row.provider,
      secret: row.webhookSecretEncrypted
        ? this.secrets.decrypt(row.webhookSecretEncrypted, webhookSecretContext(row.id))
        : null,
    };
    if (this.ttlMs > 0) {
      this.entries.delete(repositoryId);
      if (this.entries.size >= MAX_ENTRIES) {
        const oldest = this.entries.keys().next();
        if (!oldest.done) this.entries.delete(oldest.value);
      }
      this.entries.set(repositoryId, { target, expiresAt: now + this.ttlMs });
    }
    return { target, cached: false };
  }

  /** Drops a repository's entry (its secret changed in this process). */
  forget(repositoryId: string): void {
    this.entries.delete(repositoryId);
  }
}
