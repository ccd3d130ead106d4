// Creates the database named in DATABASE_URL when it does not exist yet (idempotent).
import 'dotenv/config';
import pg from 'pg';

const url = new URL(process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/reposync');
const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
if (!/^[A-Za-z0-9_-]+$/.test(database)) {
  console.error(`db-create: unsupported database name "${database}" in DATABASE_URL`);
  process.exit(1);
}
const client = new pg.Client({
  host: url.hostname,
  port: url.port ? Number(url.port) : 5432,
  user: decodeURIComponent(url.username) || undefined,
  password: url.password ? decodeURIComponent(url.password) : undefined,
  database: 'postgres',
});
await client.connect();
const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
if (found.rowCount === 0) {
  await client.query(`CREATE DATABASE "${database}"`);
  console.log(`db-create: created database ${database}`);
} else {
  console.log(`db-create: database ${database} exists`);
}
await client.end();
