import { spawnSync } from 'node:child_process';
import pg from 'pg';

export interface BenchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A Postgres database of the benchmark's own (`reposync_bench_<pid>`), migrated with the project's
 * migrations. Databases left by interrupted earlier runs (of any benchmark) are dropped first.
 * `synchronousCommit: 'off'` is a diagnostic: how much of the time goes to commit flushes.
 */
export async function createBenchDatabase(
  serverUrl: string,
  root: string,
  opts: { synchronousCommit?: 'on' | 'off' } = {},
): Promise<BenchDatabase> {
  const name = `reposync_bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: `${serverUrl}/postgres` });
  await admin.connect();
  try {
    const stale = await admin.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname ~ '^reposync_bench_[0-9]+$'",
    );
    for (const { datname } of stale.rows) {
      const pid = Number(datname.slice('reposync_bench_'.length));
      if (pid === process.pid || !isAlive(pid)) {
        await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
      }
    }
    await admin.query(`CREATE DATABASE "${name}"`);
    if (opts.synchronousCommit === 'off') {
      await admin.query(`ALTER DATABASE "${name}" SET synchronous_commit = off`);
    }
  } finally {
    await admin.end();
  }
  const drop = async () => {
    const client = new pg.Client({ connectionString: `${serverUrl}/postgres` });
    await client.connect();
    try {
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    } finally {
      await client.end();
    }
  };
  const url = `${serverUrl}/${name}`;
  const migrate = spawnSync(process.execPath, ['scripts/prisma.mjs', 'migrate', 'deploy'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: url },
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (migrate.status !== 0) {
    await drop();
    throw new Error(`prisma migrate deploy failed:\n${migrate.stdout}\n${migrate.stderr}`);
  }
  return { name, url, drop };
}
