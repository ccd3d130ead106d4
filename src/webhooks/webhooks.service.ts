import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { DomainError, NotFound, Unauthenticated, ValidationFailed } from '../common/errors.js';
import { SecretBox } from '../common/secret-box.js';
import { InstallationEvents } from '../connections/installation-events.js';
import type { Provider } from '../repositories/repositories.types.js';
import { DeliveryHandoff } from './delivery-handoff.js';
import { DeliveryRecorder } from './delivery-recorder.js';
import { type HostEvent, githubEvent, gitlabEvent } from './host-events.js';
import { type DeliveryOutcome, WebhookDeliveryRepository } from './webhook-delivery.repository.js';
import { githubSignatureValid, gitlabTokenValid, webhookSecretContext } from './webhook-signature.js';
import { WebhookTargets } from './webhook-targets.js';
import { WebhookCounters } from './webhook-counters.js';

export interface WebhookHeaders {
  [name: string]: string | string[] | undefined;
}

export interface WebhookResult {
  status: 200 | 202;
  body: { deliveryId: string; outcome: DeliveryOutcome; detail: string };
}

class PayloadMalformed extends DomainError {
  readonly kind = 'invalid' as const;
  constructor(message: string) {
    super('MALFORMED_PAYLOAD', message);
  }
}

