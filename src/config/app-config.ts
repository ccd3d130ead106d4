import { envSchema } from './config.schema.js';

export interface EncryptionKey {
  id: string;
  key: Buffer;
}

/** The validated, typed configuration injected everywhere (no process.env outside this folder). */
export interface AppConfig {
  env: 'development' | 'production' | 'test';
  http: { host: string; port: number; bodyLimitBytes: number };
  log: { level: string; pretty: boolean };
  database: { url: string; poolSize: number };
  redis: { url: string; queuePrefix: string };
  adminToken: string;
  encryption: { keys: EncryptionKey[]; activeKeyId: string };
  repositories: { allowInsecureUrls: boolean };
  webhooks: {
    publicUrl: string;
    githubAppSecret: string | null;
    gitlabSystemHookToken: string | null;
    githubHost: string;
    gitlabHost: string;
    retentionDays: number;
    /** How long a repository's webhook secret is kept in memory (0: looked up on every delivery). */
    targetCacheMs: number;
  };
  /** Code host APIs: base URLs, OAuth clients and the GitHub App (each null when not configured). */
  hosts: {
    github: {
      apiUrl: string;
      webUrl: string;
      oauth: {
        clientId: string;
        clientSecret: string;
        clientType: 'oauth-app' | 'github-app';
        scopes: string[];
      } | null;
      app: { id: string; privateKey: string; slug: string | null } | null;
    };
    gitlab: {
      url: string;
      oauth: { clientId: string; clientSecret: string; scopes: string[] } | null;
    };
    timeoutMs: number;
    concurrencyPerToken: number;
    oauthStateTtlSeconds: number;
    /** URL prefixes the OAuth callback may send the browser back to (returnTo). */
    returnUrls: string[];
  };
  polling: { minIntervalMs: number; maxIntervalMs: number; tickMs: number; batch: number };
  /** null: graph indexing is off (NEO4J_URI unset). */
  graph: { uri: string; user: string; password: string; database?: string; catchUpIntervalMs: number } | null;
  archives: {
    store: 's3' | 'filesystem';
    directory: string;
    prefix: string;
    retention: number;
    /** zlib level of new archives (the same tree at the same level gives the same bytes). */
    gzipLevel: number;
    urlTtlSeconds: number;
    s3: {
      endpoint?: string;
      region: string;
      bucket: string;
      forcePathStyle: boolean;
      credentials?: { accessKeyId: string; secretAccessKey: string };
    } | null;
  };
  sync: {
    workspaceDir: string;
    workspaceMaxBytes: number;
    /** Memory for the entries of branches' last archives (0: every archive is read from its snapshot). */
    archiveBaseCacheBytes: number;
    gitTimeoutMs: number;
    concurrency: number;
    tenantConcurrency: number;
    maxAttempts: number;
    backoffMs: number;
    lockDurationMs: number;
    stalledIntervalMs: number;
    reconcileIntervalMs: number;
  };
}

export const APP_CONFIG = Symbol('APP_CONFIG');

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

function parseEncryptionKeys(raw: string): EncryptionKey[] {
  const keys: EncryptionKey[] = [];
  for (const part of raw
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const sep = part.indexOf(':');
    if (sep <= 0) throw new ConfigError([`ENCRYPTION_KEYS: entry must look like keyId:base64key`]);
    const id = part.slice(0, sep);
    const key = Buffer.from(part.slice(sep + 1), 'base64');
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(id)) {
      throw new ConfigError([`ENCRYPTION_KEYS: key id "${id}" must be 1-32 letters, digits, - or _`]);
    }
    if (key.length !== 32) {
      throw new ConfigError([
        `ENCRYPTION_KEYS: key "${id}" must be 32 bytes encoded in base64 (generate with: openssl rand -base64 32)`,
      ]);
    }
    keys.push({ id, key });
  }
  if (keys.length === 0) throw new ConfigError(['ENCRYPTION_KEYS: at least one key is required']);
  return keys;
}

function pairRequired(a: string | undefined, b: string | undefined, nameA: string, nameB: string): void {
  if (Boolean(a) !== Boolean(b)) throw new ConfigError([`${nameA} and ${nameB}: set both or neither`]);
}

