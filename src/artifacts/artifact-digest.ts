import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** Size and SHA-256 of an artifact's bytes, as produced or as stored. */
export interface ArtifactDigest {
  size: number;
  /** Lowercase hex. */
  sha256: string;
}

/**
 * Pass-through stream that counts and SHA-256-hashes every byte going through it, so size and digest
 * come for free while the bytes stream on (nothing is buffered beyond the stream's own high-water mark).
 */
export class DigestingStream extends Transform {
  /** Resolves once every byte went through (the writable side ended); rejects if the stream fails first. */
  readonly digest: Promise<ArtifactDigest>;
  private readonly hash = createHash('sha256');
  private bytes = 0;
  private settle!: (digest: ArtifactDigest) => void;

  constructor() {
    super();
    this.digest = new Promise<ArtifactDigest>((resolve, reject) => {
      this.settle = resolve;
      this.once('error', reject);
      // Destroyed without an error (e.g. the reader gave up): the digest will never be complete.
      this.once('close', () => reject(new Error('stream closed before all bytes went through')));
    });
    // Callers that only care about the bytes must not get an unhandled rejection.
    this.digest.catch(() => undefined);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.settle({ size: this.bytes, sha256: this.hash.digest('hex') });
    callback();
  }
}
