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
  polling: { minIntervalMs: number; maxIntervalMs: number; tickMs: number; batch: number };
  /** null: graph indexing is off (NEO4J_URI unset). */
  graph: { uri: string; user: string; password: string; database?: string; catchUpIntervalMs: number } | null;
  archives: {
    store: 's3' | 'filesystem';
    directory: string;
    prefix: string;
    retention: number;
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
    polling: {
      minIntervalMs: e.POLL_INTERVAL_MIN_MS,
      maxIntervalMs: Math.max(e.POLL_INTERVAL_MAX_MS, e.POLL_INTERVAL_MIN_MS),
      tickMs: e.POLL_TICK_MS,
      batch: e.POLL_BATCH,
    },
    sync: {
      workspaceDir: e.WORKSPACE_DIR,
      workspaceMaxBytes: e.WORKSPACE_MAX_BYTES,
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
