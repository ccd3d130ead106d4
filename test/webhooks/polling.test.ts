import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DAY_MS } from '../../src/sync/poll-interval.js';
import type { TestTenant } from '../support/api-harness.js';
import { SyncHarness } from '../support/sync-harness.js';
import { githubPush, githubSignature } from '../support/webhook-payloads.js';

/** The poll interval floor in this file: a branch without webhooks is checked about every second. */
const MIN_INTERVAL_MS = 1000;

interface PollState {
  nextPollAt: Date | null;
  /** nextPollAt - now() in Postgres, in ms (null when never polled). */
  dueInMs: number | null;
  lastWebhookAt: Date | null;
}

describe('polling fallback (worker poller against the git fixture server)', () => {
  let h: SyncHarness;
  let tenant: TestTenant;

  beforeAll(async () => {
    h = await SyncHarness.start({
      POLL_TICK_MS: '200',
      POLL_INTERVAL_MIN_MS: String(MIN_INTERVAL_MS),
    });
    tenant = await h.api.createTenant('polling');
  });

  afterAll(async () => {
    await h.stop();
  });

  const trackedRepository = (name: string) => h.trackRepository(tenant, name);

  async function pollState(branchId: string): Promise<PollState> {
    const { rows } = await h.db.query<PollState>(
      `SELECT b."nextPollAt", r."lastWebhookAt",
         (EXTRACT(EPOCH FROM b."nextPollAt" - now()) * 1000)::float8 AS "dueInMs"
       FROM "Branch" b JOIN "Repository" r ON r."id" = b."repositoryId" WHERE b."id" = $1`,
      [branchId],
    );
    return rows[0]!;
  }

  /**
   * Waits until `times` more polls of the branch have finished: each one leaves a new nextPollAt. A claimed
   * poll holds a lease of minutes instead, so only schedules a minute away or less count.
   */
  async function waitForPolls(branchId: string, times: number): Promise<PollState> {
    let polls = 0;
    let last = (await pollState(branchId)).nextPollAt?.getTime() ?? null;
    return h.waitFor(
      `${times} polls of branch ${branchId}`,
      async () => {
        const state = await pollState(branchId);
        const at = state.nextPollAt?.getTime() ?? null;
        if (at !== null && at !== last && state.dueInMs! < 60_000) {
          last = at;
          polls++;
        }
        return polls >= times ? state : undefined;
      },
      20_000,
    );
  }

  it('syncs a commit pushed to a repository without webhooks, with a POLL run', async () => {
    const r = await trackedRepository('poll-push');
    const pushed = await r.remote.commit({ 'README.md': 'pushed, nobody told us\n' });
    await h.waitForBranch(r.id, 'main', pushed, 20_000);
    const runs = await h.runs(r.branchId);
    expect(runs.filter((run) => run.toSha === pushed)).toEqual([
      expect.objectContaining({ trigger: 'POLL', status: 'SUCCEEDED', fromSha: r.first }),
    ]);
    expect(runs).toHaveLength(2);
    const { rows } = await h.db.query('SELECT 1 FROM "WebhookDelivery" WHERE "repositoryId" = $1', [r.id]);
    expect(rows).toHaveLength(0);
  });

  it('polls an unchanged branch on the short interval without creating runs', async () => {
    const r = await trackedRepository('poll-quiet');
    const runsBefore = await h.runs(r.branchId);
    // Three reschedulings: two full polls after the one that may have been under way at the start.
    const state = await waitForPolls(r.branchId, 3);
    expect(state.lastWebhookAt).toBeNull();
    // A branch that just changed and sends no webhooks is due again within about the floor (+20 % jitter).
    expect(state.dueInMs!).toBeLessThanOrEqual(MIN_INTERVAL_MS * 1.2 + 500);
    const runs = await h.runs(r.branchId);
    expect(runs).toEqual(runsBefore);
    expect(runs.filter((run) => run.status === 'NOOP' || run.trigger === 'POLL')).toEqual([]);
    expect(await h.branches(r.id)).toEqual([
      expect.objectContaining({ status: 'SYNCED', syncedSha: r.first, dirty: false }),
    ]);
  });

  it('polls a branch whose repository sent a verified webhook only once a day', async () => {
    const r = await trackedRepository('poll-hooked');
    const setup = await h.api.request<{ secret: string }>('POST', `/repositories/${r.id}/webhook`, {
      token: tenant.apiKey,
    });
    expect(setup.status).toBe(201);
    // The host reports the head we already have: the delivery owes no sync but proves webhooks work.
    const body = JSON.stringify(githubPush('any/poll-hooked', 'main', r.first, r.first));
    const delivered = await h.api.request('POST', `/webhooks/github?repository=${r.id}`, {
      rawBody: body,
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': await githubSignature(setup.body.secret, body),
      },
    });
    expect(delivered.status).toBe(202);
    expect((await pollState(r.branchId)).lastWebhookAt).not.toBeNull();

    // The next poll (at most about a second away) schedules the one after it about a day later.
    const scheduled = await h.waitFor('the next poll a day away', async () => {
      const state = await pollState(r.branchId);
      return state.dueInMs !== null && state.dueInMs > DAY_MS / 2 ? state : undefined;
    });
    expect(scheduled.dueInMs!).toBeGreaterThan(DAY_MS * 0.8 - 60_000);
    expect(scheduled.dueInMs!).toBeLessThanOrEqual(DAY_MS);

    // A push the host does not announce is not seen in the test window: no poll happens.
    const runsBefore = await h.runs(r.branchId);
    await r.remote.commit({ 'README.md': 'pushed without a webhook\n' });
    await new Promise((res) => setTimeout(res, 4 * MIN_INTERVAL_MS));
    expect((await pollState(r.branchId)).nextPollAt).toEqual(scheduled.nextPollAt);
    expect(await h.runs(r.branchId)).toEqual(runsBefore);
    expect(await h.branches(r.id)).toEqual([
      expect.objectContaining({ status: 'SYNCED', syncedSha: r.first }),
    ]);
  });
});
