import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { killOrphanedGit } from '../../src/sync/workspace/orphaned-git.js';

describe('killOrphanedGit', () => {
  const roots: string[] = [];
  afterAll(async () => {
    for (const r of roots) await rm(r, { recursive: true, force: true });
  });

  it('kills a detached git working in the workspace and leaves others alone', async () => {
    const root = await mkdtemp(join(tmpdir(), 'reposync-orphan-'));
    const other = await mkdtemp(join(tmpdir(), 'reposync-other-'));
    roots.push(root, other);
    for (const dir of [root, other]) {
      await new Promise((resolve) =>
        spawn('git', ['init', '--quiet', '--bare', join(dir, 'repos', 'x', 'git')]).on('exit', resolve),
      );
    }
    const start = (dir: string) => {
      // `git cat-file --batch` waits on stdin forever: a stand-in for a git stuck in a transfer.
      const child = spawn('git', ['--git-dir', join(dir, 'repos', 'x', 'git'), 'cat-file', '--batch'], {
        detached: true,
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        child.on('exit', (_, signal) => resolve(signal)),
      );
      return { child, exited };
    };
    const orphan = start(root);
    const bystander = start(other);
    await new Promise((r) => setTimeout(r, 200));

    const killed = await killOrphanedGit(root, () => undefined);
    expect(killed).toContain(orphan.child.pid);
    expect(await orphan.exited).toBe('SIGKILL');
    expect(bystander.child.exitCode).toBeNull();
    bystander.child.kill('SIGKILL');
    await bystander.exited;
  });
});
