import { describe, expect, it } from '@jest/globals';
import { ValidationFailed } from '../common/errors.js';
import { archiveKey, assertArtifactKey, assertPresignTtl } from './artifact-store.js';

const TENANT = '6f1c2a1e-8d5b-4c1e-9a43-1b2c3d4e5f60';
const REPOSITORY = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const SHA1 = '0123456789abcdef0123456789abcdef01234567';
const SHA256 = '0123456789abcdef'.repeat(4);

describe('archiveKey', () => {
  it('builds <prefix>/<tenant>/<repository>/<sha>.tar.gz', () => {
    expect(archiveKey('archives', TENANT, REPOSITORY, SHA1)).toBe(
      `archives/${TENANT}/${REPOSITORY}/${SHA1}.tar.gz`,
    );
    expect(archiveKey('env/prod.v2', TENANT, REPOSITORY, SHA256)).toBe(
      `env/prod.v2/${TENANT}/${REPOSITORY}/${SHA256}.tar.gz`,
    );
  });

  it('lowercases ids and SHA so one revision has one key', () => {
    expect(archiveKey('a', TENANT.toUpperCase(), REPOSITORY.toUpperCase(), SHA1.toUpperCase())).toBe(
      archiveKey('a', TENANT, REPOSITORY, SHA1),
    );
  });

  it.each([
    ['', TENANT, REPOSITORY, SHA1, 'prefix'],
    ['/archives', TENANT, REPOSITORY, SHA1, 'prefix'],
    ['archives/', TENANT, REPOSITORY, SHA1, 'prefix'],
    ['a/../b', TENANT, REPOSITORY, SHA1, 'prefix'],
    ['a//b', TENANT, REPOSITORY, SHA1, 'prefix'],
    ['a b', TENANT, REPOSITORY, SHA1, 'prefix'],
    ['a', 'tenant-1', REPOSITORY, SHA1, 'tenantId'],
    ['a', `${TENANT}/..`, REPOSITORY, SHA1, 'tenantId'],
    ['a', TENANT, '../etc', SHA1, 'repositoryId'],
    ['a', TENANT, REPOSITORY, SHA1.slice(1), 'sha'],
    ['a', TENANT, REPOSITORY, `${SHA1}0`, 'sha'],
    ['a', TENANT, REPOSITORY, 'g'.repeat(40), 'sha'],
    ['a', TENANT, REPOSITORY, 'HEAD', 'sha'],
  ])('rejects prefix %j tenant %j repository %j sha %j (%s)', (prefix, tenant, repository, sha, field) => {
    expect(() => archiveKey(prefix, tenant, repository, sha)).toThrow(ValidationFailed);
    expect(() => archiveKey(prefix, tenant, repository, sha)).toThrow(new RegExp(`^${field}:`));
  });
});

describe('assertArtifactKey', () => {
  it.each(['a', 'a/b.tar.gz', 'A-1/b_2/c.3'])('accepts %j', (key) => {
    expect(() => assertArtifactKey(key)).not.toThrow();
  });

  it.each([
    '',
    '/a',
    'a/',
    '../a',
    'a/../b',
    'a/./b',
    '.a',
    'a/.b.tmp',
    'a\\b',
    'a b',
    'ä',
    'x'.repeat(1025),
  ])('rejects %j', (key) => {
    expect(() => assertArtifactKey(key)).toThrow(ValidationFailed);
  });
});

describe('assertPresignTtl', () => {
  it.each([0, -1, 1.5, 7 * 24 * 3600 + 1, Number.NaN])('rejects %p', (ttl) => {
    expect(() => assertPresignTtl(ttl)).toThrow(ValidationFailed);
  });

  it.each([1, 3600, 7 * 24 * 3600])('accepts %p', (ttl) => {
    expect(() => assertPresignTtl(ttl)).not.toThrow();
  });
});
