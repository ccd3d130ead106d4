import { describe, expect, it } from '@jest/globals';
import type { SyncDispatcher } from '../repositories/sync-dispatcher.js';
import { DeliveryHandoff, MARK_BATCH } from './delivery-handoff.js';
import type { OwedBranch, WebhookDeliveryRepository } from './webhook-delivery.repository.js';

const branch = (changed: boolean): OwedBranch => ({
  id: 'branch-1',
  tenantId: 'tenant-1',
  repositoryId: 'repo-1',
  changed,
});

/** A handoff over a fake delivery log and a fake queue whose adds succeed unless told otherwise. */
function setup() {
  const marks: string[][] = [];
  const adds: OwedBranch[][] = [];
  let answer: () => Promise<boolean> = async () => true;
  const deliveries = {
    markEnqueued: async (ids: string[]) => {
      marks.push(ids);
    },
  } as unknown as WebhookDeliveryRepository;
  const dispatcher = {
    enqueueOwed: (branches: OwedBranch[]) => {
      adds.push(branches);
      return answer();
    },
  } as unknown as SyncDispatcher;
  const handoff = new DeliveryHandoff(deliveries, dispatcher);
  return {
    handoff,
    marks,
    adds,
    answerWith: (f: () => Promise<boolean>) => (answer = f),
  };
}

describe('DeliveryHandoff', () => {
  it('marks deliveries enqueued in one statement, not one write each', async () => {
    const { handoff, marks } = setup();
    for (const id of ['d1', 'd2', 'd3']) await handoff.handOff(id, []);
    expect(marks).toEqual([]);
    await handoff.onModuleDestroy();
    expect(marks).toEqual([['d1', 'd2', 'd3']]);
  });

  it(`writes a full batch of ${MARK_BATCH} at once`, async () => {
    const { handoff, marks } = setup();
    for (let i = 0; i < MARK_BATCH; i++) await handoff.handOff(`d${i}`, []);
    expect(marks.map((m) => m.length)).toEqual([MARK_BATCH]);
    await handoff.onModuleDestroy();
    expect(marks).toHaveLength(1);
  });

  it('adds a job for a branch the delivery changed, and none for one already owed whose job was just added', async () => {
    const { handoff, marks, adds } = setup();
    await handoff.handOff('d1', [branch(true)]);
    await handoff.handOff('d2', [branch(false)]);
    await handoff.handOff('d3', [branch(true)]);
    expect(adds).toHaveLength(2);
    await handoff.onModuleDestroy();
    expect(marks).toEqual([['d1', 'd2', 'd3']]);
  });

  it('leaves a delivery unmarked when its add fails (the reconciler re-enqueues it), and adds again next time', async () => {
    const { handoff, marks, adds, answerWith } = setup();
    answerWith(async () => false);
    await handoff.handOff('d1', [branch(true)]);
    answerWith(async () => Promise.reject(new Error('Redis is down')));
    await handoff.handOff('d2', [branch(false)]);
    answerWith(async () => true);
    await handoff.handOff('d3', [branch(false)]);
    expect(adds).toHaveLength(3);
    await handoff.onModuleDestroy();
    expect(marks).toEqual([['d3']]);
  });

  it('lets deliveries for a branch whose add is in flight share its outcome', async () => {
    const { handoff, marks, adds, answerWith } = setup();
    let fail: (() => void) | undefined;
    answerWith(() => new Promise<boolean>((resolve) => (fail = () => resolve(false))));
    const first = handoff.handOff('d1', [branch(true)]);
    const second = handoff.handOff('d2', [branch(false)]);
    fail!();
    await Promise.all([first, second]);
    expect(adds).toHaveLength(1);
    await handoff.onModuleDestroy();
    expect(marks).toEqual([]);
  });

  it('marks nothing after shutdown: later deliveries are left to the reconciler', async () => {
    const { handoff, marks } = setup();
    await handoff.onModuleDestroy();
    await handoff.handOff('d1', []);
    expect(marks).toEqual([]);
  });
});
