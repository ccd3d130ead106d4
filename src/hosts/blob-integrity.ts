import { createHash } from 'node:crypto';
import { type HostProvider, HostUnavailable, hostName } from './host-errors.js';

/** Git object id of a blob with this content, in the hash of `sha` (SHA-1: 40 hex, SHA-256: 64 hex). */
export function gitBlobId(content: Buffer, algorithm: 'sha1' | 'sha256' = 'sha1'): string {
  return createHash(algorithm).update(`blob ${content.length}\0`).update(content).digest('hex');
}

/**
 * Downloaded bytes that do not hash to the blob SHA they were asked for (or that the host reported beside
 * them). A HostUnavailable (downloading again may help), told apart so compare-delta can say what failed.
 */
export class HostContentMismatch extends HostUnavailable {
  constructor(
    provider: HostProvider,
    readonly expectedSha: string,
    readonly actualSha: string,
    message: string,
  ) {
    super(provider, message);
  }
}

/** Throws HostContentMismatch when downloaded blob bytes do not hash to the SHA they were asked for. */
export function verifyBlob(provider: HostProvider, sha: string, content: Buffer): Buffer {
  const algorithm = sha.length === 64 ? 'sha256' : sha.length === 40 ? 'sha1' : null;
  if (algorithm === null) return content;
  const actual = gitBlobId(content, algorithm);
  if (actual !== sha.toLowerCase()) {
    throw new HostContentMismatch(
      provider,
      sha.toLowerCase(),
      actual,
      `${hostName(provider)} sent ${content.length} bytes for blob ${sha} that hash to ${actual}; download again`,
    );
  }
  return content;
}
