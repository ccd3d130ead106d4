import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { GraphCatchUp } from '../../src/sync/graph-catch-up.js';
import { SyncHarness } from '../support/sync-harness.js';

interface Ready {
  status: string;
  graph: { status: string; error?: string };
}

describe.each([
  ['unset', {}, 'disabled', 'disabled'],
  [
    'pointing at a closed port',
    { NEO4J_URI: 'bolt://127.0.0.1:1', NEO4J_PASSWORD: 'x' },
    'pending',
    'unavailable',
  ],
] as const)('syncing with NEO4J_URI %s', (_label, overrides, runGraphStatus, healthGraph) => {
  let h: SyncHarness;

  beforeAll(async () => {
    h = await SyncHarness.start(overrides);
  });

  afterAll(async () => {
    await h.stop();
  });

  it(`syncs normally, records the graph step as ${runGraphStatus} and reports graph ${healthGraph} in health`, async () => {
    const tenant = await h.api.createTenant('graph');
    const remote = await h.git.createRepository('graph-optional');
    const sha = await remote.commit({ 'a.txt': 'a\n' });
    const res = await h.api.request<{ id: string }>('POST', '/repositories', {
      token: tenant.apiKey,
      body: { url: remote.url, branches: ['main'] },
    });
    const branch = await h.waitForBranch(res.body.id, 'main', sha);
    const { rows } = await h.db.query<{ status: string; graphStatus: string | null }>(
      'SELECT "status", "graphStatus" FROM "SyncRun" WHERE "branchId" = $1',
      [branch.id],
    );
    expect(rows).toEqual([{ status: 'SUCCEEDED', graphStatus: runGraphStatus }]);
    const indexed = await h.db.query<{ indexedSha: string | null }>(
      'SELECT "indexedSha" FROM "Branch" WHERE "id" = $1',
      [branch.id],
    );
    expect(indexed.rows[0]?.indexedSha).toBeNull();

    // The catch-up pass leaves the branch pending while the graph is unreachable.
    expect(await h.worker!.get(GraphCatchUp).catchUp()).toBe(0);

    const ready = await h.api.request<Ready>('GET', '/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body.graph.status).toBe(healthGraph);

    const api = await h.api.request<{ code: string }>(
      'GET',
      `/repositories/${res.body.id}/graph/contributors`,
      {
        token: tenant.apiKey,
      },
    );
    expect(api.status).toBe(503);
  });
});
