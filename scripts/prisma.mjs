// Runs the Prisma CLI with DATABASE_URL always set (the CLI otherwise tries to download engines)
// and without the timer that keeps `migrate deploy` alive after it has finished.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import 'dotenv/config';

process.env.DATABASE_URL ??= 'postgresql://postgres@127.0.0.1:5432/reposync';
process.env.PRISMA_HIDE_UPDATE_MESSAGE = '1';
const require = createRequire(import.meta.url);
const cli = require.resolve('prisma/build/index.js');
const result = spawnSync(
  process.execPath,
  ['--import', new URL('./unref-timers.mjs', import.meta.url).href, cli, ...process.argv.slice(2)],
  {
    stdio: 'inherit',
    env: process.env,
    timeout: 300_000,
  },
);
process.exit(result.status ?? 1);
