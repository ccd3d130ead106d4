/**
 * Compare-delta through the whole service: a worker that lost its clone brings a branch to a new commit
 * from the previous archive and the host's compare API (no git), and the archive it stores is
 * byte-identical to the one a clone produces; a range the API cannot express falls back to git.
 */
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { FixtureRepository } from '../fixtures/git-server.js';
import {
  hostedRepository,
  startConnectionsWorld,
  type ConnectionsWorld,
} from '../connections/connections-world.js';
import type { TestTenant } from '../support/api-harness.js';

describe('compare-delta sync (API + worker + fake GitHub over real git)', () => {
  let world: ConnectionsWorld;
  let a: TestTenant;
  let b: TestTenant;
  let remote: FixtureRepository;
  let initial: string;
  let first: string;
  let repositoryId: string;

  async function connect(tenant: TestTenant): Promise<string> {
    const res = await world.h.api.request<{ id: string }>('POST', '/connections', {
      token: tenant.apiKey,
      body: { provider: 'GITHUB', token: world.api.issueToken('github') },
    });
    expect(res.status).toBe(201);
    return res.body.id;
  }

  async function addRepository(tenant: TestTenant, syncStrategy: string): Promise<string> {
    const res = await world.h.api.request<{ id: string }>('POST', '/repositories', {
      token: tenant.apiKey,
      body: { connectionId: await connect(tenant), owner: 'acme', name: 'delta', syncStrategy },
    });
    expect(res.status).toBe(201);
    return res.body.id;
  }

  /** The worker restarts with an empty workspace: it has no clone of anything. */
  async function loseTheClones(): Promise<void> {
    await world.h.stopWorker();
    await rm(world.h.workspaceDir, { recursive: true, force: true });
    await world.h.startWorker();
  }

  /** Waits for main at `sha`; a timeout says what the branch and its runs show. */
  async function waitSynced(id: string, sha: string) {
    return world.h.waitForBranch(id, 'main', sha, 60_000).catch(async (e: unknown) => {
      const branches = await world.h.branches(id);
      const runs = branches[0] ? await world.h.runs(branches[0].id) : [];
      throw new Error(`${String(e)}: ${JSON.stringify({ branches, runs })}`);
    });
  }

  async function syncTo(id: string, sha: string) {
    const res = await world.h.api.request('POST', `/repositories/${id}/sync`, { token: a.apiKey });
    expect(res.status).toBe(202);
    const branch = await waitSynced(id, sha);
    const runs = await world.h.runs(branch.id);
    return runs[runs.length - 1]!;
  }

  async function archiveDigest(id: string, sha: string): Promise<string> {
    const { rows } = await world.h.db.query<{ sha256: string }>(
      'SELECT "sha256" FROM "Archive" WHERE "repositoryId" = $1 AND "sha" = $2',
      [id, sha],
    );
    expect(rows).toHaveLength(1);
    return rows[0]!.sha256;
  }

  beforeAll(async () => {
    world = await startConnectionsWorld({}, () => ({}));
    a = await world.h.api.createTenant('delta-a');
    b = await world.h.api.createTenant('delta-b');
    ({ remote, first: initial } = await hostedRepository(world, 'acme/delta'));
    first = await remote.commit({
      'src/app.ts': 'export const version = 1;\n',
      'docs/guide.md': '# Guide\n',
      'scripts/run.sh': { content: '#!/bin/sh\necho run\n', executable: true },
      'assets/logo.bin': Buffer.from([0, 1, 2, 3, 255, 0, 10]),
      'old/gone.txt': 'to be removed\n',
    });
    repositoryId = await addRepository(a, 'AUTO');
    await world.h.waitForBranch(repositoryId, 'main', first, 60_000);
  }, 120_000);

  afterAll(async () => {
    await world?.stop();
  });

  it('updates a revision without a clone, byte-identical to what a clone archives', async () => {
    await loseTheClones();
    const next = await remote.commit(
      {
        'src/app.ts': 'export const version = 2;\n',
        'docs/guide.md': null,
        'docs/handbook/deep/nested/guide.md': '# Guide\n\nMoved and extended.\n',
        'assets/logo.bin': Buffer.from([0, 1, 2, 3, 255, 0, 10, 99]),
        'old/gone.txt': null,
        'notes/new.txt': 'a new file\n',
      },
      { message: 'edit, move, remove, add' },
    );
    const run = await syncTo(repositoryId, next);
    expect(run.status).toBe('SUCCEEDED');
    expect(run.strategy).toBe('compare-delta');
    expect(run.strategyReason).toMatch(/tree [0-9a-f]{12} verified/);

    // Another tenant tracks the same repository with clones only: the same commit, the same bytes.
    const cloned = await addRepository(b, 'FULL');
    await waitSynced(cloned, next);
    expect(await archiveDigest(repositoryId, next)).toBe(await archiveDigest(cloned, next));
  }, 120_000);

  it('falls back to git when the range is not a fast-forward, and still ends SYNCED', async () => {
    await loseTheClones();
    const rewritten = await remote.commitOnto(initial, { 'rewritten.txt': 'history was rewritten\n' });
    await remote.forcePush('main', rewritten);
    const run = await syncTo(repositoryId, rewritten);
    expect(run.status).toBe('SUCCEEDED');
    expect(run.strategy).toBe('clone');
    expect(run.strategyReason).toMatch(/compare-delta fell back \(NOT_FAST_FORWARD\)/);
    expect(world.api.openApiViolations).toEqual([]);
    expect(world.api.fixtureErrors).toEqual([]);
  }, 120_000);
});
