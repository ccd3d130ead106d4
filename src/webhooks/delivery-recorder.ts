import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import {
  type DeliveryRecord,
  type RecordedDelivery,
  WebhookDeliveryRepository,
} from './webhook-delivery.repository.js';

/** Record statements in flight at most (fewer if the pool is small: two connections stay for the rest). */
export const MAX_STATEMENTS_IN_FLIGHT = 4;
/** Deliveries recorded in one statement at most. */
export const MAX_BATCH = 200;

/** What records a batch of deliveries: one result per delivery, in order. */
export type RecordBatch = (ds: readonly DeliveryRecord[]) => Promise<RecordedDelivery[]>;

interface Waiting {
  delivery: DeliveryRecord;
  resolve: (r: RecordedDelivery) => void;
  reject: (e: unknown) => void;
}

/** Statements the recorder may have in flight with a pool of this many connections. */
export function statementsInFlight(poolSize: number): number {
  return Math.max(1, Math.min(MAX_STATEMENTS_IN_FLIGHT, poolSize - 2));
}

/**
 * Group commit for the webhook intake: deliveries that arrive while every statement slot is taken wait,
 * and go together in one statement (one round trip, one commit) as soon as a slot frees. With a slot
 * free a delivery goes at once: it waits only for the end of the current event-loop turn (setImmediate),
 * to go with the deliveries that arrived in the same turn. Each caller gets its own result, after the
 * statement that recorded it has committed.
 *
 * A failed statement fails nobody yet: its deliveries are recorded again one by one, in arrival order, so
 * that only the delivery at fault (say, a value Postgres refuses) gets the error.
 */
export class DeliveryBatcher {
  private readonly logger = new Logger(DeliveryBatcher.name);
  private queue: Waiting[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly statements = new Set<Promise<void>>();

  constructor(
    private readonly recordBatch: RecordBatch,
    private readonly slots: number,
    private readonly maxBatch: number = MAX_BATCH,
  ) {}

  record(delivery: DeliveryRecord): Promise<RecordedDelivery> {
    return new Promise<RecordedDelivery>((resolve, reject) => {
      this.queue.push({ delivery, resolve, reject });
      if (this.inFlight < this.slots && !this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.dispatch();
        });
      }
    });
  }

  /** Sends what waits and resolves once every statement sent so far has finished. */
  async drain(): Promise<void> {
    while (this.queue.length || this.statements.size) {
      this.dispatch();
      await Promise.all(this.statements);
    }
  }

  private dispatch(): void {
    while (this.queue.length && this.inFlight < this.slots) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight += 1;
      const statement = this.send(batch).finally(() => {
        this.inFlight -= 1;
        this.statements.delete(statement);
        this.dispatch();
      });
      this.statements.add(statement);
    }
  }

  private async send(batch: Waiting[]): Promise<void> {
    let results: RecordedDelivery[];
    try {
      results = await this.recordBatch(batch.map((w) => w.delivery));
    } catch (e) {
      if (batch.length === 1) {
        batch[0]!.reject(e);
        return;
      }
      this.logger.warn(
        { deliveries: batch.length, err: e instanceof Error ? e.message : String(e) },
        'recording a batch of deliveries failed: recording them one by one',
      );
      for (const w of batch) {
        try {
          const [result] = await this.recordBatch([w.delivery]);
          w.resolve(result!);
        } catch (single) {
          w.reject(single);
        }
      }
      return;
    }
    batch.forEach((w, i) => w.resolve(results[i]!));
  }
}

/** The intake's delivery log writer: `WebhookDeliveryRepository.recordBatch` behind a `DeliveryBatcher`. */
@Injectable()
export class DeliveryRecorder implements OnModuleDestroy {
  private readonly batcher: DeliveryBatcher;

  constructor(deliveries: WebhookDeliveryRepository, @Inject(APP_CONFIG) config: AppConfig) {
    this.batcher = new DeliveryBatcher(
      (ds) => deliveries.recordBatch(ds),
      statementsInFlight(config.database.poolSize),
    );
  }

  /** Records the delivery (see `WebhookDeliveryRepository.recordBatch`), with others arriving with it. */
  record(delivery: DeliveryRecord): Promise<RecordedDelivery> {
    return this.batcher.record(delivery);
  }

  /** Records what still waits before the pool closes. */
  async onModuleDestroy(): Promise<void> {
    await this.batcher.drain();
  }
}
