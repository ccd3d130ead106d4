import { describe, expect, it } from '@jest/globals';
import { ValidationFailed } from '../common/errors.js';
import { checkBranchName, locateByName, parseRepositoryUrl } from './repository-url.js';

const strict = { allowInsecure: false };
const insecure = { allowInsecure: true };

describe('parseRepositoryUrl', () => {
  it('parses https, ssh and scp-like URLs of known hosts', () => {
    expect(parseRepositoryUrl('https://github.com/Acme/Api.git', strict)).toEqual({
      provider: 'GITHUB',
      host: 'github.com',
      owner: 'acme',
      name: 'api',
      cloneUrl: 'https://github.com/Acme/Api.git',
    });
    expect(parseRepositoryUrl('git@gitlab.com:group/sub/svc.git', strict)).toMatchObject({
      provider: 'GITLAB',
      owner: 'group/sub',
      name: 'svc',
    });
    expect(parseRepositoryUrl('ssh://git@git.example.com:2222/team/repo.git', strict)).toMatchObject({
      provider: 'GIT',
      host: 'git.example.com:2222',
      owner: 'team',
      name: 'repo',
    });
  });

  it('accepts a bare repository name on a plain git host, but not on GitHub', () => {
    expect(parseRepositoryUrl('https://git.example.com/repo.git', strict)).toMatchObject({
      owner: '',
      name: 'repo',
    });
    expect(() => parseRepositoryUrl('https://github.com/repo', strict)).toThrow(ValidationFailed);
  });

  it.each([
    'http://169.254.169.254/latest',
    'https://169.254.169.254/a/b',
    'https://127.0.0.1/a/b',
    'https://192.168.1.1/a/b',
    'https://[::ffff:127.0.0.1]/a/b',
    'https://[fd00::1]/a/b',
    'https://0x7f000001/a/b',
    'https://017700000001/a/b',
    'https://localhost/a/b',
    'https://svc.internal/a/b',
    'file:///etc/passwd',
    'ftp://github.com/a/b',
    'https://github.com/a/b?x=1',
    'https://token@github.com/a/b',
    'https://github.com/../etc',
  ])('rejects %s by default', (url) => {
    expect(() => parseRepositoryUrl(url, strict)).toThrow(ValidationFailed);
  });

  it('allows local development URLs only when the insecure flag is on', () => {
    expect(parseRepositoryUrl('http://127.0.0.1:8080/app.git', insecure)).toMatchObject({
      provider: 'GIT',
      host: '127.0.0.1:8080',
      owner: '',
      name: 'app',
    });
    expect(() => parseRepositoryUrl('http://127.0.0.1:8080/app.git', strict)).toThrow(ValidationFailed);
  });
});

describe('locateByName', () => {
  it('builds the https clone URL of the public host or an enterprise host', () => {
    expect(locateByName('GITHUB', 'Acme', 'Api', undefined, strict).cloneUrl).toBe(
      'https://github.com/Acme/Api.git',
    );
    expect(locateByName('GITLAB', 'g/s', 'p', 'gitlab.example.com', strict)).toMatchObject({
      host: 'gitlab.example.com',
      owner: 'g/s',
    });
    expect(() => locateByName('GITHUB', 'a', 'b', '10.0.0.1', strict)).toThrow(ValidationFailed);
  });
});

describe('checkBranchName', () => {
  it.each(['main', 'release/1.x', 'feature/a-b_c'])('accepts %s', (name) => {
    expect(() => checkBranchName(name)).not.toThrow();
  });
  it.each(['', 'a..b', 'a b', 'x.lock', '-x', 'a/', '/a', 'a//b', 'a@{1}', '.hidden', 'a:b', 'a\u0001'])(
    'rejects %j',
    (name) => {
      expect(() => checkBranchName(name)).toThrow(ValidationFailed);
    },
  );
});
