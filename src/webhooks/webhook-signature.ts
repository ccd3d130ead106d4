import { verify } from '@octokit/webhooks-methods';
import { tokensEqual } from '../tenancy/api-key-secret.js';

/** Checks GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the raw body) in constant time. */
export async function githubSignatureValid(
  secret: string,
  rawBody: Buffer,
  signature: string,
): Promise<boolean> {
  if (!/^sha256=[0-9a-f]{64}$/.test(signature)) return false;
  try {
    return await verify(secret, rawBody.toString('utf8'), signature);
  } catch {
    return false;
  }
}

/** Checks GitLab's `X-Gitlab-Token` (a shared secret) in constant time. */
export function gitlabTokenValid(expected: string, given: string): boolean {
  return tokensEqual(expected, given);
}

/** Encryption context of a repository's webhook secret (binds the ciphertext to its row). */
export const webhookSecretContext = (repositoryId: string) => `repository:${repositoryId}:webhook-secret`;
