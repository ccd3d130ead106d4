import type { HostRateLimited } from '../hosts/host-errors.js';
import { SyncDeferred } from './engine/branch-synchronizer.js';

/** A host rate limit met by a sync: the work waits until the host's reset time, no failure counted. */
export function deferredByHost(e: HostRateLimited): SyncDeferred {
  const retryAt = new Date(Date.now() + e.retryAfterMs);
  return new SyncDeferred(
    e.code,
    `${e.message}; waiting for the host's rate limit until ${retryAt.toISOString()}`,
    retryAt,
  );
}
