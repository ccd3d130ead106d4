/**
 * OAuth connections end to end, over HTTP against the real API, Postgres, Redis and an in-process worker:
 * the authorize -> host consent -> callback dance with single-use states and PKCE, tokens that never reach
 * storage or a log line in the clear, return URLs, repositories added through a connection (host webhook
 * created, signed pushes synced with the connection's token over git, webhook removed with the
 * repository), GitLab token refresh with rotation, and tenant isolation.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TestTenant } from '../support/api-harness.js';
import { githubPush } from '../support/webhook-payloads.js';
import {
  type ConnectionJson,
  type ConnectionsWorld,
  type ErrorJson,
  PUBLIC_URL,
  RETURN_URL,
  type RepositoryJson,
  callback,
  columnsContaining,
  consent,
  hostedRepository,
  newSecrets,
  postGithubDelivery,
  secretSet,
  startConnectionsWorld,
} from './connections-world.js';

/** A second allowed return URL given as a bare origin, the way operators often write it. */
const CONSOLE_ORIGIN = 'https://console.example.test';

interface HostRepositoryJson {
  id: string;
  owner: string;
  name: string;
  fullName: string;
  webUrl: string;
  defaultBranch: string | null;
  private: boolean;
  archived: boolean;
  trackedRepositoryId: string | null;
}

