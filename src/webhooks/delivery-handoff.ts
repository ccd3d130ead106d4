import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { SYNC_DISPATCHER, type SyncDispatcher } from '../repositories/sync-dispatcher.js';
import { type OwedBranch, WebhookDeliveryRepository } from './webhook-delivery.repository.js';

/** How long deliveries wait to be marked enqueued together (the reconciler looks after 2 s). */
export const MARK_INTERVAL_MS = 100;
/** Marks written in one statement at most. */
export const MARK_BATCH = 1000;
/**
 * How long a successful add is trusted for a branch that later deliveries find already owed, unchanged.
 * Past it (or after a failed add) such a delivery adds the job again, a no-op while the job waits.
 */
export const QUEUED_MEMO_MS = 1000;

/**
 * Hands what a recorded delivery owes to the queue after the answer, then marks the delivery enqueued.
 *
 * Postgres already holds the owed state, so nothing here can lose a delivery: a failed add, a lost mark
 * (the process dies before the batch is written) or a flushed Redis leave `enqueuedAt` NULL or a branch
 * OUTDATED, which the reconciler re-enqueues. What this saves is work: marks are written in batches (one
 * UPDATE every `MARK_INTERVAL_MS` instead of one committed write per delivery), and a delivery that found
 * its branch already owed at the same head adds nothing when that branch's job was added moments ago (or
 * is being added right now: it waits for that add's result instead of making its own round trip).
 */
@Injectable()
export class DeliveryHandoff implements OnModuleDestroy {
  private readonly logger = new Logger(DeliveryHandoff.name);
  private readonly queuedAt = new Map<string, number>();
  private readonly adding = new Map<string, Promise<boolean>>();
  private pending: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly flushes = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly deliveries: WebhookDeliveryRepository,
    @Inject(SYNC_DISPATCHER) private readonly dispatcher: SyncDispatcher,
  ) {}

  /** Enqueues the delivery's owed branches and marks it; never throws (failures are the reconciler's). */
  async handOff(deliveryRowId: string, owed: OwedBranch[]): Promise<void> {
    try {
      if (await this.enqueue(owed)) this.mark(deliveryRowId);
    } catch (e) {
      this.logger.warn(
        { deliveryRowId, err: e instanceof Error ? e.message : String(e) },
        'enqueue after webhook failed',
      );
    }
  }

  /** Writes the marks still waiting; later deliveries stay unmarked for the reconciler. */
  async onModuleDestroy(): Promise<void> {
    this.closed = true;
    this.flush();
    await Promise.all(this.flushes);
  }

  private async enqueue(owed: OwedBranch[]): Promise<boolean> {
    const now = Date.now();
    const waits: Promise<boolean>[] = [];
    const toAdd: OwedBranch[] = [];
    for (const branch of owed) {
      const inFlight = this.adding.get(branch.id);
      if (inFlight) waits.push(inFlight);
      else if (branch.changed || now - (this.queuedAt.get(branch.id) ?? -Infinity) >= QUEUED_MEMO_MS)
        toAdd.push(branch);
    }
    if (toAdd.length) waits.push(this.add(toAdd));
    return (await Promise.all(waits)).every(Boolean);
  }

  private add(branches: OwedBranch[]): Promise<boolean> {
    const added = this.dispatcher.enqueueOwed(branches).then(
      (ok) => ok,
      () => false,
    );
    for (const b of branches) this.adding.set(b.id, added);
    return added.then((ok) => {
      const at = Date.now();
      for (const b of branches) {
        if (this.adding.get(b.id) === added) this.adding.delete(b.id);
        if (ok) this.queuedAt.set(b.id, at);
        else this.queuedAt.delete(b.id);
      }
      return ok;
    });
  }

  private mark(deliveryRowId: string): void {
    if (this.closed) return;
    this.pending.push(deliveryRowId);
    if (this.pending.length >= MARK_BATCH) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), MARK_INTERVAL_MS);
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.forgetOldAdds();
    const ids = this.pending;
    if (!ids.length) return;
    this.pending = [];
    const flush = this.deliveries.markEnqueued(ids).catch((e: unknown) => {
      this.logger.warn(
        { deliveries: ids.length, err: e instanceof Error ? e.message : String(e) },
        'could not mark deliveries enqueued; the reconciler will',
      );
    });
    this.flushes.add(flush);
    void flush.finally(() => this.flushes.delete(flush));
  }

  private forgetOldAdds(): void {
    const now = Date.now();
    for (const [branchId, at] of this.queuedAt) {
      if (now - at >= QUEUED_MEMO_MS) this.queuedAt.delete(branchId);
    }
  }
}
