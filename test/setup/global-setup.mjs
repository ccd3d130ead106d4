// Jest global setup (plain JS: Jest loads it outside ts-jest). Builds the migrated template database that
// every integration test file clones, and hands the connection settings to the tests through the environment.
import { spawnSync } from 'node:child_process';
import pg from 'pg';

export const pgSettings = {
  host: process.env.TEST_PGHOST ?? '127.0.0.1',
  port: Number(process.env.TEST_PGPORT ?? 5432),
  user: process.env.TEST_PGUSER ?? 'postgres',
  password: process.env.TEST_PGPASSWORD || undefined,
};
// Names carry the pid of the jest process, so concurrent runs on one machine never drop each other's databases.
export const RUN_PREFIX = `reposync_t${process.pid}_`;
export const TEMPLATE_DATABASE = `${RUN_PREFIX}template`;

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

export function databaseUrl(database) {
  const auth = pgSettings.password
    ? `${encodeURIComponent(pgSettings.user)}:${encodeURIComponent(pgSettings.password)}`
    : encodeURIComponent(pgSettings.user);
  return `postgresql://${auth}@${pgSettings.host}:${pgSettings.port}/${database}`;
}

export default async function globalSetup() {
  const admin = new pg.Client({ ...pgSettings, database: 'postgres' });
  await admin.connect();
  try {
    // Leftovers of interrupted earlier runs whose jest process is gone.
    const stale = await admin.query("SELECT datname FROM pg_database WHERE datname ~ '^reposync_t[0-9]+_'");
    for (const row of stale.rows) {
      const pid = Number(/^reposync_t(\d+)_/.exec(row.datname)[1]);
      if (pid === process.pid || !isAlive(pid)) {
        await admin.query(`DROP DATABASE IF EXISTS "${row.datname}" WITH (FORCE)`);
      }
    }
    await admin.query(`CREATE DATABASE "${TEMPLATE_DATABASE}"`);
  } finally {
    await admin.end();
  }
  const result = spawnSync(process.execPath, ['scripts/prisma.mjs', 'migrate', 'deploy'], {
    env: { ...process.env, DATABASE_URL: databaseUrl(TEMPLATE_DATABASE) },
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (result.status !== 0) {
    throw new Error(`migrating the test template database failed:\n${result.stdout}\n${result.stderr}`);
  }
  process.env.REPOSYNC_TEST_TEMPLATE_URL = databaseUrl(TEMPLATE_DATABASE);
  process.env.REPOSYNC_TEST_DB_PREFIX = RUN_PREFIX;
}
