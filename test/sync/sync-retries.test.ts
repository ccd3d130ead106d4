import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TestTenant } from '../support/api-harness.js';
import { SyncHarness } from '../support/sync-harness.js';

describe('sync retries, fairness and cleanup', () => {
  let h: SyncHarness;
  let tenant: TestTenant;

  beforeAll(async () => {
    // One job per tenant at a time, two per worker: a busy tenant leaves room for others.
    h = await SyncHarness.start({
      SYNC_CONCURRENCY: '2',
      SYNC_TENANT_CONCURRENCY: '1',
      SYNC_MAX_ATTEMPTS: '3',
    });
    tenant = await h.api.createTenant('retries');
  });

  afterAll(async () => {
    await h.stop();
  });

  async function add(t: TestTenant, body: Record<string, unknown>): Promise<string> {
    const res = await h.api.request<{ id: string }>('POST', '/repositories', { token: t.apiKey, body });
    expect(res.status).toBe(201);
    return res.body.id;
  }

  it('retries a transient host failure with backoff and ends SYNCED', async () => {
    const remote = await h.git.createRepository('flaky');
    const sha = await remote.commit({ 'a.txt': 'a\n' });
    h.git.failNextRequests('flaky', 2, 503);
    const id = await add(tenant, { url: remote.url, branches: ['main'] });
    const branch = await h.waitForBranch(id, 'main', sha);
    const runs = await h.runs(branch.id);
    expect(runs[runs.length - 1]).toMatchObject({ status: 'SUCCEEDED' });
    expect(runs.filter((r) => r.status === 'FAILED').every((r) => r.errorCode === 'GIT_NETWORK')).toBe(true);
  });

  it('stops after the configured attempts and stays FAILED until the next trigger', async () => {
    const remote = await h.git.createRepository('down');
    const sha = await remote.commit({ 'a.txt': 'a\n' });
    const id = await add(tenant, { url: remote.url, branches: ['main'] });
    await h.waitForBranch(id, 'main', sha);
    await remote.commit({ 'a.txt': 'b\n' });
    h.git.failNextRequests('down', 1000, 503);
    await h.api.request('POST', `/repositories/${id}/sync`, { token: tenant.apiKey, body: {} });
    const failed = await h.waitFor('FAILED after 3 attempts', async () => {
      const b = (await h.branches(id))[0];
      return b?.status === 'FAILED' ? b : undefined;
    });
    expect(failed.lastErrorCode).toBe('GIT_NETWORK');
    await new Promise((r) => setTimeout(r, 1500));
    const runs = await h.runs(failed.id);
    expect(runs.filter((r) => r.status === 'FAILED')).toHaveLength(3);

    // The host recovers; the next trigger syncs again.
    h.git.resetFailures('down');
    await h.api.request('POST', `/repositories/${id}/sync`, { token: tenant.apiKey, body: {} });
    await h.waitForBranch(id, 'main', await remote.head('main'));
  });

  it('keeps a tenant with many slow repositories from starving another tenant', async () => {
    const busy = await h.api.createTenant('busy-tenant');
    const quiet = await h.api.createTenant('quiet-tenant');
    const busyIds: string[] = [];
    for (let i = 0; i < 4; i++) {
      const remote = await h.git.createRepository(`busy-${i}`);
      await remote.commit({ 'f.txt': `${i}\n` });
      h.git.setUploadPackDelay(1500, `busy-${i}`);
      busyIds.push(await add(busy, { url: remote.url, branches: ['main'] }));
    }
    const quietRemote = await h.git.createRepository('quiet');
    const quietSha = await quietRemote.commit({ 'q.txt': 'q\n' });
    await new Promise((r) => setTimeout(r, 200));
    const quietId = await add(quiet, { url: quietRemote.url, branches: ['main'] });

    await h.waitForBranch(quietId, 'main', quietSha, 20_000);
    // The quiet tenant finished while most of the busy tenant's work was still owed.
    // One query at a time: the harness reads through a single pg client.
    const busyStates: (string | undefined)[] = [];
    for (const id of busyIds) busyStates.push((await h.branches(id))[0]?.status);
    expect(busyStates.filter((s) => s === 'SYNCED').length).toBeLessThan(busyIds.length);
    for (let i = 0; i < 4; i++) h.git.setUploadPackDelay(0, `busy-${i}`);
  });

  it('deletes the cached clone of a deleted repository', async () => {
    const remote = await h.git.createRepository('to-delete');
    const sha = await remote.commit({ 'a.txt': 'a\n' });
    const id = await add(tenant, { url: remote.url, branches: ['main'] });
    await h.waitForBranch(id, 'main', sha);
    const dir = join(h.workspaceDir, 'repos', id);
    await access(dir);
    expect((await h.api.request('DELETE', `/repositories/${id}`, { token: tenant.apiKey })).status).toBe(204);
    await h.waitFor('workspace removed', async () => {
      try {
        await access(dir);
        return undefined;
      } catch {
        return true;
      }
    });
  });
});
