/**
 * GitHub App installations end to end, over HTTP against the real API, Postgres, Redis and an in-process
 * worker: the install flow completed with the installing user's authorization, repositories covered by
 * the app's own webhook, installation tokens minted once, reused and renewed near expiry, suspension and
 * unsuspension through signed `installation` deliveries, and a host rate limit that defers work instead
 * of failing it.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TestTenant } from '../support/api-harness.js';
import { githubExample, githubPush } from '../support/webhook-payloads.js';
import type { FixtureRepository } from '../fixtures/git-server.js';
import {
  type CallbackAnswer,
  type ConnectionJson,
  type ConnectionsWorld,
  type ErrorJson,
  PUBLIC_URL,
  type RepositoryJson,
  callback,
  columnsContaining,
  hostedRepository,
  postGithubDelivery,
  startConnectionsWorld,
  visit,
} from './connections-world.js';

const APP_ID = 616161;
const SLUG = 'reposync-connections';
const APP_WEBHOOK_SECRET = 'app-webhook-secret-0123456789abcdef';
const INSTALLATION = 52001;
const HIDDEN_INSTALLATION = 52002;
/**
 * Installation tokens live this long on the fake host: just above the 5-minute renewal margin, so a token
 * is reused for RENEWAL_WINDOW_MS after it was minted and renewed after that.
 */
const TOKEN_TTL_SECONDS = 315;
const RENEWAL_WINDOW_MS = (TOKEN_TTL_SECONDS - 300) * 1000;

