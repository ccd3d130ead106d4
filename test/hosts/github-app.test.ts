import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { generateKeyPairSync } from 'node:crypto';
import { GitHubAppInstallationTokens } from '../../src/hosts/github-app.js';
import { GitHubHost } from '../../src/hosts/github-host.js';
import { HostAuthFailed, HostNotFound } from '../../src/hosts/host-errors.js';
import { startHostWorld, type HostWorld } from './host-world.js';

const APP_ID = 424242;
const INSTALLATION_ID = 31337;

function rsaKeyPair(): { privateKey: string; publicKey: string } {
  return generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

describe('GitHub App installation tokens against the fake GitHub API', () => {
  let world: HostWorld;
  let keys: { privateKey: string; publicKey: string };

  beforeAll(async () => {
    world = await startHostWorld();
    keys = rsaKeyPair();
    world.api.registerGitHubApp({ appId: APP_ID, publicKey: keys.publicKey });
    world.api.addInstallation({
      appId: APP_ID,
      installationId: INSTALLATION_ID,
      repositories: ['acme/widgets'],
    });
  });

  afterAll(async () => {
    await world.stop();
  });

  it('mints a token with a verified app JWT, serves it from cache, and renews it 5 minutes before expiry', async () => {
    let now = Date.now();
    const tokens = new GitHubAppInstallationTokens({
      appId: APP_ID,
      privateKey: keys.privateKey,
      apiBaseUrl: world.api.githubApiUrl,
      budget: world.budget(),
      now: () => now,
    });
    const [first, concurrent] = await Promise.all([
      tokens.installationToken(INSTALLATION_ID),
      tokens.installationToken(INSTALLATION_ID),
    ]);
    expect(first.token).toMatch(/^ghs_/);
    expect(concurrent.token).toBe(first.token);
    expect(first.repositorySelection).toBe('selected');
    expect(first.permissions).toMatchObject({ contents: 'read', metadata: 'read' });
    expect(first.expiresAt.getTime()).toBeGreaterThan(Date.now() + 55 * 60_000);
    expect(world.api.installationTokensMinted(INSTALLATION_ID)).toBe(1);

    // Still more than 5 minutes left: cached.
    now = first.expiresAt.getTime() - 6 * 60_000;
    expect((await tokens.installationToken(INSTALLATION_ID)).token).toBe(first.token);
    expect(world.api.installationTokensMinted(INSTALLATION_ID)).toBe(1);

    // Within 5 minutes of expiry: minted again.
    now = first.expiresAt.getTime() - 4 * 60_000;
    const renewed = await tokens.installationToken(INSTALLATION_ID);
    expect(renewed.token).not.toBe(first.token);
    expect(world.api.installationTokensMinted(INSTALLATION_ID)).toBe(2);

    tokens.forget(INSTALLATION_ID);
    await tokens.installationToken(INSTALLATION_ID);
    expect(world.api.installationTokensMinted(INSTALLATION_ID)).toBe(3);
  });

  it('lists only the repositories of the installation with an installation token', async () => {
    const tokens = new GitHubAppInstallationTokens({
      appId: APP_ID,
      privateKey: keys.privateKey,
      apiBaseUrl: world.api.githubApiUrl,
      budget: world.budget(),
    });
    const { token } = await tokens.installationToken(INSTALLATION_ID);
    const host = new GitHubHost({ apiBaseUrl: world.api.githubApiUrl, budget: world.budget() });
    const page = await host.listRepositories(token, 1);
    expect(page.repositories.map((repo) => repo.fullName)).toEqual(['acme/widgets']);
    expect(page.nextPage).toBeNull();
    expect((await host.getRepository(token, 'acme', 'widgets')).defaultBranch).toBe('main');
    await expect(host.getRepository(token, 'acme', 'gadgets')).rejects.toBeInstanceOf(HostNotFound);
  });

  it('is refused with another key (JWT signature checked) and for an unknown installation', async () => {
    const impostor = new GitHubAppInstallationTokens({
      appId: APP_ID,
      privateKey: rsaKeyPair().privateKey,
      apiBaseUrl: world.api.githubApiUrl,
      budget: world.budget(),
    });
    await expect(impostor.installationToken(INSTALLATION_ID)).rejects.toBeInstanceOf(HostAuthFailed);
    const wrongApp = new GitHubAppInstallationTokens({
      appId: 1,
      privateKey: keys.privateKey,
      apiBaseUrl: world.api.githubApiUrl,
      budget: world.budget(),
    });
    await expect(wrongApp.installationToken(INSTALLATION_ID)).rejects.toBeInstanceOf(HostAuthFailed);
    const tokens = new GitHubAppInstallationTokens({
      appId: APP_ID,
      privateKey: keys.privateKey,
      apiBaseUrl: world.api.githubApiUrl,
      budget: world.budget(),
    });
    await expect(tokens.installationToken(999)).rejects.toBeInstanceOf(HostNotFound);
  });

  it('recorded no OpenAPI violation over the whole file', () => {
    expect(
      world.api.requests.some((request) => request.path.endsWith('/access_tokens') && request.status === 201),
    ).toBe(true);
    expect(world.api.openApiViolations).toEqual([]);
    expect(world.api.fixtureErrors).toEqual([]);
  });
});
