/** Connection settings of the machine's real Postgres and Redis, handed over by the jest global setup. */
function templateUrl(): URL {
  const raw = process.env.REPOSYNC_TEST_TEMPLATE_URL;
  if (!raw)
    throw new Error('REPOSYNC_TEST_TEMPLATE_URL is not set: run the suites through jest (global setup)');
  return new URL(raw);
}

export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export function templateDatabase(): string {
  return templateUrl().pathname.slice(1);
}

/** pg client settings for the server of the template database. */
export function pgSettings() {
  const u = templateUrl();
  return {
    host: u.hostname,
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username),
    password: u.password ? decodeURIComponent(u.password) : undefined,
  };
}

export function databaseUrl(database: string): string {
  const u = templateUrl();
  u.pathname = `/${database}`;
  return u.toString();
}
