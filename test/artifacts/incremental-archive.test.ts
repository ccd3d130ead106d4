/**
 * Archives made from the previous revision's entries and git's tree changes (the fetch path with a
 * worker that archived the branch before) must be byte-identical to archives of a checkout of the commit.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createReproducibleTarball } from '../../src/artifacts/reproducible-tarball.js';
import type { FixtureFiles, FixtureRepository } from '../fixtures/git-server.js';
import type { TestTenant } from '../support/api-harness.js';
import { runCommand } from '../support/run-command.js';
import { SyncHarness } from '../support/sync-harness.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** SHA-256 of the archive the engine writes from a checkout of `sha` (a directory walk). */
async function archiveOfCheckout(remote: FixtureRepository, sha: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'reposync-checkout-'));
  try {
    const tar = await runCommand('git', ['--git-dir', remote.bareDir, 'archive', '--format=tar', sha]);
    await runCommand('tar', ['-xf', '-', '-C', dir], { input: tar });
    const seconds = Number(
      (await runCommand('git', ['--git-dir', remote.bareDir, 'show', '-s', '--format=%ct', sha])).toString(),
    );
    const tarball = createReproducibleTarball(dir, { mtime: new Date(seconds * 1000), commitId: sha });
    tarball.stream.resume();
    return (await tarball.digest).sha256;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('archives made from the previous revision', () => {
  let h: SyncHarness;
  let tenant: TestTenant;

  beforeAll(async () => {
    h = await SyncHarness.start();
    tenant = await h.api.createTenant('incremental-archive');
  });

  afterAll(async () => {
    await h.stop();
  });

  async function archiveSha256(repositoryId: string, sha: string): Promise<string> {
    const res = await fetch(`${h.api.baseUrl}/repositories/${repositoryId}/archives/${sha}`, {
      headers: { authorization: `Bearer ${tenant.apiKey}` },
    });
    expect(res.status).toBe(200);
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(res.headers.get('x-archive-sha256')).toBe(sha256(bytes));
    return sha256(bytes);
  }

  it('equals the archive of a checkout for every kind of change, commit after commit', async () => {
    const remote = await h.git.createRepository('incremental/kinds');
    const first = await remote.commit({
      'README.md': '# readme\n',
      'bin/tool.sh': { content: '#!/bin/sh\necho tool\n', executable: true },
      'docs/link.md': { symlink: '../README.md' },
      'docs/guide.md': 'guide v1\n',
      'gone/a.txt': 'a\n',
      'gone/deeper/b.txt': 'b\n',
      'becomes-dir': 'a file for now\n',
      'dir-becomes-file/inner.txt': 'inner\n',
      'a.txt': 'sorts before a/\n',
      'a/x.txt': 'x\n',
      'with space/ünïcödé name.txt': 'unicode\n',
      'empty.txt': '',
      'image.bin': Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)),
    });
    const created = await h.api.request<{ id: string }>('POST', '/repositories', {
      token: tenant.apiKey,
      body: { url: remote.url, branches: ['main'] },
    });
    const id = created.body.id;
    const branch = await h.waitForBranch(id, 'main', first);
    expect(await archiveSha256(id, first)).toBe(await archiveOfCheckout(remote, first));

    const changes: FixtureFiles[] = [
      // Edits, an add in a new deep directory, chmod +x, a binary change.
      {
        'README.md': '# readme v2\n',
        'new/very/deep/dir/file.txt': 'deep\n',
        'docs/guide.md': { content: 'guide v1\n', executable: true },
        'image.bin': Buffer.from([0, 1, 2, 255]),
      },
      // A whole directory removed, a symlink retargeted, a file replaced by a symlink and back.
      {
        'gone/a.txt': null,
        'gone/deeper/b.txt': null,
        'docs/link.md': { symlink: 'guide.md' },
        'bin/tool.sh': { symlink: '../README.md' },
      },
      // A file becomes a directory, a directory becomes a file, a rename, names around `a/`.
      {
        'becomes-dir': null,
        'becomes-dir/now.txt': 'inside\n',
        'dir-becomes-file/inner.txt': null,
        'dir-becomes-file': 'now a file\n',
        'with space/ünïcödé name.txt': null,
        'renamed/ünïcödé name.txt': 'unicode\n',
        'a-b.txt': 'between a.txt and a/\n',
        'a/y.txt': 'y\n',
        'bin/tool.sh': { content: '#!/bin/sh\necho back\n', executable: true },
      },
      // Back to content an older commit had (a blob the blobless clone may never have received), chmod -x.
      { 'README.md': '# readme\n', 'docs/guide.md': 'guide v1\n', 'image.bin': null },
    ];
    for (const [index, change] of changes.entries()) {
      const sha = await remote.commit(change);
      await h.api.request('POST', `/repositories/${id}/sync`, { token: tenant.apiKey, body: {} });
      await h.waitForBranch(id, 'main', sha);
      const last = (await h.runs(branch.id)).at(-1);
      expect(last).toMatchObject({ status: 'SUCCEEDED', strategy: 'fetch', toSha: sha });
      // The first archive after the one read from the snapshot is made from its entries; each later one
      // copies the unchanged entries from the tar before it.
      const made = index === 0 ? 'entries' : 'tar';
      expect(last?.strategyReason).toMatch(
        new RegExp(`from the previous archive's ${made} and \\d+ changed paths`),
      );
      expect(await archiveSha256(id, sha)).toBe(await archiveOfCheckout(remote, sha));
      expect(await remote.diffAgainstDirectory(sha, await h.snapshotAt(id, 'main', sha))).toEqual([]);
    }
  });
});
