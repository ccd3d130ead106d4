import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SecretBox } from '../../src/common/secret-box.js';
import { webhookSecretContext } from '../../src/webhooks/webhook-signature.js';
import type { TestTenant } from '../support/api-harness.js';
import { SyncHarness } from '../support/sync-harness.js';
import { githubExample, githubPush, githubSignature, gitlabPush } from '../support/webhook-payloads.js';

interface Setup {
  url: string;
  secret: string;
}

describe('webhooks (signed real payloads over HTTP, real sync)', () => {
  let h: SyncHarness;
  let tenant: TestTenant;

  beforeAll(async () => {
    h = await SyncHarness.start({ PUBLIC_URL: 'https://reposync.example.com' });
    tenant = await h.api.createTenant('hooks');
  });

  afterAll(async () => {
    await h.stop();
  });

  async function trackedRepository(name: string) {
    const tracked = await h.trackRepository(tenant, name);
    const setup = await h.api.request<Setup>('POST', `/repositories/${tracked.id}/webhook`, {
      token: tenant.apiKey,
    });
    expect(setup.status).toBe(201);
    expect(setup.body.url).toBe(`https://reposync.example.com/webhooks/github?repository=${tracked.id}`);
    return { ...tracked, secret: setup.body.secret };
  }

  async function postGithub(
    repositoryId: string,
    body: string,
    headers: Record<string, string>,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    return h.api.request('POST', `/webhooks/github?repository=${repositoryId}`, {
      rawBody: body,
      headers: { 'content-type': 'application/json', ...headers },
    });
  }

  /** A push delivery with a fresh delivery id, signed with `secret`. */
  async function postPush(repositoryId: string, body: string, secret: string) {
    return postGithub(repositoryId, body, {
      'x-github-event': 'push',
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': await githubSignature(secret, body),
    });
  }

  async function deliveries(repositoryId: string): Promise<number> {
    const { rows } = await h.db.query<{ n: string }>(
      'SELECT count(*) AS n FROM "WebhookDelivery" WHERE "repositoryId" = $1',
      [repositoryId],
    );
    return Number(rows[0]!.n);
  }

  it('accepts a signed GitHub push and syncs the pushed commit; a repeated delivery id changes nothing', async () => {
    const r = await trackedRepository('gh-push');
    const next = await r.remote.commit({ 'README.md': 'pushed\n' });
    const body = JSON.stringify(githubPush('any/gh-push', 'main', r.first, next));
    const headers = {
      'x-github-event': 'push',
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': await githubSignature(r.secret, body),
    };
    const first = await postGithub(r.id, body, headers);
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ outcome: 'ACCEPTED' });
    await h.waitForBranch(r.id, 'main', next);

    const again = await postGithub(r.id, body, headers);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ outcome: 'DUPLICATE' });
    await new Promise((res) => setTimeout(res, 500));
    const runs = await h.runs(r.branchId);
    expect(runs.filter((run) => run.trigger === 'WEBHOOK')).toHaveLength(1);
    expect(await deliveries(r.id)).toBe(1);
  });

  it('answers 401 to a tampered body, a wrong secret and a missing signature, and records nothing', async () => {
    const r = await trackedRepository('gh-reject');
    const next = await r.remote.commit({ 'README.md': 'not via webhook\n' });
    const body = JSON.stringify(githubPush('any/gh-reject', 'main', r.first, next));
    const good = await githubSignature(r.secret, body);
    const base = { 'x-github-event': 'push' };
    const tampered = await postGithub(r.id, body.replace(next, r.first), {
      ...base,
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': good,
    });
    const wrongSecret = await postGithub(r.id, body, {
      ...base,
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': await githubSignature('not-the-secret', body),
    });
    const missing = await postGithub(r.id, body, { ...base, 'x-github-delivery': randomUUID() });
    for (const res of [tampered, wrongSecret, missing]) {
      expect(res.status).toBe(401);
      expect(res.body).toMatchObject({ code: 'UNAUTHENTICATED' });
    }
    await new Promise((res) => setTimeout(res, 500));
    expect(await deliveries(r.id)).toBe(0);
    const [branch] = await h.branches(r.id);
    expect(branch).toMatchObject({ status: 'SYNCED', syncedSha: r.first });
    expect(await h.runs(r.branchId)).toHaveLength(1);
  });

  it('rejects missing headers and malformed JSON with 400 after checking the signature', async () => {
    const r = await trackedRepository('gh-bad');
    const noEvent = await postGithub(r.id, '{}', {
      'x-hub-signature-256': await githubSignature(r.secret, '{}'),
    });
    expect(noEvent.status).toBe(400);
    const broken = '{"ref": ';
    const malformed = await postGithub(r.id, broken, {
      'x-github-event': 'push',
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': await githubSignature(r.secret, broken),
    });
    expect(malformed.status).toBe(400);
    expect(malformed.body).toMatchObject({ code: 'MALFORMED_PAYLOAD' });
    const unsignedBroken = await postGithub(r.id, broken, {
      'x-github-event': 'push',
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': await githubSignature('wrong', broken),
    });
    expect(unsignedBroken.status).toBe(401);
    expect(await deliveries(r.id)).toBe(0);
  });

  it('records ping and pull_request without syncing, and ignores repositories we do not track', async () => {
    const r = await trackedRepository('gh-other');
    for (const [event, payload] of [
      ['ping', githubExample('ping')],
      ['pull_request', githubExample('pull_request')],
      ['watch', { action: 'started' }],
    ] as const) {
      const body = JSON.stringify(payload);
      const res = await postGithub(r.id, body, {
        'x-github-event': event,
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': await githubSignature(r.secret, body),
      });
      expect(res.status).toBe(202);
      expect(res.body).toMatchObject({ outcome: 'IGNORED' });
    }
    expect(await deliveries(r.id)).toBe(3);
    expect(await h.runs(r.branchId)).toHaveLength(1);

    const unknown = await postGithub(randomUUID(), '{}', {
      'x-github-event': 'push',
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': await githubSignature('whatever', '{}'),
    });
    expect(unknown.status).toBe(202);
    expect(unknown.body).toMatchObject({ outcome: 'IGNORED' });
  });

  it('coalesces a burst of 200 deliveries for one branch into at most two runs', async () => {
    const r = await trackedRepository('gh-burst');
    const next = await r.remote.commit({ 'README.md': 'burst\n' });
    const runsBefore = (await h.runs(r.branchId)).length;
    const bodies = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const body = JSON.stringify(githubPush('any/gh-burst', 'main', r.first, next));
        return { body, signature: await githubSignature(r.secret, body) };
      }),
    );
    const results = await Promise.all(
      bodies.map(({ body, signature }) =>
        postGithub(r.id, body, {
          'x-github-event': 'push',
          'x-github-delivery': randomUUID(),
          'x-hub-signature-256': signature,
        }),
      ),
    );
    expect(results.filter((res) => res.status !== 202).map((res) => [res.status, res.body])).toEqual([]);
    await h.waitForBranch(r.id, 'main', next);
    await new Promise((res) => setTimeout(res, 1500));
    const runs = (await h.runs(r.branchId)).slice(runsBefore);
    expect(runs.length).toBeGreaterThanOrEqual(1);
    expect(runs.length).toBeLessThanOrEqual(2);
    expect(await deliveries(r.id)).toBe(200);
  });

  it('writes an already-owed branch and its repository once for a burst, and still marks every delivery enqueued', async () => {
    const r = await trackedRepository('gh-owed');
    const next = await r.remote.commit({ 'README.md': 'owed\n' });
    const body = JSON.stringify(githubPush('any/gh-owed', 'main', r.first, next));
    const signature = await githubSignature(r.secret, body);
    const rowVersions = async () => {
      const { rows } = await h.db.query<{ branch: string; repository: string }>(
        `SELECT b."xmin"::text AS "branch", r."xmin"::text AS "repository"
         FROM "Branch" b JOIN "Repository" r ON r."id" = b."repositoryId" WHERE b."id" = $1`,
        [r.branchId],
      );
      return rows[0]!;
    };
    // No worker: the branch stays OUTDATED at the pushed head, its job waiting.
    await h.stopWorker();
    try {
      const post = () =>
        postGithub(r.id, body, {
          'x-github-event': 'push',
          'x-github-delivery': randomUUID(),
          'x-hub-signature-256': signature,
        });
      expect((await post()).status).toBe(202);
      const afterFirst = await rowVersions();
      const results = await Promise.all(Array.from({ length: 50 }, post));
      expect(results.filter((res) => res.status !== 202)).toEqual([]);
      expect(await rowVersions()).toEqual(afterFirst);
      const [branch] = await h.branches(r.id);
      expect(branch).toMatchObject({ status: 'OUTDATED', syncedSha: r.first });
      await h.waitFor('every delivery marked enqueued', async () => {
        const { rows } = await h.db.query<{ n: string }>(
          'SELECT count(*) AS n FROM "WebhookDelivery" WHERE "repositoryId" = $1 AND "enqueuedAt" IS NULL',
          [r.id],
        );
        return rows[0]!.n === '0' ? true : undefined;
      });
      expect(await deliveries(r.id)).toBe(51);
    } finally {
      await h.startWorker();
    }
    await h.waitForBranch(r.id, 'main', next);
  });

  it('accepts the first delivery signed with a secret set just after a delivery found none', async () => {
    const r = await trackedRepository('gh-late-secret');
    await h.db.query('UPDATE "Repository" SET "webhookSecretEncrypted" = NULL WHERE "id" = $1', [r.id]);
    const body = JSON.stringify(githubPush('any/gh-late-secret', 'main', r.first, r.first));
    const post = async (secret: string) => (await postPush(r.id, body, secret)).status;
    expect(await post(r.secret)).toBe(401); // no secret yet: refused (and remembered briefly)
    // The secret is stored (by the webhook auto-setup, in any API process), then the host delivers.
    await h.db.query('UPDATE "Repository" SET "webhookSecretEncrypted" = $2 WHERE "id" = $1', [
      r.id,
      h.api.app.get(SecretBox).encrypt(r.secret, webhookSecretContext(r.id)),
    ]);
    expect(await post(r.secret)).toBe(202);
  });

  it('takes a webhook secret rotated by another API process at once, and refuses the old one after it', async () => {
    const r = await trackedRepository('gh-rotate');
    const next = await r.remote.commit({ 'README.md': 'rotated\n' });
    const body = JSON.stringify(githubPush('any/gh-rotate', 'main', r.first, next));
    const post = async (secret: string) => (await postPush(r.id, body, secret)).status;
    expect(await post(r.secret)).toBe(202); // the old secret is now cached
    // Another API process rotates the secret: this process's cache does not hear of it.
    const rotated = randomUUID();
    const encrypted = h.api.app.get(SecretBox).encrypt(rotated, webhookSecretContext(r.id));
    await h.db.query('UPDATE "Repository" SET "webhookSecretEncrypted" = $2 WHERE "id" = $1', [
      r.id,
      encrypted,
    ]);
    expect(await post(rotated)).toBe(202);
    expect(await post(r.secret)).toBe(401);

    // Rotated through this process's API: the old secret is refused at once.
    const setup = await h.api.request<Setup>('POST', `/repositories/${r.id}/webhook`, {
      token: tenant.apiKey,
    });
    expect(await post(rotated)).toBe(401);
    expect(await post(setup.body.secret)).toBe(202);
    await h.waitForBranch(r.id, 'main', next);
  });

  it('does not fail a delivery for a repository deleted while its secret is cached', async () => {
    const r = await trackedRepository('gh-deleted');
    const body = JSON.stringify(githubPush('any/gh-deleted', 'main', r.first, r.first));
    const post = () => postPush(r.id, body, r.secret);
    expect((await post()).status).toBe(202);
    const deleted = await h.api.request('DELETE', `/repositories/${r.id}`, { token: tenant.apiKey });
    expect(deleted.status).toBeLessThan(300);
    const late = await post();
    expect(late.status).toBe(202);
    expect(await h.branches(r.id)).toEqual([]);
  });

  it('accepts a GitLab push with the secret token, dedupes on Idempotency-Key and rejects a wrong token', async () => {
    const r = await trackedRepository('gl-push');
    const setup = await h.api.request<Setup>('POST', `/repositories/${r.id}/webhook?provider=gitlab`, {
      token: tenant.apiKey,
    });
    const next = await r.remote.commit({ 'README.md': 'from gitlab\n' });
    const body = JSON.stringify(gitlabPush('group/gl-push', 'main', r.first, next));
    const key = randomUUID();
    const post = (token: string) =>
      h.api.request('POST', `/webhooks/gitlab?repository=${r.id}`, {
        rawBody: body,
        headers: { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': token, 'idempotency-key': key },
      });
    expect((await post('wrong-token')).status).toBe(401);
    const accepted = await post(setup.body.secret);
    expect(accepted.status).toBe(202);
    await h.waitForBranch(r.id, 'main', next);
    expect((await post(setup.body.secret)).status).toBe(200);
    expect(
      (
        await h.api.request('POST', `/webhooks/gitlab?repository=${r.id}`, {
          rawBody: body,
          headers: { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': setup.body.secret },
        })
      ).status,
    ).toBe(400);
  });
});
