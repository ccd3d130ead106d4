/**
 * Shared setting of the connection suites: the fake GitHub and GitLab (HostApiServer) over the sync
 * harness's git fixture server, the API and an in-process worker pointed at them, every log line the service
 * writes captured in memory, and the browser's part of the OAuth and installation flows.
 */
import { expect } from '@jest/globals';
import fs from 'node:fs';
import type { TestTenant } from '../support/api-harness.js';
import { SyncHarness } from '../support/sync-harness.js';
import { githubSignature } from '../support/webhook-payloads.js';
import type { FixtureRepository } from '../fixtures/git-server.js';
import {
  HostApiServer,
  type HostApiProvider,
  type HostApiServerOptions,
} from '../fixtures/host-api-server.js';

/** Where the fake hosts send the browser back to (never dialled: tests replay the path on the API). */
export const PUBLIC_URL = 'https://reposync.example.test';
export const RETURN_URL = 'https://app.example.test/settings/connections';

export interface ConnectionJson {
  id: string;
  provider: string;
  kind: string;
  host: string;
  accountLogin: string;
  accountId: string;
  installationId: string | null;
  tokenExpiresAt: string | null;
  lastError: string | null;
  suspendedAt: string | null;
  repositoryCount?: number;
}

export interface RepositoryJson {
  id: string;
  connectionId: string | null;
  webhookId: string | null;
  webhookError: string | null;
  owner: string;
  name: string;
  defaultBranch: string | null;
}

export interface ErrorJson {
  statusCode: number;
  code: string;
  message: string;
  details?: { fields?: { field: string; message: string }[] };
}

export interface CallbackAnswer {
  status: number;
  location: string | null;
  body: unknown;
}

type WriteFn = (...args: unknown[]) => unknown;

/**
 * Everything written to stdout (swallowed) and stderr (passed on) while installed. Installed before the service starts,
 * so pino (which writes through process.stdout once it sees process.stdout.write replaced, else through
 * fs.write on fd 1) lands here either way.
 */
export class LogCapture {
  private readonly chunks: string[] = [];
  private readonly restores: (() => void)[] = [];

  install(): void {
    const keep = (chunk: unknown) => {
      this.chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
    };
    for (const stream of [process.stdout, process.stderr]) {
      const original = Object.getOwnPropertyDescriptor(stream, 'write');
      const passOn = stream.write.bind(stream) as WriteFn;
      // stdout (pino's) is swallowed; stderr still reaches the terminal (jest's own output).
      const swallow = stream === process.stdout;
      stream.write = ((chunk: unknown, ...rest: unknown[]) => {
        keep(chunk);
        if (!swallow) return passOn(chunk, ...rest);
        const done = rest.find((arg): arg is () => void => typeof arg === 'function');
        if (done) queueMicrotask(done);
        return true;
      }) as typeof stream.write;
      this.restores.push(() => {
        if (original) Object.defineProperty(stream, 'write', original);
        else delete (stream as { write?: unknown }).write;
      });
    }
    const mutableFs = fs as unknown as { write: WriteFn; writeSync: WriteFn };
    const write = mutableFs.write;
    const writeSync = mutableFs.writeSync;
    mutableFs.write = (fd: unknown, buffer: unknown, ...rest: unknown[]) => {
      if (fd === 1) {
        keep(buffer);
        const callback = rest.find((arg): arg is (e: null, n: number) => void => typeof arg === 'function');
        const length = typeof buffer === 'string' ? Buffer.byteLength(buffer) : (buffer as Uint8Array).length;
        if (callback) queueMicrotask(() => callback(null, length));
        return undefined;
      }
      return write(fd, buffer, ...rest);
    };
    mutableFs.writeSync = (fd: unknown, buffer: unknown, ...rest: unknown[]) => {
      if (fd === 1) {
        keep(buffer);
        return typeof buffer === 'string' ? Buffer.byteLength(buffer) : (buffer as Uint8Array).length;
      }
      return writeSync(fd, buffer, ...rest);
    };
    this.restores.push(() => {
      mutableFs.write = write;
      mutableFs.writeSync = writeSync;
    });
  }

  restore(): void {
    for (const undo of this.restores.splice(0).reverse()) undo();
  }

  get text(): string {
    return this.chunks.join('');
  }

  /** The JSON log lines written so far. */
  get lines(): Record<string, unknown>[] {
    return this.text
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => {
        try {
          return JSON.parse(line) as Record<string, unknown>;
        } catch {
          return { unparsed: line };
        }
      });
  }
}

export interface ConnectionsWorld {
  h: SyncHarness;
  api: HostApiServer;
  logs: LogCapture;
  stop(): Promise<void>;
}

