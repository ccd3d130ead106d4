import { lookup } from 'node:dns/promises';
import { checkHostAllowed } from '../repositories/repository-url.js';
import { PermanentSyncError } from './engine/branch-synchronizer.js';

function hostOf(cloneUrl: string): string | null {
  const scp = /^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):/.exec(cloneUrl);
  if (scp) return scp[1]!;
  try {
    const url = new URL(cloneUrl);
    return url.protocol === 'file:' ? null : url.hostname.replace(/^\[|\]$/g, '');
  } catch {
    return null;
  }
}

/**
 * Resolves the remote's host right before git connects and refuses internal addresses, so a DNS name
 * that was public when the repository was added cannot be pointed at our network later.
 */
export function createRemoteGuard(allowInsecure: boolean): (cloneUrl: string) => Promise<void> {
  return async (cloneUrl) => {
    if (allowInsecure) return;
    const host = hostOf(cloneUrl);
    if (!host) throw new PermanentSyncError('REMOTE_NOT_ALLOWED', 'the clone URL has no host we can check');
    let addresses: { address: string }[];
    try {
      addresses = await lookup(host, { all: true });
    } catch {
      // Unresolvable: git reports the network error itself.
      return;
    }
    for (const { address } of addresses) {
      try {
        checkHostAllowed(address, { allowInsecure: false });
      } catch {
        throw new PermanentSyncError('REMOTE_NOT_ALLOWED', `host ${host} resolves to a non-public address`);
      }
    }
  };
}
