import { z } from 'zod';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const httpUrl = z
  .string()
  .url()
  .refine((v) => /^https?:\/\//.test(v), 'must be an http(s) URL');

/** Every setting of the service, read from the environment once at start-up. */
export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: int(0, 65535).default(3000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_PRETTY: bool.default(false),

  DATABASE_URL: z
    .string()
    .url()
    .refine((v) => /^postgres(ql)?:\/\//.test(v), 'must be a postgresql:// URL'),
  DATABASE_POOL_SIZE: int(1, 200).default(10),
  REDIS_URL: z
    .string()
    .url()
    .refine((v) => /^rediss?:\/\//.test(v), 'must be a redis:// or rediss:// URL')
    .default('redis://127.0.0.1:6379'),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, - and _ only')
    .default('reposync'),

  ADMIN_TOKEN: z.string().min(32, 'must be at least 32 characters (generate one with: openssl rand -hex 32)'),
  ENCRYPTION_KEYS: z.string().min(1).describe('comma-separated keyId:base64(32 bytes) pairs'),
  ENCRYPTION_ACTIVE_KEY_ID: z.string().min(1).optional(),

  PUBLIC_URL: z
    .string()
    .url()
    .refine((v) => /^https?:\/\//.test(v), 'must be an http(s) URL')
    .default('http://localhost:3000'),
  GITHUB_APP_WEBHOOK_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  GITLAB_SYSTEM_HOOK_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  GITHUB_HOST: z.string().min(1).default('github.com'),
  GITLAB_HOST: z.string().min(1).default('gitlab.com'),
  GITHUB_API_URL: httpUrl.default('https://api.github.com'),
  GITHUB_WEB_URL: httpUrl.default('https://github.com'),
  GITHUB_OAUTH_CLIENT_ID: z.string().min(1).optional(),
  GITHUB_OAUTH_CLIENT_SECRET: z.string().min(1).optional(),
  GITHUB_OAUTH_CLIENT_TYPE: z.enum(['oauth-app', 'github-app']).default('oauth-app'),
  GITHUB_OAUTH_SCOPES: z.string().default('repo admin:repo_hook read:user'),
  GITHUB_APP_ID: z.string().regex(/^\d+$/, 'must be the numeric app id').optional(),
  GITHUB_APP_PRIVATE_KEY: z
    .string()
    .refine((v) => v.includes('PRIVATE KEY'), 'must be the PEM private key of the app (\\n escapes allowed)')
    .optional(),
  GITHUB_APP_SLUG: z
    .string()
    .regex(/^[a-z0-9-]+$/, 'must be the app slug from its public page URL')
    .optional(),
  GITLAB_URL: httpUrl.default('https://gitlab.com'),
  GITLAB_OAUTH_CLIENT_ID: z.string().min(1).optional(),
  GITLAB_OAUTH_CLIENT_SECRET: z.string().min(1).optional(),
  GITLAB_OAUTH_SCOPES: z.string().default('api'),
  OAUTH_STATE_TTL_SECONDS: int(60, 3600).default(600),
  OAUTH_RETURN_URLS: z.string().default(''),
  HOST_API_TIMEOUT_MS: int(1000, 10 * 60 * 1000).default(30_000),
  HOST_API_CONCURRENCY_PER_TOKEN: int(1, 100).default(4),
  WEBHOOK_DELIVERY_RETENTION_DAYS: int(7, 3650).default(14),
  WEBHOOK_TARGET_CACHE_MS: int(0, 60_000).default(5_000),
  POLL_INTERVAL_MIN_MS: int(1_000, 24 * 3600 * 1000).default(60_000),
  POLL_INTERVAL_MAX_MS: int(1_000, 24 * 3600 * 1000).default(3600_000),
  POLL_TICK_MS: int(100, 3600 * 1000).default(5_000),
  POLL_BATCH: int(1, 10_000).default(50),

  ARCHIVE_STORE: z.enum(['auto', 's3', 'filesystem']).default('auto'),
  ARCHIVE_DIR: z.string().min(1).default('.artifacts'),
  ARCHIVE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, 'letters, digits, . _ - and / between parts')
    .default('archives'),
  ARCHIVE_RETENTION: int(1, 10_000).default(10),
  ARCHIVE_GZIP_LEVEL: int(1, 9).default(6),
  ARCHIVE_URL_TTL_SECONDS: int(1, 7 * 24 * 3600).default(900),
  S3_ENDPOINT: z.string().url().optional(),
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_BUCKET: z.string().min(3, 'must be at least 3 characters').optional(),
  S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  S3_FORCE_PATH_STYLE: bool.default(false),

  NEO4J_URI: z
    .string()
    .regex(/^(neo4j|bolt)(\+s|\+ssc)?:\/\//, 'must be a neo4j:// or bolt:// URI')
    .optional(),
  NEO4J_USER: z.string().min(1).default('neo4j'),
  NEO4J_PASSWORD: z.string().optional(),
  NEO4J_DATABASE: z.string().min(1).optional(),
  GRAPH_CATCH_UP_INTERVAL_MS: int(1000, 24 * 3600 * 1000).default(300_000),

  ALLOW_INSECURE_REPOSITORY_URLS: bool.default(false),
  BODY_LIMIT_BYTES: int(1024, 100 * 1024 * 1024).default(25 * 1024 * 1024),

  WORKSPACE_DIR: z.string().min(1).default('.workspace'),
  WORKSPACE_MAX_BYTES: int(1024 * 1024, Number.MAX_SAFE_INTEGER).default(20 * 1024 * 1024 * 1024),
  ARCHIVE_BASE_CACHE_BYTES: int(0, Number.MAX_SAFE_INTEGER).default(256 * 1024 * 1024),
  GIT_TIMEOUT_MS: int(1000, 24 * 3600 * 1000).default(10 * 60 * 1000),
  SYNC_CONCURRENCY: int(1, 256).default(4),
  SYNC_TENANT_CONCURRENCY: int(1, 256).default(2),
  SYNC_MAX_ATTEMPTS: int(1, 100).default(5),
  SYNC_BACKOFF_MS: int(100, 3600 * 1000).default(5000),
  SYNC_LOCK_DURATION_MS: int(1000, 3600 * 1000).default(30_000),
  SYNC_STALLED_INTERVAL_MS: int(1000, 3600 * 1000).default(30_000),
  RECONCILE_INTERVAL_MS: int(1000, 24 * 3600 * 1000).default(30_000),
});

export type Env = z.infer<typeof envSchema>;
