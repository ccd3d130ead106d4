import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Redis } from 'ioredis';
import type { TestTenant } from '../support/api-harness.js';
import { SyncHarness } from '../support/sync-harness.js';
import { githubPush, githubSignature } from '../support/webhook-payloads.js';

/** How many deliveries arrive while Redis is down. */
const DELIVERIES = 20;
/** The enqueue gives up after 2 s, and it runs after the answer: an answer never waits for it. */
const MAX_ANSWER_MS = 3000;
/** util-linux: runs a program with a parent-death signal. */
const SETPRIV = '/usr/bin/setpriv';

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (!address || typeof address === 'string') throw new Error('no TCP port');
  return address.port;
}

/**
 * A redis-server of this test file's own, on a port of its own: the machine's Redis on 6379 is shared
 * with other test runs and must never be stopped. No persistence: a restart comes back empty, like a
 * lost Redis, so only what Postgres recorded can bring the work back.
 */
class PrivateRedis {
  private child?: ChildProcess;
  /** Clients connected when the server was last killed: the service's connections to wait for. */
  private clientsBeforeKill = 0;

  private constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  static async start(): Promise<PrivateRedis> {
    const redis = new PrivateRedis(await freePort());
    await redis.restart();
    return redis;
  }

  /** Starts redis-server on the same port and resolves once it accepts connections. */
  async restart(): Promise<void> {
    if (this.child) return;
    const server = [
      'redis-server',
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
    ];
    // The server must never outlive this process, which can end without running afterAll (Nest calls
    // process.exit on a failed start-up): setpriv makes the kernel kill it when its parent dies.
    const command = existsSync(SETPRIV) ? [SETPRIV, '--pdeathsig', 'KILL', ...server] : server;
    const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`redis-server did not start on ${this.port} within 10 s:\n${output}`));
      }, 10_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString('utf8');
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code ?? signal}) on ${this.port}:\n${output}`));
      });
    });
    // Keep draining its log so the pipe never fills.
    child.stdout?.resume();
    child.stderr?.resume();
    this.child = child;
  }

  /** How many clients (other than this probe) are connected. */
  async connectedClients(): Promise<number> {
    const probe = new Redis(this.url, { maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      await probe.connect();
      const info = await probe.info('clients');
      return Number(/connected_clients:(\d+)/.exec(info)?.[1] ?? 0) - 1;
    } finally {
      probe.disconnect();
    }
  }

  /** Resolves once every client connected before the last kill has reconnected. */
  async waitForReconnections(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.connectedClients()) < this.clientsBeforeKill) {
      if (Date.now() > deadline)
        throw new Error(`the service did not reconnect ${this.clientsBeforeKill} clients to Redis`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Kills the server abruptly (an outage, not a shutdown) and waits for it to be gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) {
      this.clientsBeforeKill = await this.connectedClients().catch(() => 0);
    }
    this.child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }
}

describe('webhooks while Redis is down (private redis-server)', () => {
  let redis: PrivateRedis;
  let h: SyncHarness;
  let tenant: TestTenant;

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    h = await SyncHarness.start({ REDIS_URL: redis.url, RECONCILE_INTERVAL_MS: '1000' });
    tenant = await h.api.createTenant('outage');
  });

  afterAll(async () => {
    // A BullMQ Worker.close() started while its connection is down or still reconnecting never resolves,
    // even once Redis is back (taskforcesh/bullmq#4656): if a failed test left Redis down, bring it back
    // and wait for the service's connections before stopping the worker.
    // The harness then clears its key prefix on the shared Redis, where this file wrote nothing: harmless.
    // The private server's keys go with it (no persistence).
    try {
      if (redis && !redis.running) {
        await redis.restart();
        await redis.waitForReconnections();
      }
      await h?.stop();
    } finally {
      await redis?.kill();
    }
  }, 60_000);

  async function deliveryRows(repositoryId: string) {
    const { rows } = await h.db.query<{ deliveryId: string; outcome: string; enqueuedAt: Date | null }>(
      'SELECT "deliveryId", "outcome", "enqueuedAt" FROM "WebhookDelivery" WHERE "repositoryId" = $1',
      [repositoryId],
    );
    return rows;
  }

  it('answers every delivery at once, records it, and syncs once when Redis is back', async () => {
    const { remote, id: repositoryId, branchId, first } = await h.trackRepository(tenant, 'outage');
    const setup = await h.api.request<{ secret: string }>('POST', `/repositories/${repositoryId}/webhook`, {
      token: tenant.apiKey,
    });
    expect(setup.status).toBe(201);
    const runsBefore = (await h.runs(branchId)).length;

    const pushed = await remote.commit({ 'README.md': 'pushed during the outage\n' });
    // One body (one signature) for every delivery: only the delivery id header differs.
    const body = JSON.stringify(githubPush('any/outage', 'main', first, pushed));
    const signature = await githubSignature(setup.body.secret, body);
    await redis.kill();

    const deliveryIds = Array.from({ length: DELIVERIES }, () => randomUUID());
    const answers: { status: number; outcome: unknown; ms: number }[] = [];
    for (const deliveryId of deliveryIds) {
      const started = performance.now();
      const res = await h.api.request('POST', `/webhooks/github?repository=${repositoryId}`, {
        rawBody: body,
        headers: {
          'content-type': 'application/json',
          'x-github-event': 'push',
          'x-github-delivery': deliveryId,
          'x-hub-signature-256': signature,
        },
      });
      answers.push({ status: res.status, outcome: res.body.outcome, ms: performance.now() - started });
    }
    expect(answers.filter((a) => a.status !== 202 || a.outcome !== 'ACCEPTED')).toEqual([]);
    expect(answers.filter((a) => a.ms >= MAX_ANSWER_MS)).toEqual([]);

    // Still down: every delivery is recorded, none marked enqueued, the branch is owed.
    const recorded = await deliveryRows(repositoryId);
    expect(recorded.map((r) => r.deliveryId).sort()).toEqual([...deliveryIds].sort());
    expect(recorded.filter((r) => r.outcome !== 'ACCEPTED' || r.enqueuedAt !== null)).toEqual([]);
    const [owed] = await h.branches(repositoryId);
    expect(owed).toMatchObject({ status: 'OUTDATED', syncedSha: first });
    // Give the failed enqueues (2 s) and a few reconciler passes time to fail while Redis is down.
    await new Promise((r) => setTimeout(r, 2500));
    expect((await deliveryRows(repositoryId)).filter((r) => r.enqueuedAt !== null)).toEqual([]);

    await redis.restart();
    await redis.waitForReconnections();
    await h.waitForBranch(repositoryId, 'main', pushed, 60_000);
    await h.waitFor(
      'every delivery marked enqueued',
      async () => {
        const rows = await deliveryRows(repositoryId);
        return rows.length === DELIVERIES && rows.every((r) => r.enqueuedAt !== null) ? rows : undefined;
      },
      30_000,
    );
    // Let any duplicate job (an enqueue left in the client's offline queue, the reconciler) show up.
    await new Promise((r) => setTimeout(r, 2000));
    const runs = (await h.runs(branchId)).slice(runsBefore);
    expect(runs.filter((run) => run.status === 'SUCCEEDED' && run.toSha === pushed)).toHaveLength(1);
    expect(runs.length).toBeGreaterThanOrEqual(1);
    expect(runs.length).toBeLessThanOrEqual(2);
    expect(runs.filter((run) => run.status === 'FAILED')).toEqual([]);
    expect(await h.branches(repositoryId)).toEqual([
      expect.objectContaining({ status: 'SYNCED', syncedSha: pushed, dirty: false }),
    ]);
  }, 120_000);
});