describe('connections: OAuth onboarding, host webhooks, token refresh and isolation', () => {
  let world: ConnectionsWorld;
  let tenant: TestTenant;
  let other: TestTenant;
  let github: ConnectionJson;
  /** Every token and secret seen in this file: none may be stored or logged in the clear. */
  const secrets = new Set<string>();

  beforeAll(async () => {
    world = await startConnectionsWorld({}, () => ({
      OAUTH_RETURN_URLS: `${RETURN_URL},${CONSOLE_ORIGIN}`,
    }));
    tenant = await world.h.api.createTenant('conn-oauth-a');
    other = await world.h.api.createTenant('conn-oauth-b');
  });

  afterAll(async () => {
    await world?.stop();
  });

  const request = <T = Record<string, unknown>>(
    method: string,
    path: string,
    who: TestTenant,
    body?: unknown,
  ) => world.h.api.request<T>(method, path, { token: who.apiKey, body });

  it('GitHub: authorize, consent on the host, callback; wrong and reused states are refused; tokens stay secret', async () => {
    const before = secretSet(world.api);
    const { location, state } = await consent(world, tenant, 'github');

    const wrong = new URL(location);
    wrong.searchParams.set('state', randomBytes(32).toString('base64url'));
    expect(state).toHaveLength(43);
    const wrongAnswer = await callback(world, wrong);
    expect(wrongAnswer.status).toBe(400);
    expect(wrongAnswer.body).toMatchObject({ code: 'OAUTH_STATE_INVALID' });
    const missing = new URL(location);
    missing.searchParams.delete('state');
    expect((await callback(world, missing)).body).toMatchObject({ code: 'OAUTH_STATE_MISSING' });
    // The state belongs to the GitHub flow: GitLab's callback does not accept it (nor spend it).
    const crossed = new URL(location);
    crossed.pathname = '/connections/gitlab/callback';
    expect((await callback(world, crossed)).body).toMatchObject({ code: 'OAUTH_STATE_INVALID' });

    const stored = await callback(world, location);
    expect(stored.status).toBe(201);
    github = stored.body as ConnectionJson;
    expect(github).toMatchObject({
      provider: 'GITHUB',
      kind: 'OAUTH',
      host: 'github.com',
      accountLogin: 'octo-tester',
      accountId: '1001',
      installationId: null,
      lastError: null,
      suspendedAt: null,
    });
    // A GitHub App user token: it expires (8 h) and came with a refresh token.
    expect(Date.parse(github.tokenExpiresAt!)).toBeGreaterThan(Date.now() + 7 * 3600_000);

    const reused = await callback(world, location);
    expect(reused.status).toBe(400);
    expect(reused.body).toMatchObject({ code: 'OAUTH_STATE_INVALID' });

    // What the fake GitHub issued in that exchange.
    const issued = newSecrets(world.api, before, 'github');
    const access = issued.filter((s) => s.kind === 'access').map((s) => s.token);
    const refresh = issued.filter((s) => s.kind === 'refresh').map((s) => s.token);
    expect(access).toHaveLength(1);
    expect(access[0]).toMatch(/^ghu_/);
    expect(refresh).toHaveLength(1);
    expect(refresh[0]).toMatch(/^ghr_/);
    for (const token of [...access, ...refresh]) secrets.add(token);

    // The token works: the connection is listed and can see the host's repositories.
    const listed = await request<{ items: ConnectionJson[] }>('GET', '/connections', tenant);
    expect(listed.body.items.map((c) => c.id)).toEqual([github.id]);
    expect(world.api.requestsWith(access[0]!).map((r) => `${r.method} ${r.path}`)).toContain('GET /user');

    // Stored encrypted: neither token appears in any text column of any table, nor in the API's answers.
    const { rows } = await world.h.db.query<{ a: string | null; r: string | null }>(
      'SELECT "accessTokenEncrypted" AS a, "refreshTokenEncrypted" AS r FROM "Connection" WHERE "id" = $1',
      [github.id],
    );
    // Versioned AES-GCM ciphertexts naming the key they were sealed with.
    expect(rows[0]!.a).toMatch(/^v1:t1:/);
    expect(rows[0]!.r).toMatch(/^v1:t1:/);
    for (const token of [...access, ...refresh]) {
      expect(await columnsContaining(world, token)).toEqual([]);
      expect(JSON.stringify(stored.body)).not.toContain(token);
      expect(JSON.stringify(listed.body)).not.toContain(token);
    }

    // Nor in any log line (debug level), while the logs did record the connection being stored.
    const logs = world.logs.lines;
    expect(
      logs.some((line) => line.msg === 'OAuth connection stored' && line.connectionId === github.id),
    ).toBe(true);
    for (const token of [...access, ...refresh]) expect(world.logs.text).not.toContain(token);
    expect(world.logs.text).not.toContain(location.searchParams.get('code')!);
  });

  it('the host refusing consent ends the flow with OAUTH_DENIED and spends the state', async () => {
    world.api.denyNextAuthorization('github');
    const start = await request<{ url: string; state: string }>(
      'GET',
      '/connections/github/authorize',
      tenant,
    );
    const response = await fetch(start.body.url, { redirect: 'manual' });
    await response.arrayBuffer();
    const location = new URL(response.headers.get('location')!);
    expect(location.searchParams.get('error')).toBe('access_denied');
    const denied = await callback(world, location);
    expect(denied.status).toBe(400);
    expect(denied.body).toMatchObject({ code: 'OAUTH_DENIED' });
    expect((denied.body as ErrorJson).message).toMatch(/access_denied/);
    expect((await callback(world, location)).body).toMatchObject({ code: 'OAUTH_STATE_INVALID' });
  });

  it('returnTo must start with an allowed return URL; an allowed one ends in a 303 carrying the connection', async () => {
    for (const returnTo of [
      'https://evil.example.test/settings/connections',
      `${CONSOLE_ORIGIN}.evil.test/cb`,
      `${CONSOLE_ORIGIN}@evil.test/cb`,
      'not a url',
    ]) {
      const refused = await request<ErrorJson>(
        'GET',
        `/connections/github/authorize?returnTo=${encodeURIComponent(returnTo)}`,
        tenant,
      );
      expect({ returnTo, status: refused.status }).toEqual({ returnTo, status: 400 });
      expect(refused.body.details?.fields?.[0]?.field).toBe('returnTo');
    }

    const { location } = await consent(world, tenant, 'github', `${RETURN_URL}?tab=github`);
    const answer = await callback(world, location);
    expect(answer.status).toBe(303);
    const target = new URL(answer.location!);
    expect(`${target.origin}${target.pathname}`).toBe(RETURN_URL);
    expect(target.searchParams.get('tab')).toBe('github');
    // The same GitHub account again: the same connection, its grant renewed.
    expect(target.searchParams.get('connection')).toBe(github.id);

    const { location: again } = await consent(world, tenant, 'github');
    const reconnected = await callback(world, again);
    expect(reconnected.status).toBe(200);
    expect((reconnected.body as ConnectionJson).id).toBe(github.id);
    for (const s of world.api.issuedSecrets()) secrets.add(s.token);

    const origin = await consent(world, tenant, 'github', `${CONSOLE_ORIGIN}/after`);
    expect((await callback(world, origin.location)).status).toBe(303);
  });

  it('adds a repository through the connection: host webhook created, a signed push synced over token-checked git, webhook removed with it', async () => {
    const fullName = 'acme/oauth-widgets';
    const { remote, first } = await hostedRepository(world, fullName);

    const page = await request<{ items: HostRepositoryJson[]; nextPage: number | null }>(
      'GET',
      `/connections/${github.id}/repositories?page=1`,
      tenant,
    );
    expect(page.status).toBe(200);
    expect(page.body.nextPage).toBeNull();
    const listed = page.body.items.find((r) => r.fullName === fullName);
    expect(listed).toMatchObject({
      owner: 'acme',
      name: 'oauth-widgets',
      private: true,
      archived: false,
      defaultBranch: 'main',
      trackedRepositoryId: null,
    });

    const added = await request<RepositoryJson>('POST', '/repositories', tenant, {
      connectionId: github.id,
      owner: 'acme',
      name: 'oauth-widgets',
    });
    expect(added.status).toBe(201);
    const repo = added.body;
    expect(repo).toMatchObject({ connectionId: github.id, webhookError: null, owner: 'acme' });

    const hooks = world.api.hooks('github', fullName);
    expect(hooks).toHaveLength(1);
    const hook = hooks[0]!;
    expect(hook.url).toBe(`${PUBLIC_URL}/webhooks/github?repository=${repo.id}`);
    expect(hook.id).toBe(repo.webhookId);
    expect(hook.events).toEqual(expect.arrayContaining(['push']));
    expect(hook.secret).toEqual(expect.any(String));
    secrets.add(hook.secret!);
    expect(await columnsContaining(world, hook.secret!)).toEqual([]);

    const relisted = await request<{ items: HostRepositoryJson[] }>(
      'GET',
      `/connections/${github.id}/repositories`,
      tenant,
    );
    expect(relisted.body.items.find((r) => r.fullName === fullName)?.trackedRepositoryId).toBe(repo.id);

    // Onboarding and the first sync go through git with the connection's token (the only way in).
    await world.h.waitForBranch(repo.id, 'main', first);
    const gitRequests = world.h.git.requests.filter((r) => r.repository === fullName);
    expect(gitRequests.some((r) => r.status === 200)).toBe(true);

    const next = await remote.commit({ 'README.md': '# pushed\n' }, { message: 'pushed' });
    const hookUrl = new URL(hook.url);
    const delivered = await postGithubDelivery(
      world,
      `${hookUrl.pathname}${hookUrl.search}`,
      'push',
      githubPush(fullName, 'main', first, next),
      hook.secret!,
      randomUUID(),
    );
    expect(delivered.status).toBe(202);
    expect(delivered.body.outcome).toBe('ACCEPTED');
    const branch = await world.h.waitForBranch(repo.id, 'main', next);
    const runs = await world.h.runs(branch.id);
    expect(runs.find((r) => r.toSha === next)).toMatchObject({ status: 'SUCCEEDED', trigger: 'WEBHOOK' });
    expect(runs.filter((r) => r.status === 'FAILED')).toEqual([]);

    // A delivery signed with anything else is refused.
    const forged = await postGithubDelivery(
      world,
      `${hookUrl.pathname}${hookUrl.search}`,
      'push',
      githubPush(fullName, 'main', next, first),
      'not-the-hook-secret',
      randomUUID(),
    );
    expect(forged.status).toBe(401);

    expect((await request('DELETE', `/repositories/${repo.id}`, tenant)).status).toBe(204);
    expect(world.api.hooks('github', fullName)).toEqual([]);
  });

  it('GitLab: an expired OAuth token is refreshed once, the refresh token rotates, and the sync goes on', async () => {
    const fullName = 'lab-group/refreshing';
    const { remote, first } = await hostedRepository(world, fullName);
    const before = secretSet(world.api);
    const { location } = await consent(world, tenant, 'gitlab');
    const stored = await callback(world, location);
    expect(stored.status).toBe(201);
    const gitlab = stored.body as ConnectionJson;
    expect(gitlab).toMatchObject({
      provider: 'GITLAB',
      kind: 'OAUTH',
      host: 'gitlab.com',
      accountLogin: 'lab-tester',
    });
    const issued = newSecrets(world.api, before, 'gitlab');
    const access = issued.find((s) => s.kind === 'access')!.token;
    const refresh = issued.find((s) => s.kind === 'refresh')!.token;
    secrets.add(access);
    secrets.add(refresh);
    expect(await columnsContaining(world, access)).toEqual([]);
    expect(await columnsContaining(world, refresh)).toEqual([]);

    const added = await request<RepositoryJson>('POST', '/repositories', tenant, {
      connectionId: gitlab.id,
      owner: 'lab-group',
      name: 'refreshing',
    });
    expect(added.status).toBe(201);
    const repo = added.body;
    expect(repo.webhookError).toBeNull();
    const [hook] = world.api.hooks('gitlab', fullName);
    expect(hook?.url).toBe(`${PUBLIC_URL}/webhooks/gitlab?repository=${repo.id}`);
    secrets.add(hook!.secret!);
    await world.h.waitForBranch(repo.id, 'main', first);

    // The host now refuses the access token, and our row says it has expired.
    world.api.expireToken(access);
    const rowBefore = await connectionRow(gitlab.id);
    await world.h.db.query(
      `UPDATE "Connection" SET "tokenExpiresAt" = now() - interval '1 minute' WHERE "id" = $1`,
      [gitlab.id],
    );
    const tokenGrants = () =>
      world.api.requests.filter(
        (r) => r.provider === 'gitlab' && r.path === '/oauth/token' && r.status === 200,
      ).length;
    const grantsBefore = tokenGrants();

    const next = await remote.commit({ 'CHANGELOG.md': 'after expiry\n' }, { message: 'after expiry' });
    expect((await request('POST', `/repositories/${repo.id}/sync`, tenant)).status).toBe(202);
    const branch = await world.h.waitForBranch(repo.id, 'main', next);
    expect((await world.h.runs(branch.id)).filter((r) => r.status === 'FAILED')).toEqual([]);

    // One refresh_token grant (onboarding and the branch sync share it under the row lock).
    expect(tokenGrants()).toBe(grantsBefore + 1);
    const renewed = newSecrets(world.api, before, 'gitlab').filter((s) => s.token !== access);
    const newAccess = renewed.filter((s) => s.kind === 'access').map((s) => s.token);
    const newRefresh = renewed.filter((s) => s.kind === 'refresh').map((s) => s.token);
    expect(newAccess).toHaveLength(1);
    expect(newRefresh).toHaveLength(1);
    newAccess.concat(newRefresh).forEach((t) => secrets.add(t));
    // The old refresh token was spent (rotation): the host no longer knows it and refuses it.
    expect(world.api.issuedSecrets().some((s) => s.token === refresh)).toBe(false);
    const replay = await fetch(`${world.api.gitlabUrl}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: refresh,
        client_id: world.api.oauthClients.gitlab.clientId,
        client_secret: world.api.oauthClients.gitlab.clientSecret,
      }).toString(),
    });
    expect(replay.status).toBe(400);
    expect(await replay.json()).toMatchObject({ error: 'invalid_grant' });

    // The new grant is stored (new ciphertexts, a future expiry) and still never in the clear.
    const rowAfter = await connectionRow(gitlab.id);
    expect(rowAfter.a).not.toBe(rowBefore.a);
    expect(rowAfter.r).not.toBe(rowBefore.r);
    expect(rowAfter.expires.getTime()).toBeGreaterThan(Date.now() + 3600_000);
    expect(rowAfter.lastError).toBeNull();
    for (const token of [...newAccess, ...newRefresh]) {
      expect(await columnsContaining(world, token)).toEqual([]);
    }
    const shown = await request<ConnectionJson>('GET', `/connections/${gitlab.id}`, tenant);
    expect(Date.parse(shown.body.tokenExpiresAt!)).toBe(rowAfter.expires.getTime());

    expect((await request('DELETE', `/repositories/${repo.id}`, tenant)).status).toBe(204);
    expect(world.api.hooks('gitlab', fullName)).toEqual([]);
  });

  it("another tenant cannot see, delete or use a tenant's connection; a connection in use cannot be deleted", async () => {
    const fullName = 'acme/isolated';
    const { first } = await hostedRepository(world, fullName);
    const added = await request<RepositoryJson>('POST', '/repositories', tenant, {
      connectionId: github.id,
      owner: 'acme',
      name: 'isolated',
    });
    expect(added.status).toBe(201);
    await world.h.waitForBranch(added.body.id, 'main', first);

    expect((await request('GET', `/connections/${github.id}`, other)).status).toBe(404);
    expect((await request('GET', `/connections/${github.id}/repositories`, other)).status).toBe(404);
    expect((await request('DELETE', `/connections/${github.id}`, other)).status).toBe(404);
    expect((await request('GET', `/repositories/${added.body.id}`, other)).status).toBe(404);
    expect((await request<{ items: unknown[] }>('GET', '/connections', other)).body.items).toEqual([]);
    const borrowed = await request<ErrorJson>('POST', '/repositories', other, {
      connectionId: github.id,
      owner: 'acme',
      name: 'isolated',
    });
    expect(borrowed.status).toBe(400);
    expect(borrowed.body.details?.fields?.[0]?.field).toBe('connectionId');

    const inUse = await request<ErrorJson>('DELETE', `/connections/${github.id}`, tenant);
    expect(inUse.status).toBe(409);
    expect(inUse.body.code).toBe('CONNECTION_IN_USE');
    const shown = await request<ConnectionJson>('GET', `/connections/${github.id}`, tenant);
    expect(shown.status).toBe(200);
    const listed = await request<{ items: ConnectionJson[] }>('GET', '/connections', tenant);
    expect(listed.body.items.find((c) => c.id === github.id)?.repositoryCount).toBe(1);

    expect((await request('DELETE', `/repositories/${added.body.id}`, tenant)).status).toBe(204);
    expect((await request('DELETE', `/connections/${github.id}`, tenant)).status).toBe(204);
    expect((await request('GET', `/connections/${github.id}`, tenant)).status).toBe(404);
    expect(world.api.hooks('github', fullName)).toEqual([]);
  });

  // Runs last: covers every token and secret the fake hosts issued over the whole file.
  it('the reconciler removes OAuth states that expired more than a day ago, and keeps the others', async () => {
    const { rows: tenants } = await world.h.db.query<{ id: string }>('SELECT "id" FROM "Tenant" LIMIT 1');
    const insert = (hash: string, expiresAt: Date) =>
      world.h.db.query(
        `INSERT INTO "OAuthState" ("id", "stateHash", "tenantId", "provider", "expiresAt")
         VALUES (gen_random_uuid(), $1, $2, 'GITHUB', $3)`,
        [hash, tenants[0]!.id, expiresAt],
      );
    await insert('stale-state-hash', new Date(Date.now() - 2 * 24 * 3600 * 1000));
    await insert('recent-state-hash', new Date(Date.now() - 3600 * 1000));
    await world.h.reconcile();
    const { rows } = await world.h.db.query<{ stateHash: string }>(
      `SELECT "stateHash" FROM "OAuthState" WHERE "stateHash" IN ('stale-state-hash', 'recent-state-hash')`,
    );
    expect(rows.map((r) => r.stateHash)).toEqual(['recent-state-hash']);
  });

  it('no token or webhook secret was stored or logged in the clear; the fake hosts saw valid requests only', async () => {
    for (const s of world.api.issuedSecrets()) secrets.add(s.token);
    expect(secrets.size).toBeGreaterThanOrEqual(8);
    const text = world.logs.text;
    expect(text.length).toBeGreaterThan(0);
    for (const secret of secrets) {
      expect({ secret, columns: await columnsContaining(world, secret) }).toEqual({ secret, columns: [] });
      expect({ secret, logged: text.includes(secret) }).toEqual({ secret, logged: false });
    }
    expect(world.api.openApiViolations).toEqual([]);
    expect(world.api.fixtureErrors).toEqual([]);
  });

  async function connectionRow(id: string) {
    const { rows } = await world.h.db.query<{
      a: string;
      r: string;
      expires: Date;
      lastError: string | null;
    }>(
      'SELECT "accessTokenEncrypted" AS a, "refreshTokenEncrypted" AS r, "tokenExpiresAt" AS expires, "lastError" FROM "Connection" WHERE "id" = $1',
      [id],
    );
    return rows[0]!;
  }
});
