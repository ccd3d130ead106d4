import { afterEach, describe, expect, it } from '@jest/globals';
import { type CanActivate, type ExecutionContext, Module, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { randomUUID } from 'node:crypto';
import { HttpErrorFilter } from '../../src/common/http-error.filter.js';
import { createValidationPipe } from '../../src/common/validation.js';
import { GraphNotIndexed } from '../../src/graph/graph-errors.js';
import {
  type BranchCommits,
  type CoChangedFile,
  type Contributor,
  type FileHistoryEntry,
  GRAPH_READER,
  type GraphReader,
  type GraphRepositorySummary,
} from '../../src/graph/graph-reader.js';
import { GraphController } from '../../src/graph/graph.controller.js';
import { GraphModule } from '../../src/graph/graph.module.js';
import type { AuthenticatedRequest } from '../../src/tenancy/auth.decorators.js';

/** Stands in for the auth guard: the tenant comes from a header. */
class HeaderTenantGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context
      .switchToHttp()
      .getRequest<AuthenticatedRequest & { headers: Record<string, string> }>();
    request.tenant = { tenantId: request.headers['x-tenant'] ?? 'no-tenant', apiKeyId: 'test-key' };
    return true;
  }
}

interface Call {
  method: string;
  args: unknown[];
}

/** Records every call and answers with canned data, or throws `failWith`. */
class RecordingReader implements GraphReader {
  calls: Call[] = [];
  failWith: Error | null = null;

  private record<T>(method: string, args: unknown[], value: T): Promise<T> {
    this.calls.push({ method, args });
    return this.failWith ? Promise.reject(this.failWith) : Promise.resolve(value);
  }

  summary(...args: [string, string]): Promise<GraphRepositorySummary> {
    return this.record('summary', args, {
      id: args[1],
      host: 'github.com',
      fullName: 'acme/api',
      commits: 1,
      indexedCommits: 1,
      files: 1,
      parents: 0,
      changes: 1,
      people: 1,
      branches: [],
    });
  }

  topContributors(...args: [string, string, { limit: number }]): Promise<Contributor[]> {
    return this.record('topContributors', args, [
      { email: 'a@example.com', name: 'A', commits: 3, firstAuthoredAt: null, lastAuthoredAt: null },
    ]);
  }

  fileHistory(...args: [string, string, string, { limit: number }]): Promise<FileHistoryEntry[]> {
    return this.record('fileHistory', args, []);
  }

  coChangedFiles(
    ...args: [string, string, string, { limit: number; maxFilesPerCommit: number }]
  ): Promise<CoChangedFile[]> {
    return this.record('coChangedFiles', args, [{ path: 'b.ts', commits: 2, lastChangedTogetherAt: null }]);
  }

  branchCommits(...args: [string, string, string, string | null, { limit: number }]): Promise<BranchCommits> {
    return this.record('branchCommits', args, {
      branch: args[2],
      headSha: null,
      deleted: false,
      since: args[3],
      commits: [],
    });
  }
}

let app: NestFastifyApplication | null = null;

async function start(root: Type): Promise<NestFastifyApplication> {
  app = await NestFactory.create<NestFastifyApplication>(root, new FastifyAdapter(), { logger: false });
  app.useGlobalPipes(createValidationPipe());
  app.useGlobalFilters(new HttpErrorFilter());
  app.useGlobalGuards(new HeaderTenantGuard());
  await app.init();
  await app.getHttpAdapter().getInstance().ready();
  return app;
}

async function get(
  path: string,
  tenant = 'tenant-a',
): Promise<{ status: number; body: Record<string, unknown> }> {
  if (!app) throw new Error('no app started');
  const response = await app.inject({ method: 'GET', url: path, headers: { 'x-tenant': tenant } });
  return { status: response.statusCode, body: response.json<Record<string, unknown>>() };
}

afterEach(async () => {
  await app?.close();
  app = null;
});

