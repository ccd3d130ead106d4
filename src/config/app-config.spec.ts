import { describe, expect, it } from '@jest/globals';
import { ConfigError, loadConfig } from './app-config.js';

const valid = {
  DATABASE_URL: 'postgresql://postgres@127.0.0.1:5432/reposync',
  ADMIN_TOKEN: 'x'.repeat(32),
  ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}`,
};

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe('loadConfig', () => {
  it('applies defaults', () => {
    const config = loadConfig(valid);
    expect(config.http.port).toBe(3000);
    expect(config.repositories.allowInsecureUrls).toBe(false);
    expect(config.encryption.activeKeyId).toBe('k1');
    expect(config.sync.maxAttempts).toBe(5);
  });

  it('names every bad variable', () => {
    const found = problems({ ...valid, DATABASE_URL: 'mysql://x', PORT: 'eighty', ADMIN_TOKEN: 'short' });
    expect(found.map((p) => p.split(':')[0])).toEqual(
      expect.arrayContaining(['DATABASE_URL', 'PORT', 'ADMIN_TOKEN']),
    );
  });

  it('says when a required variable is missing', () => {
    expect(problems({ ADMIN_TOKEN: valid.ADMIN_TOKEN, ENCRYPTION_KEYS: valid.ENCRYPTION_KEYS })).toEqual([
      'DATABASE_URL: is required',
    ]);
  });

  it('checks encryption keys and the active key id', () => {
    expect(problems({ ...valid, ENCRYPTION_KEYS: 'k1:c2hvcnQ=' })[0]).toMatch(/must be 32 bytes/);
    expect(problems({ ...valid, ENCRYPTION_ACTIVE_KEY_ID: 'k9' })[0]).toMatch(/ENCRYPTION_ACTIVE_KEY_ID/);
  });

  it('reads booleans strictly', () => {
    expect(
      loadConfig({ ...valid, ALLOW_INSECURE_REPOSITORY_URLS: 'true' }).repositories.allowInsecureUrls,
    ).toBe(true);
    expect(problems({ ...valid, ALLOW_INSECURE_REPOSITORY_URLS: 'maybe' })[0]).toMatch(
      /^ALLOW_INSECURE_REPOSITORY_URLS/,
    );
  });
});