/** Validates the environment; throws ConfigError naming every bad variable. */
export function loadConfig(source: Record<string, string | undefined>): AppConfig {
  // Empty strings count as unset so that `FOO=` in a .env file falls back to the default.
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const name = issue.path.join('.') || '(environment)';
        const message =
          issue.code === 'invalid_type' && cleaned[name] === undefined ? 'is required' : issue.message;
        return `${name}: ${message}`;
      }),
    );
  }
  const e = parsed.data;
  const keys = parseEncryptionKeys(e.ENCRYPTION_KEYS);
  const store = e.ARCHIVE_STORE === 'auto' ? (e.S3_BUCKET ? 's3' : 'filesystem') : e.ARCHIVE_STORE;
  if (store === 's3' && !e.S3_BUCKET)
    throw new ConfigError(['S3_BUCKET: is required when ARCHIVE_STORE is s3']);
  if (Boolean(e.S3_ACCESS_KEY_ID) !== Boolean(e.S3_SECRET_ACCESS_KEY)) {
    throw new ConfigError(['S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY: set both or neither']);
  }
  pairRequired(
    e.GITHUB_OAUTH_CLIENT_ID,
    e.GITHUB_OAUTH_CLIENT_SECRET,
    'GITHUB_OAUTH_CLIENT_ID',
    'GITHUB_OAUTH_CLIENT_SECRET',
  );
  pairRequired(
    e.GITLAB_OAUTH_CLIENT_ID,
    e.GITLAB_OAUTH_CLIENT_SECRET,
    'GITLAB_OAUTH_CLIENT_ID',
    'GITLAB_OAUTH_CLIENT_SECRET',
  );
  pairRequired(e.GITHUB_APP_ID, e.GITHUB_APP_PRIVATE_KEY, 'GITHUB_APP_ID', 'GITHUB_APP_PRIVATE_KEY');
  const returnUrls = e.OAUTH_RETURN_URLS.split(',')
    .map((u) => u.trim())
    .filter(Boolean);
  for (const url of returnUrls) {
    if (!/^https?:\/\/[^/]+/.test(url)) {
      throw new ConfigError([`OAUTH_RETURN_URLS: "${url}" must be an http(s) URL prefix`]);
    }
  }
  const scopes = (v: string) => v.split(/[\s,]+/).filter(Boolean);
  const activeKeyId = e.ENCRYPTION_ACTIVE_KEY_ID ?? keys[keys.length - 1]!.id;
  if (!keys.some((k) => k.id === activeKeyId)) {
    throw new ConfigError([
      `ENCRYPTION_ACTIVE_KEY_ID: "${activeKeyId}" is not one of the ENCRYPTION_KEYS ids`,
    ]);
  }
  return {
    env: e.NODE_ENV,
    http: { host: e.HOST, port: e.PORT, bodyLimitBytes: e.BODY_LIMIT_BYTES },
    log: { level: e.LOG_LEVEL, pretty: e.LOG_PRETTY },
    database: { url: e.DATABASE_URL, poolSize: e.DATABASE_POOL_SIZE },
    redis: { url: e.REDIS_URL, queuePrefix: e.QUEUE_PREFIX },
    adminToken: e.ADMIN_TOKEN,
    encryption: { keys, activeKeyId },
    repositories: { allowInsecureUrls: e.ALLOW_INSECURE_REPOSITORY_URLS },
    webhooks: {
      publicUrl: e.PUBLIC_URL.replace(/\/+$/, ''),
      githubAppSecret: e.GITHUB_APP_WEBHOOK_SECRET ?? null,
      gitlabSystemHookToken: e.GITLAB_SYSTEM_HOOK_TOKEN ?? null,
      githubHost: e.GITHUB_HOST.toLowerCase(),
      gitlabHost: e.GITLAB_HOST.toLowerCase(),
      retentionDays: e.WEBHOOK_DELIVERY_RETENTION_DAYS,
      targetCacheMs: e.WEBHOOK_TARGET_CACHE_MS,
    },
    graph: e.NEO4J_URI
      ? {
          uri: e.NEO4J_URI,
          user: e.NEO4J_USER,
          password: e.NEO4J_PASSWORD ?? '',
          database: e.NEO4J_DATABASE,
          catchUpIntervalMs: e.GRAPH_CATCH_UP_INTERVAL_MS,
        }
      : null,
    archives: {
      store,
      directory: e.ARCHIVE_DIR,
      prefix: e.ARCHIVE_PREFIX,
      retention: e.ARCHIVE_RETENTION,
      gzipLevel: e.ARCHIVE_GZIP_LEVEL,
      urlTtlSeconds: e.ARCHIVE_URL_TTL_SECONDS,
      s3:
        store === 's3'
          ? {
              endpoint: e.S3_ENDPOINT,
              region: e.S3_REGION,
              bucket: e.S3_BUCKET!,
              forcePathStyle: e.S3_FORCE_PATH_STYLE,
              credentials:
                e.S3_ACCESS_KEY_ID && e.S3_SECRET_ACCESS_KEY
                  ? { accessKeyId: e.S3_ACCESS_KEY_ID, secretAccessKey: e.S3_SECRET_ACCESS_KEY }
                  : undefined,
            }
          : null,
    },
    hosts: {
      github: {
        apiUrl: e.GITHUB_API_URL.replace(/\/+$/, ''),
        webUrl: e.GITHUB_WEB_URL.replace(/\/+$/, ''),
        oauth:
          e.GITHUB_OAUTH_CLIENT_ID && e.GITHUB_OAUTH_CLIENT_SECRET
            ? {
                clientId: e.GITHUB_OAUTH_CLIENT_ID,
                clientSecret: e.GITHUB_OAUTH_CLIENT_SECRET,
                clientType: e.GITHUB_OAUTH_CLIENT_TYPE,
                scopes: scopes(e.GITHUB_OAUTH_SCOPES),
              }
            : null,
        app:
          e.GITHUB_APP_ID && e.GITHUB_APP_PRIVATE_KEY
            ? {
                id: e.GITHUB_APP_ID,
                // Environment files often carry a PEM on one line with \n escapes.
                privateKey: e.GITHUB_APP_PRIVATE_KEY.replace(/\\n/g, '\n'),
                slug: e.GITHUB_APP_SLUG ?? null,
              }
            : null,
      },
      gitlab: {
        url: e.GITLAB_URL.replace(/\/+$/, ''),
        oauth:
          e.GITLAB_OAUTH_CLIENT_ID && e.GITLAB_OAUTH_CLIENT_SECRET
            ? {
                clientId: e.GITLAB_OAUTH_CLIENT_ID,
                clientSecret: e.GITLAB_OAUTH_CLIENT_SECRET,
                scopes: scopes(e.GITLAB_OAUTH_SCOPES),
              }
            : null,
      },
      timeoutMs: e.HOST_API_TIMEOUT_MS,
      concurrencyPerToken: e.HOST_API_CONCURRENCY_PER_TOKEN,
      oauthStateTtlSeconds: e.OAUTH_STATE_TTL_SECONDS,
      returnUrls,
    },
    polling: {
      minIntervalMs: e.POLL_INTERVAL_MIN_MS,
      maxIntervalMs: Math.max(e.POLL_INTERVAL_MAX_MS, e.POLL_INTERVAL_MIN_MS),
      tickMs: e.POLL_TICK_MS,
      batch: e.POLL_BATCH,
    },
    sync: {
      workspaceDir: e.WORKSPACE_DIR,
      workspaceMaxBytes: e.WORKSPACE_MAX_BYTES,
      archiveBaseCacheBytes: e.ARCHIVE_BASE_CACHE_BYTES,
      gitTimeoutMs: e.GIT_TIMEOUT_MS,
      concurrency: e.SYNC_CONCURRENCY,
      tenantConcurrency: e.SYNC_TENANT_CONCURRENCY,
      maxAttempts: e.SYNC_MAX_ATTEMPTS,
      backoffMs: e.SYNC_BACKOFF_MS,
      lockDurationMs: e.SYNC_LOCK_DURATION_MS,
      stalledIntervalMs: e.SYNC_STALLED_INTERVAL_MS,
      reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    },
  };
}

/** Reads `.env` (if present) and the process environment. */
export async function loadConfigFromProcess(): Promise<AppConfig> {
  await import('dotenv/config');
  return loadConfig(process.env);
}