describe('graph API without a graph', () => {
  it('answers 503 GRAPH_DISABLED when NEO4J_URI is unset', async () => {
    @Module({ imports: [GraphModule.forRoot(null)] })
    class DisabledApp {}
    await start(DisabledApp);
    const id = randomUUID();
    for (const path of [
      `/repositories/${id}/graph`,
      `/repositories/${id}/graph/contributors`,
      `/repositories/${id}/graph/file-history?path=a.ts`,
      `/repositories/${id}/graph/co-changed-files?path=a.ts`,
      `/repositories/${id}/graph/branch-commits?branch=main`,
    ]) {
      const res = await get(path);
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({
        code: 'GRAPH_DISABLED',
        message: expect.stringContaining('NEO4J_URI'),
      });
    }
  });

  it('starts without waiting for an unreachable Neo4j and answers 503 GRAPH_UNAVAILABLE quickly', async () => {
    @Module({
      imports: [
        GraphModule.forRoot(
          { uri: 'bolt://127.0.0.1:1', user: 'neo4j', password: 'wrong' },
          {
            timeouts: {
              connectionTimeoutMs: 1_000,
              connectionAcquisitionTimeoutMs: 2_000,
              maxTransactionRetryTimeMs: 1_000,
              readTimeoutMs: 2_000,
            },
          },
        ),
      ],
    })
    class UnreachableApp {}
    const started = performance.now();
    await start(UnreachableApp);
    expect(performance.now() - started).toBeLessThan(5_000);

    const asked = performance.now();
    const res = await get(`/repositories/${randomUUID()}/graph/contributors`);
    expect(performance.now() - asked).toBeLessThan(5_000);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({
      code: 'GRAPH_UNAVAILABLE',
      message: expect.stringContaining('unavailable'),
    });
  });
});

describe('graph API routes', () => {
  const reader = new RecordingReader();

  @Module({ controllers: [GraphController], providers: [{ provide: GRAPH_READER, useValue: reader }] })
  class FakeReaderApp {}

  const id = randomUUID();
  const base = `/repositories/${id}/graph`;

  async function startFake(): Promise<void> {
    reader.calls = [];
    reader.failWith = null;
    await start(FakeReaderApp);
  }

  it("passes the caller's tenant, the repository and defaults to every query", async () => {
    await startFake();
    expect((await get(`${base}/contributors`, 'tenant-b')).body).toEqual({
      items: [{ email: 'a@example.com', name: 'A', commits: 3, firstAuthoredAt: null, lastAuthoredAt: null }],
    });
    await get(`${base}/file-history?path=${encodeURIComponent('docs/résumé 文档.md')}&limit=5`);
    await get(`${base}/co-changed-files?path=src%2Fa.ts`);
    await get(`${base}/branch-commits?branch=feature%2Fx`);
    await get(`${base}/branch-commits?branch=main&since=${'a'.repeat(40)}&limit=500`);
    await get(base);
    expect(reader.calls).toEqual([
      { method: 'topContributors', args: ['tenant-b', id, { limit: 20 }] },
      { method: 'fileHistory', args: ['tenant-a', id, 'docs/résumé 文档.md', { limit: 5 }] },
      { method: 'coChangedFiles', args: ['tenant-a', id, 'src/a.ts', { limit: 20, maxFilesPerCommit: 200 }] },
      { method: 'branchCommits', args: ['tenant-a', id, 'feature/x', null, { limit: 20 }] },
      { method: 'branchCommits', args: ['tenant-a', id, 'main', 'a'.repeat(40), { limit: 500 }] },
      { method: 'summary', args: ['tenant-a', id] },
    ]);
  });

  it('answers 400 with the field at fault for bad parameters', async () => {
    await startFake();
    const cases: [string, string][] = [
      [`${base}/file-history`, 'path is required'],
      [`${base}/co-changed-files?path=`, 'path must be 1 to 4096'],
      [`${base}/branch-commits`, 'branch is required'],
      [`${base}/branch-commits?branch=main&since=HEAD~1`, 'since must be a full commit sha'],
      [`${base}/branch-commits?branch=main&since=${'A'.repeat(40)}`, 'since must be a full commit sha'],
      [`${base}/contributors?limit=0`, 'limit'],
      [`${base}/contributors?limit=501`, 'limit'],
      [`${base}/contributors?limit=ten`, 'limit must be a whole number'],
      [`${base}/contributors?sort=name`, 'sort'],
      [`/repositories/not-a-uuid/graph/contributors`, 'uuid'],
    ];
    for (const [path, message] of cases) {
      const res = await get(path);
      expect({ path, status: res.status }).toEqual({ path, status: 400 });
      expect(String(res.body.message)).toContain(message);
    }
    expect(reader.calls).toEqual([]);
  });

  it("answers 404 for what the graph does not have, another tenant's repository included", async () => {
    await startFake();
    reader.failWith = new GraphNotIndexed('repository', id);
    const res = await get(`${base}/contributors`);
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ code: 'REPOSITORY_NOT_INDEXED' });
  });
});
