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

  it('reads code host settings: pairs set together, PEM escapes, return URL prefixes', () => {
    const config = loadConfig(valid);
    expect(config.hosts.github.oauth).toBeNull();
    expect(config.hosts.github.app).toBeNull();
    expect(problems({ ...valid, GITHUB_OAUTH_CLIENT_ID: 'abc' })[0]).toMatch(/set both or neither/);
    expect(problems({ ...valid, GITHUB_APP_ID: '12' })[0]).toMatch(
      /GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY/,
    );
    const withApp = loadConfig({
      ...valid,
      GITHUB_APP_ID: '12',
      GITHUB_APP_PRIVATE_KEY: '-----BEGIN RSA PRIVATE KEY-----\\nAAA\\n-----END RSA PRIVATE KEY-----',
      GITLAB_OAUTH_CLIENT_ID: 'id',
      GITLAB_OAUTH_CLIENT_SECRET: 'secret',
      GITLAB_URL: 'https://gitlab.example.com/',
      OAUTH_RETURN_URLS: 'https://dash.example.com/, https://admin.example.com/app',
    });
    expect(withApp.hosts.github.app?.privateKey).toBe(
      '-----BEGIN RSA PRIVATE KEY-----\nAAA\n-----END RSA PRIVATE KEY-----',
    );
    expect(withApp.hosts.gitlab.url).toBe('https://gitlab.example.com');
    expect(withApp.hosts.gitlab.oauth?.scopes).toEqual(['api']);
    expect(withApp.hosts.returnUrls).toEqual(['https://dash.example.com/', 'https://admin.example.com/app']);
    expect(problems({ ...valid, OAUTH_RETURN_URLS: 'dash.example.com' })[0]).toMatch(/OAUTH_RETURN_URLS/);
  });
});
