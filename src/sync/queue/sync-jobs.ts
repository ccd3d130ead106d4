import type { DefaultJobOptions } from 'bullmq';

/** The sync queue and its jobs: names, payloads and ids in one place. Jobs carry ids only, never secrets. */
export const SYNC_QUEUE = 'sync';

export const SyncJobName = {
  /** Resolve a repository's default branch and tracked branches, then sync them. */
  OnboardRepository: 'onboard-repository',
  /** Bring one branch to its remote head. */
  SyncBranch: 'sync-branch',
  /** A deleted repository: drop its cached clone. */
  ForgetRepository: 'forget-repository',
} as const;
export type SyncJobName = (typeof SyncJobName)[keyof typeof SyncJobName];

export interface OnboardRepositoryJob {
  tenantId: string;
  repositoryId: string;
}

export interface SyncBranchJob {
  tenantId: string;
  repositoryId: string;
  branchId: string;
}

export interface ForgetRepositoryJob {
  tenantId: string;
  repositoryId: string;
}

export interface SyncJobPayloads {
  [SyncJobName.OnboardRepository]: OnboardRepositoryJob;
  [SyncJobName.SyncBranch]: SyncBranchJob;
  [SyncJobName.ForgetRepository]: ForgetRepositoryJob;
}

/** Deterministic ids: at most one queued or running job per branch (BullMQ ignores a duplicate id). */
export const syncBranchJobId = (branchId: string) => `sync-branch-${branchId}`;
export const onboardJobId = (repositoryId: string) => `onboard-${repositoryId}`;
export const forgetJobId = (repositoryId: string) => `forget-${repositoryId}`;

/** Default options of every sync job: retries with exponential backoff; history lives in Postgres. */
export function syncJobOptions(maxAttempts: number, backoffMs: number): DefaultJobOptions {
  return {
    attempts: maxAttempts,
    backoff: { type: 'exponential', delay: backoffMs },
    // Removing finished jobs frees their deterministic id for the next trigger.
    removeOnComplete: true,
    removeOnFail: true,
  };
}
