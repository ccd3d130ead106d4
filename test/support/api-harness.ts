import { rm } from 'node:fs/promises';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { createApi } from '../../src/api.js';
import type { AppConfig } from '../../src/config/app-config.js';
import { TEST_REDIS_URL } from '../setup/test-env.js';
import { deleteKeysWithPrefix } from './redis-keys.js';
import { type TestDatabase, createTestDatabase } from '../setup/test-database.js';
import { TEST_ADMIN_TOKEN, testConfig } from './test-config.js';

export interface HttpResult<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

export interface TestTenant {
  id: string;
  slug: string;
  apiKey: string;
}

/** The API listening on 127.0.0.1 with its own database and Redis prefix; requests go over real HTTP. */
export class ApiHarness {
  private constructor(
    readonly app: NestFastifyApplication,
    readonly config: AppConfig,
    readonly database: TestDatabase,
    readonly baseUrl: string,
  ) {}

  static async start(overrides: Record<string, string> = {}): Promise<ApiHarness> {
    const database = await createTestDatabase();
    const config = testConfig(database.url, overrides);
    let app: NestFastifyApplication | undefined;
    try {
      app = await createApi(config);
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.getHttpServer().address();
      if (!address || typeof address === 'string') throw new Error('API did not bind a TCP port');
      return new ApiHarness(app, config, database, `http://127.0.0.1:${address.port}`);
    } catch (e) {
      // A half-built app must not keep the test process alive.
      await app?.close().catch(() => undefined);
      await database.drop();
      throw e;
    }
  }

  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    opts: { token?: string; body?: unknown; rawBody?: string; headers?: Record<string, string> } = {},
  ): Promise<HttpResult<T>> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body: string | undefined;
    if (opts.rawBody !== undefined) {
      body = opts.rawBody;
      headers['content-type'] ??= 'application/json';
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const response = await fetch(`${this.baseUrl}${path}`, { method, headers, body });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, body: parsed as T, headers: response.headers };
  }

  async createTenant(slug: string): Promise<TestTenant> {
    const res = await this.request<{ tenant: { id: string; slug: string }; apiKey: { key: string } }>(
      'POST',
      '/admin/tenants',
      { token: TEST_ADMIN_TOKEN, body: { name: `Tenant ${slug}`, slug } },
    );
    if (res.status !== 201)
      throw new Error(`creating tenant failed: ${res.status} ${JSON.stringify(res.body)}`);
    return { id: res.body.tenant.id, slug, apiKey: res.body.apiKey.key };
  }

  async stop(): Promise<void> {
    await this.app.close();
    await clearQueuePrefix(this.config.redis.queuePrefix);
    await this.database.drop();
    await rm(this.config.archives.directory, { recursive: true, force: true });
  }
}

/** Removes every Redis key of a test's queue prefix. */
export async function clearQueuePrefix(prefix: string): Promise<void> {
  await deleteKeysWithPrefix(TEST_REDIS_URL, prefix);
}
