import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import { HostContentMismatch } from '../../src/hosts/blob-integrity.js';
import type { HostChangedFile } from '../../src/hosts/code-host.js';
import { GitLabHost } from '../../src/hosts/gitlab-host.js';
import { HostAuthFailed, HostNotFound, HostUnavailable } from '../../src/hosts/host-errors.js';
import { gitOut, gitRawChanges, startHostWorld, type HostWorld } from './host-world.js';

const GITLAB_STATUS: Record<string, HostChangedFile['status']> = { A: 'added', D: 'removed', R: 'renamed' };

function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

describe('GitLabHost against the fake GitLab API over real repositories', () => {
  let world: HostWorld;
  let host: GitLabHost;
  let token: string;

  beforeAll(async () => {
    world = await startHostWorld({ gitlabTokenTtlSeconds: 7200 });
    host = new GitLabHost({
      baseUrl: world.api.gitlabUrl,
      budget: world.budget(),
      oauth: world.api.oauthClients.gitlab,
      pageSize: 1,
    });
    token = world.api.issueToken('gitlab');
  });

  afterAll(async () => {
    await world.stop();
  });

  it('lists the projects of the user page by page', async () => {
    const first = await host.listRepositories(token, 1);
    expect(first.nextPage).toBe(2);
    const second = await host.listRepositories(token, 2);
    expect(second.nextPage).toBeNull();
    const all = [...first.repositories, ...second.repositories];
    expect(all.map((repo) => repo.fullName)).toEqual(['acme/widgets', 'acme/gadgets']);
    expect(all[0]).toMatchObject({
      owner: 'acme',
      name: 'widgets',
      cloneUrl: world.widgets.url,
      defaultBranch: 'main',
      private: true,
    });
    expect(all[1]).toMatchObject({ defaultBranch: 'trunk', private: false });
  });

  it('reads a project by path, and the account of the token', async () => {
    const widgets = await host.getRepository(token, 'acme', 'widgets');
    expect(widgets).toMatchObject({
      fullName: 'acme/widgets',
      defaultBranch: 'main',
      webUrl: `${world.api.gitlabUrl}/acme/widgets`,
    });
    await expect(host.getRepository(token, 'acme', 'missing')).rejects.toBeInstanceOf(HostNotFound);
    // The numeric id works as well as the encoded path.
    const byId = await fetch(`${world.api.gitlabUrl}/api/v4/projects/${widgets.id}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(((await byId.json()) as { path_with_namespace: string }).path_with_namespace).toBe('acme/widgets');
    expect(await host.getAccount(token)).toEqual({ id: '2001', login: 'lab-tester', name: 'Lab Tester' });
  });

  it('resolves branch heads (slashes in names included) like git rev-parse, null for a missing branch', async () => {
    const branch = world.range.branch;
    expect(await host.getBranchHead(token, 'acme', 'widgets', branch)).toBe(
      await gitOut(world.widgets, ['rev-parse', `refs/heads/${branch}`]),
    );
    expect(await host.getBranchHead(token, 'acme', 'widgets', 'nope')).toBeNull();
    await expect(host.getBranchHead(token, 'acme', 'missing', 'main')).rejects.toBeInstanceOf(HostNotFound);
  });

  it('creates a project hook with the secret token and push + tag events, and deletes it', async () => {
    const secret = randomBytes(16).toString('hex');
    const hookId = await host.createWebhook(token, 'acme', 'widgets', {
      url: 'https://reposync.example.com/webhooks/gitlab',
      secret,
      events: ['push', 'tag_push'],
    });
    expect(world.api.hooks('gitlab', 'acme/widgets')).toEqual([
      {
        id: hookId,
        url: 'https://reposync.example.com/webhooks/gitlab',
        secret,
        events: ['push', 'tag_push'],
      },
    ]);
    // The fake's list and single-hook answers too; GitLab never shows the token.
    const headers = { authorization: `Bearer ${token}` };
    const hooksUrl = `${world.api.gitlabUrl}/api/v4/projects/acme%2Fwidgets/hooks`;
    const listed = (await (await fetch(hooksUrl, { headers })).json()) as Array<Record<string, unknown>>;
    expect(listed.map((hook) => String(hook.id))).toEqual([hookId]);
    const single = (await (await fetch(`${hooksUrl}/${hookId}`, { headers })).json()) as Record<
      string,
      unknown
    >;
    expect(single).toMatchObject({ push_events: true, tag_push_events: true, enable_ssl_verification: true });
    expect(single).not.toHaveProperty('token');
    await host.deleteWebhook(token, 'acme', 'widgets', hookId);
    expect(world.api.hooks('gitlab', 'acme/widgets')).toEqual([]);
    await expect(host.deleteWebhook(token, 'acme', 'widgets', hookId)).resolves.toBeUndefined();
  });

  it('compares a real range the way git sees it, with modes', async () => {
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
    expect(comparison.commits[1]).toMatchObject({
      parents: [revList[0]],
      message: 'rename, chmod +x, change a binary\n\nWith a body line.',
      committer: {
        name: 'Fixture Author',
        email: 'author@fixture.test',
        date: new Date('2024-03-03T10:00:00Z'),
      },
    });

    const expected = (await gitRawChanges(world.widgets, base, head)).map((change): HostChangedFile => ({
      path: change.path,
      previousPath: change.previousPath,
      status: GITLAB_STATUS[change.status] ?? (change.oldSha === change.newSha ? 'changed' : 'modified'),
      sha: null,
      mode: change.status === 'D' ? null : change.newMode,
      previousMode: change.status === 'A' ? null : change.oldMode,
      // Binary diffs come without line counts from GitLab.
      additions: change.path.endsWith('.bin') ? null : (expect.any(Number) as unknown as number),
      deletions: change.path.endsWith('.bin') ? null : (expect.any(Number) as unknown as number),
      patchAvailable: expect.any(Boolean) as unknown as boolean,
    }));
    expect(comparison.files).toEqual(expected);
    const byPath = new Map(comparison.files.map((file) => [file.path, file]));
    expect(byPath.get('scripts/run.sh')).toMatchObject({
      status: 'changed',
      mode: '100755',
      previousMode: '100644',
      additions: 0,
    });
    expect(byPath.get('lib/app.ts')).toMatchObject({
      status: 'renamed',
      previousPath: 'src/app.ts',
      additions: 1,
      deletions: 1,
    });
    expect(byPath.get('README.md')).toMatchObject({
      status: 'modified',
      additions: 2,
      deletions: 0,
      patchAvailable: true,
    });
    expect(byPath.get('assets/logo.bin')).toMatchObject({
      status: 'modified',
      patchAvailable: false,
      additions: null,
    });
  });

  it('reports diverged, behind and identical comparisons through the merge base', async () => {
    const { base, head, mainHead, branch } = world.range;
    expect(await host.compare(token, 'acme', 'widgets', 'main', branch)).toMatchObject({
      status: 'diverged',
      aheadBy: 2,
      behindBy: null,
      baseSha: mainHead,
      headSha: head,
      mergeBaseSha: base,
    });
    expect(await host.compare(token, 'acme', 'widgets', head, base)).toMatchObject({
      status: 'behind',
      headSha: base,
      commits: [],
    });
    expect(await host.compare(token, 'acme', 'widgets', head, head)).toMatchObject({
      status: 'identical',
      aheadBy: 0,
      files: [],
    });
  });

  it('flags comparisons GitLab cut (compare_timeout)', async () => {
    world.api.setGitLabCompareTimeout(true);
    try {
      const comparison = await host.compare(token, 'acme', 'widgets', world.range.base, world.range.head);
      expect(comparison.truncated).toMatchObject({ files: true, timedOut: true });
    } finally {
      world.api.setGitLabCompareTimeout(false);
    }
  });

  it('downloads raw blob bytes equal to the git object', async () => {
    const sha = await gitOut(world.widgets, ['rev-parse', `${world.range.head}:assets/logo.bin`]);
    const bytes = await host.getBlob(token, 'acme', 'widgets', sha);
    expect(
      bytes.equals(Buffer.from([0, 1, 2, 3, 255, 254, 0, 10, 13, 0x89, 0x50, 0x4e, 0x47, 0, 0, 7, 200])),
    ).toBe(true);
    const readme = await gitOut(world.widgets, ['rev-parse', `${world.range.head}:README.md`]);
    expect((await host.getBlob(token, 'acme', 'widgets', readme)).toString('utf8')).toBe(
      '# widgets\n\nNow with docs.\n',
    );
    await expect(host.getBlob(token, 'acme', 'widgets', 'f'.repeat(40))).rejects.toBeInstanceOf(HostNotFound);
  });

  it('rebuilds the tree id of a commit from its root listing, equal to git rev-parse <sha>^{tree}', async () => {
    const { base, head, mainHead } = world.range;
    for (const sha of [base, head, mainHead]) {
      expect(await host.getCommitTree(token, 'acme', 'widgets', sha)).toBe(
        await gitOut(world.widgets, ['rev-parse', `${sha}^{tree}`]),
      );
    }
    // More than one page of root entries (100 per page), names that sort differently as trees.
    const files: Record<string, string> = {};
    for (let i = 0; i < 230; i++) files[`f${String(i).padStart(3, '0')}.txt`] = `${i}\n`;
    files['a-b'] = 'x\n';
    files['a/inner.txt'] = 'inner\n';
    files['a.txt'] = 'y\n';
    const wide = await world.gadgets.commit(files, { message: 'wide root' });
    expect(await host.getCommitTree(token, 'acme', 'gadgets', wide)).toBe(
      await gitOut(world.gadgets, ['rev-parse', `${wide}^{tree}`]),
    );
    await expect(host.getCommitTree(token, 'acme', 'widgets', 'f'.repeat(40))).rejects.toBeInstanceOf(
      HostNotFound,
    );
  });

  it('reads a file at a commit through the repository files API, checked against blob_id', async () => {
    const { base, head } = world.range;
    const file = await host.getFileAtRef(token, 'acme', 'widgets', 'scripts/run.sh', head);
    expect(file.content.toString('utf8')).toBe('#!/bin/sh\necho run\n');
    expect(file.blobSha).toBe(await gitOut(world.widgets, ['rev-parse', `${head}:scripts/run.sh`]));
    expect((await host.getFileAtRef(token, 'acme', 'widgets', 'assets/logo.bin', base)).content).toHaveLength(
      13,
    );
    await expect(host.getFileAtRef(token, 'acme', 'widgets', 'docs/old.md', head)).rejects.toBeInstanceOf(
      HostNotFound,
    );
  });

  it('refuses corrupted content; a host lying consistently (blob_id of the bad bytes) is not caught here', async () => {
    const { head } = world.range;
    world.api.corruptNextContent({ provider: 'gitlab' });
    await expect(host.getFileAtRef(token, 'acme', 'widgets', 'README.md', head)).rejects.toBeInstanceOf(
      HostContentMismatch,
    );
    world.api.corruptNextContent({ provider: 'gitlab', consistentId: true });
    const lie = await host.getFileAtRef(token, 'acme', 'widgets', 'README.md', head);
    expect(lie.content.toString('utf8')).not.toBe('# widgets\n\nNow with docs.\n');
    const sha = await gitOut(world.widgets, ['rev-parse', `${head}:README.md`]);
    world.api.corruptNextContent({ provider: 'gitlab' });
    await expect(host.getBlob(token, 'acme', 'widgets', sha)).rejects.toBeInstanceOf(HostContentMismatch);
  });

  it('exchanges a PKCE authorization code, and refreshes the token once it expired', async () => {
    const redirectUri = 'https://reposync.example.com/connections/gitlab/callback';
    const { verifier, challenge } = pkcePair();
    const code = world.api.issueAuthorizationCode('gitlab', {
      redirectUri,
      codeChallenge: challenge,
      scopes: ['api', 'read_user'],
    });
    const grant = await host.exchangeCode(code, redirectUri, verifier);
    expect(grant.scopes).toEqual(['api', 'read_user']);
    expect(grant.refreshToken).toBeDefined();
    expect(grant.expiresAt!.getTime()).toBeGreaterThan(Date.now() + 7000_000);
    expect((await host.getAccount(grant.accessToken)).login).toBe('lab-tester');

    world.api.expireToken(grant.accessToken);
    await expect(host.listRepositories(grant.accessToken, 1)).rejects.toBeInstanceOf(HostAuthFailed);
    const refreshed = await host.refreshToken(grant.refreshToken!);
    expect(refreshed.accessToken).not.toBe(grant.accessToken);
    expect((await host.listRepositories(refreshed.accessToken, 1)).repositories).toHaveLength(1);
    // GitLab rotates refresh tokens: the old one is spent.
    await expect(host.refreshToken(grant.refreshToken!)).rejects.toBeInstanceOf(HostAuthFailed);
  });

  it('refuses a code with the wrong PKCE verifier or redirect URI', async () => {
    const redirectUri = 'https://reposync.example.com/cb';
    const { challenge } = pkcePair();
    const code = world.api.issueAuthorizationCode('gitlab', { redirectUri, codeChallenge: challenge });
    await expect(host.exchangeCode(code, redirectUri, pkcePair().verifier)).rejects.toThrow(
      /invalid, expired, revoked/,
    );
    const plain = world.api.issueAuthorizationCode('gitlab', { redirectUri });
    await expect(host.exchangeCode(plain, 'https://evil.example.com/cb')).rejects.toBeInstanceOf(
      HostAuthFailed,
    );
    const wrongClient = new GitLabHost({
      baseUrl: world.api.gitlabUrl,
      budget: world.budget(),
      oauth: { clientId: 'nope', clientSecret: 'nope' },
    });
    await expect(wrongClient.exchangeCode(plain, redirectUri)).rejects.toThrow(
      /Client authentication failed/,
    );
  });

  it('reports an unreachable or slow host as HostUnavailable', async () => {
    const unreachable = new GitLabHost({ baseUrl: 'http://127.0.0.1:9', budget: world.budget() });
    await expect(unreachable.getRepository(token, 'acme', 'widgets')).rejects.toBeInstanceOf(HostUnavailable);
    const impatient = new GitLabHost({
      baseUrl: world.api.gitlabUrl,
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

  it('left no fixture error behind', () => {
    expect(world.api.requests.filter((request) => request.provider === 'gitlab').length).toBeGreaterThan(20);
    expect(world.api.fixtureErrors).toEqual([]);
  });
});
