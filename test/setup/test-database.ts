import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { databaseUrl, pgSettings, templateDatabase } from './test-env.js';

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/** A fresh, migrated database for one test file, cloned from the template. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `${process.env.REPOSYNC_TEST_DB_PREFIX ?? 'reposync_t0_'}${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ ...pgSettings(), database: 'postgres' });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${templateDatabase()}"`);
  } finally {
    await admin.end();
  }
  return {
    url: databaseUrl(name),
    async drop() {
      const client = new pg.Client({ ...pgSettings(), database: 'postgres' });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