describe('connections: GitHub App installations', () => {
  let world: ConnectionsWorld;
  let tenant: TestTenant;
  let connection: ConnectionJson;
  let widgets: { remote: FixtureRepository; head: string; id: string; branchId: string };
  const keys = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });

  beforeAll(async () => {
    world = await startConnectionsWorld({ installationTokenTtlSeconds: TOKEN_TTL_SECONDS }, () => ({
      GITHUB_APP_ID: String(APP_ID),
      GITHUB_APP_PRIVATE_KEY: keys.privateKey,
      GITHUB_APP_SLUG: SLUG,
      GITHUB_APP_WEBHOOK_SECRET: APP_WEBHOOK_SECRET,
    }));
    world.api.registerGitHubApp({ appId: APP_ID, publicKey: keys.publicKey, slug: SLUG });
    tenant = await world.h.api.createTenant('conn-app');
  });

  afterAll(async () => {
    await world?.stop();
  });

  const request = <T = Record<string, unknown>>(method: string, path: string, body?: unknown) =>
    world.h.api.request<T>(method, path, { token: tenant.apiKey, body });

  /**
   * The install flow as the browser goes through it: our install URL (GitHub's install page), then, with
   * "request user authorization during installation", GitHub's authorize step, back to our setup URL with
   * the installation id, the code and our state.
   */
  async function install(installationId: number): Promise<CallbackAnswer> {
    const start = await request<{ url: string; state: string; expiresAt: string }>(
      'GET',
      '/connections/github/install',
    );
    expect(start.status).toBe(200);
    const url = new URL(start.body.url);
    expect(`${url.origin}${url.pathname}`).toBe(`${world.api.baseUrl}/github/apps/${SLUG}/installations/new`);
    expect(url.searchParams.get('state')).toBe(start.body.state);
    const authorize = new URL(`${world.api.baseUrl}/github/login/oauth/authorize`);
    authorize.search = new URLSearchParams({
      client_id: world.api.oauthClients.github.clientId,
      redirect_uri: `${PUBLIC_URL}/connections/github/callback`,
      state: start.body.state,
    }).toString();
    const location = await visit(authorize.href);
    expect(location.searchParams.get('state')).toBe(start.body.state);
    location.searchParams.set('installation_id', String(installationId));
    location.searchParams.set('setup_action', 'install');
    return callback(world, location);
  }

  async function installationDelivery(action: 'suspend' | 'unsuspend') {
    const payload = githubExample('installation', (p) => p.action === action);
    const installation = payload.installation as Record<string, unknown>;
    installation.id = INSTALLATION;
    (installation.account as Record<string, unknown>).login = 'app-org';
    return postGithubDelivery(
      world,
      '/webhooks/github',
      'installation',
      payload,
      APP_WEBHOOK_SECRET,
      randomUUID(),
    );
  }

  async function syncMain(repositoryId: string) {
    const res = await request('POST', `/repositories/${repositoryId}/sync`, { branch: 'main' });
    expect(res.status).toBe(202);
  }

  it('install flow: an installation the user cannot access is refused; an accessible one becomes an APP_INSTALLATION connection', async () => {
    const hosted = await hostedRepository(world, 'app-org/app-widgets');
    widgets = { remote: hosted.remote, head: hosted.first, id: '', branchId: '' };
    await hostedRepository(world, 'app-org/app-limited');
    await hostedRepository(world, 'app-org/app-onboard');
    await hostedRepository(world, 'elsewhere/hidden');
    world.api.addInstallation({
      appId: APP_ID,
      installationId: INSTALLATION,
      repositories: ['app-org/app-widgets', 'app-org/app-limited', 'app-org/app-onboard'],
      account: { login: 'app-org', id: 9001, type: 'Organization' },
    });
    world.api.addInstallation({
      appId: APP_ID,
      installationId: HIDDEN_INSTALLATION,
      repositories: ['elsewhere/hidden'],
      account: { login: 'elsewhere', id: 77, type: 'Organization' },
      userCanAccess: false,
    });

    const hidden = await install(HIDDEN_INSTALLATION);
    expect(hidden.status).toBe(400);
    expect(hidden.body).toMatchObject({ code: 'INSTALLATION_NOT_ACCESSIBLE' });
    expect((hidden.body as ErrorJson).message).toContain(String(HIDDEN_INSTALLATION));

    const created = await install(INSTALLATION);
    expect(created.status).toBe(201);
    connection = created.body as ConnectionJson;
    expect(connection).toMatchObject({
      provider: 'GITHUB',
      kind: 'APP_INSTALLATION',
      host: 'github.com',
      accountLogin: 'app-org',
      accountId: '9001',
      installationId: String(INSTALLATION),
      suspendedAt: null,
      lastError: null,
    });
    // Nothing to store for an installation: its tokens are minted when needed.
    const { rows } = await world.h.db.query<{ a: string | null; r: string | null }>(
      'SELECT "accessTokenEncrypted" AS a, "refreshTokenEncrypted" AS r FROM "Connection" WHERE "id" = $1',
      [connection.id],
    );
    expect(rows[0]).toEqual({ a: null, r: null });

    // The installation id alone (no code) proves nothing.
    const start = await request<{ state: string }>('GET', '/connections/github/install');
    const bare = await callback(
      world,
      `/connections/github/callback?installation_id=${INSTALLATION}&setup_action=install&state=${start.body.state}`,
    );
    expect(bare.status).toBe(400);
    expect(bare.body).toMatchObject({ code: 'OAUTH_CODE_MISSING' });
  });

  it('adds a repository through the installation: no webhook of its own, synced with an installation token reused across syncs and renewed near expiry', async () => {
    const page = await request<{ items: { fullName: string }[] }>(
      'GET',
      `/connections/${connection.id}/repositories`,
    );
    expect(page.status).toBe(200);
    expect(page.body.items.map((r) => r.fullName).sort()).toEqual([
      'app-org/app-limited',
      'app-org/app-onboard',
      'app-org/app-widgets',
    ]);

    const added = await request<RepositoryJson>('POST', '/repositories', {
      connectionId: connection.id,
      owner: 'app-org',
      name: 'app-widgets',
    });
    expect(added.status).toBe(201);
    expect(added.body).toMatchObject({ connectionId: connection.id, webhookId: null, webhookError: null });
    expect(world.api.hooks('github', 'app-org/app-widgets')).toEqual([]);
    widgets.id = added.body.id;
    const branch = await world.h.waitForBranch(widgets.id, 'main', widgets.head);
    const firstSyncedAt = Date.now();
    widgets.branchId = branch.id;
    const minted = world.api.installationTokensMinted(INSTALLATION);
    // The API minted one to look the repository up, the worker one for git.
    expect(minted).toBeGreaterThanOrEqual(2);

    // Several syncs, one of them from the app's own webhook (no ?repository): the worker's token is reused.
    widgets.head = await widgets.remote.commit({ 'a.txt': 'a\n' }, { message: 'a' });
    const before = (await world.h.branches(widgets.id))[0]!.syncedSha!;
    const delivered = await postGithubDelivery(
      world,
      '/webhooks/github',
      'push',
      githubPush('app-org/app-widgets', 'main', before, widgets.head),
      APP_WEBHOOK_SECRET,
      randomUUID(),
    );
    expect(delivered.status).toBe(202);
    expect(delivered.body.outcome).toBe('ACCEPTED');
    await world.h.waitForBranch(widgets.id, 'main', widgets.head);
    for (const file of ['b.txt', 'c.txt']) {
      widgets.head = await widgets.remote.commit({ [file]: `${file}\n` }, { message: file });
      await syncMain(widgets.id);
      await world.h.waitForBranch(widgets.id, 'main', widgets.head);
    }
    expect(Date.now() - firstSyncedAt).toBeLessThan(RENEWAL_WINDOW_MS);
    expect(world.api.installationTokensMinted(INSTALLATION)).toBe(minted);

    // Once the worker's token is within 5 minutes of expiring, the next sync mints a new one.
    const wait = firstSyncedAt + RENEWAL_WINDOW_MS + 500 - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    widgets.head = await widgets.remote.commit({ 'd.txt': 'd\n' }, { message: 'd' });
    await syncMain(widgets.id);
    await world.h.waitForBranch(widgets.id, 'main', widgets.head);
    expect(world.api.installationTokensMinted(INSTALLATION)).toBe(minted + 1);
    const runs = await world.h.runs(widgets.branchId);
    expect(runs.filter((r) => r.status === 'FAILED')).toEqual([]);
  }, 90_000);

  it('a suspended installation makes its connection unusable (CONNECTION_UNUSABLE); unsuspending makes it work again', async () => {
    world.api.suspendInstallation(INSTALLATION);
    const suspended = await installationDelivery('suspend');
    expect(suspended.status).toBe(202);
    const shown = await request<ConnectionJson>('GET', `/connections/${connection.id}`);
    expect(shown.body.suspendedAt).toEqual(expect.any(String));
    expect(shown.body.lastError).toMatch(/suspended/);

    const listing = await request<ErrorJson>('GET', `/connections/${connection.id}/repositories`);
    expect(listing.status).toBe(409);
    expect(listing.body.code).toBe('CONNECTION_UNUSABLE');

    const pending = await widgets.remote.commit({ 'e.txt': 'e\n' }, { message: 'e' });
    await syncMain(widgets.id);
    const failed = await world.h.waitFor('the branch to fail with CONNECTION_UNUSABLE', async () => {
      const b = (await world.h.branches(widgets.id))[0]!;
      return b.status === 'FAILED' && b.lastErrorCode === 'CONNECTION_UNUSABLE' ? b : undefined;
    });
    expect(failed.lastError).toMatch(/suspended/);
    expect(failed.syncedSha).toBe(widgets.head);
    const runs = await world.h.runs(widgets.branchId);
    expect(runs.at(-1)).toMatchObject({ status: 'FAILED', errorCode: 'CONNECTION_UNUSABLE' });
    // Permanent: not retried until something changes.
    expect(runs.filter((r) => r.errorCode === 'CONNECTION_UNUSABLE')).toHaveLength(1);

    world.api.unsuspendInstallation(INSTALLATION);
    expect((await installationDelivery('unsuspend')).status).toBe(202);
    const restored = await request<ConnectionJson>('GET', `/connections/${connection.id}`);
    expect(restored.body).toMatchObject({ suspendedAt: null, lastError: null });
    await syncMain(widgets.id);
    widgets.head = pending;
    await world.h.waitForBranch(widgets.id, 'main', pending);
  });

  it('a 429 from the host defers the sync (DEFERRED, HOST_RATE_LIMITED) instead of failing it', async () => {
    const added = await request<RepositoryJson>('POST', '/repositories', {
      connectionId: connection.id,
      owner: 'app-org',
      name: 'app-limited',
    });
    expect(added.status).toBe(201);
    const limited = world.h.git.repository('app-org/app-limited');
    const first = (await limited.head())!;
    const branch = await world.h.waitForBranch(added.body.id, 'main', first);

    // A fresh worker holds no installation token: its first host request is the mint, answered 429.
    await world.h.stopWorker();
    const next = await limited.commit({ 'limited.txt': 'after the limit\n' }, { message: 'limited' });
    await syncMain(added.body.id);
    const refusalsBefore = world.api.requests.filter((r) => r.status === 429).length;
    world.api.rateLimitNext(1, { provider: 'github', status: 429, retryAfterSeconds: 2 });
    await world.h.startWorker();

    await world.h.waitForBranch(added.body.id, 'main', next);
    expect(world.api.requests.filter((r) => r.status === 429).length).toBe(refusalsBefore + 1);
    const runs = await world.h.runs(branch.id);
    const deferred = runs.filter((r) => r.status === 'DEFERRED');
    expect(deferred).toHaveLength(1);
    expect(deferred[0]).toMatchObject({ errorCode: 'HOST_RATE_LIMITED', trigger: 'MANUAL' });
    expect(deferred[0]!.error).toMatch(/rate limit/i);
    expect(runs.filter((r) => r.status === 'FAILED')).toEqual([]);
    expect(runs.at(-1)).toMatchObject({ status: 'SUCCEEDED', toSha: next });
  });

  it('a 429 while onboarding a repository added with the worker down delays the onboarding, then it syncs', async () => {
    await world.h.stopWorker();
    const added = await request<RepositoryJson>('POST', '/repositories', {
      connectionId: connection.id,
      owner: 'app-org',
      name: 'app-onboard',
    });
    expect(added.status).toBe(201);
    const head = (await world.h.git.repository('app-org/app-onboard').head())!;
    const refusalsBefore = world.api.requests.filter((r) => r.status === 429).length;
    world.api.rateLimitNext(1, { provider: 'github', status: 429, retryAfterSeconds: 2 });
    await world.h.startWorker();

    const branch = await world.h.waitForBranch(added.body.id, 'main', head);
    expect(world.api.requests.filter((r) => r.status === 429).length).toBe(refusalsBefore + 1);
    // The onboarding job waited (it records no run); the branch's only run is the successful one.
    const runs = await world.h.runs(branch.id);
    expect(runs.map((r) => r.status)).toEqual(['SUCCEEDED']);
    // The repository's summary follows its branches.
    const repo = await world.h.waitFor('the repository to be SYNCED', async () => {
      const res = await request<{ status: string; lastError: string | null }>(
        'GET',
        `/repositories/${added.body.id}`,
      );
      return res.body.status === 'SYNCED' ? res.body : undefined;
    });
    expect(repo.lastError).toBeNull();
  });

  // Runs last.
  it('no host token was stored or logged in the clear; the fake host saw valid requests only', async () => {
    const secrets = world.api.issuedSecrets().map((s) => s.token);
    expect(secrets.filter((s) => s.startsWith('ghs_')).length).toBeGreaterThanOrEqual(3);
    expect(secrets.some((s) => s.startsWith('ghu_'))).toBe(true);
    for (const secret of secrets) {
      expect({ secret, columns: await columnsContaining(world, secret) }).toEqual({ secret, columns: [] });
      expect({ secret, logged: world.logs.text.includes(secret) }).toEqual({ secret, logged: false });
    }
    expect(world.logs.lines.some((line) => line.msg === 'GitHub App installation connected')).toBe(true);
    expect(world.api.openApiViolations).toEqual([]);
    expect(world.api.fixtureErrors).toEqual([]);
  });
});
