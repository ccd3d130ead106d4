import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ApiHarness } from '../support/api-harness.js';

describe('readiness with a dependency down', () => {
  let api: ApiHarness;

  beforeAll(async () => {
    // Nothing listens on port 1: Redis is "down" for this API.
    api = await ApiHarness.start({ REDIS_URL: 'redis://127.0.0.1:1' });
  });

  afterAll(async () => {
    await api.stop();
  });

  it('answers 503 naming Redis as down and Postgres as up', async () => {
    const ready = await api.request<{
      status: string;
      checks: Record<string, { status: string; error?: string }>;
    }>('GET', '/health/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.status).toBe('unavailable');
    expect(ready.body.checks.postgres).toEqual({ status: 'up' });
    expect(ready.body.checks.redis?.status).toBe('down');
    expect(ready.body.checks.redis?.error).toEqual(expect.any(String));
    expect((await api.request('GET', '/health/live')).status).toBe(200);
  });

  it('still accepts a repository while Redis is down: Postgres records what is owed', async () => {
    const tenant = await api.createTenant('redis-down');
    const res = await api.request<{ status: string }>('POST', '/repositories', {
      token: tenant.apiKey,
      body: { url: 'https://github.com/acme/offline', branches: ['main'] },
    });
    expect(res.status).toBe(201);
    expect(res.body.status).toBe('PENDING');
  });
});
