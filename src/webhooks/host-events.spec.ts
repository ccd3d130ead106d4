import { createRequire } from 'node:module';
import { describe, expect, it } from '@jest/globals';
import { githubEvent, gitlabEvent } from './host-events.js';

const require = createRequire(import.meta.url);
const examples = require('@octokit/webhooks-examples/api.github.com/index.json') as {
  name: string;
  examples: Record<string, unknown>[];
}[];
const example = (name: string, match: (p: Record<string, unknown>) => boolean = () => true) =>
  structuredClone(examples.find((g) => g.name === name)!.examples.find(match)!);

const SHA = 'a'.repeat(40);

describe('githubEvent', () => {
  it('reads a branch push from a real example', () => {
    const push = example('push', (p) => String(p.ref).startsWith('refs/heads/'));
    const event = githubEvent('push', push);
    expect(event).toMatchObject({ kind: 'branch-updated', branch: String(push.ref).slice(11) });
    expect(event.repository).toEqual({ owner: 'codertocat', name: 'hello-world' });
  });

  it('treats a deleted branch, a tag push and branch names with slashes correctly', () => {
    const push = example('push', (p) => String(p.ref).startsWith('refs/heads/'));
    expect(
      githubEvent('push', { ...push, ref: 'refs/heads/feature/x', deleted: true, after: '0'.repeat(40) }),
    ).toMatchObject({ kind: 'branch-deleted', branch: 'feature/x' });
    expect(
      githubEvent(
        'push',
        example('push', (p) => String(p.ref).startsWith('refs/tags/')),
      ),
    ).toMatchObject({
      kind: 'recorded',
    });
    expect(githubEvent('push', { ...push, ref: 'refs/heads/main', after: SHA })).toMatchObject({
      after: SHA,
    });
    expect(githubEvent('push', { ...push, after: 'not-a-sha' })).toMatchObject({ after: null });
  });

  it('maps create/delete of branches, records tags, pings, installations and pull requests', () => {
    const create = example('create');
    expect(githubEvent('create', { ...create, ref_type: 'branch', ref: 'dev' })).toMatchObject({
      kind: 'branch-updated',
      branch: 'dev',
      after: null,
    });
    expect(githubEvent('delete', { ...example('delete'), ref_type: 'branch', ref: 'dev' })).toMatchObject({
      kind: 'branch-deleted',
      branch: 'dev',
    });
    expect(githubEvent('create', create)).toMatchObject({ kind: 'recorded' });
    for (const name of ['ping', 'installation_repositories', 'pull_request']) {
      expect(githubEvent(name, example(name)).kind).toBe('recorded');
    }
    const installation = example('installation') as { action: string; installation: { id: number } };
    expect(githubEvent('installation', installation)).toMatchObject({
      kind: 'installation',
      installationId: String(installation.installation.id),
      action: installation.action,
    });
    expect(githubEvent('star', {}).kind).toBe('ignored');
  });

  it('survives payloads of the wrong shape', () => {
    expect(githubEvent('push', null).kind).toBe('ignored');
    expect(githubEvent('push', [1, 2]).kind).toBe('ignored');
    expect(githubEvent('push', { ref: 'refs/pull/1/head' }).kind).toBe('ignored');
    // A NUL cannot be in a ref: such a push names no branch (and nothing of it reaches the database).
    const nul = githubEvent('push', { ref: 'refs/heads/ma\u0000in', after: 'a'.repeat(40) });
    expect(nul).toMatchObject({ kind: 'ignored', detail: 'push without a ref' });
  });
});

describe('gitlabEvent', () => {
  const push = {
    object_kind: 'push',
    ref: 'refs/heads/main',
    after: SHA,
    project: { path_with_namespace: 'Group/Sub/Project' },
  };

  it('reads pushes, system hook pushes and branch deletions', () => {
    expect(gitlabEvent('Push Hook', push)).toEqual({
      kind: 'branch-updated',
      repository: { owner: 'group/sub', name: 'project' },
      branch: 'main',
      after: SHA,
    });
    expect(gitlabEvent('System Hook', push).kind).toBe('branch-updated');
    expect(gitlabEvent('Push Hook', { ...push, after: '0'.repeat(40) }).kind).toBe('branch-deleted');
  });

  it('records tag pushes and merge requests, ignores the rest', () => {
    expect(gitlabEvent('Tag Push Hook', { ...push, object_kind: 'tag_push', ref: 'refs/tags/v1' }).kind).toBe(
      'recorded',
    );
    expect(gitlabEvent('Merge Request Hook', { object_kind: 'merge_request' }).kind).toBe('recorded');
    expect(gitlabEvent('System Hook', { event_name: 'project_create' }).kind).toBe('recorded');
    expect(gitlabEvent('Pipeline Hook', {}).kind).toBe('ignored');
  });
});
