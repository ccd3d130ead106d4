import type { Readable } from 'node:stream';
import { NotFound, ValidationFailed } from '../common/errors.js';
import type { ArtifactDigest } from './artifact-digest.js';

export type { ArtifactDigest } from './artifact-digest.js';

export interface PutArtifactOptions {
  /** Content-Type stored with the object (S3) and served on download. */
  contentType: string;
  /** Aborting stops the upload; nothing becomes visible and nothing is left behind. */
  signal?: AbortSignal;
}

/**
 * Where archives live: S3 (or MinIO) in production, a local directory otherwise. Keys are checked with
 * `assertArtifactKey`; build them with `archiveKey`.
 */
export interface ArtifactStore {
  /**
   * Streams `body` to `key`, replacing any object there. All or nothing: the object becomes visible only
   * once complete; on failure or abort the previous state stays and no partial data is left. Resolves with
   * the size and SHA-256 of the bytes stored.
   */
  put(key: string, body: Readable, opts: PutArtifactOptions): Promise<ArtifactDigest>;
  /** Whether an object exists at `key`. */
  exists(key: string): Promise<boolean>;
  /** Size in bytes of the object at `key`, or null when there is none. */
  head(key: string): Promise<number | null>;
  /** Deletes the object at `key`; deleting a missing object is not an error. */
  delete(key: string): Promise<void>;
  /** A URL that downloads the object for `ttlSeconds`, or null for stores that cannot presign. */
  presignedDownloadUrl(key: string, ttlSeconds: number): Promise<string | null>;
  /**
   * The object's bytes, for streaming a download through the API. Rejects with `ArtifactNotFound` before
   * any byte is sent, so a caller can still answer 404.
   */
  open(key: string): Promise<Readable>;
}

/** No artifact is stored under the key. */
export class ArtifactNotFound extends NotFound {
  constructor(readonly key: string) {
    super('artifact', key);
  }
}

/** Longest presigned URL lifetime SigV4 allows (7 days). */
export const MAX_PRESIGN_TTL_SECONDS = 7 * 24 * 3600;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
// Segments start with a letter or digit, so `.`/`..` and the stores' hidden temporary names can never be
// keys, and a key maps to a file path without escaping its root.
const SEGMENT = '[A-Za-z0-9][A-Za-z0-9._-]*';
const PREFIX = new RegExp(`^${SEGMENT}(?:/${SEGMENT})*$`);
const KEY = PREFIX;
const MAX_KEY_BYTES = 1024;

/** `<prefix>/<tenantId>/<repositoryId>/<sha>.tar.gz`, with ids and SHA lowercased and validated. */
export function archiveKey(prefix: string, tenantId: string, repositoryId: string, sha: string): string {
  if (!PREFIX.test(prefix)) {
    throw ValidationFailed.field(
      'prefix',
      'must be /-separated segments of letters, digits, ".", "_" and "-", each starting with a letter or digit',
    );
  }
  const tenant = tenantId.toLowerCase();
  const repository = repositoryId.toLowerCase();
  const commit = sha.toLowerCase();
  if (!UUID.test(tenant)) throw ValidationFailed.field('tenantId', 'must be a UUID');
  if (!UUID.test(repository)) throw ValidationFailed.field('repositoryId', 'must be a UUID');
  if (!SHA.test(commit)) throw ValidationFailed.field('sha', 'must be a 40 or 64 hex commit SHA');
  const key = `${prefix}/${tenant}/${repository}/${commit}.tar.gz`;
  assertArtifactKey(key);
  return key;
}

/** Throws unless `key` is a key the stores accept (relative, no `.`/`..`, safe characters, <= 1024 bytes). */
export function assertArtifactKey(key: string): void {
  if (!KEY.test(key) || Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw ValidationFailed.field(
      'key',
      `${JSON.stringify(key)} is not an artifact key: /-separated segments of letters, digits, ".", "_" and "-", each starting with a letter or digit, at most ${MAX_KEY_BYTES} bytes`,
    );
  }
}

/** Throws unless `ttlSeconds` is a whole number of seconds SigV4 can presign for. */
export function assertPresignTtl(ttlSeconds: number): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_PRESIGN_TTL_SECONDS) {
    throw ValidationFailed.field('ttlSeconds', `must be a whole number from 1 to ${MAX_PRESIGN_TTL_SECONDS}`);
  }
}
