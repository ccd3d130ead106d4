/** Inputs of the adaptive polling interval of one branch. */
export interface PollIntervalInput {
  now: number;
  /** When the branch's head last changed (or was first seen). */
  lastChangeAt: number;
  /** When the repository last sent a verified webhook, if ever. */
  lastWebhookAt: number | null;
  minMs: number;
  maxMs: number;
  /** A number in [0, 1) for jitter. */
  random: number;
}

export const DAY_MS = 24 * 3600 * 1000;

/**
 * How long until the branch is polled again: branches that changed recently are polled often (a tenth of
 * the time since their last change), quiet ones slowly, within [min, max]; branches whose repository sends
 * webhooks are polled once a day as a backstop. ±20 % jitter spreads the load.
 */
export function nextPollDelay(input: PollIntervalInput): number {
  const webhookDriven = input.lastWebhookAt !== null && input.now - input.lastWebhookAt < DAY_MS;
  const base = webhookDriven
    ? DAY_MS
    : Math.min(input.maxMs, Math.max(input.minMs, (input.now - input.lastChangeAt) / 10));
  const jitter = 0.8 + 0.4 * input.random;
  // Never beyond a day: every branch is checked at least daily.
  return Math.round(Math.min(DAY_MS, Math.max(input.minMs, base * jitter)));
}
