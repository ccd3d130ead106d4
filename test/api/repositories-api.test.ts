import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ApiHarness, type HttpResult, type TestTenant } from '../support/api-harness.js';
import { TEST_ADMIN_TOKEN } from '../support/test-config.js';

interface RepoBody {
  id: string;
  fullName: string;
  provider: string;
  status: string;
  branches: { name: string; status: string }[];
}
interface ErrorBody {
  statusCode: number;
  code: string;
  message: string;
  requestId: string;
  details?: { fields?: { field: string; message: string }[] };
}

describe('tenancy and repositories API (over HTTP, real Postgres and Redis)', () => {
  let api: ApiHarness;
  let a: TestTenant;
  let b: TestTenant;

  beforeAll(async () => {
    api = await ApiHarness.start();
    a = await api.createTenant('tenant-a');
    b = await api.createTenant('tenant-b');
  });

  afterAll(async () => {
    await api.stop();
  });

  describe('tenants and API keys', () => {
    it('rejects the admin endpoint without the admin token, and a tenant key there', async () => {
      const none = await api.request('POST', '/admin/tenants', { body: { name: 'x', slug: 'x' } });
      expect(none.status).toBe(401);
      const tenantKey = await api.request('POST', '/admin/tenants', {
        token: a.apiKey,
        body: { name: 'x', slug: 'x' },
      });
      expect(tenantKey.status).toBe(401);
    });

    it('refuses a duplicate tenant slug with 409 and a bad slug with 400 naming the field', async () => {
      const dup = await api.request<ErrorBody>('POST', '/admin/tenants', {
        token: TEST_ADMIN_TOKEN,
        body: { name: 'again', slug: 'tenant-a' },
      });
      expect(dup.status).toBe(409);
      expect(dup.body.code).toBe('TENANT_EXISTS');
      const bad = await api.request<ErrorBody>('POST', '/admin/tenants', {
        token: TEST_ADMIN_TOKEN,
        body: { name: 'x', slug: 'Not A Slug' },
      });
      expect(bad.status).toBe(400);
      expect(bad.body.details?.fields?.[0]?.field).toBe('slug');
    });

    it('rejects requests without a key, with a malformed key and with an unknown key', async () => {
      expect((await api.request('GET', '/repositories')).status).toBe(401);
      expect((await api.request('GET', '/repositories', { token: 'nope' })).status).toBe(401);
      const forged = a.apiKey.slice(0, -4) + 'AAAA';
      const res = await api.request<ErrorBody>('GET', '/repositories', { token: forged });
      expect(res.status).toBe(401);
      expect(res.body.requestId).toEqual(expect.any(String));
    });

    it('creates, lists and revokes keys; a revoked key gets 401 and the key is shown only once', async () => {
      const created = await api.request<{ id: string; key: string; prefix: string }>('POST', '/api-keys', {
        token: a.apiKey,
        body: { name: 'dashboard' },
      });
      expect(created.status).toBe(201);
      expect(created.body.key.startsWith(created.body.prefix)).toBe(true);
      expect((await api.request('GET', '/repositories', { token: created.body.key })).status).toBe(200);

      const list = await api.request<{ items: Record<string, unknown>[] }>('GET', '/api-keys', {
        token: a.apiKey,
      });
      expect(list.body.items.map((k) => k.id)).toContain(created.body.id);
      expect(JSON.stringify(list.body)).not.toContain(created.body.key);

      // Tenant B cannot revoke tenant A's key.
      expect((await api.request('DELETE', `/api-keys/${created.body.id}`, { token: b.apiKey })).status).toBe(
        404,
      );
      const revoked = await api.request<{ revokedAt: string | null }>(
        'DELETE',
        `/api-keys/${created.body.id}`,
        {
          token: a.apiKey,
        },
      );
      expect(revoked.status).toBe(200);
      expect(revoked.body.revokedAt).not.toBeNull();
      const after = await api.request<ErrorBody>('GET', '/repositories', { token: created.body.key });
      expect(after.status).toBe(401);
      expect(after.body.message).toMatch(/revoked/);
    });
  });

  describe('repositories', () => {
    it('adds a repository by URL, defaulting to the default branch, and by provider/owner/name', async () => {
      const byUrl = await api.request<RepoBody>('POST', '/repositories', {
        token: a.apiKey,
        body: { url: 'https://github.com/Acme/Widgets.git' },
      });
      expect(byUrl.status).toBe(201);
      expect(byUrl.body).toMatchObject({ provider: 'GITHUB', fullName: 'acme/widgets', status: 'PENDING' });
      expect(byUrl.body).toMatchObject({ trackDefaultBranch: true, branches: [] });

      const byName = await api.request<RepoBody>('POST', '/repositories', {
        token: a.apiKey,
        body: { provider: 'GITLAB', owner: 'group/sub', name: 'svc', branches: ['main', 'release/1.x'] },
      });
      expect(byName.status).toBe(201);
      expect(byName.body.fullName).toBe('group/sub/svc');
      expect(byName.body.branches.map((x) => x.name)).toEqual(['main', 'release/1.x']);
      expect(byName.body.branches.every((x) => x.status === 'PENDING')).toBe(true);
    });

    it('answers a duplicate with 409, case-insensitively for GitHub', async () => {
      const res = await api.request<ErrorBody>('POST', '/repositories', {
        token: a.apiKey,
        body: { url: 'https://github.com/acme/widgets' },
      });
      expect(res.status).toBe(409);
      expect(res.body.code).toBe('REPOSITORY_EXISTS');
      // The same repository in another tenant is fine.
      const other = await api.request('POST', '/repositories', {
        token: b.apiKey,
        body: { url: 'https://github.com/acme/widgets' },
      });
      expect(other.status).toBe(201);
    });

    it.each([
      ['http://169.254.169.254/latest/meta-data', 'url'],
      ['file:///etc', 'url'],
      ['ssh://localhost/x/y.git', 'url'],
      ['https://127.0.0.1/a/b.git', 'url'],
      ['https://10.1.2.3/a/b.git', 'url'],
      ['https://[::1]/a/b.git', 'url'],
      ['https://[fe80::1]/a/b.git', 'url'],
      ['https://2852039166/a/b.git', 'url'],
      ['http://github.com/a/b.git', 'url'],
      ['https://user:pass@github.com/a/b.git', 'url'],
      ['https://github.com/only-owner', 'url'],
      ['git@intranet:a/b.git', 'url'],
      ['not a url', 'url'],
    ])('rejects %s with 400 naming the field', async (url, field) => {
      const res = await api.request<ErrorBody>('POST', '/repositories', { token: a.apiKey, body: { url } });
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect(res.body.message.startsWith(`${field}:`)).toBe(true);
    });

    it('rejects bad bodies with 400 naming the field', async () => {
      const cases: [unknown, string][] = [
        [{}, 'url'],
        [{ url: 'https://github.com/a/b', syncStrategy: 'SOMETIMES' }, 'syncStrategy'],
        [{ url: 'https://github.com/a/b', branches: 'main' }, 'branches'],
        [{ url: 'https://github.com/a/b', branches: ['ok', 'bad..name'] }, 'branches.1'],
        [{ url: 'https://github.com/a/b', projectId: 'not-a-uuid' }, 'projectId'],
        [{ url: 'https://github.com/a/b', unexpected: true }, 'unexpected'],
        [{ provider: 'GIT', owner: 'a', name: 'b' }, 'provider'],
      ];
      for (const [body, field] of cases) {
        const res = await api.request<ErrorBody>('POST', '/repositories', { token: a.apiKey, body });
        expect({ body, status: res.status }).toEqual({ body, status: 400 });
        expect(res.body.message).toContain(field);
      }
      const malformed = await api.request<ErrorBody>('POST', '/repositories', {
        token: a.apiKey,
        rawBody: '{"url": ',
      });
      expect(malformed.status).toBe(400);
    });

    it('keeps tenants apart: another tenant’s repository is a 404 for read, update, delete and sync', async () => {
      const own = await api.request<RepoBody>('POST', '/repositories', {
        token: a.apiKey,
        body: { url: 'https://gitlab.com/private/thing.git', branches: ['main'] },
      });
      const id = own.body.id;
      expect((await api.request('GET', `/repositories/${id}`, { token: b.apiKey })).status).toBe(404);
      expect(
        (
          await api.request('PATCH', `/repositories/${id}`, {
            token: b.apiKey,
            body: { syncStrategy: 'FULL' },
          })
        ).status,
      ).toBe(404);
      expect(
        (await api.request('POST', `/repositories/${id}/sync`, { token: b.apiKey, body: {} })).status,
      ).toBe(404);
      expect((await api.request('DELETE', `/repositories/${id}`, { token: b.apiKey })).status).toBe(404);
      const listB = await api.request<{ items: RepoBody[] }>('GET', '/repositories?limit=100', {
        token: b.apiKey,
      });
      expect(listB.body.items.map((r) => r.id)).not.toContain(id);
      // Still intact for its owner.
      const stillThere = await api.request<RepoBody>('GET', `/repositories/${id}`, { token: a.apiKey });
      expect(stillThere.status).toBe(200);
      expect(stillThere.body.fullName).toBe('private/thing');
    });

    it('updates branches and strategy, records sync requests, and deletes', async () => {
      const created = await api.request<RepoBody>('POST', '/repositories', {
        token: a.apiKey,
        body: { url: 'https://github.com/acme/update-me', branches: ['main'] },
      });
      const id = created.body.id;
      const patched = await api.request<RepoBody & { syncStrategy: string }>('PATCH', `/repositories/${id}`, {
        token: a.apiKey,
        body: { branches: ['main', 'dev'], syncStrategy: 'FETCH' },
      });
      expect(patched.status).toBe(200);
      expect(patched.body.syncStrategy).toBe('FETCH');
      expect(patched.body.branches.map((x) => x.name)).toEqual(['dev', 'main']);

      const sync = await api.request<{ branches: { name: string; status: string }[] }>(
        'POST',
        `/repositories/${id}/sync`,
        { token: a.apiKey, body: { branch: 'dev' } },
      );
      expect(sync.status).toBe(202);
      expect(sync.body.branches).toEqual([expect.objectContaining({ name: 'dev', status: 'OUTDATED' })]);
      const unknown = await api.request<ErrorBody>('POST', `/repositories/${id}/sync`, {
        token: a.apiKey,
        body: { branch: 'nope' },
      });
      expect(unknown.status).toBe(404);

      const emptyBranches = await api.request<ErrorBody>('PATCH', `/repositories/${id}`, {
        token: a.apiKey,
        body: { branches: [] },
      });
      expect(emptyBranches.status).toBe(400);

      expect((await api.request('DELETE', `/repositories/${id}`, { token: a.apiKey })).status).toBe(204);
      expect((await api.request('GET', `/repositories/${id}`, { token: a.apiKey })).status).toBe(404);
      expect((await api.request('DELETE', `/repositories/${id}`, { token: a.apiKey })).status).toBe(404);
    });

    it('answers a malformed id with 400', async () => {
      const res = await api.request<ErrorBody>('GET', '/repositories/123', { token: a.apiKey });
      expect(res.status).toBe(400);
    });
  });

  describe('listing', () => {
    let c: TestTenant;
    beforeAll(async () => {
      c = await api.createTenant('tenant-list');
      for (let i = 0; i < 7; i++) {
        const res = await api.request('POST', '/repositories', {
          token: c.apiKey,
          body: { url: `https://github.com/list/repo-${i}`, branches: ['main'] },
        });
        expect(res.status).toBe(201);
      }
    });

    it('pages with a cursor and stays stable when repositories are added between pages', async () => {
      const first = await api.request<{ items: RepoBody[]; nextCursor: string }>(
        'GET',
        '/repositories?limit=3',
        {
          token: c.apiKey,
        },
      );
      expect(first.body.items).toHaveLength(3);
      expect(first.body.nextCursor).toEqual(expect.any(String));
      // Inserted after page one: must not shift or duplicate later pages.
      for (let i = 0; i < 3; i++) {
        await api.request('POST', '/repositories', {
          token: c.apiKey,
          body: { url: `https://github.com/list/late-${i}`, branches: ['main'] },
        });
      }
      const seen = first.body.items.map((r) => r.fullName);
      let cursor: string | null = first.body.nextCursor;
      while (cursor) {
        const page: HttpResult<{ items: RepoBody[]; nextCursor: string | null }> = await api.request(
          'GET',
          `/repositories?limit=3&cursor=${encodeURIComponent(cursor)}`,
          { token: c.apiKey },
        );
        expect(page.status).toBe(200);
        seen.push(...page.body.items.map((r) => r.fullName));
        cursor = page.body.nextCursor;
      }
      expect(seen).toEqual(Array.from({ length: 7 }, (_, i) => `list/repo-${6 - i}`));
    });

    it('filters by text, provider and status, and rejects a bad cursor or limit', async () => {
      const text = await api.request<{ items: RepoBody[] }>('GET', '/repositories?q=REPO-3', {
        token: c.apiKey,
      });
      expect(text.body.items.map((r) => r.fullName)).toEqual(['list/repo-3']);
      const gitlab = await api.request<{ items: RepoBody[] }>('GET', '/repositories?provider=GITLAB', {
        token: c.apiKey,
      });
      expect(gitlab.body.items).toEqual([]);
      const pending = await api.request<{ items: RepoBody[] }>(
        'GET',
        '/repositories?status=PENDING&limit=100',
        {
          token: c.apiKey,
        },
      );
      expect(pending.body.items.length).toBe(10);
      expect((await api.request('GET', '/repositories?status=BROKEN', { token: c.apiKey })).status).toBe(400);
      expect((await api.request('GET', '/repositories?limit=0', { token: c.apiKey })).status).toBe(400);
      expect((await api.request('GET', '/repositories?limit=abc', { token: c.apiKey })).status).toBe(400);
      const badCursor = await api.request<ErrorBody>('GET', '/repositories?cursor=garbage', {
        token: c.apiKey,
      });
      expect(badCursor.status).toBe(400);
      expect(badCursor.body.message).toMatch(/^cursor:/);
    });
  });

  describe('health and docs', () => {
    it('is live and ready with Postgres and Redis up', async () => {
      expect((await api.request('GET', '/health/live')).status).toBe(200);
      const ready = await api.request<{ checks: Record<string, { status: string }> }>('GET', '/health/ready');
      expect(ready.status).toBe(200);
      expect(ready.body.checks).toEqual({ postgres: { status: 'up' }, redis: { status: 'up' } });
    });

    it('serves the OpenAPI document', async () => {
      const doc = await api.request<{ paths: Record<string, unknown> }>('GET', '/docs/openapi.json');
      expect(doc.status).toBe(200);
      expect(Object.keys(doc.body.paths)).toEqual(
        expect.arrayContaining(['/repositories', '/repositories/{id}/sync']),
      );
    });
  });
});
