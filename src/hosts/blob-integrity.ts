import { createHash } from 'node:crypto';
import { type HostProvider, HostUnavailable, hostName } from './host-errors.js';

/** Git object id of a blob with this content, in the hash of `sha` (SHA-1: 40 hex, SHA-256: 64 hex). */
export function gitBlobId(content: Buffer, algorithm: 'sha1' | 'sha256' = 'sha1'): string {
  return createHash(algorithm).update(`blob ${content.length}\0`).update(content).digest('hex');
}

/** Throws HostUnavailable when downloaded blob bytes do not hash to the SHA they were asked for. */
export function verifyBlob(provider: HostProvider, sha: string, content: Buffer): Buffer {
  const algorithm = sha.length === 64 ? 'sha256' : sha.length === 40 ? 'sha1' : null;
  if (algorithm === null) return content;
  const actual = gitBlobId(content, algorithm);
  if (actual !== sha.toLowerCase()) {
    throw new HostUnavailable(
      provider,
      `${hostName(provider)} sent ${content.length} bytes for blob ${sha} that hash to ${actual}; download again`,
    );
  }
  return content;
}
