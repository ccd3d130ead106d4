import { describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { DeliveryBatcher, statementsInFlight } from './delivery-recorder.js';
import type { DeliveryRecord, RecordedDelivery } from './webhook-delivery.repository.js';

Logger.overrideLogger(false);

const delivery = (deliveryId: string): DeliveryRecord => ({
  provider: 'GITHUB',
  deliveryId,
  event: 'push',
  outcome: 'ACCEPTED',
  detail: '',
  repositories: [],
  branchUpdate: null,
});

const recorded = (d: DeliveryRecord): RecordedDelivery => ({
  fresh: true,
  deliveryRowId: `row-${d.deliveryId}`,
  owed: [],
});

const nextTurn = () => new Promise((res) => setImmediate(res));

/** A batcher over a fake statement that waits until released, and what it was sent. */
function setup(slots: number, maxBatch?: number, refuse: (d: DeliveryRecord) => boolean = () => false) {
  const sent: string[][] = [];
  const pending: (() => void)[] = [];
  const batcher = new DeliveryBatcher(
    async (ds) => {
      sent.push(ds.map((d) => d.deliveryId));
      await new Promise<void>((res) => pending.push(res));
      if (ds.some(refuse)) throw new Error(`refused ${ds.map((d) => d.deliveryId).join(',')}`);
      return ds.map(recorded);
    },
    slots,
    maxBatch,
  );
  const release = async () => {
    for (const done of pending.splice(0)) done();
    await nextTurn();
  };
  return { batcher, sent, release };
}

describe('DeliveryBatcher', () => {
  it('sends what arrives in one turn as one statement, each caller getting its own result', async () => {
    const { batcher, sent, release } = setup(2);
    const results = Promise.all(['a', 'b', 'c'].map((id) => batcher.record(delivery(id))));
    await nextTurn();
    expect(sent).toEqual([['a', 'b', 'c']]);
    await release();
    expect((await results).map((r) => r.deliveryRowId)).toEqual(['row-a', 'row-b', 'row-c']);
  });

  it('goes at once while a slot is free, and makes later arrivals wait for a slot and go together', async () => {
    const { batcher, sent, release } = setup(2);
    const all = [batcher.record(delivery('a'))];
    await nextTurn();
    all.push(batcher.record(delivery('b')));
    await nextTurn();
    expect(sent).toEqual([['a'], ['b']]);
    for (const id of ['c', 'd', 'e']) {
      all.push(batcher.record(delivery(id)));
      await nextTurn();
    }
    expect(sent).toHaveLength(2); // both slots busy: c, d and e wait
    await release();
    expect(sent).toEqual([['a'], ['b'], ['c', 'd', 'e']]);
    await release();
    expect((await Promise.all(all)).map((r) => r.deliveryRowId)).toHaveLength(5);
  });

  it('caps a batch and sends the rest in the next free slot', async () => {
    const { batcher, sent, release } = setup(1, 2);
    const all = ['a', 'b', 'c', 'd', 'e'].map((id) => batcher.record(delivery(id)));
    await nextTurn();
    expect(sent).toEqual([['a', 'b']]);
    await release();
    await release();
    await release();
    expect(sent).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
    await Promise.all(all);
  });

  it('records a failed batch again one delivery at a time, in order: only the refused one fails', async () => {
    const { batcher, sent, release } = setup(1, undefined, (d) => d.deliveryId === 'bad');
    const all = Promise.allSettled(['a', 'bad', 'c'].map((id) => batcher.record(delivery(id))));
    await nextTurn();
    for (let i = 0; i < 4; i++) await release();
    expect(sent).toEqual([['a', 'bad', 'c'], ['a'], ['bad'], ['c']]);
    expect((await all).map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });

  it('a failed delivery alone gets its error as is', async () => {
    const { batcher, release } = setup(1, undefined, () => true);
    const one = expect(batcher.record(delivery('x'))).rejects.toThrow('refused x');
    await nextTurn();
    await release();
    await one;
  });

  it('drain sends what waits and waits for every statement', async () => {
    const sent: string[][] = [];
    const batcher = new DeliveryBatcher(async (ds) => {
      sent.push(ds.map((d) => d.deliveryId));
      await nextTurn();
      return ds.map(recorded);
    }, 1);
    const all = ['a', 'b'].map((id) => batcher.record(delivery(id)));
    await batcher.drain();
    expect(sent).toEqual([['a', 'b']]);
    await Promise.all(all);
  });

  it('leaves two pool connections to the rest of the process, and keeps a few statements in flight', () => {
    expect(statementsInFlight(1)).toBe(1);
    expect(statementsInFlight(5)).toBe(3);
    expect(statementsInFlight(10)).toBe(4);
    expect(statementsInFlight(100)).toBe(4);
  });
});
