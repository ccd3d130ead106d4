/**
 * Webhook intake benchmark: signed GitHub push deliveries fired with autocannon at the real API
 * (createApi: Fastify + Nest, signature check, one SQL statement per delivery, enqueue after the answer),
 * next to a bare Fastify route answering {ok:true} as the ceiling of this machine.
 *
 * Build and run from the project root (Postgres on 127.0.0.1:5432 with trust auth, Redis on 127.0.0.1:6379):
 *   node node_modules/typescript/bin/tsc -p bench/tsconfig.json
 *   node bench/dist/bench/webhooks.js [--duration 10] [--warmup 3] [--connections 50] [--workers 1] [--rate 1000]
 *                                     [--repositories 1] [--branches 1] [--pool 10] [--log-level warn]
 *                                     [--synchronous-commit on]
 *                                     [--pg postgresql://postgres@127.0.0.1:5432] [--redis redis://127.0.0.1:6379]
 *
 * It creates (and drops at the end) a database `reposync_bench_<pid>` and a Redis key prefix
 * `bench-webhooks-<pid>`; nothing else is touched. No worker runs: jobs wait in Redis and are deleted.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type IntervalHistogram, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import pg from 'pg';
import { createApi } from '../src/api.js';
import { loadConfig } from '../src/config/app-config.js';
import { deleteKeysWithPrefix } from '../test/support/redis-keys.js';
import { githubPush, githubSignature } from '../test/support/webhook-payloads.js';
import { createBenchDatabase } from './bench-database.js';
import { projectRoot, table } from './bench-report.js';
import { firePaced, percentile } from './paced-load.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

interface Options {
  durationS: number;
  warmupS: number;
  connections: number;
  /** Deliveries per second offered in the fixed-rate run (the target's load). */
  rate: number;
  workers: number;
  repositories: number;
  branches: number;
  pool: number;
  synchronousCommit: 'on' | 'off';
  logLevel: LogLevel;
  pgUrl: string;
  redisUrl: string;
}

/** Target of the run: ≥ 1,000 deliveries/s with p99 < 50 ms. */
const TARGET_RPS = 1000;
const TARGET_P99_MS = 50;

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
      connections: { type: 'string', default: '50' },
      workers: { type: 'string', default: '1' },
      rate: { type: 'string', default: String(TARGET_RPS) },
      repositories: { type: 'string', default: '1' },
      branches: { type: 'string', default: '1' },
      'synchronous-commit': { type: 'string', default: 'on' },
      pool: { type: 'string', default: '10' },
      'log-level': { type: 'string', default: 'warn' },
      pg: { type: 'string', default: 'postgresql://postgres@127.0.0.1:5432' },
      redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    },
  });
  const integer = (name: string, raw: string, min: number): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min)
      throw new Error(`--${name} must be an integer >= ${min}, got ${raw}`);
    return n;
  };
  const logLevel = values['log-level'];
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new Error(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${logLevel}`);
  }
  const synchronousCommit = values['synchronous-commit'];
  if (synchronousCommit !== 'on' && synchronousCommit !== 'off') {
    throw new Error(`--synchronous-commit must be on or off, got ${synchronousCommit}`);
  }
  return {
    durationS: integer('duration', values.duration, 1),
    warmupS: integer('warmup', values.warmup, 0),
    connections: integer('connections', values.connections, 1),
    workers: integer('workers', values.workers, 0),
    rate: integer('rate', values.rate, 1),
    repositories: integer('repositories', values.repositories, 1),
    branches: integer('branches', values.branches, 1),
    synchronousCommit,
    pool: integer('pool', values.pool, 1),
    logLevel: logLevel as LogLevel,
    pgUrl: values.pg.replace(/\/+$/, ''),
    redisUrl: values.redis,
  };
}

/**
 * The figures go to stdout, unless the API logs every request there (info and more verbose): then they go
 * to stderr, so that `> /dev/null` drops the request log and keeps the report.
 */
let report: (line: string) => void = (line) => console.log(line);

async function call<T>(
  baseUrl: string,
  method: string,
  path: string,
  token: string,
  body?: unknown,
): Promise<T> {
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${path} answered ${res.status}: ${text}`);
  return (text ? JSON.parse(text) : null) as T;
}

/**
 * One delivery per repository and branch: its body (and so its signature) is fixed; autocannon fills in
 * a fresh delivery id for every request.
 */
interface DeliveryTemplate {
  path: string;
  body: string;
  headers: Record<string, string>;
}

