import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { GitHubHost } from '../../src/hosts/github-host.js';
import { GitLabHost } from '../../src/hosts/gitlab-host.js';
import { HostApiBudget } from '../../src/hosts/host-budget.js';
import { HostRateLimited } from '../../src/hosts/host-errors.js';
import { startHostWorld, type HostWorld } from './host-world.js';

async function rateLimited(promise: Promise<unknown>): Promise<HostRateLimited> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HostRateLimited);
  return error as HostRateLimited;
}

describe('HostApiBudget (Redis) in front of the GitHub and GitLab clients', () => {
  let world: HostWorld;

  beforeAll(async () => {
    world = await startHostWorld();
  });

  afterAll(async () => {
    await world.stop();
  });

  function github(): GitHubHost {
    return new GitHubHost({ apiBaseUrl: world.api.githubApiUrl, budget: world.budget() });
  }

  it('records the remaining calls from the rate-limit headers, keyed by a hash of the token', async () => {
    const token = world.api.issueToken('github');
    const budget = world.budget();
    const host = new GitHubHost({ apiBaseUrl: world.api.githubApiUrl, budget });
    await host.getRepository(token, 'acme', 'widgets');
    await host.getBranchHead(token, 'acme', 'widgets', 'main');
    const snapshot = await budget.snapshot(token);
    expect(snapshot.remaining).toBe(4998);
    expect(snapshot.resetAt!.getTime()).toBeGreaterThan(Date.now() + 3000_000);
    expect(snapshot.blockedUntil).toBeNull();
    expect(snapshot.inFlight).toBe(0);

    const keys = await world.redis.keys(`${world.keyPrefix}:*`);
    expect(keys.some((key) => key.includes(createHash('sha256').update(token).digest('hex')))).toBe(true);
    expect(keys.some((key) => key.includes(token))).toBe(false);
    for (const key of keys) expect(await world.redis.pttl(key)).toBeGreaterThan(0);
  });

  it('turns a 429 with Retry-After into HostRateLimited and then refuses without calling GitHub', async () => {
    const token = world.api.issueToken('github');
    const host = github();
    world.api.rateLimitNext(1, { provider: 'github', status: 429, retryAfterSeconds: 30 });
    const first = await rateLimited(host.getRepository(token, 'acme', 'widgets'));
    expect(first.retryAfterMs).toBeGreaterThan(29_000);
    expect(first.retryAfterMs).toBeLessThanOrEqual(30_000);
    expect(first.status).toBe(429);
    expect(first.provider).toBe('github');
    const sent = world.api.requestsWith(token).length;

    // Another client (think: another worker) shares the budget through Redis.
    const second = await rateLimited(github().compare(token, 'acme', 'widgets', 'main', 'main'));
    expect(second.retryAfterMs).toBeGreaterThan(28_000);
    expect(second.message).toMatch(/not sent/);
    expect(world.api.requestsWith(token)).toHaveLength(sent);
    // Other tokens are not affected.
    await expect(
      host.getRepository(world.api.issueToken('github'), 'acme', 'widgets'),
    ).resolves.toBeDefined();
  });

  it('waits out an exhausted primary limit (403, x-ratelimit-remaining: 0) until the reset', async () => {
    const token = world.api.issueToken('github');
    world.api.rateLimitNext(1, { provider: 'github', status: 403, resetInSeconds: 120 });
    const refused = await rateLimited(github().getRepository(token, 'acme', 'widgets'));
    expect(refused.retryAfterMs).toBeGreaterThan(115_000);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(121_000);
    const sent = world.api.requestsWith(token).length;
    await rateLimited(github().getBranchHead(token, 'acme', 'widgets', 'main'));
    expect(world.api.requestsWith(token)).toHaveLength(sent);
  });

  it('lets requests through again once the Retry-After has passed', async () => {
    const token = world.api.issueToken('github');
    world.api.rateLimitNext(1, { provider: 'github', status: 429, retryAfterSeconds: 1 });
    await rateLimited(github().getRepository(token, 'acme', 'widgets'));
    await rateLimited(github().getRepository(token, 'acme', 'widgets'));
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await expect(github().getRepository(token, 'acme', 'widgets')).resolves.toMatchObject({
      name: 'widgets',
    });
  });

  it('refuses before sending once a success reported the budget spent (remaining 0, reset ahead)', async () => {
    const token = world.api.issueToken('github');
    const budget = world.budget();
    const host = new GitHubHost({ apiBaseUrl: world.api.githubApiUrl, budget });
    world.api.spendRateLimit('github', token);
    await expect(host.getRepository(token, 'acme', 'widgets')).resolves.toMatchObject({ name: 'widgets' });
    const snapshot = await budget.snapshot(token);
    expect(snapshot.remaining).toBe(0);
    const sent = world.api.requestsWith(token).length;
    const refused = await rateLimited(host.getBranchHead(token, 'acme', 'widgets', 'main'));
    // The wait is until the window resets, as the host said.
    expect(Math.abs(refused.retryAfterMs - (snapshot.resetAt!.getTime() - Date.now()))).toBeLessThan(5000);
    expect(refused.retryAfterMs).toBeGreaterThan(3500_000);
    expect(refused.message).toMatch(/spent/);
    expect(world.api.requestsWith(token)).toHaveLength(sent);
  });

  it('does the same for GitLab throttling (429, Retry-After, RateLimit-* headers)', async () => {
    const token = world.api.issueToken('gitlab');
    const budget = world.budget();
    const host = new GitLabHost({ baseUrl: world.api.gitlabUrl, budget });
    await host.getRepository(token, 'acme', 'widgets');
    expect((await budget.snapshot(token)).remaining).toBe(1999);
    world.api.rateLimitNext(1, { provider: 'gitlab', status: 429, retryAfterSeconds: 45 });
    const refused = await rateLimited(host.getBranchHead(token, 'acme', 'widgets', 'main'));
    expect(refused.provider).toBe('gitlab');
    expect(refused.retryAfterMs).toBeGreaterThan(44_000);
    const sent = world.api.requestsWith(token).length;
    await rateLimited(host.listRepositories(token, 1));
    expect(world.api.requestsWith(token)).toHaveLength(sent);
  });

  it('caps concurrent requests per token across clients', async () => {
    const token = world.api.issueToken('github');
    world.api.setResponseDelay(150);
    try {
      const hosts = [0, 1, 2].map(
        () =>
          new GitHubHost({
            apiBaseUrl: world.api.githubApiUrl,
            budget: world.budget({ maxConcurrentPerToken: 2 }),
          }),
      );
      const results = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          hosts[i % 3]!.getRepository(token, 'acme', i % 2 ? 'widgets' : 'gadgets'),
        ),
      );
      expect(results).toHaveLength(6);
      expect(world.api.peakConcurrency(token)).toBe(2);
    } finally {
      world.api.setResponseDelay(0);
    }
  });

  it('gives up waiting for a slot with HostRateLimited, and frees the slot of a crashed process after its lease', async () => {
    const token = 'gho_budget-slot-test';
    let hangs = 0;
    const hanging: typeof fetch = () => {
      hangs++;
      return new Promise<Response>(() => undefined);
    };
    // "Process A" takes the only slot and never finishes (as if it crashed mid-request).
    const crashed = world.budget({ maxConcurrentPerToken: 1, slotLeaseMs: 600 });
    const crashedAt = Date.now();
    void crashed.fetchFor('github', token, hanging)('http://127.0.0.1:9/never');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(hangs).toBe(1);

    const impatient = world.budget({ maxConcurrentPerToken: 1, acquireTimeoutMs: 150 });
    const refused = await rateLimited(
      impatient.fetchFor('github', token, hanging)('http://127.0.0.1:9/never'),
    );
    expect(refused.message).toMatch(/already running/);
    expect(hangs).toBe(1);

    const patient = world.budget({ maxConcurrentPerToken: 1, acquireTimeoutMs: 5000 });
    const ok = await patient.fetchFor(
      'github',
      token,
      async () => new Response('{}', { status: 200 }),
    )('http://127.0.0.1:9/x');
    expect(ok.status).toBe(200);
    // The slot came free by its lease running out, not earlier: the lease is stamped no earlier
    // than `crashedAt`, and only a lease past its expiry is taken over.
    expect(Date.now() - crashedAt).toBeGreaterThanOrEqual(600);
    expect((await patient.snapshot(token)).inFlight).toBe(0);
  });

  it('fails open (and reports it) when Redis is unreachable', async () => {
    const offline = new Redis('redis://127.0.0.1:1', {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
    });
    const errors: unknown[] = [];
    const token = world.api.issueToken('github');
    try {
      const host = new GitHubHost({
        apiBaseUrl: world.api.githubApiUrl,
        budget: new HostApiBudget({
          redis: offline,
          keyPrefix: world.keyPrefix,
          onRedisError: (error) => errors.push(error),
        }),
      });
      await expect(host.getRepository(token, 'acme', 'widgets')).resolves.toMatchObject({ name: 'widgets' });
      expect(errors.length).toBeGreaterThan(0);
    } finally {
      offline.disconnect();
    }
  });

  it('recorded no OpenAPI violation over the whole file', () => {
    expect(world.api.openApiViolations).toEqual([]);
    expect(world.api.fixtureErrors).toEqual([]);
  });
});
