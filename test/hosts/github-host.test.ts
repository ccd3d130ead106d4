import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import { Octokit } from '@octokit/rest';
import { HostContentMismatch } from '../../src/hosts/blob-integrity.js';
import type { HostChangedFile } from '../../src/hosts/code-host.js';
import { GitHubHost } from '../../src/hosts/github-host.js';
import { HostAuthFailed, HostNotFound, HostUnavailable } from '../../src/hosts/host-errors.js';
import { runFixtureGit } from '../fixtures/git-server.js';
import { GitHubOpenApiValidator } from '../fixtures/host-api/github-openapi.js';
import { gitOut, gitRawChanges, startHostWorld, type HostWorld } from './host-world.js';

const GITHUB_STATUS: Record<string, string> = {
  A: 'added',
  D: 'removed',
  R: 'renamed',
  C: 'copied',
  T: 'changed',
};

function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

describe('GitHubHost against the fake GitHub API over real repositories', () => {
  let world: HostWorld;
  let host: GitHubHost;
  let token: string;

  beforeAll(async () => {
    world = await startHostWorld();
    host = new GitHubHost({
      apiBaseUrl: world.api.githubApiUrl,
      budget: world.budget(),
      oauth: { ...world.api.oauthClients.github, clientType: 'github-app' },
      pageSize: 1,
    });
    token = world.api.issueToken('github');
  });

  afterAll(async () => {
    await world.stop();
  });

  it('lists the repositories of the user page by page', async () => {
    const first = await host.listRepositories(token, 1);
    expect(first.nextPage).toBe(2);
    const second = await host.listRepositories(token, 2);
    expect(second.nextPage).toBeNull();
    const all = [...first.repositories, ...second.repositories];
    expect(all.map((repo) => repo.fullName)).toEqual(['acme/gadgets', 'acme/widgets']);
    const widgets = all.find((repo) => repo.name === 'widgets')!;
    expect(widgets).toMatchObject({
      owner: 'acme',
      cloneUrl: world.widgets.url,
      defaultBranch: 'main',
      private: true,
      archived: false,
    });
    expect(widgets.id).toMatch(/^\d+$/);
  });

  it('reads one repository with its default branch, and the account of the token', async () => {
    const gadgets = await host.getRepository(token, 'acme', 'gadgets');
    expect(gadgets).toMatchObject({ fullName: 'acme/gadgets', defaultBranch: 'trunk', private: false });
    await expect(host.getRepository(token, 'acme', 'missing')).rejects.toBeInstanceOf(HostNotFound);
    const account = await host.getAccount(token);
    expect(account).toEqual({ id: '1001', login: 'octo-tester', name: 'Octo Tester' });
  });

  it('resolves branch heads to what git rev-parse says, null for a missing branch', async () => {
    const branch = world.range.branch;
    const head = await host.getBranchHead(token, 'acme', 'widgets', branch);
    expect(head).toBe(await gitOut(world.widgets, ['rev-parse', `refs/heads/${branch}`]));
    expect(await host.getBranchHead(token, 'acme', 'widgets', 'main')).toBe(world.range.mainHead);
    expect(await host.getBranchHead(token, 'acme', 'widgets', 'no-such-branch')).toBeNull();
    await expect(host.getBranchHead(token, 'acme', 'missing', 'main')).rejects.toBeInstanceOf(HostNotFound);
  });

  it('creates a push webhook the host stores with its secret, and deletes it (twice is fine)', async () => {
    const secret = randomBytes(16).toString('hex');
    const hookId = await host.createWebhook(token, 'acme', 'widgets', {
      url: 'https://reposync.example.com/webhooks/github',
      secret,
      events: ['push', 'tag_push'],
    });
    expect(world.api.hooks('github', 'acme/widgets')).toEqual([
      {
        id: hookId,
        url: 'https://reposync.example.com/webhooks/github',
        secret,
        events: ['push', 'create', 'delete'],
      },
    ]);
    // The fake's list and single-hook answers too (validated like every answer), secret masked.
    const octokit = new Octokit({ baseUrl: world.api.githubApiUrl, auth: token });
    const listed = await octokit.rest.repos.listWebhooks({ owner: 'acme', repo: 'widgets' });
    expect(listed.data.map((hook) => String(hook.id))).toEqual([hookId]);
    const single = await octokit.rest.repos.getWebhook({
      owner: 'acme',
      repo: 'widgets',
      hook_id: Number(hookId),
    });
    expect(single.data.config).toMatchObject({
      url: 'https://reposync.example.com/webhooks/github',
      secret: '********',
    });
    await host.deleteWebhook(token, 'acme', 'widgets', hookId);
    expect(world.api.hooks('github', 'acme/widgets')).toEqual([]);
    await expect(host.deleteWebhook(token, 'acme', 'widgets', hookId)).resolves.toBeUndefined();
  });

  it('compares a real range the way git sees it: adds, modifies, removals, a rename, chmod, a binary', async () => {
    const { base, head, branch } = world.range;
    const comparison = await host.compare(token, 'acme', 'widgets', base, branch);
    expect(comparison).toMatchObject({
      status: 'ahead',
      aheadBy: 2,
      behindBy: 0,
      baseSha: base,
      headSha: head,
      mergeBaseSha: base,
    });
    expect(comparison.truncated).toEqual({ commits: false, files: false, timedOut: false, patches: false });

    const revList = (await gitOut(world.widgets, ['rev-list', '--reverse', `${base}..${head}`])).split('\n');
    expect(comparison.commits.map((commit) => commit.sha)).toEqual(revList);
    const last = comparison.commits[1]!;
    expect(last.parents).toEqual([comparison.commits[0]!.sha]);
    expect(last.message).toBe('rename, chmod +x, change a binary\n\nWith a body line.');
    expect(last.author).toEqual({
      name: 'Fixture Author',
      email: 'author@fixture.test',
      date: new Date('2024-03-03T10:00:00Z'),
    });
    expect(comparison.commits[0]!.author?.email).toBe('outside@elsewhere.test');

    const expected = (await gitRawChanges(world.widgets, base, head)).map((change): HostChangedFile => ({
      path: change.path,
      previousPath: change.previousPath,
      status: (change.status === 'M'
        ? change.oldSha === change.newSha
          ? 'changed'
          : 'modified'
        : GITHUB_STATUS[change.status]) as HostChangedFile['status'],
      sha: change.status === 'D' ? null : change.newSha,
      mode: null,
      previousMode: null,
      additions: expect.any(Number) as unknown as number,
      deletions: expect.any(Number) as unknown as number,
      patchAvailable: expect.any(Boolean) as unknown as boolean,
    }));
    expect(comparison.files).toEqual(expected);
    const byPath = new Map(comparison.files.map((file) => [file.path, file]));
    expect(byPath.get('lib/app.ts')).toMatchObject({
      status: 'renamed',
      previousPath: 'src/app.ts',
      additions: 1,
      deletions: 1,
    });
    expect(byPath.get('scripts/run.sh')).toMatchObject({ status: 'changed', additions: 0, deletions: 0 });
    expect(byPath.get('docs/old.md')).toMatchObject({ status: 'removed', sha: null });
    expect(byPath.get('notes/new.txt')).toMatchObject({
      status: 'added',
      additions: 1,
      patchAvailable: true,
    });
    expect(byPath.get('assets/logo.bin')).toMatchObject({
      status: 'modified',
      patchAvailable: false,
      additions: 0,
    });
  });

  it('reports diverged, behind and identical comparisons', async () => {
    const { base, head, mainHead, branch } = world.range;
    const diverged = await host.compare(token, 'acme', 'widgets', 'main', branch);
    expect(diverged).toMatchObject({
      status: 'diverged',
      aheadBy: 2,
      behindBy: 1,
      baseSha: mainHead,
      headSha: head,
      mergeBaseSha: base,
    });
    const behind = await host.compare(token, 'acme', 'widgets', head, base);
    expect(behind).toMatchObject({
      status: 'behind',
      aheadBy: 0,
      behindBy: 2,
      headSha: base,
      commits: [],
      files: [],
    });
    const identical = await host.compare(token, 'acme', 'widgets', branch, branch);
    expect(identical).toMatchObject({
      status: 'identical',
      aheadBy: 0,
      headSha: head,
      commits: [],
      files: [],
    });
  });

  it('flags comparisons GitHub cuts: more than 300 files, more than 250 commits', async () => {
    const repo = await world.git.createRepository('acme/big');
    world.api.addRepository(repo);
    const start = await repo.commit({ 'start.txt': 'start\n' });
    await repo.generateTree({ files: 310, seed: 'wide' });
    const wide = await host.compare(token, 'acme', 'big', start, 'main');
    expect(wide.files).toHaveLength(300);
    expect(wide.truncated).toMatchObject({ files: true, commits: false });

    const long = await repo.generateHistory({ commits: 260 });
    const deep = await host.compare(token, 'acme', 'big', start, 'main');
    expect(deep).toMatchObject({ aheadBy: 261, headSha: long });
    expect(deep.commits).toHaveLength(250);
    expect(deep.truncated.commits).toBe(true);
  });

  it('downloads blob bytes equal to the git object, binary included', async () => {
    const { head } = world.range;
    const sha = await gitOut(world.widgets, ['rev-parse', `${head}:assets/logo.bin`]);
    const { stdout } = await runFixtureGit(['cat-file', '-p', sha], { gitDir: world.widgets.bareDir });
    const bytes = await host.getBlob(token, 'acme', 'widgets', sha);
    expect(bytes).toHaveLength(17);
    expect(
      bytes.equals(Buffer.from([0, 1, 2, 3, 255, 254, 0, 10, 13, 0x89, 0x50, 0x4e, 0x47, 0, 0, 7, 200])),
    ).toBe(true);
    expect(stdout.length).toBeGreaterThan(0);
    const text = await gitOut(world.widgets, ['rev-parse', `${head}:lib/app.ts`]);
    expect((await host.getBlob(token, 'acme', 'widgets', text)).toString('utf8')).toContain('value0 = 100');
    await expect(host.getBlob(token, 'acme', 'widgets', '0'.repeat(40))).rejects.toBeInstanceOf(HostNotFound);
  });

  it('reads the tree id of a commit (git/commits) equal to git rev-parse <sha>^{tree}', async () => {
    const { base, head, mainHead } = world.range;
    for (const sha of [base, head, mainHead]) {
      expect(await host.getCommitTree(token, 'acme', 'widgets', sha)).toBe(
        await gitOut(world.widgets, ['rev-parse', `${sha}^{tree}`]),
      );
    }
    await expect(host.getCommitTree(token, 'acme', 'widgets', 'f'.repeat(40))).rejects.toBeInstanceOf(
      HostNotFound,
    );
  });

  it('reads a file at a commit through the contents API, checked against its blob SHA', async () => {
    const { base, head } = world.range;
    const file = await host.getFileAtRef(token, 'acme', 'widgets', 'scripts/run.sh', head);
    expect(file.content.toString('utf8')).toBe('#!/bin/sh\necho run\n');
    expect(file.blobSha).toBe(await gitOut(world.widgets, ['rev-parse', `${head}:scripts/run.sh`]));
    const logo = await host.getFileAtRef(token, 'acme', 'widgets', 'assets/logo.bin', base);
    expect(logo.content).toHaveLength(13);
    await expect(host.getFileAtRef(token, 'acme', 'widgets', 'docs/old.md', head)).rejects.toBeInstanceOf(
      HostNotFound,
    );
    await expect(host.getFileAtRef(token, 'acme', 'widgets', 'scripts', head)).rejects.toThrow(/not a file/);
  });

  it('refuses corrupted content: a blob by SHA, or a file whose reported SHA does not match', async () => {
    const sha = await gitOut(world.widgets, ['rev-parse', `${world.range.head}:README.md`]);
    world.api.corruptNextContent({ provider: 'github' });
    await expect(host.getBlob(token, 'acme', 'widgets', sha)).rejects.toBeInstanceOf(HostContentMismatch);
    world.api.corruptNextContent({ provider: 'github' });
    await expect(
      host.getFileAtRef(token, 'acme', 'widgets', 'README.md', world.range.head),
    ).rejects.toBeInstanceOf(HostUnavailable);
    // Only the next content was corrupted.
    expect((await host.getBlob(token, 'acme', 'widgets', sha)).toString('utf8')).toContain('Now with docs');
  });

  it('exchanges an authorization code with PKCE and refreshes the expiring user token', async () => {
    const redirectUri = 'https://reposync.example.com/connections/github/callback';
    const { verifier, challenge } = pkcePair();
    const code = world.api.issueAuthorizationCode('github', { redirectUri, codeChallenge: challenge });
    const grant = await host.exchangeCode(code, redirectUri, verifier);
    expect(grant.accessToken).toMatch(/^ghu_/);
    expect(grant.refreshToken).toMatch(/^ghr_/);
    expect(grant.expiresAt!.getTime()).toBeGreaterThan(Date.now() + 7 * 3600_000);
    expect((await host.getAccount(grant.accessToken)).login).toBe('octo-tester');

    // The code is spent; a wrong verifier is refused.
    await expect(host.exchangeCode(code, redirectUri, verifier)).rejects.toBeInstanceOf(HostAuthFailed);
    const other = world.api.issueAuthorizationCode('github', { redirectUri, codeChallenge: challenge });
    await expect(host.exchangeCode(other, redirectUri, pkcePair().verifier)).rejects.toThrow(/code_verifier/);

    const refreshed = await host.refreshToken(grant.refreshToken!);
    expect(refreshed.accessToken).not.toBe(grant.accessToken);
    expect(refreshed.refreshToken).not.toBe(grant.refreshToken);
    expect((await host.getAccount(refreshed.accessToken)).id).toBe('1001');
    // Refresh tokens are single use.
    await expect(host.refreshToken(grant.refreshToken!)).rejects.toBeInstanceOf(HostAuthFailed);
  });

  it('exchanges a code for an OAuth app token with its comma-separated scopes', async () => {
    const oauthApp = new GitHubHost({
      apiBaseUrl: world.api.githubApiUrl,
      budget: world.budget(),
      oauth: { ...world.api.oauthClients.github, clientType: 'oauth-app' },
    });
    const redirectUri = 'https://reposync.example.com/cb';
    const code = world.api.issueAuthorizationCode('github', {
      redirectUri,
      expiring: false,
      scopes: ['repo', 'admin:repo_hook'],
    });
    const grant = await oauthApp.exchangeCode(code, redirectUri);
    expect(grant).toEqual({
      accessToken: expect.stringMatching(/^gho_/) as unknown as string,
      scopes: ['repo', 'admin:repo_hook'],
    });
  });

  it('turns a rejected token into HostAuthFailed', async () => {
    await expect(host.getRepository('gho_not-a-real-token', 'acme', 'widgets')).rejects.toBeInstanceOf(
      HostAuthFailed,
    );
    const expiring = world.api.issueToken('github');
    world.api.expireToken(expiring);
    await expect(host.listRepositories(expiring, 1)).rejects.toBeInstanceOf(HostAuthFailed);
  });

  it('has a validator that catches a response not matching the OpenAPI description', async () => {
    const validator = GitHubOpenApiValidator.shared();
    expect(validator.resolveOperation('GET', '/repos/acme/widgets/compare/a...b')?.operationId).toBe(
      'repos/compare-commits-with-basehead',
    );
    expect(
      validator.validate('GET', '/repos/acme/widgets', 200, { id: 'not a number' }).length,
    ).toBeGreaterThan(10);

    world.api.corruptNextGitHubResponse((body) => {
      const repo = body as Record<string, unknown>;
      delete repo.default_branch;
      repo.private = 'yes';
      return repo;
    });
    await expect(host.getRepository(token, 'acme', 'widgets')).rejects.toBeInstanceOf(HostUnavailable);
    const violations = world.api.openApiViolations.splice(0);
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatchObject({ method: 'GET', path: '/repos/acme/widgets', status: 200 });
    expect(violations[0]!.problems.join('\n')).toMatch(/default_branch/);
    expect(violations[0]!.problems.join('\n')).toMatch(/\/private must be boolean/);
  });

  it('reports an unreachable or slow host as HostUnavailable', async () => {
    const unreachable = new GitHubHost({ apiBaseUrl: 'http://127.0.0.1:9/api/v3', budget: world.budget() });
    await expect(unreachable.getRepository(token, 'acme', 'widgets')).rejects.toBeInstanceOf(HostUnavailable);
    const impatient = new GitHubHost({
      apiBaseUrl: world.api.githubApiUrl,
      budget: world.budget(),
      timeoutMs: 100,
    });
    world.api.setResponseDelay(400);
    try {
      await expect(impatient.getRepository(token, 'acme', 'widgets')).rejects.toThrow(
        /did not answer in time|could not be reached/,
      );
    } finally {
      world.api.setResponseDelay(0);
    }
  });

  // Runs last: every GitHub answer of this file was checked against the description.
  it('recorded no OpenAPI violation over the whole file', () => {
    expect(world.api.requests.filter((request) => request.provider === 'github').length).toBeGreaterThan(20);
    expect(world.api.openApiViolations).toEqual([]);
    expect(world.api.fixtureErrors).toEqual([]);
  });
});
