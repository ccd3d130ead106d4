import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestingStream, type ArtifactDigest } from './artifact-digest.js';
import {
  ArtifactNotFound,
  assertArtifactKey,
  assertPresignTtl,
  type ArtifactStore,
  type PutArtifactOptions,
} from './artifact-store.js';

/**
 * Artifacts as files under a local directory (`<root>/<key>`): the store used when no S3 endpoint is
 * configured. Writes go to a hidden temporary file next to the target and are renamed into place once
 * complete and flushed, so a reader never sees a half-written artifact. Temporary files of a process that
 * crashed mid-write stay behind as `.<name>.<uuid>.tmp` and are never taken for artifacts.
 */
export class FilesystemArtifactStore implements ArtifactStore {
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  async put(key: string, body: Readable, opts: PutArtifactOptions): Promise<ArtifactDigest> {
    const target = this.pathOf(key);
    opts.signal?.throwIfAborted();
    await mkdir(dirname(target), { recursive: true });
    const temporary = join(dirname(target), `.${basename(target)}.${randomUUID()}.tmp`);
    const digesting = new DigestingStream();
    try {
      // `flush` fsyncs before close, so the rename below never publishes a file whose data is not on disk.
      await pipeline(body, digesting, createWriteStream(temporary, { flags: 'wx', flush: true }), {
        signal: opts.signal,
      });
      const digest = await digesting.digest;
      await rename(temporary, target);
      await syncDirectory(dirname(target));
      return digest;
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== null;
  }

  async head(key: string): Promise<number | null> {
    try {
      const stats = await stat(this.pathOf(key));
      return stats.isFile() ? stats.size : null;
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true });
  }

  /** Always null: files cannot be downloaded without going through the API. */
  async presignedDownloadUrl(key: string, ttlSeconds: number): Promise<string | null> {
    assertArtifactKey(key);
    assertPresignTtl(ttlSeconds);
    return null;
  }

  async open(key: string): Promise<Readable> {
    const path = this.pathOf(key);
    // Open first so a missing artifact rejects here instead of erroring the stream later.
    const handle = await open(path, 'r').catch((error: unknown) => {
      throw isMissing(error) ? new ArtifactNotFound(key) : error;
    });
    return handle.createReadStream();
  }

  private pathOf(key: string): string {
    assertArtifactKey(key);
    return join(this.root, key);
  }
}

/** Makes a rename in `dir` durable (the directory entry itself is flushed). */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
