import { resolve } from 'node:path';
import type { AppConfig } from '../config/app-config.js';
import type { ArtifactStore } from './artifact-store.js';
import { FilesystemArtifactStore } from './filesystem-artifact-store.js';
import { S3ArtifactStore } from './s3-artifact-store.js';

export const ARTIFACT_STORE = Symbol('ARTIFACT_STORE');

/** S3 (or MinIO) when configured, else a local directory (the embedded default). */
export function createArtifactStore(config: AppConfig): ArtifactStore {
  const { s3, directory } = config.archives;
  if (s3) return new S3ArtifactStore(s3);
  return new FilesystemArtifactStore(resolve(directory));
}
