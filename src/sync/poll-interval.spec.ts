import { describe, expect, it } from '@jest/globals';
import { DAY_MS, nextPollDelay } from './poll-interval.js';

const base = { now: 10 * DAY_MS, minMs: 60_000, maxMs: 3_600_000, lastWebhookAt: null, random: 0.5 };

describe('nextPollDelay', () => {
  it('polls a branch that just changed at the minimum interval', () => {
    expect(nextPollDelay({ ...base, lastChangeAt: base.now - 1000 })).toBe(60_000);
  });

  it('backs off for quiet branches up to the maximum', () => {
    expect(nextPollDelay({ ...base, lastChangeAt: base.now - 3_000_000 })).toBe(300_000);
    expect(nextPollDelay({ ...base, lastChangeAt: base.now - 5 * DAY_MS })).toBe(3_600_000);
  });

  it('polls webhook-driven branches daily, and nothing less often than daily', () => {
    expect(nextPollDelay({ ...base, lastChangeAt: 0, lastWebhookAt: base.now - 1000 })).toBe(DAY_MS);
    expect(nextPollDelay({ ...base, lastChangeAt: 0, maxMs: 10 * DAY_MS, random: 0.99 })).toBeLessThanOrEqual(
      DAY_MS,
    );
  });

  it('spreads polls with jitter but never below the minimum', () => {
    const lo = nextPollDelay({ ...base, lastChangeAt: base.now - 3_000_000, random: 0 });
    const hi = nextPollDelay({ ...base, lastChangeAt: base.now - 3_000_000, random: 0.999 });
    expect(lo).toBe(240_000);
    expect(hi).toBeGreaterThan(359_000);
    expect(nextPollDelay({ ...base, lastChangeAt: base.now, random: 0 })).toBe(60_000);
  });
});
