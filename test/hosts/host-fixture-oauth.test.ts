/**
 * The fake hosts' OAuth authorize endpoints (a user who consents at once, or refuses), GitHub App
 * installations as the user and the app see them, and git over smart HTTP that accepts exactly the
 * tokens the fake hosts would accept.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { GitHubHost } from '../../src/hosts/github-host.js';
import { GitLabHost } from '../../src/hosts/gitlab-host.js';
import { HostAuthFailed } from '../../src/hosts/host-errors.js';
import { runFixtureGit } from '../fixtures/git-server.js';
import type { HostApiProvider } from '../fixtures/host-api-server.js';
import { startHostWorld, type HostWorld } from './host-world.js';

const APP_ID = 515151;
const WIDGETS_INSTALLATION = 41001;
const USER_INSTALLATION = 41002;
const HIDDEN_INSTALLATION = 41003;
const SILENT_LOG = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** Follows nothing: the authorize answer as the browser would get it. */
async function authorize(
  url: string,
  params: Record<string, string>,
): Promise<{ status: number; location: URL | null; contentType: string | null }> {
  const response = await fetch(`${url}?${new URLSearchParams(params).toString()}`, { redirect: 'manual' });
  await response.arrayBuffer();
  const location = response.headers.get('location');
  return {
    status: response.status,
    location: location === null ? null : new URL(location),
    contentType: response.headers.get('content-type'),
  };
}

/** Octokit that throws on errors without logging them. */
function octokit(baseUrl: string, auth: string): Octokit {
  return new Octokit({ baseUrl, auth, log: SILENT_LOG });
}

async function statusOf(promise: Promise<unknown>): Promise<number> {
  try {
    await promise;
    return 200;
  } catch (error) {
    return (error as { status?: number }).status ?? -1;
  }
}

