/**
 * The S3 artifact store (AWS S3, MinIO, or s3rver in tests): the only module that talks to the S3 SDK.
 */
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { posix } from 'node:path';
import { addAbortSignal, pipeline, Readable } from 'node:stream';
import { DigestingStream, type ArtifactDigest } from './artifact-digest.js';
import {
  ArtifactNotFound,
  assertArtifactKey,
  assertPresignTtl,
  type ArtifactStore,
  type PutArtifactOptions,
} from './artifact-store.js';

export interface S3ArtifactStoreConfig {
  /** Custom endpoint (MinIO, s3rver), e.g. `http://127.0.0.1:9000`; AWS S3 when omitted. */
  endpoint?: string;
  region: string;
  bucket: string;
  /** `<endpoint>/<bucket>/<key>` URLs instead of `<bucket>.<endpoint>`; needed by MinIO and s3rver. */
  forcePathStyle?: boolean;
  /** Static credentials; the SDK's default provider chain (env, profile, instance role) when omitted. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Multipart part size, at least 5 MiB; 8 MiB by default. */
  partSizeBytes?: number;
  /** Parts uploaded in parallel; 4 by default. Memory held is about partSizeBytes * (queueSize + 1). */
  queueSize?: number;
  /** Per-request socket timeout; 5 minutes by default. */
  requestTimeoutMs?: number;
}

/** A multipart upload started and neither completed nor aborted. */
export interface PendingUpload {
  key: string;
  uploadId: string;
  initiated: Date | null;
}

/** The bytes S3 reports for an object differ from the bytes sent; the object was deleted. */
export class ArtifactUploadMismatch extends Error {
  constructor(
    readonly key: string,
    readonly sent: number,
    readonly stored: number | null,
  ) {
    super(`artifact ${key}: sent ${sent} bytes but the store holds ${stored ?? 'nothing'}`);
    this.name = 'ArtifactUploadMismatch';
  }
}

const MIN_PART_SIZE = 5 * 1024 * 1024;
const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
const DEFAULT_QUEUE_SIZE = 4;
const DEFAULT_REQUEST_TIMEOUT_MS = 5 * 60 * 1000;

/** Artifacts as objects of one bucket, uploaded with bounded-memory multipart uploads. */
export class S3ArtifactStore implements ArtifactStore {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(config: S3ArtifactStoreConfig) {
    this.partSize = config.partSizeBytes ?? DEFAULT_PART_SIZE;
    this.queueSize = config.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!Number.isInteger(this.partSize) || this.partSize < MIN_PART_SIZE) {
      throw new RangeError(`partSizeBytes must be a whole number of at least ${MIN_PART_SIZE}`);
    }
    if (!Number.isInteger(this.queueSize) || this.queueSize < 1) {
      throw new RangeError('queueSize must be a whole number of at least 1');
    }
    this.bucket = config.bucket;
    this.client = new S3Client({
      endpoint: config.endpoint,
      region: config.region,
      forcePathStyle: config.forcePathStyle ?? false,
      credentials: config.credentials,
      // Only the checksums S3 demands: with the SDK's default ones a streamed upload is stored corrupted by
      // s3rver without any error, and the integrity check that matters is the size check after upload.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { requestTimeout: config.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS },
    });
  }

  async put(key: string, body: Readable, opts: PutArtifactOptions): Promise<ArtifactDigest> {
    assertArtifactKey(key);
    opts.signal?.throwIfAborted();
    // Aborting fails the source stream instead of calling Upload.abort(): Upload.abort() rejects done()
    // at once while parts are still in flight and the multipart upload not yet aborted, whereas a failed
    // source makes done() wait for those parts, abort the upload, and only then reject.
    if (opts.signal) addAbortSignal(opts.signal, body);
    let sourceError: Error | null = null;
    const digesting = pipeline(body, new DigestingStream(), (error) => {
      if (error) sourceError = error;
    });
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: digesting, ContentType: opts.contentType },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (error) {
      digesting.destroy();
      // Upload already aborted the multipart upload; this is the safety net for when that request failed.
      // The original failure is what the caller needs, so a failing retry is dropped (abortPendingUploads
      // or a bucket lifecycle rule collects what is left).
      await this.abortUpload(key, upload.uploadId).catch(() => undefined);
      throw sourceError ?? error;
    }
    const digest = await digesting.digest;
    const stored = await this.head(key);
    if (stored !== digest.size) {
      await this.delete(key);
      throw new ArtifactUploadMismatch(key, digest.size, stored);
    }
    return digest;
  }

  async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== null;
  }

  async head(key: string): Promise<number | null> {
    assertArtifactKey(key);
    try {
      const result = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return result.ContentLength ?? 0;
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    assertArtifactKey(key);
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async presignedDownloadUrl(key: string, ttlSeconds: number): Promise<string | null> {
    assertArtifactKey(key);
    assertPresignTtl(ttlSeconds);
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: key,
      // Keys hold only [A-Za-z0-9._-/], so the file name needs no quoting beyond the quotes.
      ResponseContentDisposition: `attachment; filename="${posix.basename(key)}"`,
    });
    return getSignedUrl(this.client, command, { expiresIn: ttlSeconds });
  }

  async open(key: string): Promise<Readable> {
    assertArtifactKey(key);
    try {
      const result = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!(result.Body instanceof Readable)) throw new Error(`S3 returned no stream body for ${key}`);
      return result.Body;
    } catch (error) {
      if (isNotFound(error)) throw new ArtifactNotFound(key);
      throw error;
    }
  }

  /** Multipart uploads in progress under `prefix` (all when omitted). */
  async pendingUploads(prefix?: string): Promise<PendingUpload[]> {
    const pending: PendingUpload[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({
          Bucket: this.bucket,
          Prefix: prefix,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
      for (const upload of page.Uploads ?? []) {
        if (upload.Key === undefined || upload.UploadId === undefined) continue;
        pending.push({ key: upload.Key, uploadId: upload.UploadId, initiated: upload.Initiated ?? null });
      }
      if (!page.IsTruncated) return pending;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  /**
   * Aborts multipart uploads started before `startedBefore`: the parts a crashed process left behind,
   * which a failed put() cannot clean up. Returns how many were aborted. (A bucket lifecycle rule
   * `AbortIncompleteMultipartUpload` does the same where available.)
   */
  async abortPendingUploads(startedBefore: Date, prefix?: string): Promise<number> {
    let aborted = 0;
    for (const upload of await this.pendingUploads(prefix)) {
      if (upload.initiated === null || upload.initiated >= startedBefore) continue;
      await this.abortUpload(upload.key, upload.uploadId);
      aborted++;
    }
    return aborted;
  }

  /** Releases the client's sockets. */
  close(): void {
    this.client.destroy();
  }

  /** Aborts a multipart upload if it still exists (Upload normally did it already; S3 then says 404). */
  private async abortUpload(key: string, uploadId: string | undefined): Promise<void> {
    if (uploadId === undefined) return;
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
      );
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404;
}