async function deliveries(
  repositoryId: string,
  secret: string,
  branches: string[],
): Promise<DeliveryTemplate[]> {
  const sha = () => randomBytes(20).toString('hex');
  return Promise.all(
    branches.map(async (branch) => {
      const body = JSON.stringify(githubPush('bench/webhooks', branch, sha(), sha()));
      return {
        path: `/webhooks/github?repository=${repositoryId}`,
        body,
        headers: {
          'content-type': 'application/json',
          'x-github-event': 'push',
          // autocannon replaces [<id>] with a fresh id in every request it sends (idReplacement).
          'x-github-delivery': '[<id>]',
          'x-hub-signature-256': await githubSignature(secret, body),
        },
      };
    }),
  );
}

/**
 * The autocannon requests for the templates. Every connection walks a `requests` list from its start, so a
 * list of several templates would send the connections through the repositories in lockstep: with more
 * than one, each request picks a template at random instead (in a generated CommonJS file, because
 * autocannon's worker threads load request hooks by path).
 */
async function requestsFor(
  templates: DeliveryTemplate[],
  scratch: string,
  workers: number,
): Promise<autocannon.Request[]> {
  const only = templates[0]!;
  if (templates.length === 1)
    return [{ method: 'POST', path: only.path, body: only.body, headers: only.headers }];
  const source =
    `const templates = ${JSON.stringify(templates)};\n` +
    'module.exports = (request) => {\n' +
    '  const t = templates[Math.floor(Math.random() * templates.length)];\n' +
    '  return { ...request, path: t.path, body: t.body, headers: { ...t.headers } };\n' +
    '};\n';
  const file = join(scratch, 'pick-delivery.cjs');
  await writeFile(file, source);
  const pick = (request: autocannon.Request): autocannon.Request => {
    const t = templates[Math.floor(Math.random() * templates.length)]!;
    return { ...request, path: t.path, body: t.body, headers: { ...t.headers } };
  };
  return [{ method: 'POST', setupRequest: workers ? file : pick }];
}

/**
 * Samples what the database's active backends are doing (wait event, or CPU when none) until stopped:
 * tells row-lock queues and commit flushes apart from query work.
 */
function sampleWaits(url: string, database: string): { stop(): Promise<Map<string, number>> } {
  const counts = new Map<string, number>();
  const client = new pg.Client({ connectionString: url });
  let running = true;
  const loop = (async () => {
    await client.connect();
    while (running) {
      const { rows } = await client.query<{ what: string; n: string }>(
        `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU (no wait event)') AS what, count(*) AS n
         FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid() GROUP BY 1`,
        [database],
      );
      for (const r of rows) counts.set(r.what, (counts.get(r.what) ?? 0) + Number(r.n));
      await new Promise((r) => setTimeout(r, 20));
    }
    await client.end();
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return counts;
    },
  };
}

interface Figures {
  name: string;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  max: number;
  requests: number;
  ok: number;
  status: Record<string, number>;
  errors: number;
  timeouts: number;
  /** Share of the time this process's event loop (the server's, with a worker-thread load) was busy. */
  elu: number;
  /** Longest the event loop was held up (ms). */
  loopDelayMax: number;
}

/** Fires for `length.durationS` seconds, or exactly `length.amount` requests (all answered when it returns). */
async function fire(
  name: string,
  url: string,
  requests: autocannon.Request[],
  options: Options,
  length: { durationS: number } | { amount: number },
): Promise<Figures> {
  const eluStart = performance.eventLoopUtilization();
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const result = await autocannon({
    url,
    method: 'POST',
    connections: options.connections,
    // A worker thread keeps the load generator off the event loop of the server under test.
    workers: options.workers || undefined,
    ...('amount' in length ? { amount: length.amount } : { duration: length.durationS }),
    idReplacement: true,
    requests,
  });
  const status: Record<string, number> = {};
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) status[code] = stat.count ?? 0;
  return {
    name,
    seconds: result.duration,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    max: result.latency.max,
    requests: result.requests.total,
    ok: result['2xx'],
    status,
    errors: result.errors,
    timeouts: result.timeouts,
    elu: performance.eventLoopUtilization(eluStart).utilization,
    loopDelayMax: stopDelay(delay),
  };
}

function stopDelay(delay: IntervalHistogram): number {
  delay.disable();
  return delay.max / 1e6;
}

/** `options.rate` deliveries per second for `options.durationS` seconds, paced (see paced-load.ts). */
async function firePacedRun(
  name: string,
  url: string,
  templates: DeliveryTemplate[],
  options: Options,
): Promise<Figures> {
  const eluStart = performance.eventLoopUtilization();
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const result = await firePaced({
    url,
    templates,
    idHeader: 'x-github-delivery',
    idPrefix: randomBytes(8).toString('hex'),
    rate: options.rate,
    amount: options.rate * options.durationS,
    maxSockets: options.connections,
  });
  const sorted = result.latencies.slice().sort();
  let ok = 0;
  for (const [code, n] of Object.entries(result.status)) if (code.startsWith('2')) ok += n;
  return {
    name,
    seconds: result.durationMs / 1000,
    rps: sorted.length / (result.durationMs / 1000),
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: percentile(sorted, 1),
    requests: sorted.length,
    ok,
    status: result.status,
    errors: result.errors,
    timeouts: 0,
    elu: performance.eventLoopUtilization(eluStart).utilization,
    loopDelayMax: stopDelay(delay),
  };
}