describe('fake host OAuth authorize, GitHub App installations and token-checked git', () => {
  let world: HostWorld;
  let github: GitHubHost;
  let gitlab: GitLabHost;
  let keys: { privateKey: string; publicKey: string };
  let appJwt: () => Promise<string>;
  let githubAuthorizeUrl: string;
  let gitlabAuthorizeUrl: string;

  /** A GitHub installation token, minted with the app JWT at the validated access_tokens endpoint. */
  async function installationToken(installationId: number): Promise<string> {
    const { data } = await octokit(
      world.api.githubApiUrl,
      await appJwt(),
    ).rest.apps.createInstallationAccessToken({ installation_id: installationId });
    return data.token;
  }

  /** Runs the GitHub authorize step and returns the code handed to the redirect URI. */
  async function githubCode(redirectUri: string, challenge?: string): Promise<string> {
    const answer = await authorize(githubAuthorizeUrl, {
      client_id: world.api.oauthClients.github.clientId,
      redirect_uri: redirectUri,
      state: 'st',
      ...(challenge === undefined ? {} : { code_challenge: challenge, code_challenge_method: 'S256' }),
    });
    expect(answer.status).toBe(302);
    return answer.location!.searchParams.get('code')!;
  }

  /** Clones over smart HTTP with basic auth sent as an extra header from the environment (not argv). */
  async function cloneWith(url: string, username: string, password: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'reposync-oauth-clone-'));
    const header = `Authorization: Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    try {
      await runFixtureGit(['clone', '--quiet', '--no-checkout', url, join(dir, 'clone')], {
        env: { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.extraHeader', GIT_CONFIG_VALUE_0: header },
        timeoutMs: 30_000,
      });
      const { stdout } = await runFixtureGit(['rev-parse', 'HEAD'], { cwd: join(dir, 'clone') });
      return stdout.trim();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  beforeAll(async () => {
    world = await startHostWorld();
    github = new GitHubHost({
      apiBaseUrl: world.api.githubApiUrl,
      budget: world.budget(),
      oauth: { ...world.api.oauthClients.github, clientType: 'github-app' },
    });
    gitlab = new GitLabHost({
      baseUrl: world.api.gitlabUrl,
      budget: world.budget(),
      oauth: world.api.oauthClients.gitlab,
    });
    githubAuthorizeUrl = `${world.api.baseUrl}/github/login/oauth/authorize`;
    gitlabAuthorizeUrl = `${world.api.baseUrl}/gitlab/oauth/authorize`;
    keys = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    world.api.registerGitHubApp({ appId: APP_ID, publicKey: keys.publicKey, slug: 'reposync-tests' });
    world.api.addInstallation({
      appId: APP_ID,
      installationId: WIDGETS_INSTALLATION,
      repositories: ['acme/widgets'],
    });
    world.api.addInstallation({
      appId: APP_ID,
      installationId: USER_INSTALLATION,
      repositories: ['acme/gadgets'],
      account: { login: 'octo-tester', id: 1001, type: 'User' },
    });
    world.api.addInstallation({
      appId: APP_ID,
      installationId: HIDDEN_INSTALLATION,
      repositories: ['acme/gadgets'],
      account: { login: 'elsewhere', id: 77, type: 'Organization' },
      userCanAccess: false,
    });
    const auth = createAppAuth({ appId: APP_ID, privateKey: keys.privateKey });
    appJwt = async () => (await auth({ type: 'app' })).token;
  });

  afterAll(async () => {
    await world.stop();
  });

  it('GitHub: authorize redirects with a code and the state; the code exchanges with its PKCE verifier', async () => {
    const redirectUri = 'https://reposync.example.com/connections/github/callback?from=fixture';
    const { verifier, challenge } = pkcePair();
    const answer = await authorize(githubAuthorizeUrl, {
      client_id: world.api.oauthClients.github.clientId,
      redirect_uri: redirectUri,
      state: 'state-123',
      scope: 'repo',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    expect(answer.status).toBe(302);
    const location = answer.location!;
    expect(`${location.origin}${location.pathname}`).toBe(
      'https://reposync.example.com/connections/github/callback',
    );
    expect(location.searchParams.get('from')).toBe('fixture');
    expect(location.searchParams.get('state')).toBe('state-123');
    const code = location.searchParams.get('code')!;
    expect(code).toMatch(/^[0-9a-f]{20}$/);

    // The wrong verifier is refused; the right one gets an expiring GitHub App user token.
    await expect(github.exchangeCode(code, redirectUri, pkcePair().verifier)).rejects.toThrow(
      /code_verifier/,
    );
    await expect(github.exchangeCode(code, redirectUri)).rejects.toThrow(/code_verifier/);
    const grant = await github.exchangeCode(code, redirectUri, verifier);
    expect(grant.accessToken).toMatch(/^ghu_/);
    expect(grant.refreshToken).toMatch(/^ghr_/);
    expect((await github.getAccount(grant.accessToken)).login).toBe('octo-tester');
    // Spent.
    await expect(github.exchangeCode(code, redirectUri, verifier)).rejects.toBeInstanceOf(HostAuthFailed);

    // The code is bound to the redirect URI it was issued for.
    const other = pkcePair();
    const second = await githubCode(redirectUri, other.challenge);
    await expect(
      github.exchangeCode(second, 'https://evil.example.com/callback', other.verifier),
    ).rejects.toThrow(/redirect_uri/);
    expect((await github.exchangeCode(second, redirectUri, other.verifier)).accessToken).toMatch(/^ghu_/);
  });

  it('GitHub: an unknown client is a 404 page, a missing redirect_uri a 400, PKCE plain refused', async () => {
    const unknown = await authorize(githubAuthorizeUrl, {
      client_id: 'Iv1.0000000000000000',
      redirect_uri: 'https://reposync.example.com/cb',
      state: 's',
    });
    expect(unknown).toMatchObject({ status: 404, location: null });
    expect(unknown.contentType).toMatch(/^text\/html/);
    const missing = await authorize(githubAuthorizeUrl, {
      client_id: world.api.oauthClients.github.clientId,
    });
    expect(missing).toMatchObject({ status: 400, location: null });
    expect(missing.contentType).toMatch(/^text\/plain/);
    const plain = await authorize(githubAuthorizeUrl, {
      client_id: world.api.oauthClients.github.clientId,
      redirect_uri: 'https://reposync.example.com/cb',
      code_challenge: 'abc',
      code_challenge_method: 'plain',
    });
    expect(plain.status).toBe(400);
  });

  it('GitLab: authorize redirects with a code and the state; the code exchanges with its PKCE verifier', async () => {
    const redirectUri = 'https://reposync.example.com/connections/gitlab/callback';
    const { verifier, challenge } = pkcePair();
    const params = {
      client_id: world.api.oauthClients.gitlab.clientId,
      redirect_uri: redirectUri,
      response_type: 'code',
      state: 'gl-state',
      scope: 'api read_user',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    };
    const answer = await authorize(gitlabAuthorizeUrl, params);
    expect(answer.status).toBe(302);
    expect(`${answer.location!.origin}${answer.location!.pathname}`).toBe(redirectUri);
    expect(answer.location!.searchParams.get('state')).toBe('gl-state');
    const code = answer.location!.searchParams.get('code')!;
    expect(code).toMatch(/^[0-9a-f]{64}$/);

    await expect(gitlab.exchangeCode(code, redirectUri, pkcePair().verifier)).rejects.toThrow(
      /invalid, expired, revoked/,
    );
    await expect(gitlab.exchangeCode(code, 'https://evil.example.com/cb', verifier)).rejects.toBeInstanceOf(
      HostAuthFailed,
    );
    const grant = await gitlab.exchangeCode(code, redirectUri, verifier);
    expect(grant.scopes).toEqual(['api', 'read_user']);
    expect((await gitlab.getAccount(grant.accessToken)).login).toBe('lab-tester');
    await expect(gitlab.exchangeCode(code, redirectUri, verifier)).rejects.toBeInstanceOf(HostAuthFailed);

    // Without PKCE at authorize, a verifier at the token endpoint is refused (Doorkeeper).
    const { code_challenge: _c, code_challenge_method: _m, ...noPkce } = params;
    const plain = (await authorize(gitlabAuthorizeUrl, noPkce)).location!.searchParams.get('code')!;
    await expect(gitlab.exchangeCode(plain, redirectUri, verifier)).rejects.toBeInstanceOf(HostAuthFailed);
  });

  it('GitLab: a wrong client or response_type redirects with the error, its description and the state', async () => {
    const redirectUri = 'https://reposync.example.com/cb';
    const wrongClient = await authorize(gitlabAuthorizeUrl, {
      client_id: 'not-a-client',
      redirect_uri: redirectUri,
      response_type: 'code',
      state: 'abc',
    });
    expect(wrongClient.status).toBe(302);
    expect(Object.fromEntries(wrongClient.location!.searchParams)).toEqual({
      error: 'invalid_client',
      error_description: expect.stringMatching(/Client authentication failed/) as unknown as string,
      state: 'abc',
    });
    const wrongType = await authorize(gitlabAuthorizeUrl, {
      client_id: world.api.oauthClients.gitlab.clientId,
      redirect_uri: redirectUri,
      response_type: 'token',
      state: 'def',
    });
    expect(Object.fromEntries(wrongType.location!.searchParams)).toEqual({
      error: 'unsupported_response_type',
      error_description: 'The authorization server does not support this response type.',
      state: 'def',
    });
    const missing = await authorize(gitlabAuthorizeUrl, {
      client_id: world.api.oauthClients.gitlab.clientId,
      response_type: 'code',
    });
    expect(missing).toMatchObject({ status: 400, location: null });
  });

  it.each<[HostApiProvider, string]>([
    ['github', 'The user has denied your application access.'],
    ['gitlab', 'The resource owner or authorization server denied the request.'],
  ])('%s: denyNextAuthorization makes the next authorize a refusal, once', async (provider, description) => {
    const url = provider === 'github' ? githubAuthorizeUrl : gitlabAuthorizeUrl;
    const params = {
      client_id: world.api.oauthClients[provider].clientId,
      redirect_uri: 'https://reposync.example.com/cb',
      response_type: 'code',
      state: `deny-${provider}`,
    };
    world.api.denyNextAuthorization(provider);
    const denied = await authorize(url, params);
    expect(denied.status).toBe(302);
    expect(denied.location!.searchParams.get('error')).toBe('access_denied');
    expect(denied.location!.searchParams.get('error_description')).toBe(description);
    expect(denied.location!.searchParams.get('state')).toBe(`deny-${provider}`);
    expect(denied.location!.searchParams.has('code')).toBe(false);
    const consented = await authorize(url, params);
    expect(consented.location!.searchParams.get('code')).toBeTruthy();
    expect(consented.location!.searchParams.get('state')).toBe(`deny-${provider}`);
  });

  it('GET /user/installations lists the installations the user can access, for user tokens only', async () => {
    const user = octokit(world.api.githubApiUrl, world.api.issueToken('github'));
    const { data } = await user.rest.apps.listInstallationsForAuthenticatedUser();
    expect(data.total_count).toBe(2);
    expect(data.installations.map((installation) => installation.id)).toEqual([
      WIDGETS_INSTALLATION,
      USER_INSTALLATION,
    ]);
    const [org, personal] = data.installations;
    expect(org).toMatchObject({
      app_id: APP_ID,
      app_slug: 'reposync-tests',
      target_type: 'Organization',
      repository_selection: 'selected',
      suspended_at: null,
      access_tokens_url: `${world.api.githubApiUrl}/app/installations/${WIDGETS_INSTALLATION}/access_tokens`,
    });
    expect(org!.account).toMatchObject({ login: 'acme', type: 'Organization' });
    expect(personal).toMatchObject({ target_type: 'User', target_id: 1001 });
    expect(personal!.account).toMatchObject({ login: 'octo-tester', id: 1001 });

    const paged = await user.rest.apps.listInstallationsForAuthenticatedUser({ per_page: 1 });
    expect(paged.data.installations).toHaveLength(1);
    expect(paged.headers.link).toMatch(/rel="next"/);

    const installation = octokit(world.api.githubApiUrl, await installationToken(WIDGETS_INSTALLATION));
    expect(await statusOf(installation.rest.apps.listInstallationsForAuthenticatedUser())).toBe(403);
  });

  it('GET /app/installations/{id} with the app JWT; suspended installations cannot mint, removed ones are gone', async () => {
    const app = octokit(world.api.githubApiUrl, await appJwt());
    const { data } = await app.rest.apps.getInstallation({ installation_id: WIDGETS_INSTALLATION });
    expect(data).toMatchObject({ id: WIDGETS_INSTALLATION, app_id: APP_ID, suspended_at: null });
    expect(await statusOf(app.rest.apps.getInstallation({ installation_id: 999 }))).toBe(404);
    const userToken = octokit(world.api.githubApiUrl, world.api.issueToken('github'));
    expect(
      await statusOf(userToken.rest.apps.getInstallation({ installation_id: WIDGETS_INSTALLATION })),
    ).toBe(401);

    world.api.addInstallation({ appId: APP_ID, installationId: 41009, repositories: ['acme/widgets'] });
    const before = await installationToken(41009);
    world.api.suspendInstallation(41009);
    const suspended = (await app.rest.apps.getInstallation({ installation_id: 41009 })).data;
    expect(suspended.suspended_at).toEqual(expect.any(String));
    expect(suspended.suspended_by?.login).toBe('octo-tester');
    await expect(installationToken(41009)).rejects.toMatchObject({
      status: 403,
      message: expect.stringMatching(/This installation has been suspended/) as unknown as string,
    });
    expect(
      await statusOf(
        octokit(world.api.githubApiUrl, before).rest.repos.get({ owner: 'acme', repo: 'widgets' }),
      ),
    ).toBe(403);
    world.api.unsuspendInstallation(41009);
    const after = await installationToken(41009);

    world.api.removeInstallation(41009);
    expect(await statusOf(app.rest.apps.getInstallation({ installation_id: 41009 }))).toBe(404);
    expect(await statusOf(installationToken(41009))).toBe(404);
    expect(
      await statusOf(
        octokit(world.api.githubApiUrl, after).rest.repos.get({ owner: 'acme', repo: 'widgets' }),
      ),
    ).toBe(401);
  });

  it('git clone succeeds with a live token the host accepts for the repository and is refused otherwise', async () => {
    const url = world.widgets.url;
    world.git.setAuth('acme/widgets', world.api.gitAuthFor('acme/widgets'));
    try {
      const head = world.range.mainHead;
      // GitHub installation token: username x-access-token, installation must cover the repository.
      const installation = await installationToken(WIDGETS_INSTALLATION);
      expect(await cloneWith(url, 'x-access-token', installation)).toBe(head);
      await expect(cloneWith(url, 'someone', installation)).rejects.toThrow(/could not read Username|401/);
      const otherRepo = await installationToken(USER_INSTALLATION);
      await expect(cloneWith(url, 'x-access-token', otherRepo)).rejects.toThrow();
      // GitHub user token: any username.
      const user = world.api.issueToken('github');
      expect(await cloneWith(url, 'octo-tester', user)).toBe(head);
      // GitLab OAuth token: username oauth2.
      const code = world.api.issueAuthorizationCode('gitlab', {
        redirectUri: 'https://reposync.example.com/cb',
      });
      const grant = await gitlab.exchangeCode(code, 'https://reposync.example.com/cb');
      expect(await cloneWith(url, 'oauth2', grant.accessToken)).toBe(head);
      await expect(cloneWith(url, 'git', grant.accessToken)).rejects.toThrow();

      // Expired tokens are refused from the moment they expire.
      world.api.expireToken(installation);
      world.api.expireToken(user);
      world.api.expireToken(grant.accessToken);
      world.git.resetCounters();
      await expect(cloneWith(url, 'x-access-token', installation)).rejects.toThrow(
        /could not read Username|Authentication failed|401/,
      );
      await expect(cloneWith(url, 'octo-tester', user)).rejects.toThrow();
      await expect(cloneWith(url, 'oauth2', grant.accessToken)).rejects.toThrow();
      await expect(cloneWith(url, 'x-access-token', 'ghs_not-a-token')).rejects.toThrow();
      expect(world.git.requests.filter((request) => request.repository === 'acme/widgets')).toEqual(
        expect.arrayContaining([expect.objectContaining({ status: 401 })]),
      );
      expect(world.git.requests.some((request) => request.status === 200)).toBe(false);
    } finally {
      world.git.setAuth('acme/widgets', null);
    }
  });

  // Runs last: every GitHub answer of this file was checked against the description.
  it('recorded no OpenAPI violation over the whole file', () => {
    const paths = world.api.requests.filter((request) => request.provider === 'github').map((r) => r.path);
    expect(paths).toEqual(
      expect.arrayContaining(['/user/installations', `/app/installations/${WIDGETS_INSTALLATION}`]),
    );
    expect(world.api.openApiViolations).toEqual([]);
    expect(world.api.fixtureErrors).toEqual([]);
  });
});