function header(headers: WebhookHeaders, name: string): string | null {
  const value = headers[name];
  const first = Array.isArray(value) ? value[0] : value;
  return first && first.length <= 512 ? first : null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Webhook intake: authenticate the raw body, record the delivery and the owed branches in one statement
 * (with the deliveries arriving at the same time: `DeliveryRecorder`), answer, then enqueue
 * (`DeliveryHandoff`). Bad requests touch nothing but a counter.
 */
@Injectable()
export class WebhooksService {
  private readonly logger = new Logger(WebhooksService.name);

  constructor(
    private readonly deliveries: WebhookDeliveryRepository,
    private readonly secrets: SecretBox,
    private readonly counters: WebhookCounters,
    private readonly targets: WebhookTargets,
    private readonly handoff: DeliveryHandoff,
    private readonly recorder: DeliveryRecorder,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly installations: InstallationEvents,
  ) {}

  async github(
    repositoryId: string | undefined,
    headers: WebhookHeaders,
    raw: Buffer,
  ): Promise<WebhookResult> {
    const event = header(headers, 'x-github-event');
    const deliveryId = header(headers, 'x-github-delivery');
    if (!event || !deliveryId) {
      this.counters.rejected('github', 'missing_headers');
      throw ValidationFailed.field('headers', 'X-GitHub-Event and X-GitHub-Delivery are required');
    }
    const signature = header(headers, 'x-hub-signature-256');
    if (!signature) {
      this.counters.rejected('github', 'missing_signature');
      throw new Unauthenticated('missing X-Hub-Signature-256: configure a secret on the webhook');
    }
    const target = await this.authenticate('GITHUB', repositoryId, (secret) =>
      githubSignatureValid(secret, raw, signature),
    );
    if (target === 'unknown') return this.ignoredUnknown('GITHUB', deliveryId, repositoryId);
    if (target === 'mismatch') {
      this.counters.rejected('github', 'bad_signature');
      throw new Unauthenticated('the signature does not match the body: check the webhook secret');
    }
    const payload = this.parse(raw, 'github');
    return this.accept('GITHUB', deliveryId, event, githubEvent(event, payload), target.repository);
  }

  async gitlab(
    repositoryId: string | undefined,
    headers: WebhookHeaders,
    raw: Buffer,
  ): Promise<WebhookResult> {
    const event = header(headers, 'x-gitlab-event');
    const deliveryId = header(headers, 'idempotency-key') ?? header(headers, 'x-gitlab-event-uuid');
    if (!event || !deliveryId) {
      this.counters.rejected('gitlab', 'missing_headers');
      throw ValidationFailed.field(
        'headers',
        'X-Gitlab-Event and Idempotency-Key or X-Gitlab-Event-UUID are required',
      );
    }
    const token = header(headers, 'x-gitlab-token');
    if (!token) {
      this.counters.rejected('gitlab', 'missing_signature');
      throw new Unauthenticated('missing X-Gitlab-Token: configure a secret token on the webhook');
    }
    const target = await this.authenticate('GITLAB', repositoryId, async (secret) =>
      gitlabTokenValid(secret, token),
    );
    if (target === 'unknown') return this.ignoredUnknown('GITLAB', deliveryId, repositoryId);
    if (target === 'mismatch') {
      this.counters.rejected('gitlab', 'bad_signature');
      throw new Unauthenticated('the X-Gitlab-Token does not match: check the webhook secret token');
    }
    const payload = this.parse(raw, 'gitlab');
    return this.accept('GITLAB', deliveryId, event, gitlabEvent(event, payload), target.repository);
  }

  /** Creates (or replaces) the webhook secret of a repository; the secret is shown once. */
  async createWebhookSecret(tenantId: string, repositoryId: string, provider: 'github' | 'gitlab') {
    const secret = randomBytes(32).toString('base64url');
    const encrypted = this.secrets.encrypt(secret, webhookSecretContext(repositoryId));
    if (!(await this.deliveries.setWebhookSecret(tenantId, repositoryId, encrypted))) {
      throw new NotFound('Repository', repositoryId);
    }
    this.targets.forget(repositoryId);
    this.logger.log({ tenantId, repositoryId }, 'webhook secret created');
    return {
      url: `${this.config.webhooks.publicUrl}/webhooks/${provider}?repository=${repositoryId}`,
      secret,
      contentType: 'application/json',
      events: provider === 'github' ? ['push', 'create', 'delete'] : ['Push events', 'Tag push events'],
    };
  }

  /**
   * Checks a delivery against the secret of the repository its URL names (or the app-level secret): the
   * verified target, 'unknown' (not a repository we track) or 'mismatch'. A secret from the cache that
   * does not match is looked up again before refusing: it may just have been rotated.
   */
  private async authenticate(
    provider: Provider,
    repositoryId: string | undefined,
    matches: (secret: string) => Promise<boolean>,
  ): Promise<{ repository: { id: string; tenantId: string } | null } | 'unknown' | 'mismatch'> {
    if (repositoryId === undefined) {
      const shared =
        provider === 'GITHUB'
          ? this.config.webhooks.githubAppSecret
          : this.config.webhooks.gitlabSystemHookToken;
      if (!shared) {
        this.counters.rejected(provider.toLowerCase(), 'no_secret');
        throw new Unauthenticated(
          'add ?repository=<id> to the webhook URL (no app-level webhook secret is configured)',
        );
      }
      return (await matches(shared)) ? { repository: null } : 'mismatch';
    }
    if (!UUID.test(repositoryId)) return 'unknown';
    let found = await this.targets.get(repositoryId);
    for (;;) {
      const target = found?.target;
      // Plain git hosts (Gitea, Forgejo, self-hosted) speak either format; their secret authenticates them.
      if (!target || (target.provider !== provider && target.provider !== 'GIT')) return 'unknown';
      if (target.secret !== null && (await matches(target.secret))) {
        return { repository: { id: target.id, tenantId: target.tenantId } };
      }
      // A cached secret may be stale (rotated, or set since: hosts ping a new webhook at once): look again.
      if (found?.cached) {
        found = await this.targets.get(repositoryId, true);
        continue;
      }
      if (target.secret !== null) return 'mismatch';
      this.counters.rejected(provider.toLowerCase(), 'no_secret');
      throw new Unauthenticated(
        'this repository has no webhook secret; create one with POST /repositories/{id}/webhook',
      );
    }
  }

  private parse(raw: Buffer, provider: string): unknown {
    try {
      return JSON.parse(raw.toString('utf8'));
    } catch {
      this.counters.rejected(provider, 'malformed');
      throw new PayloadMalformed(
        'the body is not valid JSON; configure the webhook with content type application/json',
      );
    }
  }

  private ignoredUnknown(
    provider: Provider,
    deliveryId: string,
    repositoryId: string | undefined,
  ): WebhookResult {
    this.counters.rejected(provider.toLowerCase(), 'unknown_repository');
    this.logger.log(
      { provider, deliveryId, repositoryId },
      'webhook for a repository we do not track: ignored',
    );
    return { status: 202, body: { deliveryId, outcome: 'IGNORED', detail: 'repository not tracked' } };
  }

  private async accept(
    provider: Provider,
    deliveryId: string,
    event: string,
    hostEvent: HostEvent,
    target: { id: string; tenantId: string } | null,
  ): Promise<WebhookResult> {
    let repositories: { id: string; tenantId: string }[] = [];
    if (target) {
      repositories = [target];
    } else if (hostEvent.repository) {
      const host = provider === 'GITHUB' ? this.config.webhooks.githubHost : this.config.webhooks.gitlabHost;
      repositories = await this.deliveries.repositoriesNamed(
        provider,
        host,
        hostEvent.repository.owner,
        hostEvent.repository.name,
      );
    }
    const syncs = hostEvent.kind === 'branch-updated' || hostEvent.kind === 'branch-deleted';
    const outcome: DeliveryOutcome = syncs && repositories.length ? 'ACCEPTED' : 'IGNORED';
    const detail =
      hostEvent.kind === 'branch-updated'
        ? `branch ${hostEvent.branch} at ${hostEvent.after ?? 'unknown head'}`
        : hostEvent.kind === 'branch-deleted'
          ? `branch ${hostEvent.branch} deleted`
          : repositories.length
            ? hostEvent.detail
            : `${hostEvent.detail}; repository not tracked`;
    const recorded = await this.recorder.record({
      provider,
      deliveryId,
      event,
      outcome,
      detail,
      repositories,
      branchUpdate: syncs
        ? {
            branch: hostEvent.branch,
            after: hostEvent.kind === 'branch-updated' ? hostEvent.after : null,
            deleted: hostEvent.kind === 'branch-deleted',
          }
        : null,
    });
    this.counters.accepted(provider.toLowerCase(), recorded.fresh ? outcome : 'DUPLICATE');
    if (!recorded.fresh) {
      return {
        status: 200,
        body: { deliveryId, outcome: 'DUPLICATE', detail: 'this delivery was already received' },
      };
    }
    if (hostEvent.kind === 'installation' && target === null) {
      // Only the app's own webhook (verified with the app secret) speaks for an installation.
      await this.installations.apply(hostEvent);
    }
    if (outcome === 'ACCEPTED' && recorded.deliveryRowId) {
      // After the commit and after answering: a Redis outage leaves the delivery for the reconciler.
      void this.handoff.handOff(recorded.deliveryRowId, recorded.owed);
    }
    return { status: 202, body: { deliveryId, outcome, detail } };
  }
}