/** Starts the fake hosts, then the API and worker configured for them (debug logging, captured). */
export async function startConnectionsWorld(
  hostOptions: HostApiServerOptions,
  env: (api: HostApiServer) => Record<string, string>,
): Promise<ConnectionsWorld> {
  const api = await HostApiServer.start(hostOptions);
  const logs = new LogCapture();
  logs.install();
  let h: SyncHarness;
  try {
    h = await SyncHarness.start({
      ALLOW_INSECURE_REPOSITORY_URLS: 'true',
      LOG_LEVEL: 'debug',
      PUBLIC_URL,
      OAUTH_RETURN_URLS: RETURN_URL,
      GITHUB_API_URL: api.githubApiUrl,
      GITHUB_WEB_URL: `${api.baseUrl}/github`,
      GITLAB_URL: api.gitlabUrl,
      GITHUB_OAUTH_CLIENT_ID: api.oauthClients.github.clientId,
      GITHUB_OAUTH_CLIENT_SECRET: api.oauthClients.github.clientSecret,
      GITHUB_OAUTH_CLIENT_TYPE: 'github-app',
      GITLAB_OAUTH_CLIENT_ID: api.oauthClients.gitlab.clientId,
      GITLAB_OAUTH_CLIENT_SECRET: api.oauthClients.gitlab.clientSecret,
      ...env(api),
    });
  } catch (e) {
    logs.restore();
    await api.stop();
    throw e;
  }
  return {
    h,
    api,
    logs,
    stop: async () => {
      try {
        await h.stop();
      } finally {
        logs.restore();
        await api.stop();
      }
    },
  };
}

/** A private repository on both fake hosts whose git access needs a token the host accepts right now. */
export async function hostedRepository(
  world: ConnectionsWorld,
  fullName: string,
): Promise<{ remote: FixtureRepository; first: string }> {
  const remote = await world.h.git.createRepository(fullName);
  const first = await remote.commit({ 'README.md': `# ${fullName}\n` }, { message: 'first' });
  world.api.addRepository(remote, { private: true });
  world.h.git.setAuth(fullName, world.api.gitAuthFor(fullName));
  return { remote, first };
}

/** The browser's visit to a URL the API handed out: the redirect the fake host answers with. */
export async function visit(url: string): Promise<URL> {
  const response = await fetch(url, { redirect: 'manual' });
  await response.arrayBuffer();
  expect(response.status).toBe(302);
  return new URL(response.headers.get('location')!);
}

/** Replays a redirect to our public callback URL on the API (without following any redirect of ours). */
export async function callback(world: ConnectionsWorld, location: URL | string): Promise<CallbackAnswer> {
  const target = typeof location === 'string' ? new URL(location, PUBLIC_URL) : location;
  expect(target.origin).toBe(new URL(PUBLIC_URL).origin);
  const response = await fetch(`${world.h.api.baseUrl}${target.pathname}${target.search}`, {
    redirect: 'manual',
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, location: response.headers.get('location'), body };
}

/** Starts the OAuth flow for a tenant and lets the fake host's user consent: the redirect to our callback. */
export async function consent(
  world: ConnectionsWorld,
  tenant: TestTenant,
  provider: HostApiProvider,
  returnTo?: string,
): Promise<{ location: URL; state: string; code: string }> {
  const query = returnTo === undefined ? '' : `?returnTo=${encodeURIComponent(returnTo)}`;
  const start = await world.h.api.request<{ url: string; state: string; expiresAt: string }>(
    'GET',
    `/connections/${provider}/authorize${query}`,
    { token: tenant.apiKey },
  );
  expect(start.status).toBe(200);
  const authorizeUrl = new URL(start.body.url);
  expect(authorizeUrl.searchParams.get('code_challenge_method')).toBe('S256');
  expect(authorizeUrl.searchParams.get('redirect_uri')).toBe(
    `${PUBLIC_URL}/connections/${provider}/callback`,
  );
  const location = await visit(start.body.url);
  expect(location.searchParams.get('state')).toBe(start.body.state);
  return { location, state: start.body.state, code: location.searchParams.get('code')! };
}

/** Secrets the fake hosts issued that were not among `before`. */
export function newSecrets(api: HostApiServer, before: Set<string>, provider: HostApiProvider) {
  return api.issuedSecrets().filter((s) => s.provider === provider && !before.has(s.token));
}

export function secretSet(api: HostApiServer): Set<string> {
  return new Set(api.issuedSecrets().map((s) => s.token));
}

/** Every `table.column` of the public schema whose text (arrays and JSON included) contains `needle`. */
export async function columnsContaining(world: ConnectionsWorld, needle: string): Promise<string[]> {
  const { rows: columns } = await world.h.db.query<{ table_name: string; column_name: string }>(
    `SELECT table_name, column_name FROM information_schema.columns
     WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'character', 'ARRAY', 'json', 'jsonb')
     ORDER BY table_name, column_name`,
  );
  expect(columns).toEqual(
    expect.arrayContaining([
      { table_name: 'Connection', column_name: 'accessTokenEncrypted' },
      { table_name: 'Connection', column_name: 'refreshTokenEncrypted' },
    ]),
  );
  const found: string[] = [];
  for (const { table_name: table, column_name: column } of columns) {
    const { rows } = await world.h.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM "${table}" WHERE strpos("${column}"::text, $1) > 0`,
      [needle],
    );
    if (Number(rows[0]!.n) > 0) found.push(`${table}.${column}`);
  }
  return found;
}

/** Posts a GitHub delivery signed with `secret` to a path of the API (a hook URL's path and query). */
export async function postGithubDelivery(
  world: ConnectionsWorld,
  pathAndQuery: string,
  event: string,
  payload: unknown,
  secret: string,
  deliveryId: string,
) {
  const body = JSON.stringify(payload);
  return world.h.api.request<{ outcome: string; detail: string }>('POST', pathAndQuery, {
    rawBody: body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': event,
      'x-github-delivery': deliveryId,
      'x-hub-signature-256': await githubSignature(secret, body),
    },
  });
}
