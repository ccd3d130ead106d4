import { describe, expect, it } from '@jest/globals';
import { gitBlobId, verifyBlob } from './blob-integrity.js';
import { isInstallationToken, nextPageFromLinkHeader } from './github-host.js';
import { readRateLimitHeaders, readRetryAfterMs } from './host-budget.js';
import { HostUnavailable } from './host-errors.js';

describe('rate-limit headers', () => {
  it('reads GitHub and GitLab remaining/reset pairs', () => {
    expect(
      readRateLimitHeaders(new Headers({ 'x-ratelimit-remaining': '12', 'x-ratelimit-reset': '1700000000' })),
    ).toEqual({
      remaining: 12,
      resetAtMs: 1_700_000_000_000,
    });
    expect(
      readRateLimitHeaders(new Headers({ 'RateLimit-Remaining': '0', 'RateLimit-Reset': '1700000100' })),
    ).toEqual({
      remaining: 0,
      resetAtMs: 1_700_000_100_000,
    });
    expect(readRateLimitHeaders(new Headers({ 'x-ratelimit-remaining': '12' }))).toBeNull();
    expect(
      readRateLimitHeaders(new Headers({ 'x-ratelimit-remaining': 'lots', 'x-ratelimit-reset': '1' })),
    ).toBeNull();
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    const now = Date.parse('2024-05-01T12:00:00Z');
    expect(readRetryAfterMs(new Headers({ 'retry-after': '30' }), now)).toBe(30_000);
    expect(readRetryAfterMs(new Headers({ 'retry-after': 'Wed, 01 May 2024 12:01:00 GMT' }), now)).toBe(
      60_000,
    );
    expect(readRetryAfterMs(new Headers({ 'retry-after': 'Wed, 01 May 2024 11:00:00 GMT' }), now)).toBe(0);
    expect(readRetryAfterMs(new Headers({ 'retry-after': 'soon' }), now)).toBeNull();
    expect(readRetryAfterMs(new Headers(), now)).toBeNull();
  });
});

describe('GitHub paging and tokens', () => {
  it('finds the next page in a Link header', () => {
    const link =
      '<https://api.github.com/user/repos?per_page=2&page=1>; rel="prev", <https://api.github.com/user/repos?per_page=2&page=3>; rel="next", <https://api.github.com/user/repos?per_page=2&page=9>; rel="last"';
    expect(nextPageFromLinkHeader(link)).toBe(3);
    expect(nextPageFromLinkHeader('<https://api.github.com/user/repos?page=1>; rel="first"')).toBeNull();
    expect(nextPageFromLinkHeader(undefined)).toBeNull();
  });

  it('tells installation tokens by their prefix', () => {
    expect(isInstallationToken('ghs_abc')).toBe(true);
    expect(isInstallationToken('gho_abc')).toBe(false);
    expect(isInstallationToken('ghu_abc')).toBe(false);
  });
});

describe('blob integrity', () => {
  it('hashes like git and refuses bytes that do not match the SHA', () => {
    const content = Buffer.from('hello\n');
    // git hash-object of "hello\n"
    expect(gitBlobId(content)).toBe('ce013625030ba8dba906f756967f9e9ca394464a');
    expect(verifyBlob('github', 'ce013625030ba8dba906f756967f9e9ca394464a', content)).toBe(content);
    expect(() => verifyBlob('gitlab', 'ce013625030ba8dba906f756967f9e9ca394464b', content)).toThrow(
      HostUnavailable,
    );
    expect(gitBlobId(content, 'sha256')).toHaveLength(64);
  });
});