async function main(): Promise<void> {
  const options = parseOptions();
  if (['info', 'debug', 'trace'].includes(options.logLevel)) report = (line) => console.error(line);
  const root = projectRoot();
  const cleanups: Array<() => Promise<unknown>> = [];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) {
      await step().catch((e: unknown) => console.error('cleanup step failed:', e));
    }
  };
  try {
    report(
      `reposync webhook benchmark: ${options.connections} connections for ${options.durationS} s ` +
        `(warm-up ${options.warmupS} s), pool ${options.pool}, synchronous_commit ${options.synchronousCommit}, ` +
        `log level ${options.logLevel}, autocannon workers ${options.workers}; node ${process.version}`,
    );
    const started = performance.now();
    const database = await createBenchDatabase(options.pgUrl, root, {
      synchronousCommit: options.synchronousCommit,
    });
    cleanups.push(() => database.drop());
    report(`database created and migrated in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    const adminToken = randomBytes(32).toString('hex');
    const config = loadConfig({
      NODE_ENV: 'production',
      LOG_LEVEL: options.logLevel,
      DATABASE_URL: database.url,
      DATABASE_POOL_SIZE: String(options.pool),
      REDIS_URL: options.redisUrl,
      QUEUE_PREFIX: `bench-webhooks-${process.pid}`,
      ADMIN_TOKEN: adminToken,
      ENCRYPTION_KEYS: `bench:${randomBytes(32).toString('base64')}`,
      // The repository URL is never fetched (no worker), but it is http:// on 127.0.0.1.
      ALLOW_INSECURE_REPOSITORY_URLS: 'true',
    });
    cleanups.push(() => deleteKeysWithPrefix(config.redis.url, config.redis.queuePrefix));
    const api = await createApi(config);
    await api.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => api.close());
    const apiAddress = api.getHttpServer().address();
    if (!apiAddress || typeof apiAddress === 'string') throw new Error('API did not bind a TCP port');
    const apiUrl = `http://127.0.0.1:${apiAddress.port}`;

    const ceiling = Fastify();
    ceiling.post('/webhooks/github', async () => ({ ok: true }));
    await ceiling.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => ceiling.close());
    const ceilingAddress = ceiling.server.address();
    if (!ceilingAddress || typeof ceilingAddress === 'string') throw new Error('Fastify did not bind a port');
    const ceilingUrl = `http://127.0.0.1:${ceilingAddress.port}`;

    const created = await call<{ tenant: { id: string }; apiKey: { key: string } }>(
      apiUrl,
      'POST',
      '/admin/tenants',
      adminToken,
      { name: 'Benchmark', slug: 'bench' },
    );
    const apiKey = created.apiKey.key;
    const branches = Array.from({ length: options.branches }, (_, i) => (i === 0 ? 'main' : `branch-${i}`));
    const templates: DeliveryTemplate[] = [];
    for (let i = 0; i < options.repositories; i++) {
      const repo = await call<{ id: string }>(apiUrl, 'POST', '/repositories', apiKey, {
        url: `http://127.0.0.1:9/bench/webhooks-${i}.git`,
        branches,
      });
      const hook = await call<{ secret: string }>(apiUrl, 'POST', `/repositories/${repo.id}/webhook`, apiKey);
      templates.push(...(await deliveries(repo.id, hook.secret, branches)));
    }
    report(
      `${options.repositories} repositor${options.repositories === 1 ? 'y' : 'ies'} x ${branches.length} ` +
        `branch(es), push body ${templates[0]!.body.length} B, one signature per repository and branch, ` +
        'a unique X-GitHub-Delivery per request',
    );

    const db = new pg.Client({ connectionString: database.url });
    await db.connect();
    cleanups.push(() => db.end());
    const count = async (where: string) =>
      Number(
        (await db.query<{ n: string }>(`SELECT count(*) AS n FROM "WebhookDelivery" ${where}`)).rows[0]!.n,
      );

    const scratch = await mkdtemp(join(tmpdir(), 'reposync-bench-webhooks-'));
    cleanups.push(() => rm(scratch, { recursive: true, force: true }));
    const requests = await requestsFor(templates, scratch, options.workers);

    const results: Figures[] = [];
    let waits = new Map<string, number>();
    const runs = [
      { name: 'bare Fastify {ok:true}', url: ceilingUrl, rate: undefined },
      { name: 'reposync POST /webhooks/github', url: apiUrl, rate: undefined },
      { name: `reposync at ${options.rate}/s offered`, url: apiUrl, rate: options.rate },
    ];
    for (const { name, url, rate } of runs) {
      // The measured run sends a fixed number of requests (about --duration seconds at the warm-up's rate,
      // or at the offered rate) and waits for every answer, so that answers and recorded rows can be
      // compared exactly. The fixed-rate run follows the saturating one, which warmed the service up.
      let length: { durationS: number } | { amount: number } = { durationS: options.durationS };
      if (rate) {
        length = { amount: rate * options.durationS };
      } else if (options.warmupS) {
        const warm = await fire(name, url, requests, options, { durationS: options.warmupS });
        length = { amount: Math.max(options.connections, Math.round(warm.rps * options.durationS)) };
        // Requests in flight when the warm-up stopped are answered (and recorded) before counting.
        await new Promise((r) => setTimeout(r, 1000));
      }
      const isService = url === apiUrl;
      const before = await count('');
      const sampler = isService && !rate ? sampleWaits(database.url, database.name) : null;
      const figures = rate
        ? await firePacedRun(name, url, templates, options)
        : await fire(name, url, requests, options, length);
      if (sampler) waits = await sampler.stop();
      results.push(figures);
      if (isService) {
        if (!('amount' in length)) await new Promise((r) => setTimeout(r, 1000));
        const recorded = (await count('')) - before;
        const accepted = figures.status['202'] ?? 0;
        const exact = 'amount' in length;
        const ok = exact ? figures.ok === recorded : recorded >= figures.ok;
        report(
          `deliveries: ${figures.requests} sent, ${figures.ok} answered 2xx (${accepted} x 202, ` +
            `${figures.status['200'] ?? 0} x 200), ${recorded} new rows in "WebhookDelivery": ` +
            (ok ? 'every accepted delivery is recorded' : 'MISMATCH') +
            (exact ? '' : ' (duration mode: requests in flight at the end are recorded but not counted)'),
        );
        if (!ok) process.exitCode = 1;
        // The enqueue runs after the answer: give it a moment, then see how far it got.
        await new Promise((r) => setTimeout(r, 2000));
        const pending = await count(`WHERE "outcome" = 'ACCEPTED' AND "enqueuedAt" IS NULL`);
        report(`deliveries still waiting for their enqueue 2 s after the run: ${pending}`);
      }
    }

    const fmt = (n: number) => n.toFixed(n >= 100 ? 0 : 1);
    report('');
    report(
      table(
        [
          [
            'target',
            'time s',
            'req/s',
            'p50 ms',
            'p99 ms',
            'max ms',
            'requests',
            '2xx',
            'other',
            'errors',
            'loop busy',
            'loop stall',
          ],
          ...results.map((f) => [
            f.name,
            f.seconds.toFixed(1),
            fmt(f.rps),
            fmt(f.p50),
            fmt(f.p99),
            fmt(f.max),
            String(f.requests),
            String(f.ok),
            Object.entries(f.status)
              .filter(([code]) => !code.startsWith('2'))
              .map(([code, n]) => `${code}x${n}`)
              .join(' ') || '0',
            String(f.errors + f.timeouts),
            options.workers ? `${Math.round(f.elu * 100)} %` : 'n/a',
            `${fmt(f.loopDelayMax)} ms`,
          ]),
        ],
        { lastIsText: false, rule: true },
      ),
    );
    const saturated = results[1]!;
    const atRate = results[2]!;
    // The paced run is the target's load; its rate counts until the last answer, a little past the schedule.
    const met = options.rate >= TARGET_RPS && atRate.rps >= 0.98 * options.rate && atRate.p99 < TARGET_P99_MS;
    const samples = [...waits.values()].reduce((a, b) => a + b, 0);
    if (samples) {
      report('\nPostgres backends of the benchmark database during the reposync run (sampled every 20 ms):');
      for (const [what, n] of [...waits.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
        report(`  ${what.padEnd(36)} ${((100 * n) / samples).toFixed(1).padStart(5)} %`);
      }
    }
    report(
      `\ntarget >= ${TARGET_RPS} deliveries/s with p99 < ${TARGET_P99_MS} ms: ${met ? 'met' : 'MISSED'} ` +
        `(at ${options.rate}/s offered: ${fmt(atRate.rps)}/s served, p99 ${fmt(atRate.p99)} ms; ` +
        `saturated: ${fmt(saturated.rps)}/s, p99 ${fmt(saturated.p99)} ms with ${options.connections} ` +
        `connections; ceiling ${fmt(results[0]!.rps)}/s)`,
    );
  } finally {
    await cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
