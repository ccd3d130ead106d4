import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { FixtureFiles } from '../fixtures/git-server.js';
import { S3FixtureServer } from '../fixtures/s3-server.js';
import type { TestTenant } from '../support/api-harness.js';
import { runCommand } from '../support/run-command.js';
import { SyncHarness } from '../support/sync-harness.js';
import { describeTree } from '../support/tree-listing.js';

interface ArchiveBody {
  sha: string;
  sizeBytes: number;
  sha256: string;
  pinned: boolean;
  url?: string;
}

async function extractTree(tarGz: Buffer): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'reposync-extract-'));
  try {
    await runCommand('tar', ['-xzf', '-', '-C', dir], { input: tarGz });
    return await describeTree(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe.each(['s3', 'filesystem'] as const)('archives of synced revisions (%s store)', (store) => {
  let h: SyncHarness;
  let s3: S3FixtureServer | undefined;
  let tenant: TestTenant;

  beforeAll(async () => {
    const overrides: Record<string, string> = { ARCHIVE_RETENTION: '2' };
    if (store === 's3') {
      s3 = await S3FixtureServer.start();
      Object.assign(overrides, {
        ARCHIVE_STORE: 's3',
        S3_ENDPOINT: s3.endpoint,
        S3_BUCKET: s3.bucket,
        S3_REGION: s3.region,
        S3_ACCESS_KEY_ID: s3.credentials.accessKeyId,
        S3_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
        S3_FORCE_PATH_STYLE: 'true',
      });
    }
    h = await SyncHarness.start(overrides);
    tenant = await h.api.createTenant(`archives-${store}`);
  });

  afterAll(async () => {
    await h.stop();
    await s3?.stop();
  });

  async function download(repositoryId: string, sha: string): Promise<{ meta: ArchiveBody; bytes: Buffer }> {
    const url = `${h.api.baseUrl}/repositories/${repositoryId}/archives/${sha}`;
    const res = await fetch(url, { headers: { authorization: `Bearer ${tenant.apiKey}` } });
    expect(res.status).toBe(200);
    if (res.headers.get('content-type')?.startsWith('application/json')) {
      const meta = (await res.json()) as ArchiveBody;
      expect(meta.url).toEqual(expect.any(String));
      const file = await fetch(meta.url!);
      expect(file.status).toBe(200);
      return { meta, bytes: Buffer.from(await file.arrayBuffer()) };
    }
    const bytes = Buffer.from(await res.arrayBuffer());
    return {
      meta: {
        sha,
        sizeBytes: bytes.length,
        sha256: res.headers.get('x-archive-sha256') ?? '',
        pinned: false,
      },
      bytes,
    };
  }

  it('archives every synced revision exactly as git archive, records size and sha256, and keeps the newest N', async () => {
    const remote = await h.git.createRepository(`tree-${store}`);
    const shas = [
      await remote.commit({
        'bin/tool.sh': { content: '#!/bin/sh\necho tool\n', executable: true },
        'docs/link.md': { symlink: '../README.md' },
        'README.md': '# readme\n',
        'empty.txt': '',
        'a/b/c/deep.txt': 'deep\n',
        'with space/ünïcödé name.txt': 'unicode\n',
        'image.bin': Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)),
      }),
    ];
    const created = await h.api.request<{ id: string }>('POST', '/repositories', {
      token: tenant.apiKey,
      body: { url: remote.url, branches: ['main'] },
    });
    const id = created.body.id;
    await h.waitForBranch(id, 'main', shas[0]!);
    const changes: FixtureFiles[] = [
      { 'README.md': 'v2\n', 'bin/tool.sh': null },
      { 'image.bin': Buffer.from('changed') },
      { 'new.txt': 'n\n' },
    ];
    for (const change of changes) {
      shas.push(await remote.commit(change));
      await h.api.request('POST', `/repositories/${id}/sync`, { token: tenant.apiKey, body: {} });
      await h.waitForBranch(id, 'main', shas[shas.length - 1]!);
    }

    // Retention 2: the two newest remain.
    const list = await h.api.request<{ items: ArchiveBody[] }>('GET', `/repositories/${id}/archives`, {
      token: tenant.apiKey,
    });
    expect(list.body.items.map((a) => a.sha)).toEqual([shas[3], shas[2]]);
    const old = await h.api.request('GET', `/repositories/${id}/archives/${shas[0]}`, {
      token: tenant.apiKey,
    });
    expect(old.status).toBe(404);

    for (const sha of [shas[2]!, shas[3]!]) {
      const { meta, bytes } = await download(id, sha);
      expect(sha256(bytes)).toBe(meta.sha256);
      expect(bytes.length).toBe(meta.sizeBytes);
      const expected = await runCommand('git', [
        '--git-dir',
        remote.bareDir,
        'archive',
        '--format=tar.gz',
        sha,
      ]);
      expect(await extractTree(bytes)).toEqual(await extractTree(expected));
    }

    // The branch view names the archive of its synced commit.
    const detail = await h.api.request<{ branches: { archive: ArchiveBody | null }[] }>(
      'GET',
      `/repositories/${id}`,
      {
        token: tenant.apiKey,
      },
    );
    expect(detail.body.branches[0]?.archive?.sha).toBe(shas[3]);
  });

  it('reuses an existing archive for the same commit and keeps pinned archives beyond retention', async () => {
    const remote = await h.git.createRepository(`pin-${store}`);
    const first = await remote.commit({ 'f.txt': '1\n' });
    const created = await h.api.request<{ id: string }>('POST', '/repositories', {
      token: tenant.apiKey,
      body: { url: remote.url, branches: ['main'], syncStrategy: 'FULL' },
    });
    const id = created.body.id;
    await h.waitForBranch(id, 'main', first);
    const pinned = await h.api.request<ArchiveBody>('PATCH', `/repositories/${id}/archives/${first}`, {
      token: tenant.apiKey,
      body: { pinned: true },
    });
    expect(pinned.body.pinned).toBe(true);
    const { meta: before } = await download(id, first);

    // A force-push back to the same commit after other commits: a full re-clone reaches `first` again.
    const second = await remote.commit({ 'f.txt': '2\n' });
    await h.api.request('POST', `/repositories/${id}/sync`, { token: tenant.apiKey, body: {} });
    await h.waitForBranch(id, 'main', second);
    const third = await remote.commit({ 'f.txt': '3\n' });
    await h.api.request('POST', `/repositories/${id}/sync`, { token: tenant.apiKey, body: {} });
    await h.waitForBranch(id, 'main', third);
    await remote.forcePush('main', first);
    await h.api.request('POST', `/repositories/${id}/sync`, { token: tenant.apiKey, body: {} });
    await h.waitForBranch(id, 'main', first);

    const runs = await h.runs((await h.branches(id))[0]!.id);
    expect(runs[runs.length - 1]!.strategyReason).toMatch(/archive reused/);
    const { meta: after } = await download(id, first);
    expect(after.sha256).toBe(before.sha256);
    const list = await h.api.request<{ items: ArchiveBody[] }>('GET', `/repositories/${id}/archives`, {
      token: tenant.apiKey,
    });
    // Pinned `first` plus the two newest unpinned.
    expect(list.body.items.map((a) => a.sha).sort()).toEqual([first, second, third].sort());
    expect(
      (await h.api.request('GET', `/repositories/${id}/archives/nothex`, { token: tenant.apiKey })).status,
    ).toBe(400);
  });
});
