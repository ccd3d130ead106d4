import pg from 'pg';
import { RUN_PREFIX, pgSettings } from './global-setup.mjs';

export default async function globalTeardown() {
  const admin = new pg.Client({ ...pgSettings, database: 'postgres' });
  await admin.connect();
  try {
    const mine = await admin.query('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [
      RUN_PREFIX,
    ]);
    for (const row of mine.rows) await admin.query(`DROP DATABASE IF EXISTS "${row.datname}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}
