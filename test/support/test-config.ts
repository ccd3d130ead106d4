import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AppConfig, loadConfig } from '../../src/config/app-config.js';
import { TEST_REDIS_URL } from '../setup/test-env.js';

export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef0123456789';

/** A valid configuration for one test file: its own database and its own queue prefix in Redis. */
export function testConfig(databaseUrl: string, overrides: Record<string, string> = {}): AppConfig {
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_SIZE: '5',
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: `rstest-${randomBytes(4).toString('hex')}`,
    ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    ENCRYPTION_KEYS: `t1:${randomBytes(32).toString('base64')}`,
    ARCHIVE_DIR: join(tmpdir(), `reposync-artifacts-${randomBytes(4).toString('hex')}`),
    ...overrides,
  });
}
