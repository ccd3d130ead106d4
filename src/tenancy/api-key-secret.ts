import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * API keys look like `rsk_<12 hex>_<43 base64url>`. The first part (prefix) is stored in clear to find the
 * key; the secret part is stored only as SHA-256 (it has 256 bits of entropy, so a slow hash adds nothing).
 */
const KEY_PATTERN = /^(rsk_[0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

export interface GeneratedApiKey {
  plaintext: string;
  prefix: string;
  secretHash: string;
}

export function generateApiKey(): GeneratedApiKey {
  const prefix = `rsk_${randomBytes(6).toString('hex')}`;
  const secret = randomBytes(32).toString('base64url');
  return { plaintext: `${prefix}_${secret}`, prefix, secretHash: hashSecret(secret) };
}

export function parseApiKey(plaintext: string): { prefix: string; secret: string } | null {
  const match = KEY_PATTERN.exec(plaintext);
  return match ? { prefix: match[1]!, secret: match[2]! } : null;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant-time comparison of a presented secret with a stored hash. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const presented = Buffer.from(hashSecret(secret), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return presented.length === stored.length && timingSafeEqual(presented, stored);
}

/** Constant-time comparison of two tokens of any length (length leaks, content does not). */
export function tokensEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}
